"""Traffic capture with iptables, as istio-iptables does it (DESIGN.md §7).

Runs in the pod's network namespace (the agent lives there): outbound TCP from any uid but
Envoy's goes to 15001 (`virtualOutbound`), inbound TCP to 15006 (`virtualInbound`). Our chains
carry a prefix so a second mesh's rules, or a test's, never collide with ours.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from trellis.errors import RuntimeProblem

DEFAULT_CHAIN_PREFIX = "TRELLIS"
# Envoy admin, Prometheus (Envoy and agent), readiness: never redirected inbound.
ALWAYS_EXCLUDED_INBOUND = (15000, 15090, 15021, 15020)
# Istio's inbound passthrough binds this source; traffic from it must not loop back to 15006.
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6/32"
_PREFIX_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,15}$")


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """What to capture; defaults are Istio's (uid/gid 1337, ports 15001/15006)."""

    chain_prefix: str = DEFAULT_CHAIN_PREFIX
    proxy_uid: int = 1337
    proxy_gid: int = 1337
    outbound_port: int = 15001
    inbound_port: int = 15006
    capture_inbound: bool = True
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Chains:
    """Our four nat chains, named from the prefix."""

    prefix: str

    @property
    def output(self) -> str:
        return f"{self.prefix}_OUTPUT"

    @property
    def redirect(self) -> str:
        return f"{self.prefix}_REDIRECT"

    @property
    def inbound(self) -> str:
        return f"{self.prefix}_INBOUND"

    @property
    def in_redirect(self) -> str:
        return f"{self.prefix}_IN_REDIRECT"

    def all(self) -> tuple[str, ...]:
        return (self.inbound, self.in_redirect, self.output, self.redirect)


def setup_capture(opts: CaptureOptions) -> None:
    """Install (or replace) the capture rules in this network namespace; idempotent."""
    chains = _chains(opts.chain_prefix)
    script = removal_rules(chains, _nat_rules()) + capture_rules(opts)
    _restore(script)


def teardown_capture(prefix: str = DEFAULT_CHAIN_PREFIX) -> None:
    """Remove our jumps and chains from this namespace's nat table; a no-op if none exist."""
    chains = _chains(prefix)
    current = _nat_rules()
    script = removal_rules(chains, current)
    existing = {line.split()[1] for line in current if line.startswith("-N ")}
    script += [f"-X {chain}" for chain in chains.all() if chain in existing]
    if script:
        _restore(script)


def capture_rules(opts: CaptureOptions) -> list[str]:
    """The iptables-restore lines (inside `*nat`) that set up capture. Pure."""
    chains = _chains(opts.chain_prefix)
    lines = [f":{chain} - [0:0]" for chain in chains.all()]
    lines += [
        f"-A {chains.in_redirect} -p tcp -j REDIRECT --to-ports {opts.inbound_port}",
        f"-A {chains.redirect} -p tcp -j REDIRECT --to-ports {opts.outbound_port}",
    ]
    if opts.capture_inbound:
        lines += _inbound_rules(opts, chains)
    lines += [f"-A OUTPUT -p tcp -j {chains.output}", *_outbound_rules(opts, chains)]
    return lines


def _inbound_rules(opts: CaptureOptions, chains: Chains) -> list[str]:
    ports = sorted(set(ALWAYS_EXCLUDED_INBOUND) | set(opts.exclude_inbound_ports))
    lines = [f"-A PREROUTING -p tcp -j {chains.inbound}"]
    lines += [f"-A {chains.inbound} -p tcp --dport {port} -j RETURN" for port in ports]
    lines.append(f"-A {chains.inbound} -p tcp -j {chains.in_redirect}")
    return lines


def _outbound_rules(opts: CaptureOptions, chains: Chains) -> list[str]:
    out = chains.output
    lines = [f"-A {out} -s {INBOUND_PASSTHROUGH_SOURCE} -o lo -j RETURN"]
    for match in (f"--uid-owner {opts.proxy_uid}", f"--gid-owner {opts.proxy_gid}"):
        lines += [
            # Envoy calling its own pod's IP (a service whose endpoint is this pod) goes
            # through the inbound side, so inbound policy applies, as in Istio.
            f"-A {out} ! -d 127.0.0.1/32 -o lo -p tcp -m owner {match} -j {chains.in_redirect}",
            # The app talking to itself over lo is not captured.
            f"-A {out} -o lo -m owner ! {match} -j RETURN",
            f"-A {out} -m owner {match} -j RETURN",
        ]
    lines.append(f"-A {out} -d 127.0.0.1/32 -j RETURN")
    lines += [f"-A {out} -d {_cidr(cidr)} -j RETURN" for cidr in opts.exclude_outbound_cidrs]
    lines.append(f"-A {out} -j {chains.redirect}")
    return lines


def removal_rules(chains: Chains, current: Iterable[str]) -> list[str]:
    """Lines that delete our jumps from the built-in chains and flush our own chains. Pure.

    `current` is `iptables -t nat -S` output.
    """
    ours = set(chains.all())
    lines: list[str] = []
    for line in current:
        words = shlex.split(line)
        if words[:1] == ["-A"] and words[1] not in ours and _jump_target(words) in ours:
            lines.append(shlex.join(["-D", *words[1:]]))
        elif words[:1] == ["-N"] and words[1] in ours:
            lines.append(f"-F {words[1]}")
    return lines


def _jump_target(words: list[str]) -> str | None:
    if "-j" in words:
        index = words.index("-j")
        return words[index + 1] if index + 1 < len(words) else None
    return None


def _chains(prefix: str) -> Chains:
    if not _PREFIX_RE.match(prefix):
        raise RuntimeProblem(f"invalid capture chain prefix {prefix!r}: use A-Z, 0-9, _ (<= 16)")
    return Chains(prefix)


def _cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError as err:
        raise RuntimeProblem(f"invalid excluded CIDR {text!r}: {err}") from err


def _nat_rules() -> list[str]:
    return _run(["iptables", "-t", "nat", "-S"]).splitlines()


def _restore(lines: list[str]) -> None:
    script = "\n".join(["*nat", *lines, "COMMIT", ""])
    _run(["iptables-restore", "--noflush"], stdin=script)


def _run(argv: list[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    except OSError as err:
        raise RuntimeProblem(f"{argv[0]} not available: {err}") from err
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip()
        raise RuntimeProblem(f"{shlex.join(argv)} failed (exit {done.returncode}): {detail}")
    return done.stdout
