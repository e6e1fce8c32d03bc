"""The Telemetry `metrics` overrides a proxy's agent applies when it translates stats.

trellisd resolves which Telemetry applies to a proxy (api/policy_scope.py) and sends the
result as metadata on one of the proxy's listeners (compiler/telemetry.py); the agent reads it
back from Envoy's config dump (agent/stats.py). This is the one shape both ends agree on: plain
JSON values in, plain JSON values out (docs/DECISIONS.md "Telemetry metrics overrides").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# filter_metadata key on the listener that carries the config.
METRICS_METADATA_KEY = "trellis.metrics"
ALL_METRICS = "ALL_METRICS"
SOURCE = "source"
DESTINATION = "destination"


@dataclass(frozen=True, slots=True)
class MetricOverride:
    """One `overrides[]` entry: which metric (Telemetry API enum) for which reporters, and what
    changes: disabled, labels set to constants (`upsert`), labels dropped (`remove`)."""

    metric: str = ALL_METRICS
    reporters: frozenset[str] = frozenset({SOURCE, DESTINATION})
    disabled: bool | None = None  # None: this entry leaves enablement as it was
    upsert: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def applies(self, metric: str, reporter: str) -> bool:
        return self.metric in (ALL_METRICS, metric) and reporter in self.reporters

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "reporters": sorted(self.reporters),
            "disabled": self.disabled,
            "upsert": dict(self.upsert),
            "remove": list(self.remove),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricOverride:
        upsert = data.get("upsert") or {}
        return cls(
            metric=str(data.get("metric", ALL_METRICS)),
            reporters=frozenset(str(r) for r in data.get("reporters", (SOURCE, DESTINATION))),
            disabled=None if data.get("disabled") is None else bool(data["disabled"]),
            upsert=tuple((str(k), str(v)) for k, v in upsert.items()),
            remove=tuple(str(t) for t in data.get("remove") or ()),
        )


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """All overrides in force for one proxy, in the order Telemetry lists them."""

    overrides: tuple[MetricOverride, ...] = ()

    def enabled(self, metric: str, reporter: str) -> bool:
        """The last applicable override that sets `disabled` wins, as in Istio."""
        state = True
        for override in self.overrides:
            if override.applies(metric, reporter) and override.disabled is not None:
                state = not override.disabled
        return state

    def relabel(self, metric: str, reporter: str, labels: Mapping[str, str]) -> dict[str, str]:
        """`labels` after every applicable tag override, in order."""
        out = dict(labels)
        for override in self.overrides:
            if not override.applies(metric, reporter):
                continue
            for name in override.remove:
                out.pop(name, None)
            out.update(override.upsert)
        return out

    @property
    def relabels(self) -> bool:
        return any(o.upsert or o.remove for o in self.overrides)

    def to_json(self) -> dict[str, Any]:
        return {"overrides": [o.to_json() for o in self.overrides]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> MetricsConfig:
        """Tolerant: what it cannot read it leaves out (an agent must not fail a scrape)."""
        if not data:
            return cls()
        entries: Iterable[Any] = data.get("overrides") or ()
        return cls(tuple(MetricOverride.from_json(e) for e in entries if isinstance(e, Mapping)))


NO_OVERRIDES = MetricsConfig()
