"""Envoy's real decisions equal the reference evaluator's, for generated policies and requests.

Hypothesis writes small AuthorizationPolicies (ALLOW/DENY mixes; methods, paths with `*`
prefix/suffix/presence, hosts with and without a port, header conditions, their `not*` forms)
and requests; each policy set
is compiled by Trellis's RBAC translation into a real Envoy, the requests are sent through it,
and 403 vs 200 must be what trellis.policy.evaluate says Istio's documented rules decide.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.envoy_rbac import echo_app, envoy_with_filters
from trellis.api.authz_validation import check_authorization_policy
from trellis.api.security import AuthorizationPolicy
from trellis.compiler.rbac import RbacInputs, build_http_rbac_filters
from trellis.policy.evaluate import AuthzRequest, evaluate

pytestmark = pytest.mark.e2e

METHODS = ["GET", "POST", "PUT", "DELETE"]
PATHS = ["/a", "/a/b", "/ab", "/b", "/c/a"]
PATH_PATTERNS = [*PATHS, "/a*", "/a/*", "*b", "*/a", "*"]
HEADER_VALUES = ["red", "rose", "blue"]
HEADER_PATTERNS = [*HEADER_VALUES, "r*", "*e", "*"]
HOSTS = ["httpbin", "HTTPBIN:8000", "api.example.com", "api.example.com:80"]
HOST_PATTERNS = ["httpbin", "*.example.com", "api*", "*", "Api.Example.Com"]


def _some(values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True)


@st.composite
def operations(draw: st.DrawFn) -> dict[str, Any]:
    fields = {
        "methods": _some(METHODS),
        "notMethods": _some(METHODS),
        "paths": _some(PATH_PATTERNS),
        "notPaths": _some(PATH_PATTERNS),
        "hosts": _some(HOST_PATTERNS),
        "notHosts": _some(HOST_PATTERNS),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=2, unique=True))
    return {name: draw(fields[name]) for name in chosen}


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    which = draw(st.sampled_from(["values", "notValues"]))
    return {"key": "request.headers[x-color]", which: draw(_some(HEADER_PATTERNS))}


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    ops = draw(st.lists(operations(), max_size=2))
    if ops:
        rule["to"] = [{"operation": op} for op in ops]
    when = draw(st.lists(conditions(), max_size=1))
    if when:
        rule["when"] = when
    return rule


@st.composite
def policies(draw: st.DrawFn) -> list[AuthorizationPolicy]:
    count = draw(st.integers(min_value=1, max_value=3))
    out = []
    for i in range(count):
        spec = {
            "action": draw(st.sampled_from(["ALLOW", "DENY"])),
            "rules": draw(st.lists(rules(), max_size=2)),
        }
        doc = {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": f"p{i}", "namespace": "default"},
            "spec": spec,
        }
        policy = AuthorizationPolicy.model_validate(doc)
        assert check_authorization_policy(policy.spec) == [], doc
        out.append(policy)
    return out


requests_strategy = st.lists(
    st.tuples(
        st.sampled_from(METHODS),
        st.sampled_from(PATHS),
        st.one_of(st.none(), st.sampled_from(HEADER_VALUES)),
        st.sampled_from(HOSTS),
    ),
    min_size=3,
    max_size=5,
)


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    with echo_app() as port:
        yield port


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(chosen=policies(), requests=requests_strategy)
def test_envoy_decisions_match_the_reference_evaluator(
    chosen: list[AuthorizationPolicy],
    requests: list[tuple[str, str, str | None, str]],
    app_port: int,
    tmp_path: Path,
) -> None:
    filters = build_http_rbac_filters(RbacInputs(policies=tuple(chosen)))
    with envoy_with_filters(filters, app_port, tmp_path) as envoy:
        for method, path, color, host in requests:
            headers = {"x-color": color} if color is not None else {}
            described = AuthzRequest(method=method, path=path, host=host, headers=headers)
            expected = evaluate(chosen, described)
            reply = envoy.request(method, path, {**headers, "host": host})
            want = 200 if expected.allowed else 403
            assert reply.status == want, (
                f"{method} {path} {headers}: Envoy {reply.status}, reference {expected}\n"
                + "\n".join(p.model_dump_json(by_alias=True) for p in chosen)
            )
