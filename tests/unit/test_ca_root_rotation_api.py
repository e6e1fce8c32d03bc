"""Root rotation in trellisd (controlplane/rootrotation.py), its HTTP API and `trellis ca`.

Real CA, real files in a temporary state dir, a real aiohttp app; the xDS server is replaced
by a recorder that ACKs (or not) what was pushed, and the clock is a variable.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from typer.testing import CliRunner

from trellis.ca import store as ca_store
from trellis.cli import ca as ca_cli
from trellis.cli.main import app as cli_app
from trellis.controlplane import rootrotation
from trellis.controlplane.http_api import build_app
from trellis.controlplane.rootrotation import RootRotator, RotationSettings
from trellis.controlplane.secrets import WorkloadSecrets
from trellis.controlplane.state import MeshState
from trellis.errors import TrellisError, ValidationError
from trellis.model import xds_types
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.snapshot import MeshConfig
from trellis.store.sqlite import SqliteStore
from trellis.xds.contract import ProxyStatus, TypeStatus

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PROXY = Proxy(ProxyType.SIDECAR, "198.18.0.5", "echo", "default", {}, "echo")


@dataclass
class FakeMesh:
    """Stands in for the xDS server: records pushes with what ROOTCA and `default` were then."""

    secrets: WorkloadSecrets
    acks: bool = True
    version: int = 100
    pushes: list[tuple[str, int, str]] = field(default_factory=list)  # version, roots, issuer
    acked: str = "100"

    def next_version(self) -> str:
        self.version += 1
        return str(self.version)

    def push(self, version: str) -> None:
        held = self.secrets.describe(PROXY)["secrets"]
        leaf = x509.load_pem_x509_certificate(held[0]["certChain"].encode())
        self.pushes.append((version, len(held[1]["roots"]), leaf.issuer.rfc4514_string()))
        if self.acks:
            self.acked = version

    def statuses(self) -> list[ProxyStatus]:
        sds = TypeStatus(xds_types.SECRET, str(self.version), self.acked, "", "")
        return [ProxyStatus(PROXY, 0.0, True, (sds,))]


@pytest.fixture(autouse=True)
def no_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pause for Envoy's worker threads matters with real Envoys only (e2e)."""
    monkeypatch.setattr(rootrotation, "SETTLE", 0.0)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def make_rotator(
    tmp_path: Path, *, ca_dir: Path | None = None
) -> tuple[RootRotator, FakeMesh, Clock]:
    clock = Clock()
    ca = ca_store.load_or_create(tmp_path, now=clock.now)
    secrets = WorkloadSecrets(ca, clock)
    secrets.secrets_for(PROXY)  # a connected proxy holds a certificate
    mesh = FakeMesh(secrets)
    settings = RotationSettings(tmp_path, ca_dir, tmp_path / "xds-root-cert.pem", ca.roots()[0])
    rotator = RootRotator(
        settings,
        secrets,
        push=mesh.push,
        next_version=mesh.next_version,
        statuses=mesh.statuses,
        clock=clock,
    )
    return rotator, mesh, clock


async def test_rootca_with_both_roots_is_acked_before_any_new_certificate(tmp_path: Path) -> None:
    rotator, mesh, _ = make_rotator(tmp_path)
    old = rotator.status()["current"][0]
    body = await rotator.rotate_root(timedelta(seconds=20))
    new = body["current"][0]
    (v1, roots1, issuer1), (v2, roots2, issuer2) = mesh.pushes
    assert (roots1, issuer1) == (2, old["subject"])  # trust first, still the old signer
    assert (roots2, issuer2) == (2, new["subject"])  # then certificates from the new root
    assert int(v2) > int(v1)
    assert body["reissued"] == 1 and body["notAcked"] == []
    assert [r["serial"] for r in body["retired"]] == [old["serial"]]
    assert body["retired"][0]["trustedUntil"] == (START + timedelta(seconds=20)).isoformat()


async def test_a_proxy_that_does_not_ack_is_reported_not_waited_for_forever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rootrotation, "ACK_TIMEOUT", 0.2)
    rotator, mesh, _ = make_rotator(tmp_path)
    mesh.acks = False
    body = await rotator.rotate_root(timedelta(hours=1))
    assert body["notAcked"] == [PROXY.key]
    assert len(mesh.pushes) == 2


async def test_rotation_is_saved_and_the_agents_trust_file_keeps_the_serving_root(
    tmp_path: Path,
) -> None:
    rotator, _, clock = make_rotator(tmp_path)
    serving_root = ca_store.load_or_create(tmp_path, now=clock.now).roots()[0]
    await rotator.rotate_root(timedelta(seconds=20))
    on_disk = ca_store.load_or_create(tmp_path, now=clock.now)
    assert len(on_disk.roots(clock.now)) == 2
    bundle = (tmp_path / "xds-root-cert.pem").read_bytes()
    assert bundle.startswith(serving_root) and len(x509.load_pem_x509_certificates(bundle)) == 2


async def test_after_the_overlap_rootca_is_pushed_without_the_old_root(tmp_path: Path) -> None:
    rotator, mesh, clock = make_rotator(tmp_path)
    await rotator.rotate_root(timedelta(seconds=20))
    assert not await rotator.prune_if_due()
    clock.now += timedelta(seconds=21)
    assert await rotator.prune_if_due()
    assert mesh.pushes[-1][1] == 1
    assert rotator.status()["retired"] == [] and rotator.status()["nextTrustChange"] is None
    assert not await rotator.prune_if_due()
    assert (tmp_path / "ca" / "retired-roots.json").read_text().strip() == "{}"
    # the agents' file still holds the root of trellisd's running serving certificate
    bundle = (tmp_path / "xds-root-cert.pem").read_bytes()
    assert len(x509.load_pem_x509_certificates(bundle)) == 2


async def test_a_plugin_ca_is_refused_with_the_operator_phases(tmp_path: Path) -> None:
    rotator, mesh, _ = make_rotator(tmp_path, ca_dir=tmp_path / "cacerts")
    with pytest.raises(TrellisError, match=r"plug-in CA .* docs/ca\.md"):
        await rotator.rotate_root(timedelta(hours=1))
    assert mesh.pushes == []


# -- HTTP API ---------------------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> Iterator[MeshState]:
    store = SqliteStore(tmp_path / "config.db")
    yield MeshState(store=store, mesh=MeshConfig(), notify=lambda *_: None)
    store.close()


async def api_client(app: web.Application) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_api_rotates_and_reports_the_roots(tmp_path: Path, state: MeshState) -> None:
    rotator, _, _ = make_rotator(tmp_path)
    client = await api_client(build_app(state, lambda: [], ca_admin=rotator))
    try:
        before = await (await client.get("/ca/status")).json()
        resp = await client.post("/ca/rotate-root", json={"overlapSeconds": 30})
        assert resp.status == 200
        after = await (await client.get("/ca/status")).json()
    finally:
        await client.close()
    assert before["mode"] == "self-signed" and before["retired"] == []
    assert after["retired"][0]["serial"] == before["current"][0]["serial"]
    assert after["current"][0]["serial"] != before["current"][0]["serial"]


@pytest.mark.parametrize("body", [{}, {"overlapSeconds": 0}, {"overlapSeconds": "1h"}])
async def test_api_refuses_a_bad_overlap(
    tmp_path: Path, state: MeshState, body: dict[str, Any]
) -> None:
    rotator, mesh, _ = make_rotator(tmp_path)
    client = await api_client(build_app(state, lambda: [], ca_admin=rotator))
    try:
        resp = await client.post("/ca/rotate-root", json=body)
        assert resp.status == 400
        assert "overlapSeconds" in (await resp.json())["error"]
    finally:
        await client.close()
    assert mesh.pushes == []


# -- CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("20s", 20), ("1h30m", 5400), ("90d", 7776000)]
)
def test_overlap_durations(text: str, seconds: int) -> None:
    assert ca_cli.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "1x", "0s", "-1h", "1h 30m"])
def test_bad_overlap_durations_are_one_clear_error(text: str) -> None:
    with pytest.raises(ValidationError, match="duration"):
        ca_cli.parse_duration(text)


@pytest.fixture
def trellisd_socket(tmp_path: Path, state: MeshState) -> Iterator[Path]:
    """The CA API on STATE/trellisd.sock, served from a thread as trellisd serves it."""
    rotator, _, _ = make_rotator(tmp_path)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(state, lambda: [], ca_admin=rotator))
    socket = tmp_path / "trellisd.sock"

    async def start() -> None:
        await runner.setup()
        await web.UnixSite(runner, str(socket)).start()

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield socket
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_cli_rotate_root_then_status_lists_both_roots(trellisd_socket: Path) -> None:
    state_dir = str(trellisd_socket.parent)
    runner = CliRunner()
    rotated = runner.invoke(
        cli_app, ["ca", "rotate-root", "--overlap", "20s", "--state-dir", state_dir]
    )
    assert rotated.exit_code == 0, rotated.output
    assert "reissued 1 workload certificate(s)" in rotated.output
    shown = runner.invoke(cli_app, ["ca", "status", "--state-dir", state_dir])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].split()[:2] == ["ROOT", "SUBJECT"]
    assert [line.split()[0] for line in lines[1:]] == ["current", "retired"]
    as_json = runner.invoke(cli_app, ["ca", "status", "-o", "json", "--state-dir", state_dir])
    assert '"trustedUntil"' in as_json.output
