"""One real mesh (trellisd, ingress gateway, Bookinfo with sidecars) shared by the e2e tests."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.meshctl import Mesh, httpbin_service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def netns_with_prefix(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]


@pytest.fixture(scope="session")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    if os.geteuid() != 0:
        pytest.fail("the end-to-end tests need root (network namespaces, iptables)")
    mesh = Mesh(state_dir=tmp_path_factory.mktemp("mesh"), ingress_port=free_port())
    try:
        mesh.cli("demo", "--ingress-port", str(mesh.ingress_port), timeout=300)
        mesh.apply_file("destination-rule-all.yaml")
        yield mesh
    finally:
        _dump_logs(mesh.state_dir)
        mesh.cli("down", check=False, timeout=120)


@pytest.fixture(scope="module")
def httpbin(bookinfo: Mesh) -> Iterator[Mesh]:
    """httpbin v1 with its sidecar and Service (samples/httpbin), for one test module."""
    with httpbin_service(bookinfo):
        yield bookinfo


def _dump_logs(state_dir: Path) -> None:
    """Keep the mesh's logs as test artifacts (CI prints where they are)."""
    target = Path(os.environ.get("TRELLIS_TEST_ARTIFACTS", "test-artifacts")) / "e2e-logs"
    target.mkdir(parents=True, exist_ok=True)
    for log in state_dir.rglob("*.log"):
        dest = target / str(log.relative_to(state_dir)).replace("/", "__")
        dest.write_bytes(log.read_bytes()[-200_000:])
