"""The upstream of every data-plane row: a tiny HTTP/1.1 keep-alive server with 1 KiB bodies.

One process, asyncio protocol level (no framework), so it costs the same in every row and the
ratios show the proxies' overhead. Run: python bench/dp_upstream.py --port 9080 [--host H].
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence

BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % len(BODY)
) + BODY
_END = b"\r\n\r\n"


class Upstream(asyncio.Protocol):
    """Answers every request on a connection in order; bodies (content-length) are skipped."""

    def __init__(self) -> None:
        self._buffer = b""
        self._skip = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        replies = 0
        while True:
            if self._skip:
                taken = min(self._skip, len(self._buffer))
                self._buffer, self._skip = self._buffer[taken:], self._skip - taken
                if self._skip:
                    break
            end = self._buffer.find(_END)
            if end < 0:
                break
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            self._skip = _content_length(head)
            replies += 1
        if replies and self._transport is not None:
            self._transport.write(RESPONSE * replies)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip() or 0)
    return 0


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=9080)
    args = p.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
