"""What `trellis x authz check` reports: the policies on a workload and, for a described
request, the decision. Pure, so the CLI only fetches resources and prints this."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trellis.api.base import Resource
from trellis.api.policy_scope import (
    ROOT_NAMESPACE,
    authorization_policies_for,
    request_authentications_for,
)
from trellis.api.security import AuthorizationPolicy, AuthorizationPolicyAction
from trellis.policy.evaluate import AuthzRequest, Decision, evaluate


@dataclass(frozen=True, slots=True)
class AuthzReport:
    authorization: tuple[AuthorizationPolicy, ...]
    request_authentications: tuple[tuple[str, str, tuple[str, ...]], ...]  # ns, name, issuers
    decision: Decision | None

    def as_json(self) -> dict[str, Any]:
        decision = self.decision
        return {
            "authorizationPolicies": [
                {
                    "namespace": p.namespace,
                    "name": p.name,
                    "action": p.spec.action.value,
                    "rules": len(p.spec.rules),
                }
                for p in self.authorization
            ],
            "requestAuthentications": [
                {"namespace": ns, "name": name, "issuers": list(issuers)}
                for ns, name, issuers in self.request_authentications
            ],
            "decision": None
            if decision is None
            else {
                "allowed": decision.allowed,
                "reason": decision.reason,
                "rule": decision.rule,
                "audited": list(decision.audited),
            },
        }


def authz_report(
    resources: Iterable[Resource],
    *,
    namespace: str,
    labels: Mapping[str, str],
    request: AuthzRequest | None = None,
    root_namespace: str = ROOT_NAMESPACE,
) -> AuthzReport:
    """The policies enforced on a workload (as its sidecar enforces them) and a decision.

    CUSTOM policies are listed but not evaluated (Trellis does not support them yet).
    """
    resources = list(resources)
    authz = authorization_policies_for(
        resources, namespace=namespace, labels=labels, root_namespace=root_namespace
    )
    authn = request_authentications_for(
        resources, namespace=namespace, labels=labels, root_namespace=root_namespace
    )
    evaluated = [p for p in authz if p.spec.action is not AuthorizationPolicyAction.CUSTOM]
    return AuthzReport(
        authorization=authz,
        request_authentications=tuple(
            (ra.namespace, ra.name, tuple(r.issuer for r in ra.spec.jwt_rules)) for ra in authn
        ),
        decision=None if request is None else evaluate(evaluated, request),
    )
