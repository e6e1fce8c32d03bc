"""Options and the one shared Bookinfo mesh for the whole test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.meshctl import Mesh, free_port


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*/expected.json from the current compiler output",
    )
    # Registered here, not in tests/chaos/conftest.py: pytest reads options only from the
    # conftest files it loads at start-up, and `pytest tests --slow` must know the flag.
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (the longer fault tests in tests/chaos)",
    )


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


def _dump_logs(state_dir: Path) -> None:
    """Keep the mesh's logs as test artifacts (CI prints where they are)."""
    target = Path(os.environ.get("TRELLIS_TEST_ARTIFACTS", "test-artifacts")) / "e2e-logs"
    target.mkdir(parents=True, exist_ok=True)
    for log in state_dir.rglob("*.log"):
        dest = target / str(log.relative_to(state_dir)).replace("/", "__")
        dest.write_bytes(log.read_bytes()[-200_000:])
