"""The security filters on a workload's inbound chains: jwt_authn, then RBAC (DESIGN §5).

Computed once per proxy and handed to every inbound filter chain: HTTP chains put `http`
before the router, TCP chains put `tcp` before tcp_proxy. Which policies apply is decided by
trellis.api.policy_scope (selector, namespace, root namespace), shared with `trellis x authz`.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from trellis.api.policy_scope import authorization_policies_for, request_authentications_for
from trellis.api.security import AuthorizationPolicyAction
from trellis.compiler.jwt import JwtInputs, build_jwt_filter
from trellis.compiler.rbac import RbacInputs, build_http_rbac_filters, build_network_rbac_filters
from trellis.model.proxy import Proxy
from trellis.model.push_context import PushContext


@dataclass(frozen=True, slots=True)
class InboundPolicyFilters:
    """Filters to put in front of the app on every inbound chain of one proxy."""

    http: tuple[hcm.HttpFilter, ...] = ()
    tcp: tuple[listener_components_pb2.Filter, ...] = ()


NO_POLICY_FILTERS = InboundPolicyFilters()


def policy_inputs(proxy: Proxy, push: PushContext) -> tuple[JwtInputs, RbacInputs]:
    """The RequestAuthentications and AuthorizationPolicies enforced on this proxy."""
    ns, labels, root = proxy.namespace, proxy.labels, push.mesh.root_namespace
    policies = push.security_policies
    jwt = JwtInputs(
        policies=request_authentications_for(
            policies, namespace=ns, labels=labels, root_namespace=root
        ),
        fetched_jwks=dict(push.fetched_jwks),
    )
    authz = tuple(
        p
        for p in authorization_policies_for(
            policies, namespace=ns, labels=labels, root_namespace=root
        )
        if p.spec.action is not AuthorizationPolicyAction.CUSTOM
    )
    return jwt, RbacInputs(policies=authz, issuers=jwt.issuers)


def build_inbound_policy_filters(proxy: Proxy, push: PushContext) -> InboundPolicyFilters:
    jwt, rbac = policy_inputs(proxy, push)
    jwt_filter = build_jwt_filter(jwt)
    http = [jwt_filter] if jwt_filter is not None else []
    http += build_http_rbac_filters(rbac)
    return InboundPolicyFilters(http=tuple(http), tcp=tuple(build_network_rbac_filters(rbac)))
