"""The `trellis` CLI against a real mesh: ps, logs, proxy-config, get, run/stop, proxy-status.

Most tests read the shared Bookinfo mesh; the NACK test changes its config and restores it;
the `trellis down` test brings up a mesh of its own, since it must take it down.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.meshctl import (
    Mesh,
    as_list,
    cli_json,
    eventually,
    host_objects,
    own_mesh,
    pid_alive,
    pids_mentioning,
)

pytestmark = pytest.mark.e2e

BOOKINFO = {
    "productpage-v1": ("productpage", "v1"),
    "details-v1": ("details", "v1"),
    "ratings-v1": ("ratings", "v1"),
    "reviews-v1": ("reviews", "v1"),
    "reviews-v2": ("reviews", "v2"),
    "reviews-v3": ("reviews", "v3"),
}
REVIEWS_FQDN = "reviews.default.svc.cluster.local"


def workloads(mesh: Mesh, *args: str) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in as_list(cli_json(mesh, "ps", *args))}


def proxies(mesh: Mesh) -> dict[str, dict[str, Any]]:
    return {p["proxy"]: p for p in as_list(cli_json(mesh, "proxy-status"))}


def flush_access_log(mesh: Mesh, workload: str) -> None:
    """Envoy writes access logs out every 10 s; its admin /reopen_logs writes them out now."""
    mesh.exec_in(
        workload,
        "import urllib.request\n"
        "req = urllib.request.Request('http://127.0.0.1:15000/reopen_logs', method='POST')\n"
        "urllib.request.urlopen(req, timeout=5).read()\n",
    )


# --- ps and logs ----------------------------------------------------------------------------


def test_ps_lists_the_bookinfo_workloads_with_their_ips(bookinfo: Mesh) -> None:
    subnet = ipaddress.ip_network(cli_json(bookinfo, "status")["mesh"]["subnet"])
    found = workloads(bookinfo, "-n", "default")
    assert set(BOOKINFO) <= set(found)
    ips = set()
    for name, (app, version) in BOOKINFO.items():
        w = found[name]
        assert w["namespace"] == "default" and w["alive"] and w["sidecar"]
        assert w["labels"] == {"app": app, "version": version}
        assert w["ports"] == [9080]
        assert ipaddress.ip_address(w["ip"]) in subnet
        ips.add(w["ip"])
    assert len(ips) == len(BOOKINFO)  # one address per pod
    table = bookinfo.cli("ps").stdout
    assert all(re.search(rf"{name}\s+Running\s+{found[name]['ip']}", table) for name in BOOKINFO)


def _traced_request(mesh: Mesh) -> str:
    """One products request through the gateway; the x-request-id productpage logged for it."""
    probe = uuid.uuid4().hex
    status, _ = mesh.http(f"/api/v1/products/0/reviews?probe={probe}")
    assert status == 200
    lines = [ln for ln in mesh.cli("logs", "productpage-v1").stdout.splitlines() if probe in ln]
    assert len(lines) == 1, lines
    match = re.search(r"request_id=(\S+)", lines[0])
    assert match is not None, lines[0]
    return match.group(1)


def test_logs_show_the_application_lines(bookinfo: Mesh) -> None:
    request_id = _traced_request(bookinfo)
    log = bookinfo.cli("logs", "productpage-v1").stdout.splitlines()
    (line,) = [ln for ln in log if request_id in ln]
    assert "service=productpage" in line and "status=200" in line
    assert re.search(r'method=GET path="?/api/v1/products/0/reviews\?probe=', line), line
    assert len(bookinfo.cli("logs", "productpage-v1", "--tail", "1").stdout.splitlines()) == 1
    missing = bookinfo.cli("logs", "no-such-workload", check=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


# Istio's default text access-log format: the fields this test reads, in their order.
ACCESS_LINE = re.compile(
    r'^\[(?P<start>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>\S+)" '
    r"(?P<code>\d{3}) (?P<flags>\S+) (?P<details>\S+) (?P<termination>\S+) "
    r'"(?P<transport_failure>[^"]*)" (?P<received>\d+) (?P<sent>\d+) (?P<duration>\d+) '
    r'(?P<upstream_time>\S+) "(?P<xff>[^"]*)" "(?P<user_agent>[^"]*)" "(?P<request_id>[^"]*)" '
    r'"(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)" (?P<upstream_cluster>\S+) '
    r"(?P<upstream_local>\S+) (?P<downstream_local>\S+) (?P<downstream_remote>\S+) "
    r"(?P<sni>\S+) (?P<route>\S+)$"
)


def test_proxy_logs_are_envoy_access_logs_in_istio_format(bookinfo: Mesh) -> None:
    request_id = _traced_request(bookinfo)

    def lines_for_request() -> list[dict[str, str]]:
        flush_access_log(bookinfo, "productpage-v1")
        log = bookinfo.cli("logs", "productpage-v1", "--proxy").stdout.splitlines()
        parsed = [ACCESS_LINE.match(ln) for ln in log if f'"{request_id}"' in ln]
        assert all(parsed), log[-5:]
        return [m.groupdict() for m in parsed if m]

    eventually(lambda: len(lines_for_request()) == 2, what="productpage's two access-log lines")
    inbound, outbound = sorted(lines_for_request(), key=lambda e: e["upstream_cluster"])
    assert inbound["upstream_cluster"] == "inbound|9080||"
    assert inbound["path"].startswith("/api/v1/products/0/reviews?probe=")
    assert outbound["upstream_cluster"] == f"outbound|9080||{REVIEWS_FQDN}"
    assert outbound["path"] == "/reviews/0" and outbound["authority"] == "reviews:9080"
    ips = {w["ip"] for n, w in workloads(bookinfo).items() if n.startswith("reviews-")}
    assert outbound["upstream_host"].rsplit(":", 1) in [[ip, "9080"] for ip in ips]
    for entry in (inbound, outbound):
        assert (entry["method"], entry["protocol"], entry["code"]) == ("GET", "HTTP/1.1", "200")
        assert entry["details"] == "via_upstream" and entry["flags"] == "-"


# --- proxy-config ---------------------------------------------------------------------------


def proxy_config(mesh: Mesh, kind: str, proxy: str = "productpage-v1") -> list[dict[str, Any]]:
    return as_list(cli_json(mesh, "proxy-config", kind, proxy))


def test_proxy_config_shows_istio_named_envoy_objects(bookinfo: Mesh) -> None:
    listeners = {item["name"]: item for item in proxy_config(bookinfo, "listeners")}
    assert {"virtualOutbound", "virtualInbound", "0.0.0.0_9080"} <= set(listeners)
    assert listeners["virtualOutbound"]["address"]["socketAddress"]["portValue"] == 15001
    assert listeners["virtualInbound"]["address"]["socketAddress"]["portValue"] == 15006

    routes = {item["name"]: item for item in proxy_config(bookinfo, "routes")}
    assert "9080" in routes
    vhosts = {v["name"]: v for v in routes["9080"]["virtualHosts"]}
    assert {"reviews", "reviews:9080", REVIEWS_FQDN} <= set(
        vhosts[f"{REVIEWS_FQDN}:9080"]["domains"]
    )

    clusters = {item["name"] for item in proxy_config(bookinfo, "clusters")}
    for subset in ("", "v1", "v2", "v3"):
        assert f"outbound|9080|{subset}|{REVIEWS_FQDN}" in clusters
    assert {"inbound|9080||", "BlackHoleCluster", "PassthroughCluster"} <= clusters

    endpoints = {e["clusterName"]: e for e in proxy_config(bookinfo, "endpoints")}
    found = workloads(bookinfo)
    every = {found[f"reviews-{v}"]["ip"] for v in ("v1", "v2", "v3")}
    assert _endpoint_ips(endpoints[f"outbound|9080||{REVIEWS_FQDN}"]) == every
    assert _endpoint_ips(endpoints[f"outbound|9080|v2|{REVIEWS_FQDN}"]) == {
        found["reviews-v2"]["ip"]
    }
    table = bookinfo.cli("proxy-config", "clusters", "productpage-v1").stdout
    assert f"outbound|9080|v1|{REVIEWS_FQDN}" in table


def _endpoint_ips(assignment: dict[str, Any]) -> set[str]:
    return {
        lb["endpoint"]["address"]["socketAddress"]["address"]
        for group in assignment.get("endpoints", [])
        for lb in group.get("lbEndpoints", [])
    }


# --- get round-trips what was applied -------------------------------------------------------

ROUND_TRIP = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: roundtrip
  namespace: default
spec:
  host: roundtrip.example.com
  trafficPolicy:
    connectionPool:
      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 1}
    outlierDetection: {consecutive5xxErrors: 3, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: roundtrip
  namespace: default
spec:
  hosts: [roundtrip.example.com]
  http:
  - name: canary
    match:
    - uri: {prefix: /api}
      headers:
        x-canary: {exact: "yes"}
      queryParams:
        debug: {regex: "[01]"}
      ignoreUriCase: true
      withoutHeaders:
        x-legacy: {prefix: old}
    route:
    - destination: {host: roundtrip.example.com, subset: v2, port: {number: 8080}}
      weight: 90
      headers:
        response:
          set: {x-served-by: canary}
    - destination: {host: roundtrip.example.com, subset: v1, port: {number: 8080}}
      weight: 10
    timeout: 5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}
    fault:
      delay:
        fixedDelay: 1s
        percentage: {value: 0.5}
    mirror: {host: mirror.example.com}
    mirrorPercentage: {value: 5.5}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
      allowMethods: [GET, POST]
      maxAge: 24h
  - rewrite: {uri: /v2, authority: new.example.com}
    route:
    - destination: {host: roundtrip.example.com}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: roundtrip-tcp
  namespace: trellis-e2e
spec:
  hosts: [tcp.example.com]
  exportTo: ["."]
  tcp:
  - match: [{port: 3306, sourceLabels: {app: client}}]
    route:
    - destination: {host: tcp.example.com, port: {number: 3306}}
"""


def test_get_all_namespaces_round_trips_what_was_applied(bookinfo: Mesh) -> None:
    applied = list(yaml.safe_load_all(ROUND_TRIP))
    bookinfo.apply(ROUND_TRIP)
    try:
        got = {}
        for kind in ("vs", "dr"):
            for doc in yaml.safe_load_all(bookinfo.cli("get", kind, "-A", "-o", "yaml").stdout):
                got[(doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"])] = doc
        for doc in applied:
            meta = doc["metadata"]
            back = got[(doc["kind"], meta["namespace"], meta["name"])]
            assert back["apiVersion"] == doc["apiVersion"]
            assert back["spec"] == doc["spec"]
        only_default = bookinfo.cli("get", "vs", "-o", "yaml").stdout
        assert "roundtrip-tcp" not in only_default and "name: roundtrip" in only_default
    finally:
        bookinfo.cli("delete", "-f", "-", input=ROUND_TRIP, check=False)


# --- run / stop -----------------------------------------------------------------------------


def test_running_a_second_workload_with_the_same_name_fails_clearly(bookinfo: Mesh) -> None:
    before = workloads(bookinfo)["productpage-v1"]
    proc = bookinfo.cli(
        "run", "productpage-v1", "--port", "9080", "--", sys.executable, "-c", "pass", check=False
    )
    assert proc.returncode != 0
    assert "already exists" in proc.stderr and "productpage-v1" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    after = workloads(bookinfo)["productpage-v1"]
    assert (after["ip"], after["pid"], after["alive"]) == (before["ip"], before["pid"], True)
    assert bookinfo.http("/productpage")[0] == 200


def test_stop_removes_the_workload_its_proxy_and_its_netns(bookinfo: Mesh) -> None:
    name = "cli-scratch"
    netns = f"{cli_json(bookinfo, 'status')['mesh']['prefix']}-default-{name}"
    bookinfo.cli("run", name, "--", sys.executable, "-c", "import time\nwhile True: time.sleep(60)")
    try:
        assert name in workloads(bookinfo)
        assert netns in _netns_names()
        eventually(lambda: proxies(bookinfo)[f"{name}.default"]["synced"], what="its proxy")
        pod_pids = _netns_pids(netns)
        assert pod_pids  # the agent, Envoy and the app
    finally:
        bookinfo.cli("stop", name)
    assert name not in workloads(bookinfo)
    assert netns not in _netns_names()
    assert not any(pid_alive(pid) for pid in pod_pids)
    eventually(lambda: f"{name}.default" not in proxies(bookinfo), what="its proxy to leave")
    again = bookinfo.cli("stop", name, check=False)
    assert again.returncode != 0 and "Traceback" not in again.stderr


def _netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()]


def _netns_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


# --- proxy-status ---------------------------------------------------------------------------


def test_proxy_status_shows_every_proxy_synced(bookinfo: Mesh) -> None:
    expected = {f"{name}.default" for name in BOOKINFO} | {"istio-ingressgateway.istio-system"}

    def all_synced() -> bool:
        found = proxies(bookinfo)
        return expected <= set(found) and all(found[p]["synced"] for p in expected)

    eventually(all_synced, what="every proxy to be synced")
    found = proxies(bookinfo)
    assert found["istio-ingressgateway.istio-system"]["type"] == "router"
    for name in expected:
        entry = found[name]
        assert set(entry["xds"]) >= {"CDS", "EDS", "LDS", "RDS"}
        for state in entry["xds"].values():
            assert state["sent"] == state["acked"] and not state["nacked"]
    assert found["productpage-v1.default"]["type"] == "sidecar"
    assert found["productpage-v1.default"]["ip"] == workloads(bookinfo)["productpage-v1"]["ip"]


# Envoy caps a direct response body at 4096 bytes (RouteConfiguration
# max_direct_response_body_size_bytes, which Trellis leaves at its default); `trellis apply`
# does not check body sizes, so this passes validation and only Envoy rejects it. (A bad regex
# no longer works for this: validation compiles regexes with RE2 as Envoy does.)
# sourceLabels puts it in productpage's routes only.
ENVOY_REJECTS = f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews-rejected}}
spec:
  hosts: [reviews]
  http:
  - match:
    - sourceLabels: {{app: productpage}}
      headers:
        x-too-big: {{exact: "yes"}}
    directResponse:
      status: 200
      body: {{string: "{'x' * 5000}"}}
  - route: [{{destination: {{host: reviews, subset: v3}}}}]
"""


def test_a_config_envoy_rejects_is_reported_as_nack_and_traffic_keeps_flowing(
    bookinfo: Mesh,
) -> None:
    every_version = {"reviews-v1", "reviews-v2", "reviews-v3"}
    eventually(
        lambda: all(p["synced"] for p in proxies(bookinfo).values()), what="a synced mesh first"
    )
    bookinfo.apply(ENVOY_REJECTS)  # our validation lets it through
    try:
        eventually(
            lambda: proxies(bookinfo)["productpage-v1.default"]["xds"]["RDS"]["nacked"] != "",
            what="productpage's NACK",
        )
        status = proxies(bookinfo)
        rds = status["productpage-v1.default"]["xds"]["RDS"]
        assert "body size" in rds["error"] and rds["acked"] != rds["nacked"]
        assert not status["productpage-v1.default"]["synced"]
        # Only productpage got the oversized body; the other proxies took the config.
        others = {name: p for name, p in status.items() if name != "productpage-v1.default"}
        eventually(
            lambda: all(p["synced"] for n, p in proxies(bookinfo).items() if n in others),
            what="the other proxies to ACK",
        )
        table = bookinfo.cli("proxy-status").stdout
        (row,) = [ln for ln in table.splitlines() if ln.startswith("productpage-v1.default")]
        assert "NACKED" in row
        # productpage keeps its last good routes: all versions, not the rejected v3-only rule.
        assert {bookinfo.reviews_pod() for _ in range(40)} == every_version
    finally:
        bookinfo.cli("delete", "vs", "reviews-rejected", check=False)
    eventually(
        lambda: proxies(bookinfo)["productpage-v1.default"]["synced"], what="the NACK to clear"
    )
    assert "NACKED" not in bookinfo.cli("proxy-status").stdout
    assert {bookinfo.reviews_pod() for _ in range(40)} == every_version


# --- trellis down ---------------------------------------------------------------------------


def test_down_removes_everything_the_mesh_created(tmp_path: Path) -> None:
    state_dir = tmp_path / "mesh"
    with own_mesh(state_dir) as mesh:
        mesh.cli(
            "run",
            "down-probe",
            "--port",
            "8000",
            "--",
            sys.executable,
            "-m",
            "http.server",
            "8000",
        )
        status = cli_json(mesh, "status")
        prefix = status["mesh"]["prefix"]
        pids = [status["mesh"]["supervisor_pid"], *(c["pid"] for c in status["components"])]
        for w in as_list(cli_json(mesh, "ps")):
            pids += [w["pid"], *_netns_pids(w["netns"])]
        before = host_objects(prefix)
        assert before.netns == [f"{prefix}-default-down-probe"]
        assert f"{prefix}br" in before.links and before.etc_netns
        assert all(pid_alive(p) for p in pids) and len(pids) >= 6

        down = mesh.cli("down")
        assert "Traceback" not in down.stderr
        after = host_objects(prefix)
        assert after.empty, after
        assert [p for p in pids if pid_alive(p)] == []
        assert pids_mentioning(str(state_dir)) == []
        assert not (state_dir / "mesh.json").exists()
        assert "No mesh is running" in mesh.cli("down").stdout
