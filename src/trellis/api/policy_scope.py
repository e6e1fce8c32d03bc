"""Which security and telemetry policies apply to a workload, in Istio's precedence.

Pure functions over parsed resources, so the compiler, `trellis explain` and the console agree.
Levels (istio-notes §1.9, §1.12): a policy in the root namespace without a selector is
mesh-wide, one in the workload's namespace without a selector is namespace-wide, one with a
selector is workload-specific. When several tie at one level the oldest wins (Istio compares
creationTimestamp; without one, name order decides and timestamped policies count as older).
Policies attached by targetRef(s) are for gateways and waypoints, so sidecars skip them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from trellis.api.base import Resource
from trellis.api.common import LabelSelector
from trellis.api.security import (
    AuthorizationPolicy,
    PeerAuthentication,
    PeerAuthenticationMode,
    RequestAuthentication,
)
from trellis.api.telemetry import AccessLogging, Metrics, Telemetry, Tracing

ROOT_NAMESPACE = "istio-system"
MESH_DEFAULT_MTLS = PeerAuthenticationMode.PERMISSIVE
"""The mode when no level sets one (Istio: UNSET with no parent means PERMISSIVE)."""

ResourceKey = tuple[str, str, str]
R = TypeVar("R", bound=Resource)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """A missing or empty selector matches every workload; otherwise every label must match."""
    if selector is None:
        return True
    return all(labels.get(key) == value for key, value in selector.match_labels.items())


def is_namespace_wide(selector: LabelSelector | None) -> bool:
    """No selector, or `matchLabels: {}`: the policy covers its whole namespace."""
    return selector is None or not selector.match_labels


def oldest_first(resources: Iterable[R]) -> list[R]:
    """Istio's tie-break order: by creationTimestamp, then by namespace and name."""
    return sorted(resources, key=_age)


def _age(resource: Resource) -> tuple[bool, datetime, str, str]:
    created = resource.metadata.creation_timestamp
    return (created is None, created or _EPOCH, resource.namespace, resource.name)


def _of_kind(resources: Iterable[Resource], kind: type[R]) -> Iterator[R]:
    return (r for r in resources if isinstance(r, kind))


def _first(candidates: Iterable[R]) -> R | None:
    return next(iter(candidates), None)


@dataclass(frozen=True, slots=True)
class PeerAuthenticationLevels:
    """The PeerAuthentication in force at each level for one workload (None: none there)."""

    mesh: PeerAuthentication | None = None
    namespace: PeerAuthentication | None = None
    workload: PeerAuthentication | None = None

    @property
    def applied(self) -> tuple[PeerAuthentication, ...]:
        """The policies that count, most specific first."""
        levels = (self.workload, self.namespace, self.mesh)
        return tuple(p for p in levels if p is not None)


def peer_authentications_for(
    policies: Iterable[Resource],
    *,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str = ROOT_NAMESPACE,
) -> PeerAuthenticationLevels:
    """The mesh, namespace and workload PeerAuthentication for a workload; other kinds ignored.

    Selector policies in the root namespace are ignored, as Istio does (istio-notes §1.9).
    """
    candidates = oldest_first(_of_kind(policies, PeerAuthentication))
    local = [p for p in candidates if p.namespace == namespace != root_namespace]
    return PeerAuthenticationLevels(
        mesh=_first(
            p
            for p in candidates
            if p.namespace == root_namespace and is_namespace_wide(p.spec.selector)
        ),
        namespace=_first(p for p in local if is_namespace_wide(p.spec.selector)),
        workload=_first(
            p
            for p in local
            if not is_namespace_wide(p.spec.selector) and selector_matches(p.spec.selector, labels)
        ),
    )


@dataclass(frozen=True, slots=True)
class EffectiveMTLS:
    """A workload's inbound mTLS mode and the ports whose mode is set apart; never UNSET."""

    mode: PeerAuthenticationMode
    port_modes: tuple[tuple[int, PeerAuthenticationMode], ...] = ()

    def mode_for_port(self, port: int) -> PeerAuthenticationMode:
        """The mode for a workload (container) port: its own if set, else the workload's."""
        return dict(self.port_modes).get(port, self.mode)


def effective_mtls(levels: PeerAuthenticationLevels) -> EffectiveMTLS:
    """Resolve inheritance: each level that sets a mode other than UNSET overrides its parent.

    portLevelMtls counts only on the workload-level policy; an UNSET port takes the workload's
    resolved mode. Port keys that are not port numbers are skipped (validation reports them).
    """
    mode = MESH_DEFAULT_MTLS
    for policy in (levels.mesh, levels.namespace, levels.workload):
        mode = _own_mode(policy) or mode
    ports: dict[int, PeerAuthenticationMode] = {}
    if levels.workload is not None:
        for key, mtls in levels.workload.spec.port_level_mtls.items():
            if key.isascii() and key.isdigit() and 1 <= int(key) <= 65535:
                unset = mtls.mode is PeerAuthenticationMode.UNSET
                ports[int(key)] = mode if unset else mtls.mode
    return EffectiveMTLS(mode=mode, port_modes=tuple(sorted(ports.items())))


def _own_mode(policy: PeerAuthentication | None) -> PeerAuthenticationMode | None:
    if policy is None or policy.spec.mtls is None:
        return None
    mode = policy.spec.mtls.mode
    return None if mode is PeerAuthenticationMode.UNSET else mode


def mtls_for_workload(
    policies: Iterable[Resource],
    *,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str = ROOT_NAMESPACE,
) -> EffectiveMTLS:
    """effective_mtls of peer_authentications_for: what the inbound listener must enforce."""
    levels = peer_authentications_for(
        policies, namespace=namespace, labels=labels, root_namespace=root_namespace
    )
    return effective_mtls(levels)


def authorization_policies_for(
    policies: Iterable[Resource],
    *,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str = ROOT_NAMESPACE,
) -> tuple[AuthorizationPolicy, ...]:
    """Every AuthorizationPolicy enforced on a workload; all of them apply, none overrides.

    Those of the workload's namespace and of the root namespace whose selector matches (a
    root-namespace selector reaches matching workloads in every namespace). Root-namespace
    policies come first, then the workload's namespace, each oldest first.
    """
    found = _of_kind(policies, AuthorizationPolicy)
    return _attached(found, namespace, labels, root_namespace)


def request_authentications_for(
    policies: Iterable[Resource],
    *,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str = ROOT_NAMESPACE,
) -> tuple[RequestAuthentication, ...]:
    """Every RequestAuthentication on a workload (their jwtRules combine); order as above."""
    found = _of_kind(policies, RequestAuthentication)
    return _attached(found, namespace, labels, root_namespace)


_Attachable = TypeVar("_Attachable", AuthorizationPolicy, RequestAuthentication)


def _attached(
    policies: Iterable[_Attachable],
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str,
) -> tuple[_Attachable, ...]:
    chosen = [
        p
        for p in policies
        if p.namespace in (namespace, root_namespace)
        and not p.spec.has_target_refs
        and selector_matches(p.spec.selector, labels)
    ]
    return tuple(sorted(chosen, key=lambda p: (p.namespace != root_namespace, *_age(p))))


@dataclass(frozen=True, slots=True)
class TelemetryLevels:
    """The Telemetry in force at each level for one workload (None: none there)."""

    mesh: Telemetry | None = None
    namespace: Telemetry | None = None
    workload: Telemetry | None = None

    @property
    def applied(self) -> tuple[Telemetry, ...]:
        """The resources that count, most specific first."""
        levels = (self.workload, self.namespace, self.mesh)
        return tuple(t for t in levels if t is not None)


def telemetries_for(
    policies: Iterable[Resource],
    *,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str = ROOT_NAMESPACE,
) -> TelemetryLevels:
    """The root, namespace and workload Telemetry of a workload; oldest wins at each level.

    A selector Telemetry in the root namespace only reaches workloads of the root namespace.
    """
    candidates = [
        t for t in oldest_first(_of_kind(policies, Telemetry)) if not t.spec.has_target_refs
    ]
    local = [t for t in candidates if t.namespace == namespace]
    return TelemetryLevels(
        mesh=_first(
            t
            for t in candidates
            if t.namespace == root_namespace and is_namespace_wide(t.spec.selector)
        ),
        namespace=_first(
            t for t in local if namespace != root_namespace and is_namespace_wide(t.spec.selector)
        ),
        workload=_first(
            t
            for t in local
            if not is_namespace_wide(t.spec.selector) and selector_matches(t.spec.selector, labels)
        ),
    )


@dataclass(frozen=True, slots=True)
class EffectiveTelemetry:
    """Tracing, access logging and metrics for a workload, each from the most specific level
    that sets it (the `*_from` keys say which Telemetry, for `trellis explain`)."""

    tracing: tuple[Tracing, ...] = ()
    access_logging: tuple[AccessLogging, ...] = ()
    metrics: tuple[Metrics, ...] = ()
    tracing_from: ResourceKey | None = None
    access_logging_from: ResourceKey | None = None
    metrics_from: ResourceKey | None = None


def effective_telemetry(levels: TelemetryLevels) -> EffectiveTelemetry:
    """A level that sets tracing (or accessLogging, or metrics) replaces that whole block of
    the levels above it; a block it leaves empty is inherited."""
    applied = levels.applied
    tracing = _first(t for t in applied if t.spec.tracing)
    logging = _first(t for t in applied if t.spec.access_logging)
    metrics = _first(t for t in applied if t.spec.metrics)
    return EffectiveTelemetry(
        tracing=tuple(tracing.spec.tracing) if tracing else (),
        access_logging=tuple(logging.spec.access_logging) if logging else (),
        metrics=tuple(metrics.spec.metrics) if metrics else (),
        tracing_from=tracing.key if tracing else None,
        access_logging_from=logging.key if logging else None,
        metrics_from=metrics.key if metrics else None,
    )


def telemetry_for_workload(
    policies: Iterable[Resource],
    *,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str = ROOT_NAMESPACE,
) -> EffectiveTelemetry:
    """effective_telemetry of telemetries_for: what the workload's proxy should be told."""
    levels = telemetries_for(
        policies, namespace=namespace, labels=labels, root_namespace=root_namespace
    )
    return effective_telemetry(levels)


__all__ = [
    "MESH_DEFAULT_MTLS",
    "ROOT_NAMESPACE",
    "EffectiveMTLS",
    "EffectiveTelemetry",
    "PeerAuthenticationLevels",
    "TelemetryLevels",
    "authorization_policies_for",
    "effective_mtls",
    "effective_telemetry",
    "is_namespace_wide",
    "mtls_for_workload",
    "oldest_first",
    "peer_authentications_for",
    "request_authentications_for",
    "selector_matches",
    "telemetries_for",
    "telemetry_for_workload",
]
