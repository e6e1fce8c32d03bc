"""The console's API against the shared Bookinfo mesh: login, roles, graph, validation.

`trellis demo` starts a console (cluster-admin only) on a port mesh.json records; tests that
need other grants or a short session run their own `trellis console` on a free port.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.meshctl import TRELLIS, Mesh, eventually, free_tcp_port, own_mesh
from trellis.runtime.client import LocalApi

pytestmark = pytest.mark.e2e


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


@dataclass
class Console:
    port: int

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        cookie: str | None = None,
        body: bytes | None = None,
        content_type: str = "application/yaml",
    ) -> Reply:
        headers = {"Content-Type": content_type} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if cookie:
            headers["Cookie"] = cookie
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as r:
                raw = r.read()
                return Reply(r.status, json.loads(raw) if raw else None, r.headers)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return Reply(e.code, json.loads(raw) if raw else None, e.headers)

    def login(self, token: str) -> tuple[Reply, str]:
        form = urllib.parse.urlencode({"token": token}).encode()
        reply = self.call(
            "POST",
            "/api/authenticate",
            body=form,
            content_type="application/x-www-form-urlencoded",
        )
        cookie = (reply.headers.get("Set-Cookie") or "").split(";", 1)[0]
        return reply, cookie


def console_token(mesh: Mesh, role: str = "cluster-admin", ttl: float = 3600) -> str:
    out = mesh.cli("console", "token", "--role", role, "--ttl", str(ttl)).stdout
    return out.strip().splitlines()[-1]


@contextmanager
def own_console(mesh: Mesh, *args: str) -> Iterator[Console]:
    """`trellis console` in the foreground on a free port, stopped by its PID."""
    console = Console(free_tcp_port())
    proc = subprocess.Popen(
        [
            TRELLIS,
            "console",
            "--port",
            str(console.port),
            "--scrape-interval",
            "1",
            "--state-dir",
            str(mesh.state_dir),
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(
            lambda: console.call("GET", "/api/auth/info").status == 200,
            timeout=30,
            what="the console to answer",
        )
        yield console
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def console(bookinfo: Mesh) -> Iterator[Console]:
    with own_console(bookinfo, "--console-roles", "view") as c:
        yield c


def test_trellis_up_starts_a_console_and_records_its_port(bookinfo: Mesh) -> None:
    info = json.loads((bookinfo.state_dir / "mesh.json").read_text())
    assert info["console_port"] > 0
    started = Console(info["console_port"])
    assert started.call("GET", "/api/auth/info").body["strategy"] == "token"
    assert started.call("GET", "/api/namespaces").status == 401
    # only cluster-admin was granted by `trellis up`
    assert started.login(console_token(bookinfo, "view"))[0].status == 403


def test_token_in_a_url_is_refused_and_never_logged(bookinfo: Mesh) -> None:
    info = json.loads((bookinfo.state_dir / "mesh.json").read_text())
    started = Console(info["console_port"])
    secret = console_token(bookinfo)
    assert started.call("GET", f"/api/namespaces?token={secret}").status == 400
    log = bookinfo.state_dir / "logs" / "console.log"
    eventually(lambda: 'path="/api/namespaces" status=400' in log.read_text(), what="access log")
    assert secret not in log.read_text()


def test_api_needs_credentials(console: Console) -> None:
    reply = console.call("GET", "/api/namespaces")
    assert reply.status == 401 and "error" in reply.body


def test_cluster_admin_logs_in_with_a_cookie(bookinfo: Mesh, console: Console) -> None:
    reply, cookie = console.login(console_token(bookinfo))
    assert reply.status == 200 and reply.body["role"] == "cluster-admin"
    names = console.call("GET", "/api/namespaces", cookie=cookie).body
    assert {"name": "default"} in names


def test_graph_shows_productpage_calling_reviews_over_mtls(
    bookinfo: Mesh, console: Console
) -> None:
    token = console_token(bookinfo)
    edge: dict[str, Any] = {}

    def has_edge() -> bool:
        for _ in range(5):
            bookinfo.http("/productpage")
        graph = console.call(
            "GET",
            "/api/namespaces/graph?namespaces=default&graphType=app&duration=60s",
            token=token,
        ).body
        ids = {n["data"]["id"]: n["data"] for n in graph["elements"]["nodes"]}
        for e in graph["elements"]["edges"]:
            d = e["data"]
            src, dst = ids[d["source"]], ids[d["target"]]
            if src.get("app") == "productpage" and dst.get("service") == "reviews":
                edge.update(d)
                return float(d["traffic"]["rates"]["http"]) > 0 and float(d["isMTLS"]) > 0
        return False

    eventually(has_edge, timeout=60, what="a productpage -> reviews edge with traffic")
    assert edge["healthStatus"] in ("Healthy", "Degraded", "Failure")


def test_workloads_list_shows_proxy_status(bookinfo: Mesh, console: Console) -> None:
    reply = console.call("GET", "/api/namespaces/default/workloads", token=console_token(bookinfo))
    by_name = {w["name"]: w for w in reply.body["workloads"]}
    assert by_name["productpage-v1"]["proxyStatus"] == "SYNCED"
    assert by_name["reviews-v2"]["app"] == "reviews"


def test_view_is_granted_here_but_may_not_write(bookinfo: Mesh, console: Console) -> None:
    view = console_token(bookinfo, "view")
    reply, cookie = console.login(view)
    assert reply.status == 200
    assert console.call("GET", "/api/istio/config", cookie=cookie).status == 200
    vs = b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\n"
    denied = console.call("POST", "/api/namespaces/default/istio", cookie=cookie, body=vs)
    assert denied.status == 403


def test_role_not_granted_is_refused(bookinfo: Mesh, console: Console) -> None:
    edit = console_token(bookinfo, "edit")
    assert console.login(edit)[0].status == 403
    assert console.call("GET", "/api/namespaces", token=edit).status == 403


def test_session_expires(bookinfo: Mesh) -> None:
    with own_console(bookinfo, "--session-ttl", "1") as short:
        reply, cookie = short.login(console_token(bookinfo))
        assert reply.status == 200
        eventually(
            lambda: short.call("GET", "/api/namespaces", cookie=cookie).status == 401,
            timeout=10,
            what="the session to expire",
        )


MISSING_SUBSET = b"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-console-test}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
"""


def test_validate_reports_a_missing_subset_with_its_code(bookinfo: Mesh, console: Console) -> None:
    reply = console.call(
        "POST", "/api/istio/validate", token=console_token(bookinfo, "view"), body=MISSING_SUBSET
    )
    assert reply.status == 200
    assert reply.body["valid"] is False
    assert "IST0101" in {c["code"] for c in reply.body["checks"]}


def test_invalid_write_is_400_with_checks(bookinfo: Mesh, console: Console) -> None:
    reply = console.call(
        "POST", "/api/namespaces/default/istio", token=console_token(bookinfo), body=MISSING_SUBSET
    )
    assert reply.status == 400
    assert reply.body["checks"]


# --- drill-down --------------------------------------------------------------------------------


def test_service_detail_lists_its_workloads_and_rules(bookinfo: Mesh, console: Console) -> None:
    body = console.call(
        "GET", "/api/namespaces/default/services/reviews", token=console_token(bookinfo)
    ).body
    assert {w["name"] for w in body["workloads"]} == {"reviews-v1", "reviews-v2", "reviews-v3"}
    assert [r["metadata"]["name"] for r in body["destinationRules"]] == ["reviews"]


def test_workload_metrics_have_inbound_request_series(bookinfo: Mesh, console: Console) -> None:
    token = console_token(bookinfo)

    def has_points() -> bool:
        bookinfo.http("/productpage")
        body = console.call(
            "GET",
            "/api/namespaces/default/workloads/productpage-v1/metrics"
            "?direction=inbound&duration=120&step=5",
            token=token,
        ).body
        counts = body["request_count"]
        return bool(counts) and any(v > 0 for _, v in counts[0]["datapoints"])

    eventually(has_points, timeout=60, what="productpage's inbound request series")


def test_config_dump_summarises_the_proxy(bookinfo: Mesh, console: Console) -> None:
    body = console.call(
        "GET",
        "/api/namespaces/default/pods/productpage-v1/config_dump",
        token=console_token(bookinfo),
    ).body
    clusters = {c["name"]: c for c in body["clusters"]}
    reviews = "outbound|9080|v1|reviews.default.svc.cluster.local"
    assert reviews in clusters and clusters[reviews]["endpoints"]
    assert any(lst["name"] == "virtualInbound" for lst in body["listeners"])
    assert body["routes"]


def test_logs_tail_of_the_proxy(bookinfo: Mesh, console: Console) -> None:
    bookinfo.http("/productpage")
    body = console.call(
        "GET",
        "/api/namespaces/default/pods/productpage-v1/logs?container=proxy&tailLines=5",
        token=console_token(bookinfo),
    ).body
    assert 0 < len(body["entries"]) <= 5


def test_traces_through_a_workload(bookinfo: Mesh, console: Console) -> None:
    token = console_token(bookinfo)

    def traced() -> bool:
        bookinfo.http("/productpage")
        body = console.call(
            "GET", "/api/namespaces/default/workloads/productpage-v1/traces?limit=5", token=token
        ).body
        spans = [s for t in body.get("data", []) for s in t["spans"]]
        return bool(spans) and all("spanID" in s and "duration" in s for s in spans)

    eventually(traced, timeout=30, what="traces through productpage")


TEST_VS = b"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: console-e2e-ratings}
spec:
  hosts: [ratings]
  http:
  - route:
    - destination: {host: ratings, subset: v1}
"""


def test_edit_creates_views_replaces_and_deletes_config(bookinfo: Mesh, console: Console) -> None:
    token = console_token(bookinfo)
    path = "/api/namespaces/default/istio/VirtualService/console-e2e-ratings"
    try:
        created = console.call("POST", "/api/namespaces/default/istio", token=token, body=TEST_VS)
        assert created.status == 200, created.body
        view = console.call("GET", path, token=token).body
        assert "console-e2e-ratings" in view["yaml"] and view["validation"]["valid"] is True
        replaced = console.call(
            "PUT", path, token=token, body=TEST_VS.replace(b"v1}", b"v1}\n      weight: 100")
        )
        assert replaced.status == 200, replaced.body
        listed = console.call("GET", "/api/istio/config?namespaces=default", token=token).body
        assert "console-e2e-ratings" in {r["name"] for r in listed["resources"]}
    finally:
        deleted = console.call("DELETE", path, token=token)
    assert deleted.status == 200
    assert console.call("GET", path, token=token).status == 404


# --- PromQL data source ------------------------------------------------------------------------


@contextmanager
def prometheus_for(mesh: Mesh, workdir: Path) -> Iterator[str]:
    """Debian's Prometheus scraping the mesh's proxies every second (targets from the runtime,
    the list `trellis up --prometheus` uses); yields its URL."""
    targets = LocalApi(mesh.state_dir / "runtime.sock", "runtime").call("GET", "/scrape-targets")
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "envoy-stats",
                "metrics_path": "/stats/prometheus",
                "static_configs": [{"targets": [t["address"] for t in targets["items"]]}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_tcp_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: _ready(f"{url}/-/ready"), timeout=30, what="Prometheus to be ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus")
def test_graph_from_prometheus(bookinfo: Mesh, tmp_path: Path) -> None:
    token = console_token(bookinfo)
    with (
        prometheus_for(bookinfo, tmp_path) as url,
        own_console(bookinfo, "--prometheus-url", url) as promconsole,
    ):

        def has_edge() -> bool:
            for _ in range(3):
                bookinfo.http("/productpage")
            graph = promconsole.call(
                "GET", "/api/namespaces/graph?namespaces=default&graphType=workload", token=token
            ).body
            return any(
                e["data"]["source"] == "svc_default_reviews"
                and float(e["data"]["traffic"]["rates"]["http"]) > 0
                for e in graph["elements"]["edges"]
            )

        eventually(has_edge, timeout=60, what="a reviews edge computed by PromQL")
        status = promconsole.call("GET", "/api/status", token=token).body
        assert status["mesh"]["prometheus"] == url


# --- `trellis up` options --------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus")
def test_up_grants_roles_reads_its_prometheus_and_down_stops_the_console(tmp_path: Path) -> None:
    prometheus_port = free_tcp_port()
    up_args = ("--prometheus", "--prometheus-port", str(prometheus_port), "--no-tracing")
    with own_mesh(tmp_path / "mesh", *up_args, "--console-roles", "view,edit") as mesh:
        info = json.loads((mesh.state_dir / "mesh.json").read_text())
        console = Console(info["console_port"])
        assert info["console_roles"] == "edit,view"
        assert f"Console: http://127.0.0.1:{console.port}/" in mesh.cli("status").stdout
        assert console.login(console_token(mesh, "edit"))[0].status == 200
        assert console.login(console_token(mesh, "admin"))[0].status == 403
        status = console.call("GET", "/api/status", token=console_token(mesh)).body
        assert status["mesh"]["prometheus"] == f"http://127.0.0.1:{prometheus_port}"
    with pytest.raises(OSError):
        console.call("GET", "/api/auth/info")
