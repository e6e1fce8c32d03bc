"""The runtime without capture (`--capture=proxy`, DESIGN §7): pods as loopback addresses.

No namespaces, bridge or iptables, so no root. Every workload gets a "pod" address in
127.18.0.0/16, which the registry knows and where its sidecar binds one inbound listener per
service port plus its HTTP proxy (15001); the app listens on the twin address in 127.19.0.0/16
(same last two bytes) and reaches the mesh through HTTP_PROXY. All of 127.0.0.0/8 is local on
Linux, so these addresses need no setup. Each mesh takes a /20 no other process listens in, so
two meshes on one host never share an address.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from trellis.errors import Conflict
from trellis.model.names import HTTP_PROXY_PORT

POD_NETWORK = IPv4Network("127.18.0.0/16")
APP_NETWORK = IPv4Network("127.19.0.0/16")
SUBNET_PREFIXLEN = 20
# trellisd's xDS server and the ingress gateway are reached on the host's own loopback.
HOST_ADDRESS = "127.0.0.1"
NO_PROXY = "localhost,127.0.0.1"
_PROC_NET_TCP = Path("/proc/net/tcp")
_TCP_LISTEN = "0A"


def choose_loopback_subnet(listening: Iterable[IPv4Address], seed: str) -> IPv4Network:
    """A /20 of 127.18.0.0/16 with nothing listening in it (pods or apps), starting at a
    place derived from `seed` (the mesh prefix) so meshes started at once rarely race."""
    subnets = list(POD_NETWORK.subnets(new_prefix=SUBNET_PREFIXLEN))
    used = {app_to_pod(ip) if ip in APP_NETWORK else ip for ip in listening}
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(subnets)
    for candidate in subnets[start:] + subnets[:start]:
        if not any(ip in candidate for ip in used):
            return candidate
    raise Conflict(f"no free /{SUBNET_PREFIXLEN} left in {POD_NETWORK} for a new mesh")


def listening_addresses(proc_net_tcp: Path = _PROC_NET_TCP) -> set[IPv4Address]:
    """Local IPv4 addresses with a listening TCP socket, from /proc/net/tcp (no root needed)."""
    try:
        lines = proc_net_tcp.read_text().splitlines()[1:]
    except OSError:
        return set()
    found = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == _TCP_LISTEN:
            hex_ip = fields[1].split(":")[0]
            found.add(IPv4Address(bytes.fromhex(hex_ip)[::-1]))  # little-endian in /proc
    return found


def app_address(pod_ip: str) -> str:
    """The app's private address: 127.19.x.y for the pod 127.18.x.y."""
    offset = int(IPv4Address(pod_ip)) - int(POD_NETWORK.network_address)
    return str(APP_NETWORK.network_address + offset)


def app_to_pod(app_ip: IPv4Address) -> IPv4Address:
    return POD_NETWORK.network_address + (int(app_ip) - int(APP_NETWORK.network_address))


def app_env(pod_ip: str, app_host: str, *, sidecar: bool) -> dict[str, str]:
    """What the app needs to know: where to listen and, with a sidecar, its HTTP proxy."""
    env = {"TRELLIS_APP_HOST": app_host, "HOST": app_host, "BIND_ADDRESS": app_host}
    if sidecar:
        proxy = f"http://{pod_ip}:{HTTP_PROXY_PORT}"
        env.update(
            {"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": NO_PROXY, "no_proxy": NO_PROXY}
        )
    return env


def check_ports_free(addresses: Sequence[str], ports: Sequence[int]) -> None:
    """Conflict naming the first address:port something already holds.

    Typically an app that ignores $TRELLIS_APP_HOST and binds 0.0.0.0:PORT: in the host network
    it takes that port on every address, so no other workload can use it.
    """
    for address in addresses:
        for port in ports:
            problem = _bind_problem(address, port)
            if problem:
                raise Conflict(
                    f"port {port} on {address} is taken ({problem}); without capture every "
                    f"workload shares the host network, so an app bound to 0.0.0.0:{port} "
                    "blocks it for all: make apps listen on $TRELLIS_APP_HOST, or stop "
                    f"whatever holds port {port}"
                )


def _bind_problem(address: str, port: int) -> str:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as e:
            return e.strerror or str(e)
    return ""


def free_port(address: str = HOST_ADDRESS) -> int:
    """A port nothing listens on now (the OS's pick); its user binds it soon after."""
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])
