"""httpbin answers like the go-httpbin image Istio's tasks run (in-process, loopback only)."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from samples.httpbin import httpbin  # noqa: E402

# Loopback only: never route test requests through a proxy from the environment.
NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
HTTPBIN = REPO_ROOT / "samples" / "httpbin" / "httpbin.py"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = httpbin.build_app(rng=random.Random(7))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def test_get_echoes_args_headers_origin_and_url(client: Client) -> None:
    reply = await client.get("/get?a=1&a=2&b=x", headers={"x-b3-traceid": "abc"})
    body = await reply.json()
    assert reply.status == 200
    assert body["args"] == {"a": ["1", "2"], "b": ["x"]}
    assert body["headers"]["X-B3-Traceid"] == ["abc"]
    assert body["origin"] == "127.0.0.1"
    assert body["url"] == f"http://127.0.0.1:{client.port}/get?a=1&a=2&b=x"


async def test_headers_come_back_under_canonical_names(client: Client) -> None:
    reply = await client.get(
        "/headers", headers={"end-user": "jason", "X-FORWARDED-CLIENT-CERT": "By=spiffe://x"}
    )
    headers = (await reply.json())["headers"]
    assert headers["End-User"] == ["jason"]
    assert headers["X-Forwarded-Client-Cert"] == ["By=spiffe://x"]
    assert headers["Host"] == [f"127.0.0.1:{client.port}"]


async def test_origin_is_the_first_forwarded_for_hop(client: Client) -> None:
    reply = await client.get("/ip", headers={"X-Forwarded-For": "198.18.0.9, 198.18.0.1"})
    assert await reply.json() == {"origin": "198.18.0.9"}
    reply = await client.get("/ip")
    assert await reply.json() == {"origin": "127.0.0.1"}


@pytest.mark.parametrize("code", [200, 201, 404, 418, 500, 503])
async def test_status_answers_with_the_code(client: Client, code: int) -> None:
    reply = await client.get(f"/status/{code}", allow_redirects=False)
    assert reply.status == code


async def test_status_redirect_has_a_location(client: Client) -> None:
    reply = await client.get("/status/302", allow_redirects=False)
    assert reply.status == 302 and reply.headers["Location"]


async def test_status_picks_among_several_codes(client: Client) -> None:
    seen = {(await client.get("/status/200,503")).status for _ in range(30)}
    assert seen == {200, 503}
    weighted = {(await client.get("/status/200:0,503:1")).status for _ in range(5)}
    assert weighted == {503}


@pytest.mark.parametrize("spec", ["abc", "99", "700", "200:0"])
async def test_status_rejects_what_is_not_a_code(client: Client, spec: str) -> None:
    assert (await client.get(f"/status/{spec}")).status == 400


async def test_delay_answers_like_anything(client: Client) -> None:
    reply = await client.get("/delay/0.05?x=1")
    body = await reply.json()
    assert reply.status == 200
    assert body["args"] == {"x": ["1"]} and body["method"] == "GET"
    assert (await client.get("/delay/-1")).status == 400
    assert (await client.get("/delay/soon")).status == 400


def test_delay_is_capped_at_ten_seconds() -> None:
    assert httpbin.delay_seconds("100") == 10.0
    assert httpbin.delay_seconds("2.5") == 2.5
    with pytest.raises(ValueError):
        httpbin.delay_seconds("nan")


async def test_anything_echoes_method_args_body_and_headers(
    client: Client,
) -> None:
    reply = await client.put("/anything/some/path?q=1", json={"k": [1, 2]})
    body = await reply.json()
    assert body["method"] == "PUT"
    assert body["args"] == {"q": ["1"]}
    assert body["json"] == {"k": [1, 2]}
    assert json.loads(body["data"]) == {"k": [1, 2]}
    assert body["headers"]["Content-Type"] == ["application/json"]
    assert body["url"].endswith("/anything/some/path?q=1")
    reply = await client.post("/anything", data={"field": "v"})
    assert (await reply.json())["form"] == {"field": ["v"]}


async def test_index_lists_the_endpoints(client: Client) -> None:
    reply = await client.get("/")
    assert reply.status == 200 and "/status/{codes}" in await reply.text()


def test_canonical_header_names() -> None:
    assert httpbin.canonical_header_name("x-b3-traceid") == "X-B3-Traceid"
    assert httpbin.canonical_header_name("CONTENT-type") == "Content-Type"


def test_command_line_serves_on_the_given_port_and_logs_requests(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "httpbin.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(HTTPBIN), "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with NO_PROXY_OPENER.open(f"http://127.0.0.1:{port}/status/204") as reply:
                    assert reply.status == 204
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "event=listening service=httpbin" in log.read_text()
    assert 'path="/status/204" status=204' in log.read_text()
