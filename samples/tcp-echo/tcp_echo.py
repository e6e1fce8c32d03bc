"""tcp-echo: a plain TCP echo server whose replies name its version, for TCP routing tasks.

`python samples/tcp-echo/tcp_echo.py --port 9000 --prefix one` answers each line it reads with
`one <line>`, so a client can tell which version took its connection (the same contract as
Istio's tcp-echo sample, written anew). Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence

DEFAULT_PORT = 9000


async def echo_lines(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, prefix: bytes
) -> None:
    """Echo every line of one connection, prefixed, until the client closes it."""
    try:
        while line := await reader.readline():
            writer.write(prefix + b" " + line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(host: str, port: int, prefix: str) -> None:
    encoded = prefix.encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await echo_lines(reader, writer, encoded)

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()[1]  # the real port when asked for port 0
    print(f"event=listening service=tcp-echo address={host}:{bound} prefix={prefix}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tcp_echo.py", description="TCP echo service.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--prefix", default="one", help="word put before every echoed line")
    parser.add_argument(
        "--host",
        # Set by Trellis without capture (--capture=proxy): the app's own loopback address.
        default=os.environ.get("TRELLIS_APP_HOST") or "0.0.0.0",
        help="address to bind (default $TRELLIS_APP_HOST, else 0.0.0.0)",
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.prefix))


if __name__ == "__main__":
    main()
