"""VirtualService analyzers: IST0109 (mesh host conflicts), IST0130/IST0131 (rules and matches
that can never be used) and IST0132 (hosts a bound Gateway does not serve).

For sidecars Istio does not merge VirtualServices that share a host: the oldest wins and the
others are ignored for that host (docs/DECISIONS.md, "VirtualService conflicts"); IST0109 says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from trellis.analyze.context import AnalysisContext
from trellis.analyze.messages import (
    CONFLICTING_MESH_GATEWAY_VS_HOSTS,
    VS_HOST_NOT_FOUND_IN_GATEWAY,
    VS_INEFFECTIVE_MATCH,
    VS_UNREACHABLE_RULE,
    Message,
)
from trellis.api.base import ApiModel
from trellis.api.networking import Gateway, VirtualService
from trellis.api.references import host_matches
from trellis.model.push_context import MESH_GATEWAY, gateway_key


def analyze_virtual_services(ctx: AnalysisContext) -> Iterator[Message]:
    virtual_services = ctx.of_kind(VirtualService)
    yield from _mesh_host_conflicts(ctx, virtual_services)
    for vs in virtual_services:
        yield from _unused_rules(ctx, vs, "http", vs.spec.http)
        yield from _unused_rules(ctx, vs, "tls", vs.spec.tls)
        yield from _unused_rules(ctx, vs, "tcp", vs.spec.tcp)
        yield from _hosts_not_in_gateways(ctx, vs)


# --- IST0109 ------------------------------------------------------------------------------


def _mesh_host_conflicts(
    ctx: AnalysisContext, virtual_services: Sequence[VirtualService]
) -> Iterator[Message]:
    by_host: defaultdict[str, list[VirtualService]] = defaultdict(list)
    for vs in virtual_services:  # oldest first: the first of each list is the one in force
        if vs.spec.applies_to_mesh:
            for host in dict.fromkeys(ctx.resolve(h, vs.namespace) for h in vs.spec.hosts):
                by_host[host].append(vs)
    for host, group in by_host.items():
        if len(group) < 2 or not _share_a_namespace(group):
            continue
        names = ", ".join(f"{vs.namespace}/{vs.name}" for vs in group)
        winner = group[0]
        for vs in group:
            yield ctx.message(
                CONFLICTING_MESH_GATEWAY_VS_HOSTS,
                vs,
                f"The VirtualServices {names} are bound to the mesh gateway and define the same "
                f"host {host}; sidecars use only the oldest, {winner.namespace}/{winner.name}, "
                "for it. Merge them into one VirtualService.",
                "spec.hosts",
            )


def _share_a_namespace(group: Sequence[VirtualService]) -> bool:
    """Some namespace sees two of them (exportTo); otherwise they never meet in one sidecar."""
    seen: set[str] = set()
    for vs in group:
        targets = set(vs.spec.export_to)
        if not targets or "*" in targets:
            return True
        visible = {vs.namespace if t == "." else t for t in targets}
        if seen & visible:
            return True
        seen |= visible
    return False


# --- IST0130 / IST0131 --------------------------------------------------------------------


def _unused_rules(
    ctx: AnalysisContext, vs: VirtualService, section: str, rules: Sequence[Any]
) -> Iterator[Message]:
    """Rules after a catch-all are never used; a match block seen in an earlier rule never is."""
    earlier: dict[str, int] = {}
    catch_all: int | None = None
    for i, rule in enumerate(rules):
        if catch_all is not None:
            yield ctx.message(
                VS_UNREACHABLE_RULE,
                vs,
                f"VirtualService rule {section}[{i}] is never used: rule {section}[{catch_all}] "
                "before it matches every request (only the last rule may match everything)",
                f"spec.{section}[{i}]",
            )
            continue
        for k, match in enumerate(rule.match):
            key = _match_key(match)
            if key in earlier:
                yield ctx.message(
                    VS_INEFFECTIVE_MATCH,
                    vs,
                    f"VirtualService rule {section}[{i}] match[{k}] is never used: rule "
                    f"{section}[{earlier[key]}] has the same match and comes first",
                    f"spec.{section}[{i}].match[{k}]",
                )
            else:
                earlier[key] = i
        if _is_catch_all(section, rule):
            catch_all = i


def _match_key(match: ApiModel) -> str:
    data = match.model_dump(exclude_defaults=True, exclude={"name"})
    return repr(sorted(data.items()))


def _is_catch_all(section: str, rule: Any) -> bool:
    if not rule.match:
        return True
    return section == "http" and any(_matches_every_request(m) for m in rule.match)


def _matches_every_request(match: ApiModel) -> bool:
    """An HTTP match with no condition, or only `uri: {prefix: /}`."""
    data = match.model_dump(exclude_defaults=True, exclude={"name"})
    return not data or data == {"uri": {"prefix": "/"}}


# --- IST0132 ------------------------------------------------------------------------------


def _hosts_not_in_gateways(ctx: AnalysisContext, vs: VirtualService) -> Iterator[Message]:
    for ref in dict.fromkeys(vs.spec.gateways):
        key = gateway_key(ref, vs.namespace)
        gateway = ctx.gateway(key) if key != MESH_GATEWAY else None
        if gateway is None:
            continue  # `mesh`, or a missing gateway (IST0101 reports that)
        server_hosts = _server_hosts(gateway, vs.namespace)
        missing = [
            host
            for host in vs.spec.hosts
            if not _served(ctx.resolve(host, vs.namespace), host, server_hosts)
        ]
        if missing:
            yield ctx.message(
                VS_HOST_NOT_FOUND_IN_GATEWAY,
                vs,
                f"host(s) {', '.join(missing)} of VirtualService {vs.namespace}/{vs.name} are "
                f"not among the hosts of Gateway {key}, so that gateway does not route them",
                "spec.hosts",
            )


def _server_hosts(gateway: Gateway, vs_namespace: str) -> list[str]:
    """Hosts of the gateway's servers that admit VirtualServices from `vs_namespace`."""
    hosts = []
    for server in gateway.spec.servers:
        for item in server.hosts:
            namespace, _, host = item.rpartition("/")
            if namespace in ("", "*", vs_namespace) or (
                namespace == "." and vs_namespace == gateway.namespace
            ):
                hosts.append(host)
    return hosts


def _served(resolved: str, written: str, server_hosts: Sequence[str]) -> bool:
    return any(
        host_matches(server, name) or host_matches(name, server)
        for server in server_hosts
        for name in (resolved, written)
    )
