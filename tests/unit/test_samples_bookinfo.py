"""Bookinfo behaves like Istio's: the four services run as real processes on loopback.

Wiring (one set of processes for the whole module):
  productpage-main    -> details, reviews-v2 -> recording ratings (a fake that keeps headers)
  productpage-noratings -> details, reviews-v2 whose ratings port is closed
  productpage-broken  -> a closed details port, a fake reviews (slow /reviews/0, 503 /reviews/7)
  reviews-v1, reviews-v3 -> ratings
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from samples.bookinfo import productpage  # noqa: E402
from samples.bookinfo.common import PROPAGATED_HEADERS  # noqa: E402

# Loopback only: never route test requests through a proxy from the environment.
NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BOOKINFO = REPO_ROOT / "samples" / "bookinfo" / "bookinfo.py"
# Longer than productpage's 3 s reviews timeout, so each of its two tries gives up.
SLOW_REVIEWS_S = 4.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- fake upstreams (threads, so one set serves the whole module) ------------------------


class RecordingRatings(BaseHTTPRequestHandler):
    """A ratings stand-in that remembers the headers of every request it gets."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeReviews(BaseHTTPRequestHandler):
    """A reviews stand-in: /reviews/0 answers too late, /reviews/7 answers 503."""

    hits: dict[str, int]

    def do_GET(self) -> None:
        hits = type(self).hits
        hits[self.path] = hits.get(self.path, 0) + 1
        if self.path == "/reviews/0":
            time.sleep(SLOW_REVIEWS_S)
        status = 200 if self.path == "/reviews/0" else 503
        body = json.dumps({"id": "0", "reviews": []} if status == 200 else {"error": "x"})
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
        except OSError:
            pass  # the caller gave up already

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_fake(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.block_on_close = False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- bookinfo processes ----------------------------------------------------------------


@dataclass
class Proc:
    name: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Bookinfo:
    procs: dict[str, Proc] = field(default_factory=dict)
    ratings_seen: list[dict[str, str]] = field(default_factory=list)
    fake_reviews_hits: dict[str, int] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.procs[name].url


def launch(name: str, args: list[str], extra_env: dict[str, str], log_dir: Path, port: int) -> Proc:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra_env}
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, str(BOOKINFO), *args, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Proc(name=name, port=port, log=log, popen=popen)


def wait_healthy(proc: Proc, deadline: float) -> None:
    """Poll /health until it answers; fail with the process's output if it died."""
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            pytest.fail(f"{proc.name} exited: {proc.log.read_text()}")
        try:
            with NO_PROXY_OPENER.open(f"{proc.url}/health", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{proc.name} not healthy in time: {proc.log.read_text()}")


def stop(proc: Proc) -> None:
    proc.popen.terminate()
    try:
        proc.popen.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait()


def wired(**targets: str) -> dict[str, str]:
    """Env for a process whose upstreams are other processes (by name) or fakes (@name)."""
    env: dict[str, str] = {}
    for service, target in targets.items():
        env[f"{service.upper()}_HOSTNAME"] = "127.0.0.1"
        env[f"{service.upper()}_SERVICE_PORT"] = target
    return env


# name -> (command line arguments, environment); env values naming another process or a fake
# (@recorder, @fake, @closed) are replaced by that one's port.
PLAN: dict[str, tuple[list[str], dict[str, str]]] = {
    "ratings": (["ratings"], {}),
    "details": (["details"], {}),
    "reviews-v1": (["reviews", "--version", "v1"], {"HOSTNAME": "reviews-v1-host"}),
    "reviews-v2": (
        ["reviews", "--version", "v2"],
        {**wired(ratings="@recorder"), "TRELLIS_WORKLOAD_NAME": "reviews-v2-main"},
    ),
    "reviews-v3": (
        ["reviews"],
        {**wired(ratings="ratings"), "SERVICE_VERSION": "v3", "CLUSTER_NAME": "east"},
    ),
    "reviews-v2-noratings": (["reviews", "--version", "v2"], wired(ratings="@closed")),
    "productpage-main": (
        ["productpage"],
        wired(details="details", reviews="reviews-v2", ratings="ratings"),
    ),
    "productpage-noratings": (
        ["productpage"],
        wired(details="details", reviews="reviews-v2-noratings"),
    ),
    "productpage-broken": (["productpage"], wired(details="@closed", reviews="@fake")),
}


@pytest.fixture(scope="module")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bookinfo]:
    log_dir = tmp_path_factory.mktemp("bookinfo")
    world = Bookinfo()
    RecordingRatings.seen = world.ratings_seen
    FakeReviews.hits = world.fake_reviews_hits
    fakes = [start_fake(RecordingRatings), start_fake(FakeReviews)]
    recorder_port, fake_reviews_port = (f.server_address[1] for f in fakes)
    closed_port = free_port()
    ports = {name: free_port() for name in PLAN}
    targets = {**ports, "@recorder": recorder_port, "@fake": fake_reviews_port}
    targets["@closed"] = closed_port
    try:
        for name, (args, env) in PLAN.items():
            resolved = {k: str(targets.get(v, v)) for k, v in env.items()}
            world.procs[name] = launch(name, args, resolved, log_dir, ports[name])
        deadline = time.monotonic() + 20
        for proc in world.procs.values():
            wait_healthy(proc, deadline)
        yield world
    finally:
        for proc in world.procs.values():
            stop(proc)
        for fake in fakes:
            fake.shutdown()
            fake.server_close()


async def get_text(url: str, **kwargs: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as reply:
        return reply.status, await reply.text()


async def get_json(url: str, **kwargs: Any) -> tuple[int, Any]:
    status, text = await get_text(url, **kwargs)
    return status, json.loads(text)


def marker() -> str:
    return uuid.uuid4().hex


def seen_with_request_id(world: Bookinfo, request_id: str) -> list[dict[str, str]]:
    return [h for h in world.ratings_seen if h.get("x-request-id") == request_id]


# --- the product page -------------------------------------------------------------------


async def test_productpage_shows_book_details_and_reviews(bookinfo: Bookinfo) -> None:
    status, html = await get_text(f"{bookinfo.url('productpage-main')}/productpage")
    assert status == 200
    assert "<title>Simple Bookstore App</title>" in html
    assert "The Comedy of Errors" in html
    assert "PublisherA" in html and "123-1234567890" in html
    assert "Reviewer1" in html and "slapstick humour" in html
    assert html.count("rating-black") == 2
    assert "Reviews served by: <b>reviews-v2-main</b>" in html
    assert 'name="username"' in html


async def test_productpage_shows_ratings_unavailable_from_reviews(bookinfo: Bookinfo) -> None:
    _, html = await get_text(f"{bookinfo.url('productpage-noratings')}/productpage")
    assert html.count("Ratings service is currently unavailable") == 2
    assert "rating-black" not in html


async def test_productpage_explains_failed_details_and_slow_reviews(bookinfo: Bookinfo) -> None:
    status, html = await get_text(f"{bookinfo.url('productpage-broken')}/productpage")
    assert status == 200
    assert productpage.DETAILS_UNAVAILABLE in html
    assert productpage.REVIEWS_UNAVAILABLE in html
    assert bookinfo.fake_reviews_hits["/reviews/0"] == productpage.REVIEWS_TRIES


async def test_login_sets_session_cookie_and_sends_end_user(bookinfo: Bookinfo) -> None:
    base = bookinfo.url("productpage-main")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(
            f"{base}/login", data={"username": "jason", "passwd": "x"}, allow_redirects=False
        ) as reply:
            assert reply.status == 302
            assert reply.headers["Location"] == "/productpage"
            assert reply.cookies["session"].value == "jason"
        request_id = marker()
        async with session.get(f"{base}/productpage", headers={"x-request-id": request_id}) as r:
            html = await r.text()
    assert "Signed in as jason" in html
    # productpage -> reviews -> ratings: the user travelled two hops.
    (seen,) = seen_with_request_id(bookinfo, request_id)
    assert seen["end-user"] == "jason"
    assert "session=jason" in seen["cookie"]


async def test_logout_clears_the_session(bookinfo: Bookinfo) -> None:
    base = bookinfo.url("productpage-main")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await (await session.post(f"{base}/login", data={"username": "jason"})).release()
        async with session.get(f"{base}/logout", allow_redirects=False) as reply:
            assert reply.status == 302
            assert reply.cookies["session"].value == ""
        async with session.get(f"{base}/productpage") as reply:
            html = await reply.text()
    assert "Signed in as" not in html
    assert 'name="username"' in html


async def test_anonymous_requests_carry_no_end_user(bookinfo: Bookinfo) -> None:
    request_id = marker()
    await get_text(
        f"{bookinfo.url('productpage-main')}/productpage", headers={"x-request-id": request_id}
    )
    (seen,) = seen_with_request_id(bookinfo, request_id)
    assert "end-user" not in seen


async def test_tracing_headers_are_forwarded_through_every_hop(bookinfo: Bookinfo) -> None:
    sent = {name: f"{name}-{marker()}" for name in PROPAGATED_HEADERS if name != "end-user"}
    sent["x-not-propagated"] = "nope"
    await get_text(f"{bookinfo.url('productpage-main')}/productpage", headers=sent)
    (seen,) = seen_with_request_id(bookinfo, sent["x-request-id"])
    for name in PROPAGATED_HEADERS:
        if name != "end-user":
            assert seen.get(name) == sent[name], name
    assert "x-not-propagated" not in seen
    # details makes no calls; its log line shows it received the request id.
    details_log = bookinfo.procs["details"].log.read_text()
    assert f"request_id={sent['x-request-id']}" in details_log


# --- productpage's API ------------------------------------------------------------------


async def test_api_reviews_returns_the_reviews_json(bookinfo: Bookinfo) -> None:
    _, direct = await get_json(f"{bookinfo.url('reviews-v2')}/reviews/0")
    status, via_api = await get_json(
        f"{bookinfo.url('productpage-main')}/api/v1/products/0/reviews"
    )
    assert status == 200
    assert via_api == direct


async def test_api_reviews_passes_the_failure_status_through(bookinfo: Bookinfo) -> None:
    status, body = await get_json(f"{bookinfo.url('productpage-broken')}/api/v1/products/7/reviews")
    assert status == 503
    assert body == {"error": productpage.REVIEWS_UNAVAILABLE}
    assert bookinfo.fake_reviews_hits["/reviews/7"] == productpage.REVIEWS_TRIES


async def test_api_lists_products_and_their_details_and_ratings(bookinfo: Bookinfo) -> None:
    base = f"{bookinfo.url('productpage-main')}/api/v1/products"
    _, products = await get_json(base)
    assert [(p["id"], p["title"]) for p in products] == [(0, "The Comedy of Errors")]
    assert "descriptionHtml" in products[0]
    _, details = await get_json(f"{base}/0")
    assert details["ISBN-10"] == "1234567890"
    _, ratings = await get_json(f"{base}/0/ratings")
    assert ratings == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
    status, _ = await get_json(f"{base}/zero")
    assert status == 400


async def test_api_details_failure_keeps_the_error_message(bookinfo: Bookinfo) -> None:
    status, body = await get_json(f"{bookinfo.url('productpage-broken')}/api/v1/products/0")
    assert status == 500
    assert body == {"error": productpage.DETAILS_UNAVAILABLE}


async def test_index_static_and_health(bookinfo: Bookinfo) -> None:
    base = bookinfo.url("productpage-main")
    status, index = await get_text(f"{base}/")
    assert status == 200 and 'href="/productpage"' in index
    status, css = await get_text(f"{base}/static/bookinfo.css")
    assert status == 200 and "body" in css
    assert await get_text(f"{base}/health") == (200, "Product page is healthy")


# --- details, reviews, ratings directly ----------------------------------------------------


async def test_details_returns_the_book_record(bookinfo: Bookinfo) -> None:
    status, body = await get_json(f"{bookinfo.url('details')}/details/3")
    assert status == 200
    assert body == {
        "id": 3,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }
    status, _ = await get_json(f"{bookinfo.url('details')}/details/abc")
    assert status == 400


async def test_reviews_v1_has_no_rating(bookinfo: Bookinfo) -> None:
    _, body = await get_json(f"{bookinfo.url('reviews-v1')}/reviews/0")
    assert body["id"] == "0"
    assert body["podname"] == "reviews-v1-host"  # HOSTNAME, no TRELLIS_WORKLOAD_NAME
    assert body["clustername"] == "Kubernetes"
    assert [r["reviewer"] for r in body["reviews"]] == ["Reviewer1", "Reviewer2"]
    assert all("rating" not in r for r in body["reviews"])


@pytest.mark.parametrize(("name", "color"), [("reviews-v2", "black"), ("reviews-v3", "red")])
async def test_reviews_v2_and_v3_rate_in_their_colour(
    bookinfo: Bookinfo, name: str, color: str
) -> None:
    _, body = await get_json(f"{bookinfo.url(name)}/reviews/0")
    assert [r["rating"] for r in body["reviews"]] == [
        {"stars": 5, "color": color},
        {"stars": 4, "color": color},
    ]


async def test_reviews_names_its_workload_and_cluster(bookinfo: Bookinfo) -> None:
    _, v2 = await get_json(f"{bookinfo.url('reviews-v2')}/reviews/0")
    _, v3 = await get_json(f"{bookinfo.url('reviews-v3')}/reviews/0")
    assert v2["podname"] == "reviews-v2-main"
    assert (v3["podname"], v3["clustername"]) == ("reviews-v3", "east")


async def test_reviews_reports_ratings_unavailable_when_ratings_is_down(
    bookinfo: Bookinfo,
) -> None:
    _, body = await get_json(f"{bookinfo.url('reviews-v2-noratings')}/reviews/0")
    assert [r["rating"] for r in body["reviews"]] == [
        {"error": "Ratings service is currently unavailable"}
    ] * 2


async def test_ratings_serves_and_stores_ratings(bookinfo: Bookinfo) -> None:
    base = bookinfo.url("ratings")
    assert await get_json(f"{base}/ratings/5") == (
        200,
        {"id": 5, "ratings": {"Reviewer1": 5, "Reviewer2": 4}},
    )
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/ratings/9", json={"Reviewer1": 1}) as reply:
            assert reply.status == 200
        async with session.post(f"{base}/ratings/9", data=b"not json") as reply:
            assert reply.status == 400
    assert await get_json(f"{base}/ratings/9") == (200, {"id": 9, "ratings": {"Reviewer1": 1}})
    assert await get_json(f"{base}/health") == (200, {"status": "Ratings is healthy"})


async def test_every_request_is_logged_once(bookinfo: Bookinfo) -> None:
    request_id = marker()
    await get_text(f"{bookinfo.url('ratings')}/ratings/0", headers={"x-request-id": request_id})
    lines = [
        line
        for line in bookinfo.procs["ratings"].log.read_text().splitlines()
        if f"request_id={request_id}" in line
    ]
    assert len(lines) == 1
    assert "method=GET path=/ratings/0 status=200" in lines[0]
