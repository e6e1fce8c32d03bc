"""The property test of test_authz_property.py, through the whole mesh: `trellis apply`,
trellisd, xDS and the workload's own sidecar decide, and must agree with the reference evaluator.

One workload (httpbin, started by this module) gets the generated policies, each set with a
DENY marker on a path no generated request uses, so the test knows when that set is in force.
Requests go straight from the test to the pod address, a new connection each, so no pooled
connection from an older configuration answers.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from tests.e2e.meshctl import REPO, Mesh, as_list, cli_json, eventually
from tests.e2e.test_authz_property import policies, requests_strategy
from trellis.api.security import AuthorizationPolicy
from trellis.policy.evaluate import AuthzRequest, evaluate

pytestmark = pytest.mark.e2e

APP = "httpbin-authz"
PORT = 8080
SERVICE = f"""
apiVersion: v1
kind: Service
metadata: {{name: {APP}, namespace: default}}
spec:
  selector: {{app: {APP}}}
  ports:
  - {{name: http, port: 8000, targetPort: {PORT}}}
"""


@pytest.fixture(scope="module")
def pod_ip(bookinfo: Mesh) -> Iterator[str]:
    try:
        bookinfo.cli(
            "run", APP, "-n", "default", "--port", str(PORT), "--labels", f"app={APP}",
            "--", sys.executable, str(REPO / "samples" / "httpbin" / "httpbin.py"),
            "--port", str(PORT),
        )  # fmt: skip
        bookinfo.apply(SERVICE)
        ip = next(w["ip"] for w in as_list(cli_json(bookinfo, "ps")) if w["name"] == APP)
        eventually(lambda: _send(ip, "GET", "/get", {}) == 200, what="httpbin's sidecar")
        yield str(ip)
    finally:
        if Applied.last is not None:
            bookinfo.cli("delete", "-f", "-", input=Applied.last, check=False)
        bookinfo.cli("delete", "-f", "-", input=SERVICE, check=False)
        bookinfo.cli("stop", APP, check=False)


class Applied:
    """The policy text in force (deleted before the next example's)."""

    last: str | None = None
    counter = itertools.count()


def _send(ip: str, method: str, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection(ip, PORT, timeout=10)
    try:
        conn.request(method, path, body=None if method == "GET" else b"", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _documents(chosen: list[AuthorizationPolicy], marker: str) -> str:
    docs: list[dict[str, Any]] = []
    for policy in chosen:
        doc = policy.to_wire()
        doc["spec"]["selector"] = {"matchLabels": {"app": APP}}
        docs.append(doc)
    docs.append(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "marker", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": APP}},
                "action": "DENY",
                "rules": [{"to": [{"operation": {"paths": [marker]}}]}],
            },
        }
    )
    return yaml.safe_dump_all(docs)


def _in_force(ip: str, marker: str) -> bool:
    return all(_send(ip, "GET", marker, {}) == 403 for _ in range(5))


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(chosen=policies(), requests=requests_strategy)
def test_sidecar_decisions_match_the_reference_evaluator(
    chosen: list[AuthorizationPolicy],
    requests: list[tuple[str, str, str | None, str]],
    bookinfo: Mesh,
    pod_ip: str,
) -> None:
    marker = f"/__marker/{next(Applied.counter)}"
    text = _documents(chosen, marker)
    if Applied.last is not None:
        with contextlib.suppress(AssertionError):
            bookinfo.cli("delete", "-f", "-", input=Applied.last)
    bookinfo.apply(text)
    Applied.last = text
    eventually(lambda: _in_force(pod_ip, marker), what="the generated policies to apply")
    for method, path, color, host in requests:
        headers = {"x-color": color} if color is not None else {}
        expected = evaluate(
            chosen, AuthzRequest(method=method, path=path, host=host, headers=headers)
        )
        status = _send(pod_ip, method, path, {**headers, "host": host})
        # httpbin answers 404 for most generated paths: only 403 is the sidecar's denial.
        assert (status != 403) == expected.allowed, (
            f"{method} {path} {headers} {host}: sidecar {status}, reference {expected}\n{text}"
        )
