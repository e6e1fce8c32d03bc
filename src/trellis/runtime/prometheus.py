"""`trellis up --prometheus`: Debian's real Prometheus as a supervised child of the runtime.

It scrapes every proxy's :15090/stats/prometheus and trellisd's :15014/metrics. Proxies come
and go, so their targets live in a file_sd file the supervisor rewrites (atomically, only when
it changes); Prometheus watches that file itself. Each target carries what Kubernetes service
discovery plus Istio's relabelling give Istio users: `namespace`, `pod` (the workload's name)
and every workload label (`app`, `version`, ...), so Istio's PromQL works as written.

Sidecars in network namespaces are reached on their pod address over the mesh bridge (the
capture rules leave 15090 alone); the ingress gateway and, without capture, every sidecar
serve stats on the host's own network on the port their agent was given.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from trellis.errors import Conflict, RuntimeProblem, TrellisError
from trellis.runtime.children import Child, log_tail
from trellis.runtime.layout import Layout
from trellis.runtime.loopback import HOST_ADDRESS
from trellis.runtime.workloads import INGRESS_LABELS, WorkloadManager

DEFAULT_PORT = 9090
SCRAPE_INTERVAL = "5s"  # local: a rate over [1m] has a dozen samples
RETENTION = "6h"  # a local mesh's history; the state dir is not a monitoring system
PROXY_JOB = "envoy-stats"  # the job names Istio's Prometheus configuration uses
CONTROL_PLANE_JOB = "pilot"
PROXY_METRICS_PATH = "/stats/prometheus"
CONTROL_PLANE_METRICS_PATH = "/metrics"
PROXY_STATS_PORT = 15090
STATS_PORT_FLAG = "--stats-port"
_LABEL_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True, slots=True)
class PrometheusOptions:
    """What the user chose on `trellis up`."""

    port: int = DEFAULT_PORT
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    extra_scrape_config: Path | None = None  # a YAML list of scrape configs, appended


@dataclass(frozen=True, slots=True)
class ScrapedProxy:
    """One Envoy whose stats Prometheus scrapes: where, and who it is."""

    namespace: str
    name: str
    address: str  # HOST:PORT of its /stats/prometheus
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScrapeSettings:
    """Everything the generated prometheus.yml depends on."""

    proxy_targets_file: Path
    control_plane_address: str  # trellisd's HOST:PORT for /metrics
    extra_jobs: tuple[Mapping[str, Any], ...] = ()
    scrape_interval: str = SCRAPE_INTERVAL


# -- pure: configuration ----------------------------------------------------------------------


def target_labels(proxy: ScrapedProxy) -> dict[str, str]:
    """Workload labels as Prometheus label names (Kubernetes' labelmap), then namespace/pod."""
    labels = {_LABEL_NAME_INVALID.sub("_", k): v for k, v in proxy.labels.items()}
    labels.update(namespace=proxy.namespace, pod=proxy.name)
    return labels


def target_groups(
    proxies: Iterable[ScrapedProxy], namespaces: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The file_sd document: one group per proxy, only in `namespaces` when any are given."""
    chosen = [p for p in proxies if not namespaces or p.namespace in namespaces]
    chosen.sort(key=lambda p: (p.namespace, p.name))
    return [{"targets": [p.address], "labels": target_labels(p)} for p in chosen]


def control_plane_labels() -> dict[str, str]:
    """trellisd stands where istiod does: Istio's control-plane dashboards select app=istiod."""
    return {"namespace": "istio-system", "pod": "trellisd", "app": "istiod"}


def scrape_config(settings: ScrapeSettings) -> str:
    """prometheus.yml: proxies through file_sd, trellisd statically, then the user's jobs."""
    jobs: list[Mapping[str, Any]] = [
        {
            "job_name": PROXY_JOB,
            "metrics_path": PROXY_METRICS_PATH,
            "file_sd_configs": [{"files": [str(settings.proxy_targets_file)]}],
        },
        {
            "job_name": CONTROL_PLANE_JOB,
            "metrics_path": CONTROL_PLANE_METRICS_PATH,
            "static_configs": [
                {"targets": [settings.control_plane_address], "labels": control_plane_labels()}
            ],
        },
        *settings.extra_jobs,
    ]
    config = {
        "global": {
            "scrape_interval": settings.scrape_interval,
            "evaluation_interval": settings.scrape_interval,
        },
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(config, sort_keys=False)


def parse_extra_scrape_configs(text: str, source: str) -> tuple[dict[str, Any], ...]:
    """A YAML list of scrape configs (Rancher's additionalScrapeConfigs), checked enough that a
    mistake is named here rather than found in Prometheus's log."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TrellisError(f"{source}: not valid YAML: {e}") from e
    if isinstance(data, dict) and "scrape_configs" in data:
        data = data["scrape_configs"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise TrellisError(f"{source}: expected a list of Prometheus scrape configs")
    seen = {PROXY_JOB, CONTROL_PLANE_JOB}
    for i, job in enumerate(data):
        name = job.get("job_name") if isinstance(job, dict) else None
        if not isinstance(name, str) or not name:
            raise TrellisError(f"{source}: [{i}] is not a scrape config with a job_name")
        if name in seen:
            raise TrellisError(
                f"{source}: [{i}].job_name {name!r} is already used; give the job another name"
            )
        seen.add(name)
    return tuple(data)


def load_extra_scrape_configs(path: Path | None) -> tuple[dict[str, Any], ...]:
    if path is None:
        return ()
    try:
        text = path.read_text()
    except OSError as e:
        raise TrellisError(f"--prometheus-extra-scrape-config {path}: {e.strerror}") from e
    return parse_extra_scrape_configs(text, str(path))


def stats_port(argv: Sequence[str]) -> int:
    """The stats port an agent was started with (15090 unless its command line says)."""
    for i, arg in enumerate(argv[:-1]):
        if arg == STATS_PORT_FLAG:
            return int(argv[i + 1])
    return PROXY_STATS_PORT


# -- edges: files and the process -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrometheusPaths:
    root: Path  # STATE/prometheus

    @property
    def config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def proxy_targets(self) -> Path:
        return self.root / "targets" / "proxies.json"

    @property
    def data(self) -> Path:
        return self.root / "data"


def prometheus_paths(layout: Layout) -> PrometheusPaths:
    return PrometheusPaths(layout.root / "prometheus")


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically (Prometheus may read it any time); True if the content changed."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def write_targets(path: Path, proxies: Iterable[ScrapedProxy], namespaces: Sequence[str]) -> bool:
    return write_if_changed(path, json.dumps(target_groups(proxies, namespaces), indent=2) + "\n")


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise RuntimeProblem(
            "--prometheus needs Prometheus: install Debian's package with "
            "`apt-get install prometheus` (./setup.sh does it when run as root)"
        )
    return found


def check_port_free(port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((HOST_ADDRESS, port))
        except OSError as e:
            raise Conflict(
                f"Prometheus port {port} is in use ({e.strerror}); free it or pass "
                "--prometheus-port PORT"
            ) from e


def prometheus_child(layout: Layout, paths: PrometheusPaths, port: int) -> Child:
    argv = [
        prometheus_binary(),
        f"--config.file={paths.config}",
        f"--storage.tsdb.path={paths.data}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address={HOST_ADDRESS}:{port}",
    ]
    return Child(name="prometheus", argv=argv, log_path=layout.logs / "prometheus.log")


async def wait_prometheus(child: Child, port: int, timeout: float) -> None:
    """Poll /-/ready until Prometheus answers 200 (or exits, e.g. on a bad scrape config)."""
    url = f"http://{HOST_ADDRESS}:{port}/-/ready"
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        while time.monotonic() < deadline:
            if not child.alive():
                raise TrellisError(f"Prometheus exited; its log says:\n{log_tail(child.log_path)}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise TrellisError(f"Prometheus was not ready in {timeout:.0f}s; see {child.log_path}")


def scraped_proxies(manager: WorkloadManager) -> list[ScrapedProxy]:
    """Every Envoy the runtime runs: workloads with a sidecar, the egress gateway (a workload
    in its own namespace), and the ingress gateway on the host network."""
    proxies = [
        ScrapedProxy(
            namespace=wl.spec.namespace,
            name=wl.spec.name,
            address=f"{wl.ip}:{stats_port(wl.child.argv)}",
            labels=dict(wl.spec.labels),
        )
        for wl in manager.running.values()
        if wl.spec.sidecar
    ]
    proxies += [
        ScrapedProxy(
            namespace="istio-system",
            name=gw.name,
            address=f"{HOST_ADDRESS}:{stats_port(gw.argv)}",
            labels=INGRESS_LABELS,
        )
        for gw in manager.gateways
    ]
    return proxies


class PrometheusRunner:
    """The supervisor's handle on Prometheus: config written once, targets kept current."""

    def __init__(self, layout: Layout, options: PrometheusOptions, control_plane: str) -> None:
        self.options = options
        self.paths = prometheus_paths(layout)
        extra = load_extra_scrape_configs(options.extra_scrape_config)
        self._config = scrape_config(
            ScrapeSettings(self.paths.proxy_targets, control_plane, extra_jobs=extra)
        )
        self.child = prometheus_child(layout, self.paths, options.port)

    async def start(self, manager: WorkloadManager, timeout: float = 30.0) -> None:
        write_if_changed(self.paths.config, self._config)
        self.refresh(manager)
        await self.child.start()
        await wait_prometheus(self.child, self.options.port, timeout)

    def refresh(self, manager: WorkloadManager) -> None:
        """Rewrite the proxies' file_sd targets if the set of proxies changed."""
        write_targets(self.paths.proxy_targets, scraped_proxies(manager), self.options.namespaces)
