"""The agent's xDS credentials: TLS to trellisd with the mesh roots, the join token as metadata."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from trellis.agent.bootstrap import TOKEN_HEADER, BootstrapOptions, build_bootstrap
from trellis.agent.envoy import write_bootstrap
from trellis.agent.main import parse_config
from trellis.model.proxy import ProxyType

ROOT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _opts(**overrides: Any) -> BootstrapOptions:
    base: dict[str, Any] = {
        "type": ProxyType.SIDECAR,
        "ip": "198.18.0.7",
        "name": "reviews-v1",
        "namespace": "default",
        "xds_host": "198.18.0.1",
    }
    return BootstrapOptions(**{**base, **overrides})


def _xds(bootstrap: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "xds-grpc")


def _grpc_service(bootstrap: dict[str, Any]) -> dict[str, Any]:
    service: dict[str, Any] = bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]
    return service


def test_without_credentials_xds_is_plaintext_and_anonymous() -> None:
    bootstrap = build_bootstrap(_opts())
    assert "transport_socket" not in _xds(bootstrap)
    assert "initial_metadata" not in _grpc_service(bootstrap)


def test_xds_tls_trusts_the_mesh_roots_and_checks_trellisd_address() -> None:
    socket = _xds(build_bootstrap(_opts(xds_root_pem=ROOT)))["transport_socket"]
    validation = socket["typed_config"]["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"inline_string": ROOT}
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "198.18.0.1"}}
    ]


def test_join_token_travels_as_initial_metadata() -> None:
    service = _grpc_service(build_bootstrap(_opts(xds_token="tj1.a.b")))
    assert service["initial_metadata"] == [{"key": TOKEN_HEADER, "value": "tj1.a.b"}]


def test_bootstrap_with_a_token_is_private(tmp_path: Path) -> None:
    path = tmp_path / "envoy-bootstrap.json"
    write_bootstrap(path, build_bootstrap(_opts(xds_token="tj1.a.b")), private=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_bootstrap(path, build_bootstrap(_opts()))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_agent_reads_token_and_roots_from_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tj1.a.b\n")
    (tmp_path / "root.pem").write_text(ROOT)
    config = parse_config(
        [
            "--name", "reviews-v1", "--ip", "198.18.0.7", "--xds-address", "198.18.0.1:15010",
            "--state-dir", str(tmp_path), "--token-file", str(tmp_path / "token"),
            "--xds-root-cert", str(tmp_path / "root.pem"),
        ]
    )  # fmt: skip
    assert config.bootstrap.xds_token == "tj1.a.b"
    assert config.bootstrap.xds_root_pem == ROOT
