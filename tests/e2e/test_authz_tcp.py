"""AuthorizationPolicy on a TCP port, through a real Envoy: a denied connection is closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.envoy_rbac import (
    envoy_from_bootstrap,
    free_port,
    tcp_bootstrap,
    tcp_echo_app,
    tcp_round_trip,
)
from trellis.api.security import AuthorizationPolicy
from trellis.compiler.rbac import RbacInputs, build_network_rbac_filters

pytestmark = pytest.mark.e2e


def policy(spec: dict[str, Any], name: str = "p") -> AuthorizationPolicy:
    return AuthorizationPolicy.model_validate(
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }
    )


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    with tcp_echo_app() as port:
        yield port


def answer(policies: list[AuthorizationPolicy], app_port: int, tmp_path: Path) -> str:
    listen = free_port()
    filters = build_network_rbac_filters(RbacInputs(policies=tuple(policies)))
    boot = tcp_bootstrap(filters, listen_port=listen, app_port=app_port, admin_port=free_port())
    with envoy_from_bootstrap(boot, tmp_path):
        return tcp_round_trip(listen)


def test_no_policy_connects(app_port: int, tmp_path: Path) -> None:
    assert answer([], app_port, tmp_path) == "hello\n"


def test_allow_by_port_and_ip_block_connects(app_port: int, tmp_path: Path) -> None:
    rule = {"from": [{"source": {"ipBlocks": ["127.0.0.0/8"]}}]}
    assert answer([policy({"rules": [rule]})], app_port, tmp_path) == "hello\n"


def test_allow_nothing_closes_the_connection(app_port: int, tmp_path: Path) -> None:
    assert answer([policy({})], app_port, tmp_path) == ""


def test_allow_rule_with_http_only_field_allows_nothing_on_tcp(
    app_port: int, tmp_path: Path
) -> None:
    rule = {"to": [{"operation": {"methods": ["GET"]}}]}
    assert answer([policy({"rules": [rule]})], app_port, tmp_path) == ""


def test_deny_rule_ignores_http_only_fields_on_tcp(app_port: int, tmp_path: Path) -> None:
    rule = {
        "from": [{"source": {"ipBlocks": ["127.0.0.1"]}}],
        "to": [{"operation": {"paths": ["/x"]}}],
    }
    assert answer([policy({"action": "DENY", "rules": [rule]})], app_port, tmp_path) == ""
    other = {"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}
    assert answer([policy({"action": "DENY", "rules": [other]})], app_port, tmp_path) == "hello\n"
