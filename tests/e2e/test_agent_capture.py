"""iptables capture inside a pod: outbound to 15001, inbound to 15006, Envoy's uid exempt."""

from __future__ import annotations

import ctypes
import os
import random
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from trellis.agent.capture import CaptureOptions, Chains, capture_rules, removal_rules
from trellis.runtime.netns import POD_SUPERNET, MeshNetwork, Pod, host_networks, mesh_prefix
from trellis.runtime.netns import teardown as teardown_network

pytestmark = pytest.mark.e2e

TIMEOUT = 20.0
SO_ORIGINAL_DST = 80
CLONE_NEWNET = 0x40000000
VIP = "240.240.0.10"


# -- pure parts ------------------------------------------------------------------------------


def test_rules_redirect_outbound_except_envoy_and_loopback() -> None:
    rules = capture_rules(CaptureOptions(chain_prefix="TEST"))
    assert "-A OUTPUT -p tcp -j TEST_OUTPUT" in rules
    assert "-A TEST_OUTPUT -m owner --uid-owner 1337 -j RETURN" in rules
    assert "-A TEST_OUTPUT -d 127.0.0.1/32 -j RETURN" in rules
    assert rules[-1] == "-A TEST_OUTPUT -j TEST_REDIRECT"
    assert "-A TEST_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in rules


def test_rules_redirect_inbound_except_agent_ports() -> None:
    rules = capture_rules(CaptureOptions(chain_prefix="TEST", exclude_inbound_ports=(22,)))
    for port in (22, 15000, 15020, 15021, 15090):
        assert f"-A TEST_INBOUND -p tcp --dport {port} -j RETURN" in rules
    assert "-A TEST_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006" in rules


def test_excluded_cidrs_are_not_captured() -> None:
    rules = capture_rules(CaptureOptions(exclude_outbound_cidrs=("10.1.2.3/8",)))
    assert "-A TRELLIS_OUTPUT -d 10.0.0.0/8 -j RETURN" in rules


def test_removal_touches_only_our_chains() -> None:
    current = [
        "-N TEST_OUTPUT",
        "-N OTHER_OUTPUT",
        "-A OUTPUT -p tcp -j TEST_OUTPUT",
        "-A OUTPUT -p tcp -j OTHER_OUTPUT",
        "-A TEST_OUTPUT -j TEST_REDIRECT",
    ]
    assert removal_rules(Chains("TEST"), current) == [
        "-F TEST_OUTPUT",
        "-D OUTPUT -p tcp -j TEST_OUTPUT",
    ]


# -- real namespaces -------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def listen_in(netns: str, port: int) -> socket.socket:
    """A listening socket that lives in `netns` (created by a thread that entered it)."""
    made: list[socket.socket | BaseException] = []

    def enter_and_listen() -> None:
        try:
            with open(f"/run/netns/{netns}") as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen()
            sock.settimeout(TIMEOUT)
            made.append(sock)
        except BaseException as err:  # handed to the caller
            made.append(err)

    thread = threading.Thread(target=enter_and_listen)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


def original_dst(conn: socket.socket) -> tuple[str, int]:
    """Where the client meant to go: conntrack's record if NAT redirected it, else here."""
    try:
        raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except FileNotFoundError:  # no NAT entry: the connection was not redirected
        host, port = conn.getsockname()
        return host, port
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


def connect_from(
    pod: Pod, host: str, port: int, *, uid: int | None = None
) -> subprocess.Popen[str]:
    """Start a client in `pod` (as `uid`) that sends 'hi' and prints what comes back."""
    code = (
        "import socket\n"
        f"s = socket.create_connection(({host!r}, {port}), timeout={TIMEOUT})\n"
        "s.sendall(b'hi'); print(s.recv(100).decode())\n"
    )
    as_user = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"]
    argv = [*pod.exec_argv(), *(as_user if uid is not None else []), sys.executable, "-c", code]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/"
    )


def answer(listener: socket.socket, reply: bytes) -> tuple[tuple[str, int], tuple[str, int]]:
    """Accept one connection; return (original destination, peer)."""
    conn, peer = listener.accept()
    with conn:
        assert conn.recv(100) == b"hi"
        conn.sendall(reply)
        return original_dst(conn), peer


def finish(client: subprocess.Popen[str]) -> str:
    out, err = client.communicate(timeout=TIMEOUT)
    assert client.returncode == 0, err
    return out.strip()


@dataclass
class CaptureMesh:
    mesh: MeshNetwork
    client: Pod  # captured
    server: Pod  # captured
    plain: Pod  # no capture


def setup_capture_in(pod: Pod, **options: object) -> None:
    code = (
        "from trellis.agent.capture import CaptureOptions, setup_capture\n"
        f"setup_capture(CaptureOptions(**{options!r}))\n"
    )
    done = subprocess.run(
        [*pod.exec_argv(), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr


def nat_rules(pod: Pod) -> str:
    argv = [*pod.exec_argv(), "iptables", "-t", "nat", "-S"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def capture_mesh(tmp_path: Path) -> Iterator[CaptureMesh]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    used = [net for net in host_networks() if net.prefixlen > 0]
    free = [n for n in POD_SUPERNET.subnets(new_prefix=20) if not any(n.overlaps(u) for u in used)]
    subnet = random.choice(free)
    mesh = MeshNetwork(mesh_prefix(tmp_path), subnet)
    try:
        hosts = subnet.hosts()
        next(hosts)  # the bridge's .1
        client, server, plain = (mesh.create_pod(n, next(hosts)) for n in ("c", "s", "p"))
        setup_capture_in(client)
        setup_capture_in(server, exclude_inbound_ports=(8081,))
        yield CaptureMesh(mesh, client, server, plain)
    finally:
        teardown_network(mesh.prefix)


def test_app_traffic_to_a_service_vip_arrives_on_15001(capture_mesh: CaptureMesh) -> None:
    with listen_in(capture_mesh.client.netns, 15001) as outbound:
        client = connect_from(capture_mesh.client, VIP, 9080)
        destination, _ = answer(outbound, b"from 15001")
        assert finish(client) == "from 15001"
    assert destination == (VIP, 9080)


def test_envoy_uid_traffic_is_not_redirected(capture_mesh: CaptureMesh) -> None:
    plain_ip = str(capture_mesh.plain.ip)
    with (
        listen_in(capture_mesh.client.netns, 15001) as outbound,
        listen_in(capture_mesh.plain.netns, 9080) as target,
    ):
        client = connect_from(capture_mesh.client, plain_ip, 9080, uid=1337)
        destination, peer = answer(target, b"direct")
        assert finish(client) == "direct"
        outbound.setblocking(False)
        with pytest.raises(BlockingIOError):
            outbound.accept()
    assert destination == (plain_ip, 9080)
    assert peer[0] == str(capture_mesh.client.ip)


def test_loopback_traffic_is_not_redirected(capture_mesh: CaptureMesh) -> None:
    with listen_in(capture_mesh.client.netns, 9999) as local:
        client = connect_from(capture_mesh.client, "127.0.0.1", 9999)
        answer(local, b"local")
        assert finish(client) == "local"


def test_inbound_to_the_app_port_arrives_on_15006(capture_mesh: CaptureMesh) -> None:
    server_ip = str(capture_mesh.server.ip)
    with listen_in(capture_mesh.server.netns, 15006) as inbound:
        client = connect_from(capture_mesh.plain, server_ip, 9080)
        destination, peer = answer(inbound, b"from 15006")
        assert finish(client) == "from 15006"
    assert destination == (server_ip, 9080)
    assert peer[0] == str(capture_mesh.plain.ip)


@pytest.mark.parametrize("port", [15021, 8081], ids=["agent-port", "excluded-port"])
def test_excluded_inbound_ports_are_not_redirected(capture_mesh: CaptureMesh, port: int) -> None:
    server_ip = str(capture_mesh.server.ip)
    with listen_in(capture_mesh.server.netns, port) as direct:
        client = connect_from(capture_mesh.plain, server_ip, port)
        answer(direct, b"direct")
        assert finish(client) == "direct"


def test_setup_is_idempotent_and_teardown_removes_only_ours(capture_mesh: CaptureMesh) -> None:
    pod = capture_mesh.client
    before = nat_rules(pod)
    setup_capture_in(pod)
    assert nat_rules(pod) == before
    setup_capture_in(pod, chain_prefix="OTHER")
    code = "from trellis.agent.capture import teardown_capture; teardown_capture('TRELLIS')"
    subprocess.run([*pod.exec_argv(), sys.executable, "-c", code], check=True, timeout=TIMEOUT)
    after = nat_rules(pod)
    assert "TRELLIS" not in after
    assert "-A OUTPUT -p tcp -j OTHER_OUTPUT" in after
