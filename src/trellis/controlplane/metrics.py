"""trellisd's own metrics on :15014/metrics, under istiod's pilot_* names and labels.

Istio users' dashboards and alerts (connected proxies, pushes, NACKs, convergence) then work on
Trellis unchanged. Events (pushes, rejects, config changes) are counted as they happen through
the xDS server's observer hooks; sizes (proxies, services, virtual services) are read from the
server and the current snapshot at scrape time, so they can never drift.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from trellis.model.snapshot import MeshSnapshot
from trellis.model.xds_types import CLUSTER, ENDPOINT, LISTENER, ROUTE, SHORT_NAMES

log = logging.getLogger("trellisd")

MONITORING_PORT = 15014  # istiod's http-monitoring port
METRICS_PATH = "/metrics"
# istiod's buckets (pilot/pkg/xds/monitoring.go), so histogram_quantile queries compare.
PUSH_TIME_BUCKETS = (0.01, 0.1, 1, 3, 5, 10, 20, 30)
CONVERGENCE_BUCKETS = (0.1, 0.5, 1, 3, 5, 10, 20, 30)
# Per-type reject gauges exist for these four types only, as in istiod.
REJECT_GAUGE_TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
MAX_ERROR_LABEL = 200  # Envoy's error detail can be long; a label value should not be


def metric_type(type_url: str) -> str:
    """istiod's `type` label value: cds, eds, lds, rds, sds (else the type URL's last part)."""
    short = SHORT_NAMES.get(type_url)
    return short.lower() if short else type_url.rsplit(".", 1)[-1].lower()


def trellis_version() -> str:
    try:
        return metadata.version("trellis-mesh")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True)
class MeshSizes:
    """What the scrape-time gauges read: the connected proxies and the current snapshot."""

    connected_proxies: Callable[[], int]
    snapshot: Callable[[], MeshSnapshot]


class _SizeCollector(Collector):
    """pilot_xds, pilot_services, pilot_virt_services, computed when scraped."""

    def __init__(self, sizes: MeshSizes, version: str) -> None:
        self._sizes = sizes
        self._version = version

    def collect(self) -> Iterator[GaugeMetricFamily]:
        xds = GaugeMetricFamily(
            "pilot_xds",
            "Number of endpoints connected to this pilot using XDS.",
            labels=["version"],
        )
        xds.add_metric([self._version], self._sizes.connected_proxies())
        yield xds
        snapshot = self._sizes.snapshot()
        yield GaugeMetricFamily(
            "pilot_services", "Total services known to pilot.", value=len(snapshot.services)
        )
        virtual_services = sum(1 for r in snapshot.resources if r.kind == "VirtualService")
        yield GaugeMetricFamily(
            "pilot_virt_services", "Total virtual services known to pilot.", value=virtual_services
        )


class ControlPlaneMetrics:
    """The registry trellisd serves; an `XdsObserver` for the xDS server and a config-event
    listener for MeshState. One per process, passed down (no global registry)."""

    def __init__(self, sizes: MeshSizes, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=self.registry)
            self.registry.register(PLATFORM_COLLECTOR)
            self.registry.register(GC_COLLECTOR)
        self.registry.register(_SizeCollector(sizes, trellis_version()))
        self._pushes = Counter(
            "pilot_xds_pushes",
            "Pilot build and send errors for lds, rds, cds and eds.",
            ["type"],
            registry=self.registry,
        )
        self._push_time = Histogram(
            "pilot_xds_push_time",
            "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
            ["type"],
            buckets=PUSH_TIME_BUCKETS,
            registry=self.registry,
        )
        self._convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required "
            "configuration.",
            buckets=CONVERGENCE_BUCKETS,
            registry=self.registry,
        )
        self._rejects = Counter(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            ["type"],
            registry=self.registry,
        )
        self._reject_gauges = {
            t: Gauge(
                f"pilot_xds_{metric_type(t)}_reject",
                f"Pilot rejected {SHORT_NAMES[t]} configs.",
                ["node", "err"],
                registry=self.registry,
            )
            for t in REJECT_GAUGE_TYPES
        }
        self._rejected_by_node: dict[str, set[tuple[str, str]]] = {}
        self._config_events = Counter(
            "pilot_k8s_cfg_events",
            "Events from the config store (apply and delete of Istio resources).",
            ["type", "event"],
            registry=self.registry,
        )
        self._inbound_updates = Counter(
            "pilot_inbound_updates",
            "Total number of updates received by pilot.",
            ["type"],
            registry=self.registry,
        )

    # -- XdsObserver ----------------------------------------------------------------------------

    def response_sent(self, type_url: str) -> None:
        self._pushes.labels(metric_type(type_url)).inc()

    def push_time(self, type_url: str, seconds: float) -> None:
        self._push_time.labels(metric_type(type_url)).observe(seconds)

    def converged(self, seconds: float) -> None:
        self._convergence.observe(seconds)

    def rejected(self, proxy_key: str, type_url: str, message: str) -> None:
        self._rejects.labels(metric_type(type_url)).inc()
        gauge = self._reject_gauges.get(type_url)
        if gauge is not None:
            err = message[:MAX_ERROR_LABEL]
            gauge.labels(proxy_key, err).set(1)
            self._rejected_by_node.setdefault(proxy_key, set()).add((type_url, err))

    def disconnected(self, proxy_key: str) -> None:
        for type_url, err in self._rejected_by_node.pop(proxy_key, set()):
            self._reject_gauges[type_url].remove(proxy_key, err)

    # -- MeshState listeners --------------------------------------------------------------------

    def config_event(self, kind: str, event: str) -> None:
        """One resource of `kind` was added, updated or deleted (`event`: add|update|delete)."""
        self._config_events.labels(kind, event).inc()

    def inbound_update(self, update_type: str) -> None:
        """A change reached trellisd: config, eds (a workload) or svc."""
        self._inbound_updates.labels(update_type).inc()

    # -- exposition -----------------------------------------------------------------------------

    def exposition(self) -> bytes:
        return encode_text(self.registry.collect())


def encode_text(families: Iterable[Metric]) -> bytes:
    """Prometheus text format with istiod's counter names.

    prometheus_client names every counter `*_total`; istiod's exporter does not
    (`pilot_xds_pushes`, `pilot_total_xds_rejects`), and dashboards query those names. So
    pilot_* counters keep their bare name here; the OpenMetrics-only `_created` samples are
    left out, as in istiod's output.
    """
    lines: list[str] = []
    for family in families:
        name = family.name
        if family.type == "counter" and not name.startswith("pilot_"):
            name += "_total"
        kind = "untyped" if family.type == "unknown" else family.type
        lines.append(f"# HELP {name} {_escape_help(family.documentation)}")
        lines.append(f"# TYPE {name} {kind}")
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            sample_name = name if sample.name == family.name + "_total" else sample.name
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels.items())
            braces = f"{{{labels}}}" if labels else ""
            lines.append(f"{sample_name}{braces} {floatToGoString(sample.value)}")
    return ("\n".join(lines) + "\n").encode()


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def build_metrics_app(metrics: ControlPlaneMetrics) -> web.Application:
    async def serve_metrics(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get(METRICS_PATH, serve_metrics)
    return app


async def start_metrics_server(
    metrics: ControlPlaneMetrics, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Listen on host:port (0: any free port); the runner (to clean up) and the bound port."""
    runner = web.AppRunner(build_metrics_app(metrics), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    log.info("event=metrics-listening address=%s:%d", host, bound)
    return runner, bound
