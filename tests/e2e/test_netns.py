"""The local runtime's host networking: pods on a bridge, hosts files, exact teardown."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from trellis.runtime import procs
from trellis.runtime.netns import (
    POD_SUPERNET,
    MeshNetwork,
    Pod,
    allocate_ip,
    choose_subnet,
    firewall_tag,
    host_firewall_rules,
    host_networks,
    list_netns,
    mesh_prefix,
    render_hosts,
    teardown,
)

TIMEOUT = 20.0
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


# -- pure parts ------------------------------------------------------------------------------


def test_mesh_prefix_is_short_and_stable(tmp_path: Path) -> None:
    prefix = mesh_prefix(tmp_path)
    assert prefix == mesh_prefix(tmp_path / "." / "x" / "..")
    assert len(prefix) == 6 and prefix.startswith("tr")
    assert prefix != mesh_prefix(tmp_path / "other")


def test_subnet_is_the_first_free_20_in_the_pod_range() -> None:
    assert choose_subnet([]) == IPv4Network("198.18.0.0/20")
    used = [IPv4Network("0.0.0.0/0"), IPv4Network("198.18.0.0/20"), IPv4Network("198.18.17.5/32")]
    assert choose_subnet(used) == IPv4Network("198.18.32.0/20")


def test_ip_allocation_skips_the_bridge_and_used_addresses() -> None:
    subnet = IPv4Network("198.18.16.0/20")
    assert allocate_ip(subnet, set()) == IPv4Address("198.18.16.2")
    used = {IPv4Address("198.18.16.2"), IPv4Address("198.18.16.3")}
    assert allocate_ip(subnet, used) == IPv4Address("198.18.16.4")


def test_interface_names_fit_the_kernel_limit() -> None:
    mesh = MeshNetwork("trab12", IPv4Network("198.18.16.0/20"))
    host, peer = mesh.veth_names(IPv4Address("198.18.31.254"))
    assert (host, peer) == ("trab12v4094", "trab12p4094")
    assert max(len(host), len(peer), len(mesh.bridge)) <= 15


def test_hosts_file_always_has_localhost() -> None:
    text = render_hosts([("198.18.16.9", ["reviews", "reviews.default.svc.cluster.local"])])
    assert text.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert "198.18.16.9\treviews reviews.default.svc.cluster.local" in text.splitlines()


def test_host_firewall_rules_only_when_the_host_filters() -> None:
    mesh = MeshNetwork("trab12", IPv4Network("198.18.16.0/20"))
    none = host_firewall_rules(
        mesh, forward_drop=False, br_netfilter=False, input_drop=False, output_drop=False
    )
    assert none == []
    rules = host_firewall_rules(
        mesh, forward_drop=False, br_netfilter=True, input_drop=True, output_drop=False
    )
    assert len(rules) == 2
    assert all(firewall_tag("trab12") in rule for rule in rules)


# -- real namespaces -------------------------------------------------------------------------


def free_subnet() -> IPv4Network:
    """A random free /20, so test runs beside each other (and a demo) rarely pick the same."""
    used = host_networks()
    free = [
        net
        for net in POD_SUPERNET.subnets(new_prefix=20)
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0)
    ]
    return random.choice(free)


class Pods:
    """A test mesh: creates pods, runs processes in them, and cleans up by pid and prefix."""

    def __init__(self, state_dir: Path) -> None:
        self.mesh = MeshNetwork(mesh_prefix(state_dir), free_subnet())
        self.state_dir = state_dir
        self.pids: list[int] = []
        self.used: set[IPv4Address] = set()

    def pod(self, name: str) -> Pod:
        ip = allocate_ip(self.mesh.subnet, self.used)
        self.used.add(ip)
        return self.mesh.create_pod(name, ip)

    def spawn(self, pod: Pod, cmd: list[str]) -> int:
        log = self.state_dir / f"{pod.name}-{len(self.pids)}.log"
        pid = procs.spawn_detached(cmd, log_path=log, env=dict(os.environ), netns=pod.netns)
        self.pids.append(pid)
        return pid

    def close(self) -> None:
        for pid in self.pids:
            procs.terminate(pid, timeout=5)
        teardown(self.mesh.prefix)


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[Pods]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    made = Pods(tmp_path)
    try:
        yield made
    finally:
        made.close()


def run_in(pod: Pod, code: str) -> subprocess.CompletedProcess[str]:
    argv = [*pod.exec_argv(), sys.executable, "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)


def http_get_code(url: str) -> str:
    return (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    )


def serve_http(pods: Pods, pod: Pod, port: int) -> str:
    root = pods.state_dir / f"www-{pod.name}"
    root.mkdir()
    (root / "hello.txt").write_text(f"hello from {pod.name}\n")
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", str(pod.ip), "-d", str(root)]
    pid = pods.spawn(pod, cmd)
    url = f"http://{pod.ip}:{port}/hello.txt"
    procs.wait_http_ok(url, TIMEOUT)  # host -> pod, through the bridge
    assert procs.is_alive(pid)
    return url


def test_two_pods_talk_http_by_ip(pods: Pods) -> None:
    server, client = pods.pod("server"), pods.pod("client")
    url = serve_http(pods, server, 8000)
    done = run_in(client, http_get_code(url))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello from server\n\n"


def test_pod_reaches_the_bridge_address(pods: Pods) -> None:
    client = pods.pod("client")
    with socket.socket() as listener:
        listener.bind((str(pods.mesh.gateway), 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = f"import socket; socket.create_connection(({str(pods.mesh.gateway)!r}, {port}), 10)"
        done = run_in(client, code)
        assert done.returncode == 0, done.stderr
        listener.settimeout(TIMEOUT)
        conn, (peer, _) = listener.accept()
        conn.close()
    assert peer == str(client.ip)


def test_hosts_entries_resolve_inside_the_pod(pods: Pods) -> None:
    server, client = pods.pod("server"), pods.pod("client")
    pods.mesh.write_hosts(client.name, [(str(server.ip), ["reviews", "reviews.bookinfo"])])
    argv = [*client.exec_argv(), "getent", "hosts", "reviews"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT).stdout
    assert out.split() == [str(server.ip), "reviews", "reviews.bookinfo"]
    localhost = subprocess.run(
        [*client.exec_argv(), "getent", "hosts", "localhost"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    ).stdout
    assert localhost.split()[0] in ("127.0.0.1", "::1")
    # Misses must fail fast, not wait on a DNS server the pod cannot reach.
    assert "nameserver 127.0.0.1" in (Path("/etc/netns", client.netns, "resolv.conf")).read_text()


def test_running_processes_see_a_rewritten_hosts_file(pods: Pods, tmp_path: Path) -> None:
    client = pods.pod("client")
    trigger, seen = tmp_path / "trigger", tmp_path / "seen"
    script = (
        "import pathlib, time\n"
        f"trigger, seen = pathlib.Path({str(trigger)!r}), pathlib.Path({str(seen)!r})\n"
        "before = pathlib.Path('/etc/hosts').read_text()\n"
        "while not trigger.exists(): time.sleep(0.02)\n"
        "seen.write_text(before + '--\\n' + pathlib.Path('/etc/hosts').read_text())\n"
    )
    pods.mesh.write_hosts(client.name, [("198.18.0.98", ["details"])])
    pid = pods.spawn(client, [sys.executable, "-c", script])
    pods.mesh.write_hosts(client.name, [("198.18.0.99", ["ratings"])])
    trigger.touch()
    procs.wait_file(seen, TIMEOUT)
    _wait_for(lambda: not procs.is_alive(pid))
    after = seen.read_text().split("--\n")[1]
    assert "198.18.0.99\tratings" in after
    assert "details" not in after


def _wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _leftovers(prefix: str) -> list[str]:
    links = json.loads(
        subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True).stdout
    )
    found = [f"link {x['ifname']}" for x in links if x["ifname"].startswith(prefix)]
    found += [f"netns {n}" for n in list_netns() if n.startswith(prefix)]
    netns_etc = Path("/etc/netns")
    if netns_etc.is_dir():
        found += [f"dir {p}" for p in netns_etc.glob(f"{prefix}*")]
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    found += [f"rule {line}" for line in rules.splitlines() if firewall_tag(prefix) in line]
    return found


@needs_root
def test_teardown_removes_exactly_one_mesh(tmp_path: Path) -> None:
    first, second = Pods(tmp_path / "first"), Pods(tmp_path / "second")
    try:
        (tmp_path / "first").mkdir()
        (tmp_path / "second").mkdir()
        for mesh in (first, second):
            mesh.pod("a")
            mesh.pod("b")
            mesh.mesh.write_hosts("a", [("198.18.0.9", ["x"])])
        assert _leftovers(first.mesh.prefix)
        teardown(first.mesh.prefix)
        assert _leftovers(first.mesh.prefix) == []
        remaining = _leftovers(second.mesh.prefix)
        assert f"link {second.mesh.bridge}" in remaining
        assert {f"netns {second.mesh.netns_name(n)}" for n in "ab"} <= set(remaining)
    finally:
        first.close()
        second.close()
    assert _leftovers(second.mesh.prefix) == []


def test_delete_pod_removes_its_namespace_and_veth(pods: Pods) -> None:
    pod = pods.pod("gone")
    pods.mesh.delete_pod(pod.name)
    assert pod.netns not in list_netns()
    assert subprocess.run(["ip", "link", "show", pod.host_veth], capture_output=True).returncode
    assert not Path("/etc/netns", pod.netns).exists()


def test_full_netns_names_are_accepted_as_they_are(pods: Pods) -> None:
    name = f"{pods.mesh.prefix}-default-web"
    pod = pods.pod(name)
    assert pod.netns == name
    pods.mesh.delete_pod(name)
    assert name not in list_netns()


def test_bridge_creation_is_idempotent(pods: Pods) -> None:
    pods.mesh.create()
    pods.mesh.create()
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    tagged = [line for line in rules.splitlines() if firewall_tag(pods.mesh.prefix) in line]
    assert len(tagged) == len(set(tagged))


def test_terminate_stops_a_detached_process_group(pods: Pods, tmp_path: Path) -> None:
    pid = procs.spawn_detached(
        ["sh", "-c", "sleep 600 & sleep 600"], log_path=tmp_path / "sh.log", env=None
    )
    pods.pids.append(pid)
    assert procs.is_alive(pid)
    procs.terminate(pid, timeout=5)
    assert not procs.is_alive(pid)
    # Zombies do not count: on this kind of VM pid 1 never reaps orphans.
    ps = ["ps", "-o", "stat=", "-g", str(pid)]
    states = subprocess.run(ps, capture_output=True, text=True).stdout.split()
    assert [state for state in states if not state.startswith("Z")] == []
