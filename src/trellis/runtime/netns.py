"""The local runtime's host networking: one bridge per mesh, one network namespace per pod.

Everything created here carries the mesh prefix (DESIGN.md §7), so `teardown(prefix)` can remove
exactly one mesh's namespaces, veths, bridge, hosts files and host firewall rules. Needs root.
The caller persists the subnet and the IP allocations; the allocators here are pure functions.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from trellis.errors import Conflict, RuntimeProblem

POD_SUPERNET = IPv4Network("198.18.0.0/15")
SUBNET_PREFIXLEN = 20
NETNS_ETC = Path("/etc/netns")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,9}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
_BR_NETFILTER = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
IFNAMSIZ = 15  # longest Linux interface name


def mesh_prefix(state_dir: Path) -> str:
    """`tr` + 4 hex chars from the resolved state directory: short enough for interface names."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()
    return "tr" + digest[:4]


def choose_subnet(used: Iterable[IPv4Network]) -> IPv4Network:
    """The first /20 of 198.18.0.0/15 that overlaps none of `used` (default routes ignored)."""
    taken = [net for net in used if net.prefixlen > 0]
    for candidate in POD_SUPERNET.subnets(new_prefix=SUBNET_PREFIXLEN):
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise Conflict(f"no free /{SUBNET_PREFIXLEN} left in {POD_SUPERNET} for a new mesh")


def gateway_ip(subnet: IPv4Network) -> IPv4Address:
    """The bridge's address (the subnet's .1): pods reach trellisd there."""
    return subnet.network_address + 1


def allocate_ip(subnet: IPv4Network, used: Collection[IPv4Address]) -> IPv4Address:
    """The lowest free pod address in `subnet` (never the bridge's .1)."""
    reserved = {gateway_ip(subnet), *used}
    for host in subnet.hosts():
        if host not in reserved:
            return host
    raise Conflict(f"no free address left in {subnet}")


def host_networks() -> list[IPv4Network]:
    """Every IPv4 network the host already uses, in addresses or in any routing table."""
    nets = [
        IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False)
        for link in json.loads(_run(["ip", "-j", "-4", "addr", "show"]) or "[]")
        for a in link.get("addr_info", [])
    ]
    for route in json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            nets.append(IPv4Network(dst, strict=False))
    return nets


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod's network: its namespace (`<prefix>-<name>`), address and host-side veth."""

    name: str
    netns: str
    ip: IPv4Address
    host_veth: str

    def exec_argv(self) -> list[str]:
        """Prefix for a command to run inside the pod (with its /etc/netns hosts file)."""
        return ["ip", "netns", "exec", self.netns]


class MeshNetwork:
    """One mesh's bridge and pods on the host."""

    def __init__(self, prefix: str, subnet: IPv4Network | str) -> None:
        if not _PREFIX_RE.match(prefix):
            raise RuntimeProblem(f"invalid mesh prefix {prefix!r}: 2-10 chars, a-z then a-z0-9")
        subnet = IPv4Network(subnet)
        if not (subnet.subnet_of(POD_SUPERNET) and subnet.prefixlen <= 24):
            raise RuntimeProblem(f"pod subnet {subnet} must be a /24 or larger in {POD_SUPERNET}")
        self.prefix = prefix
        self.subnet = subnet

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def gateway(self) -> IPv4Address:
        return gateway_ip(self.subnet)

    @property
    def comment(self) -> str:
        return firewall_tag(self.prefix)

    def netns_name(self, name: str) -> str:
        """`<prefix>-<name>`; a name that already carries the prefix is taken as it is."""
        return name if name.startswith(f"{self.prefix}-") else f"{self.prefix}-{name}"

    def veth_names(self, ip: IPv4Address) -> tuple[str, str]:
        """(host side, pod side before it is renamed eth0), numbered by the address's offset."""
        index = int(ip) - int(self.subnet.network_address)
        return f"{self.prefix}v{index}", f"{self.prefix}p{index}"

    def create(self) -> None:
        """Create the bridge with the subnet's .1 and open the host firewall for it; idempotent."""
        if not _link_exists(self.bridge):
            _ip("link", "add", self.bridge, "type", "bridge")
        address = f"{self.gateway}/{self.subnet.prefixlen}"
        if address not in _link_addresses(self.bridge):
            _ip("addr", "add", address, "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        _open_host_firewall(self)

    def create_pod(self, name: str, ip: IPv4Address | str) -> Pod:
        """A fresh namespace with lo up and eth0 on the bridge; default route via the bridge.

        `name` is the pod's name or its full netns name (`<prefix>-...`); so in every method.
        """
        pod = self._pod(name, IPv4Address(ip))
        if pod.netns in list_netns():
            raise Conflict(f"network namespace {pod.netns} exists already")
        self.create()
        peer = self.veth_names(pod.ip)[1]
        try:
            self._wire_pod(pod, peer)
        except RuntimeProblem:
            self.delete_pod(name)
            raise
        self.write_hosts(name, [])
        _write_resolv_conf(NETNS_ETC / pod.netns / "resolv.conf")
        return pod

    def _wire_pod(self, pod: Pod, peer: str) -> None:
        ns = pod.netns
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", pod.host_veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("link", "set", pod.host_veth, "master", self.bridge, "up")
        _ip("-n", ns, "link", "set", peer, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{pod.ip}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "route", "add", "default", "via", str(self.gateway))

    def delete_pod(self, name: str) -> None:
        """Remove the pod's namespace, veth and /etc/netns dir; missing parts are fine.

        Processes still inside keep a namespace alive: stop them first.
        """
        netns = self.netns_name(name)
        for ip in _netns_eth0_ips(netns):
            host_veth = self.veth_names(ip)[0]
            _delete_link(host_veth)
        if netns in list_netns():
            _ip("netns", "del", netns)
        shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)

    def write_hosts(self, name: str, entries: list[tuple[str, list[str]]]) -> None:
        """Rewrite the pod's /etc/hosts (seen through `ip netns exec`) in place.

        `ip netns exec` bind-mounts the file over /etc/hosts, so the inode must stay the same
        for running processes to see the change: truncate and write, never replace.
        """
        write_netns_hosts(self.netns_name(name), entries)

    def pod(self, name: str, ip: IPv4Address | str) -> Pod:
        """The Pod value for an existing pod (e.g. after a restart of the caller)."""
        return self._pod(name, IPv4Address(ip))

    def teardown(self) -> None:
        teardown(self.prefix)

    def _pod(self, name: str, ip: IPv4Address) -> Pod:
        if not _NAME_RE.match(name) or len(self.netns_name(name)) > 200:
            raise RuntimeProblem(f"invalid pod name {name!r}: use a-z, 0-9, '-', '.'")
        if ip not in self.subnet or ip in (self.gateway, self.subnet.broadcast_address):
            raise RuntimeProblem(f"pod address {ip} is not a free host address of {self.subnet}")
        return Pod(name=name, netns=self.netns_name(name), ip=ip, host_veth=self.veth_names(ip)[0])


def write_netns_hosts(netns: str, entries: list[tuple[str, list[str]]]) -> None:
    """Rewrite /etc/netns/NETNS/hosts in place (same inode: `ip netns exec` bind-mounts it).

    Only when it changes, and overwriting before truncating: a resolver reading it meanwhile
    must never find it empty (a config-only apply rewrote it and failed lookups mid-load).
    """
    path = NETNS_ETC / netns / "hosts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o644, exist_ok=True)
    text = render_hosts(entries)
    with path.open("r+") as hosts:
        if hosts.read() == text:
            return
        hosts.seek(0)
        hosts.write(text)
        hosts.truncate()


def render_hosts(entries: list[tuple[str, list[str]]]) -> str:
    """A hosts file: localhost first, then one line per address. Pure."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{' '.join(names)}" for ip, names in entries if names]
    return "\n".join(lines) + "\n"


def _write_resolv_conf(path: Path) -> None:
    """Pods resolve mesh names from their hosts file; the host's DNS server is out of their
    reach (no route out), so asking it would only stall every miss for 10 s. The loopback
    resolver refuses at once instead."""
    path.write_text(
        "# written by trellis: mesh names come from /etc/hosts\n"
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
    )
    path.chmod(0o644)


def firewall_tag(prefix: str) -> str:
    """The comment on every host iptables rule a mesh adds; teardown matches it exactly."""
    return f"trellis:{prefix}"


def teardown(prefix: str) -> None:
    """Remove everything on this host named with `prefix`, and nothing else."""
    if not _PREFIX_RE.match(prefix):
        raise RuntimeProblem(f"invalid mesh prefix {prefix!r}")
    for netns in list_netns():
        if netns.startswith(f"{prefix}-"):
            _ip("netns", "del", netns)
    owned = re.compile(rf"^{re.escape(prefix)}(br|[vp]\d+)$")
    for link in _link_names():
        if owned.match(link):
            _delete_link(link)
    if NETNS_ETC.is_dir():
        for path in NETNS_ETC.glob(f"{prefix}-*"):
            shutil.rmtree(path, ignore_errors=True)
    _close_host_firewall(prefix)


def _delete_link(name: str) -> None:
    """Delete a link that may vanish meanwhile: a veth goes when its peer's namespace is
    deleted, which the kernel finishes asynchronously (seen as "Cannot find device")."""
    if not _link_exists(name):
        return
    try:
        _ip("link", "del", name)
    except RuntimeProblem:
        if _link_exists(name):
            raise


def list_netns() -> list[str]:
    out = _run(["ip", "-j", "netns", "list"]) or "[]"
    return [entry["name"] for entry in json.loads(out)]


# -- host firewall ---------------------------------------------------------------------------


def host_firewall_rules(
    mesh: MeshNetwork,
    *,
    forward_drop: bool,
    br_netfilter: bool,
    input_drop: bool,
    output_drop: bool,
) -> list[str]:
    """The ACCEPT rules (iptables -I arguments) the host needs for this mesh's bridge. Pure."""
    tag = ["-m", "comment", "--comment", mesh.comment, "-j", "ACCEPT"]
    rules: list[list[str]] = []
    if forward_drop or br_netfilter:  # bridged pod-to-pod frames then traverse FORWARD
        rules.append(["FORWARD", "1", "-i", mesh.bridge, "-o", mesh.bridge, *tag])
    if input_drop:  # pods -> trellisd on the bridge address
        rules.append(["INPUT", "1", "-d", f"{mesh.gateway}/32", "-i", mesh.bridge, *tag])
    if output_drop:  # host (gateway, trellisd) -> pods
        rules.append(["OUTPUT", "1", "-o", mesh.bridge, *tag])
    return [shlex.join(rule) for rule in rules]


def _open_host_firewall(mesh: MeshNetwork) -> None:
    policies = _filter_policies()
    wanted = host_firewall_rules(
        mesh,
        forward_drop=policies.get("FORWARD") == "DROP",
        br_netfilter=_br_netfilter_active(),
        input_drop=policies.get("INPUT") == "DROP",
        output_drop=policies.get("OUTPUT") == "DROP",
    )
    present = _tagged_rules(mesh.prefix)
    for rule in wanted:
        words = shlex.split(rule)
        spec = shlex.join([words[0], *words[2:]])  # without the insert position
        if f"-A {spec}" not in present:
            _run(["iptables", "-I", *words])


def _close_host_firewall(prefix: str) -> None:
    for rule in _tagged_rules(prefix):
        _run(["iptables", "-D", *shlex.split(rule)[1:]])


def _tagged_rules(prefix: str) -> list[str]:
    """Our rules as `iptables -S` prints them, e.g. `-A FORWARD -i trab12br ... -j ACCEPT`."""
    tag = firewall_tag(prefix)
    rules = []
    for line in _iptables_lines():
        words = shlex.split(line)
        if "--comment" in words and words[words.index("--comment") + 1] == tag:
            rules.append(shlex.join(words))
    return rules


def _filter_policies() -> dict[str, str]:
    return {
        words[1]: words[2]
        for words in (line.split() for line in _iptables_lines())
        if words[:1] == ["-P"] and len(words) >= 3
    }


def _iptables_lines() -> list[str]:
    try:
        return _run(["iptables", "-S"]).splitlines()
    except RuntimeProblem:
        return []  # no iptables here: nothing to open, nothing to remove


def _br_netfilter_active() -> bool:
    try:
        return _BR_NETFILTER.read_text().strip() == "1"
    except OSError:
        return False


# -- ip(8) -------------------------------------------------------------------------------------


def _link_names() -> list[str]:
    return [link["ifname"] for link in json.loads(_run(["ip", "-j", "link", "show"]) or "[]")]


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


def _link_addresses(name: str) -> list[str]:
    out = json.loads(_run(["ip", "-j", "-4", "addr", "show", "dev", name]) or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for link in out for a in link.get("addr_info", [])]


def _netns_eth0_ips(netns: str) -> list[IPv4Address]:
    if netns not in list_netns():
        return []
    try:
        out = json.loads(_run(["ip", "-n", netns, "-j", "-4", "addr", "show", "dev", "eth0"]))
    except (RuntimeProblem, ValueError):
        return []
    return [IPv4Address(a["local"]) for link in out for a in link.get("addr_info", [])]


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as err:
        raise RuntimeProblem(f"{argv[0]} not available: {err}") from err
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip()
        raise RuntimeProblem(f"{shlex.join(argv)} failed (exit {done.returncode}): {detail}")
    return done.stdout


__all__ = [
    "POD_SUPERNET",
    "MeshNetwork",
    "Pod",
    "allocate_ip",
    "choose_subnet",
    "firewall_tag",
    "gateway_ip",
    "host_networks",
    "list_netns",
    "mesh_prefix",
    "render_hosts",
    "teardown",
]
