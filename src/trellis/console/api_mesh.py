"""GET handlers over the running mesh: namespaces, graph, workloads/services/apps, drill-down."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from aiohttp import web

from trellis.console import drilldown, inventory
from trellis.console.context import ConsoleContext, context_of
from trellis.console.graph import (
    BUCKET_GROUP,
    REQUEST_GROUP,
    TCP_GROUP,
    GraphOptions,
    GraphType,
    build_graph,
)
from trellis.console.mesh_client import MeshClient, statuses_by_workload
from trellis.console.metrics_source import RateQuery
from trellis.console.samples import DURATION_BUCKET, REQUESTS, TCP_RECEIVED, TCP_SENT
from trellis.errors import NotFound

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_WINDOW_S = 3600.0 * 6
KINDS = ("workloads", "services", "apps")


def parse_duration(text: str, default: float) -> float:
    """`60s`, `5m`, `1h` or plain seconds (Kiali sends both)."""
    if not text:
        return default
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"duration {text!r}: use e.g. 60s, 5m, 1h")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return min(max(seconds, 1.0), MAX_WINDOW_S)


async def snapshot(ctx: ConsoleContext, window: float) -> inventory.Snapshot:
    rates = await ctx.metrics.rates(RateQuery(REQUESTS, window, inventory.HEALTH_GROUP))
    return inventory.Snapshot(
        workloads=await ctx.mesh.workloads(),
        running=await ctx.mesh.running(),
        services=await ctx.mesh.resources("Service"),
        proxy_status=statuses_by_workload(await ctx.mesh.proxy_statuses()),
        rates=rates,
    )


def _window(request: web.Request) -> float:
    return parse_duration(request.query.get("rateInterval", ""), 60.0)


async def namespaces(request: web.Request) -> web.Response:
    ctx = context_of(request)
    snap = await snapshot(ctx, 60.0)
    names = set(snap.namespaces()) | {"default"}
    return web.json_response([{"name": n} for n in sorted(names)])


async def graph(request: web.Request) -> web.Response:
    ctx = context_of(request)
    q = request.query
    names = frozenset(n for n in q.get("namespaces", "default").split(",") if n)
    try:
        graph_type = GraphType(q.get("graphType", GraphType.VERSIONED_APP.value))
    except ValueError as e:
        raise ValueError(f"graphType must be one of {', '.join(GraphType)}") from e
    options = GraphOptions(
        graph_type,
        names,
        parse_duration(q.get("duration", ""), 60.0),
        inject_service_nodes=q.get("injectServiceNodes", "true") != "false",
    )
    requests = await ctx.metrics.rates(RateQuery(REQUESTS, options.duration_s, REQUEST_GROUP))
    buckets = await ctx.metrics.rates(RateQuery(DURATION_BUCKET, options.duration_s, BUCKET_GROUP))
    tcp = [
        row
        for metric in (TCP_SENT, TCP_RECEIVED)
        for row in await ctx.metrics.rates(RateQuery(metric, options.duration_s, TCP_GROUP))
    ]
    statuses = statuses_by_workload(await ctx.mesh.proxy_statuses())
    body = build_graph(
        requests, buckets, options, proxy_status=statuses, timestamp=ctx.now(), tcp=tcp
    )
    return web.json_response(body)


# -- lists and details ---------------------------------------------------------------------


async def workloads(request: web.Request) -> web.Response:
    snap = await snapshot(context_of(request), _window(request))
    return web.json_response(inventory.workload_list(snap, request.match_info["ns"]))


async def workload(request: web.Request) -> web.Response:
    ctx = context_of(request)
    ns, name = request.match_info["ns"], request.match_info["name"]
    snap = await snapshot(ctx, _window(request))
    record = next((w for w in inventory.workloads_in(snap, ns) if w["name"] == name), None)
    if record is None:
        raise NotFound(f"no workload {name} in namespace {ns}")
    item = inventory.workload_item(snap, record)
    labels = dict(record.get("labels", {}))
    item["services"] = [
        inventory.service_item(snap, s)
        for s in inventory.services_in(snap, ns)
        if inventory.selects(dict(s.get("spec", {}).get("selector", {})), labels)
    ]
    return web.json_response(item)


async def services(request: web.Request) -> web.Response:
    snap = await snapshot(context_of(request), _window(request))
    ns = request.match_info["ns"]
    items = [inventory.service_item(snap, s) for s in inventory.services_in(snap, ns)]
    return web.json_response({"namespace": {"name": ns}, "services": items})


async def service(request: web.Request) -> web.Response:
    ctx = context_of(request)
    ns, name = request.match_info["ns"], request.match_info["name"]
    snap = await snapshot(ctx, _window(request))
    found = next(
        (s for s in inventory.services_in(snap, ns) if s["metadata"]["name"] == name), None
    )
    if found is None:
        raise NotFound(f"no service {name} in namespace {ns}")
    item = inventory.service_item(snap, found)
    item["workloads"] = inventory.service_workloads(snap, found)
    for kind, key in (
        ("VirtualService", "virtualServices"),
        ("DestinationRule", "destinationRules"),
    ):
        item[key] = [
            r for r in await ctx.mesh.resources(kind) if inventory.refers_to_service(r, name, ns)
        ]
    return web.json_response(item)


async def apps(request: web.Request) -> web.Response:
    snap = await snapshot(context_of(request), _window(request))
    ns = request.match_info["ns"]
    items = [inventory.app_item(snap, ns, a) for a in inventory.app_names(snap, ns)]
    return web.json_response({"namespace": {"name": ns}, "applications": items})


async def app(request: web.Request) -> web.Response:
    snap = await snapshot(context_of(request), _window(request))
    ns, name = request.match_info["ns"], request.match_info["name"]
    if name not in inventory.app_names(snap, ns):
        raise NotFound(f"no app {name} in namespace {ns}")
    return web.json_response(inventory.app_item(snap, ns, name))


# -- drill-down ------------------------------------------------------------------------------


async def metrics(request: web.Request) -> web.Response:
    ctx = context_of(request)
    q = request.query
    kind, ns, name = (
        request.match_info["kind"],
        request.match_info["ns"],
        request.match_info["name"],
    )
    direction = q.get("direction", "inbound")
    if direction not in ("inbound", "outbound"):
        raise ValueError("direction must be inbound or outbound")
    duration = parse_duration(q.get("duration", ""), 600.0)
    step = max(parse_duration(q.get("step", ""), 15.0), 1.0)
    end = ctx.now()
    body = await drilldown.metrics(
        ctx.metrics,
        drilldown.entity_match(kind, ns, name, direction),
        start=end - duration,
        end=end,
        step=step,
        window=parse_duration(q.get("rateInterval", ""), max(step * 2, 30.0)),
    )
    return web.json_response(body)


async def config_dump(request: web.Request) -> web.Response:
    mesh = context_of(request).mesh
    ns, pod = request.match_info["ns"], request.match_info["pod"]
    await _known_pod(mesh, ns, pod)
    listeners = await mesh.proxy_config(ns, pod, "listeners")
    routes = await mesh.proxy_config(ns, pod, "routes")
    clusters = await mesh.proxy_config(ns, pod, "clusters")
    endpoints = drilldown.endpoint_addresses(await mesh.proxy_config(ns, pod, "endpoints"))
    return web.json_response(
        {
            "listeners": [drilldown.listener_summary(i) for i in listeners],
            "routes": [drilldown.route_summary(i) for i in routes],
            "clusters": [drilldown.cluster_summary(i, endpoints) for i in clusters],
        }
    )


async def logs(request: web.Request) -> web.Response:
    ctx = context_of(request)
    ns, pod = request.match_info["ns"], request.match_info["pod"]
    container = request.query.get("container", "app")
    if container not in ("app", "proxy"):
        raise ValueError("container must be app or proxy")
    await _known_pod(ctx.mesh, ns, pod)
    lines = int(request.query.get("tailLines", "100"))
    path = drilldown.log_path(ctx.mesh.layout.workload_dir(ns, pod), container)
    return web.json_response(drilldown.tail(path, lines))


async def _known_pod(mesh: MeshClient, ns: str, pod: str) -> None:
    """A pod is a workload trellisd knows; anything else is a 404 before asking further."""
    if (ns, pod) not in {(str(w["namespace"]), str(w["name"])) for w in await mesh.workloads()}:
        raise NotFound(f"no pod {pod} in namespace {ns}")


async def traces(request: web.Request) -> web.Response:
    """The trace store's Jaeger API, for the service name the proxies use (`app.namespace`)."""
    ctx = context_of(request)
    info = ctx.mesh.info()
    if info is None or not info.tracing_query_port:
        return web.json_response({"data": [], "errors": [{"msg": "no trace store is running"}]})
    kind, ns, name = (
        request.match_info["kind"],
        request.match_info["ns"],
        request.match_info["name"],
    )
    service = await _trace_service(ctx, kind, ns, name)
    params = {
        "service": service,
        "limit": str(int(request.query.get("limit", "20"))),
        "lookback": f"{int(request.query.get('lookback', '3600'))}s",
    }
    url = f"http://127.0.0.1:{info.tracing_query_port}/api/traces"
    timeout = aiohttp.ClientTimeout(total=10.0)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, params=params) as r,
    ):
        body: Any = await r.json(content_type=None)
    return web.json_response(body)


async def _trace_service(ctx: ConsoleContext, kind: str, ns: str, name: str) -> str:
    if kind == "workloads":
        for w in await ctx.mesh.workloads():
            if w["namespace"] == ns and w["name"] == name:
                return f"{w.get('labels', {}).get('app') or name}.{ns}"
    return f"{name}.{ns}"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/namespaces", namespaces)
    router.add_get("/api/namespaces/graph", graph)
    router.add_get("/api/namespaces/{ns}/workloads", workloads)
    router.add_get("/api/namespaces/{ns}/workloads/{name}", workload)
    router.add_get("/api/namespaces/{ns}/services", services)
    router.add_get("/api/namespaces/{ns}/services/{name}", service)
    router.add_get("/api/namespaces/{ns}/apps", apps)
    router.add_get("/api/namespaces/{ns}/apps/{name}", app)
    kinds = "{kind:workloads|services|apps}"
    router.add_get(f"/api/namespaces/{{ns}}/{kinds}/{{name}}/metrics", metrics)
    router.add_get(f"/api/namespaces/{{ns}}/{kinds}/{{name}}/traces", traces)
    router.add_get("/api/namespaces/{ns}/pods/{pod}/config_dump", config_dump)
    router.add_get("/api/namespaces/{ns}/pods/{pod}/logs", logs)
