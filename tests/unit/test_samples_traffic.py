"""The sample options the traffic tasks rely on: failing httpbin instances, /hostname, tcp-echo."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from samples.httpbin import httpbin  # noqa: E402

Client = TestClient[web.Request, web.Application]
TCP_ECHO = REPO_ROOT / "samples" / "tcp-echo" / "tcp_echo.py"


@pytest.fixture
async def flaky() -> AsyncIterator[Client]:
    app = httpbin.build_app(failures=httpbin.Failures(every=2, status=503))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def test_fail_every_second_request_alternates(flaky: Client) -> None:
    codes = [(await flaky.get("/get")).status for _ in range(6)]
    assert codes == [200, 503] * 3


def test_fail_every_one_fails_everything() -> None:
    always = httpbin.Failures(every=1, status=500)
    assert [always.next_fails() for _ in range(3)] == [True] * 3
    assert not any(httpbin.Failures().next_fails() for _ in range(3))


async def test_hostname_names_the_workload(flaky: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRELLIS_WORKLOAD_NAME", "httpbin-v2")
    assert await (await flaky.get("/hostname")).json() == {"hostname": "httpbin-v2"}


async def test_tcp_echo_prefixes_each_line_with_its_version() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(TCP_ECHO),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--prefix",
        "two",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        announced = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        port = int(announced.split("address=127.0.0.1:")[1].split()[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\nagain\n")
        assert await reader.readline() == b"two hello\n"
        assert await reader.readline() == b"two again\n"
        writer.close()
    finally:
        proc.terminate()
        await proc.wait()
