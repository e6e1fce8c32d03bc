"""trellisd: wires the store, the mesh state, the xDS server and the local HTTP API together."""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import logging
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

from trellis.ca import store as ca_store
from trellis.ca.authority import CertificateAuthority
from trellis.ca.identity import JoinTokenIssuer
from trellis.controlplane.auth import JoinTokenAuthenticator
from trellis.controlplane.autoregister import DEFAULT_GRACE, AutoRegistrar
from trellis.controlplane.gc_policy import tune_for_large_heap
from trellis.controlplane.http_api import build_app
from trellis.controlplane.jwks import refresh_forever as refresh_jwks_forever
from trellis.controlplane.metrics import ControlPlaneMetrics, MeshSizes, start_metrics_server
from trellis.controlplane.rootrotation import RootRotator, RotationSettings
from trellis.controlplane.secrets import WorkloadSecrets
from trellis.controlplane.state import MeshState, WorkloadRecord
from trellis.kube.options import KubeOptions
from trellis.model import xds_types
from trellis.model.proxy import Proxy
from trellis.model.snapshot import MeshConfig, MeshSnapshot, OutboundPolicy
from trellis.registry.local import hosts_entries
from trellis.runtime.layout import XDS_ROOT_FILE
from trellis.runtime.netns import write_netns_hosts
from trellis.store.sqlite import SqliteStore
from trellis.xds.server import AdsServer, ServerTls

log = logging.getLogger("trellisd")


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    state_dir: Path
    xds_host: str
    xds_port: int
    write_hosts: bool
    ca_dir: Path | None = None  # plug-in CA (Istio's cacerts layout); else STATE/ca
    workload_cert_ttl: timedelta = timedelta(hours=24)
    insecure_xds: bool = False  # plaintext xDS and no join tokens: debugging only
    mesh: MeshConfig = field(default_factory=MeshConfig)  # e.g. the trace store's address
    monitoring_host: str = ""  # pilot_* metrics on HOST:monitoring_port/metrics; "" = off
    monitoring_port: int = 15014
    # How long an auto-registered WorkloadEntry outlives its proxy's xDS stream.
    workload_entry_grace: timedelta = DEFAULT_GRACE
    kube: KubeOptions | None = None  # --kubernetes: config and registry from the API server

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "trellisd.sock"

    @property
    def xds_root_path(self) -> Path:
        """The mesh's trust bundle, for agents to verify trellisd's serving certificate."""
        return self.state_dir / XDS_ROOT_FILE


SERVING_CERT_TTL = timedelta(days=365)  # trellisd does not renew it while running


def _now() -> datetime:
    return datetime.now(UTC)


def load_ca(settings: DaemonSettings) -> CertificateAuthority:
    if settings.ca_dir is not None:
        return ca_store.load_plugin(settings.ca_dir, now=_now())
    return ca_store.load_or_create(settings.state_dir, now=_now())


def serving_tls(ca: CertificateAuthority, settings: DaemonSettings) -> ServerTls:
    """trellisd's own certificate for the xDS listener, and the roots agents must trust."""
    ips = {ipaddress.ip_address("127.0.0.1")}
    if settings.xds_host not in ("", "0.0.0.0", "::"):
        ips.add(ipaddress.ip_address(settings.xds_host))
    serving = ca.issue_serving_cert(
        ["trellisd", "localhost"], sorted(ips, key=str), now=_now(), ttl=SERVING_CERT_TTL
    )
    tmp = settings.xds_root_path.with_suffix(".tmp")
    tmp.write_bytes(ca.root_bundle_pem(_now()))
    tmp.replace(settings.xds_root_path)
    return ServerTls(serving.issued.chain_pem, serving.private_key_pem)


async def rotate_certificates(
    secrets: WorkloadSecrets,
    server: AdsServer,
    state: MeshState,
    rotator: RootRotator | None = None,
) -> None:
    """Reissue workload certificates at half life and push SDS to the proxies using them;
    push ROOTCA again when a retired root's overlap ends.

    Checks at least every second: certificates issued meanwhile (a new proxy) are tracked
    by the scheduler, not announced to this loop.
    """
    while True:
        wait = secrets.scheduler.seconds_until_next()
        await asyncio.sleep(min(1.0, 1.0 if wait is None else wait))
        if rotator is not None:
            await rotator.prune_if_due()
        active = {(p.namespace, p.service_account) for p in server.connected()}
        for namespace, account in secrets.rotate_due(active):

            def affected(p: Proxy, ns: str = namespace, sa: str = account) -> bool:
                return p.namespace == ns and p.service_account == sa

            server.update(str(state.snapshot.version), frozenset({xds_types.SECRET}), affected)


def root_rotator(
    settings: DaemonSettings,
    ca: CertificateAuthority,
    secrets: WorkloadSecrets,
    server: AdsServer,
    state: MeshState,
) -> RootRotator:
    """`trellis ca rotate-root | status`: pushes SDS to every proxy at a fresh version."""

    def push_sds(version: str) -> None:
        server.update(version, frozenset({xds_types.SECRET}), None)

    rotation_settings = RotationSettings(
        state_dir=settings.state_dir,
        ca_dir=settings.ca_dir,
        xds_root_path=None if settings.insecure_xds else settings.xds_root_path,
        serving_root_pem=ca.roots()[0],
    )
    return RootRotator(
        rotation_settings,
        secrets,
        push=push_sds,
        next_version=state.next_version,
        statuses=server.statuses,
        clock=_now,
    )


def hosts_writer(snapshot: MeshSnapshot, records: Sequence[WorkloadRecord]) -> None:
    """Keep every workload namespace's /etc/hosts in step with the service registry."""
    for record in records:
        if record.netns:
            try:
                write_netns_hosts(
                    record.netns, hosts_entries(snapshot.services, record.workload.namespace)
                )
            except OSError as e:
                log.warning("event=hosts-write-failed netns=%s error=%s", record.netns, e)


async def serve(settings: DaemonSettings) -> None:
    store = SqliteStore(settings.state_dir / "config.db")
    server: AdsServer | None = None

    def notify(version: str, types: frozenset[str], affected: object) -> None:
        if server is not None:
            server.update(version, types, affected)  # type: ignore[arg-type]

    state = MeshState(store=store, mesh=settings.mesh, notify=notify)
    metrics = ControlPlaneMetrics(
        MeshSizes(
            connected_proxies=lambda: 0 if server is None else len(server.connected()),
            snapshot=lambda: state.snapshot,
        )
    )
    state.config_events.append(metrics.config_event)
    state.update_events.append(metrics.inbound_update)
    if settings.write_hosts:
        state.listeners.append(hosts_writer)
    ca = load_ca(settings)
    secrets = WorkloadSecrets(ca, _now, ttl=settings.workload_cert_ttl)

    def generate(proxy: Proxy, type_url: str) -> Mapping[str, Message]:
        if type_url == xds_types.SECRET:
            return secrets.secrets_for(proxy)
        # Not copied: the same mapping for unchanged output is how the xDS layer skips it.
        return state.generate(proxy, type_url)

    authenticator = None
    tls = None
    registrar = AutoRegistrar(state, _now, settings.workload_entry_grace)
    if not settings.insecure_xds:
        key = ca_store.load_or_create_token_key(settings.state_dir)
        authenticator = JoinTokenAuthenticator(JoinTokenIssuer(key), _now, registrar.join)
        tls = serving_tls(ca, settings)
    else:
        settings.xds_root_path.unlink(missing_ok=True)  # agents then talk plaintext
    server = AdsServer(
        generate, clock=time.monotonic, authenticator=authenticator, observer=metrics
    )
    state.rebuild()
    port = await server.start(settings.xds_host, settings.xds_port, tls)
    log.info("event=xds-listening address=%s:%d", settings.xds_host, port)
    rotator = root_rotator(settings, ca, secrets, server, state)
    rotation = asyncio.create_task(
        rotate_certificates(secrets, server, state, rotator), name="rotation"
    )
    jwks_refresh = asyncio.create_task(refresh_jwks_forever(state), name="jwks-refresh")
    reconcile = functools.partial(registrar.reconcile_forever, server.connected)
    unregister = asyncio.create_task(
        _kubernetes(state, settings.kube, [reconcile], ca) if settings.kube else reconcile(),
        name="workload-entry-reconcile",
    )

    runner = web.AppRunner(
        build_app(state, server.statuses, secrets.describe, ca_admin=rotator), access_log=None
    )
    await runner.setup()
    settings.socket_path.unlink(missing_ok=True)
    site = web.UnixSite(runner, str(settings.socket_path))
    await site.start()
    log.info("event=api-listening socket=%s", settings.socket_path)
    metrics_runner = await _serve_metrics(metrics, settings)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("event=stopping")
    rotation.cancel()
    jwks_refresh.cancel()
    unregister.cancel()
    await asyncio.gather(unregister, return_exceptions=True)  # kube: releases its Lease
    await runner.cleanup()
    if metrics_runner is not None:
        await metrics_runner.cleanup()
    await server.stop(1.0)
    store.close()


async def _kubernetes(
    state: MeshState, options: KubeOptions, singletons: list[Any], ca: CertificateAuthority
) -> None:
    """The Kubernetes controller and webhooks; its client is imported only when asked for."""
    from trellis.kube.daemon import run_kubernetes

    await run_kubernetes(state, options, singletons, ca)


async def _serve_metrics(
    metrics: ControlPlaneMetrics, settings: DaemonSettings
) -> web.AppRunner | None:
    """istiod's :15014/metrics; a port in use costs the metrics, not the control plane."""
    if not settings.monitoring_host:
        return None
    try:
        runner, _ = await start_metrics_server(
            metrics, settings.monitoring_host, settings.monitoring_port
        )
    except OSError as e:
        log.warning(
            "event=metrics-listen-failed address=%s:%d error=%s",
            settings.monitoring_host,
            settings.monitoring_port,
            e,
        )
        return None
    return runner


def build_parser() -> argparse.ArgumentParser:
    """trellisd's flags; the Kubernetes install's tests parse its rendered args with this."""
    parser = argparse.ArgumentParser(prog="trellisd", description="Trellis control plane")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--xds-address", default="127.0.0.1:15010", help="HOST:PORT for xDS")
    parser.add_argument("--no-hosts", action="store_true", help="do not write netns hosts files")
    parser.add_argument("--ca-dir", type=Path, default=None, help="plug-in CA (cacerts layout)")
    parser.add_argument(
        "--workload-cert-ttl", type=float, default=86400.0, help="seconds (rotated at half)"
    )
    parser.add_argument(
        "--insecure-xds", action="store_true", help="plaintext xDS without join tokens"
    )
    parser.add_argument(
        "--tracing-address", default="", help="HOST:PORT of the trace store's OTLP/gRPC port"
    )
    parser.add_argument(
        "--trace-sampling", type=float, default=1.0, help="percent of new requests traced"
    )
    parser.add_argument(
        "--workload-entry-grace",
        type=float,
        default=DEFAULT_GRACE.total_seconds(),
        help="seconds an auto-registered WorkloadEntry outlives its proxy's connection",
    )
    parser.add_argument(
        "--monitoring-address",
        default="",
        help="HOST:PORT for Prometheus metrics (istiod's 15014); default: not served",
    )
    parser.add_argument(
        "--outbound-traffic-policy",
        choices=[p.value for p in OutboundPolicy],
        default=OutboundPolicy.ALLOW_ANY.value,
        help="what sidecars do with hosts the registry does not know",
    )
    parser.add_argument(
        "--kubernetes", action="store_true", help="config and registry from the Kubernetes API"
    )
    parser.add_argument("--kubeconfig", type=Path, default=None, help="default: in-cluster")
    parser.add_argument("--kube-namespace", default="istio-system", help="trellisd's namespace")
    parser.add_argument(
        "--webhook-address", default="", help="HOST:PORT for the admission webhooks (HTTPS)"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    host, _, port = args.xds_address.rpartition(":")
    monitoring_host, _, monitoring_port = args.monitoring_address.rpartition(":")
    settings = DaemonSettings(
        state_dir=args.state_dir,
        xds_host=host,
        xds_port=int(port),
        write_hosts=not args.no_hosts,
        ca_dir=args.ca_dir,
        workload_cert_ttl=timedelta(seconds=args.workload_cert_ttl),
        insecure_xds=args.insecure_xds,
        mesh=MeshConfig(
            tracing_address=args.tracing_address,
            trace_sampling=args.trace_sampling,
            outbound_policy=OutboundPolicy(args.outbound_traffic_policy),
        ),
        monitoring_host=monitoring_host,
        monitoring_port=int(monitoring_port or 15014),
        workload_entry_grace=timedelta(seconds=args.workload_entry_grace),
        kube=_kube_options(args) if args.kubernetes else None,
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    tune_for_large_heap()  # controlplane/gc_policy.py
    asyncio.run(serve(settings))


def _kube_options(args: argparse.Namespace) -> KubeOptions:
    webhook_host, _, webhook_port = args.webhook_address.rpartition(":")
    return KubeOptions(
        kubeconfig=args.kubeconfig,
        namespace=args.kube_namespace,
        webhook_host=webhook_host,
        webhook_port=int(webhook_port or 15017),
    )


if __name__ == "__main__":
    main()
