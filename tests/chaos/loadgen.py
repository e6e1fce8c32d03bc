"""Steady load from inside a workload: one request after another until a stop file appears.

Run by the chaos tests through `trellis exec CLIENT -- python loadgen.py ...` so every request
leaves through the client's sidecar. A fresh connection per request: a failure is the mesh's,
never a stale keep-alive connection's. Counts go to `--out` (JSON, replaced atomically) every
few requests and at exit, so the test can poll progress while the load runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import urllib.parse
from collections import Counter
from pathlib import Path

FLUSH_EVERY = 10


def one_request(url: urllib.parse.SplitResult, timeout: float) -> tuple[int, str]:
    """(status, body), or (0, error class name) when no HTTP response came back."""
    conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=timeout)
    try:
        conn.request("GET", url.path or "/")
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as err:
        return 0, type(err).__name__
    finally:
        conn.close()


def instance_of(body: str) -> str:
    """httpbin's /hostname answers which instance served the request."""
    try:
        return str(json.loads(body)["hostname"])
    except (ValueError, KeyError, TypeError):
        return "?"


def flush(out: Path, counts: dict[str, Counter[str]]) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({k: dict(v) for k, v in counts.items()}))
    os.replace(tmp, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stop-file", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    counts: dict[str, Counter[str]] = {
        "status": Counter(),
        "instance": Counter(),
        "error": Counter(),
    }
    sent = 0
    while not args.stop_file.exists():
        status, body = one_request(url, args.timeout)
        counts["status"][str(status)] += 1
        if status == 200:
            counts["instance"][instance_of(body)] += 1
        else:
            counts["error"][f"{status} {body[:80]}"] += 1
        sent += 1
        if sent % FLUSH_EVERY == 0:
            flush(args.out, counts)
    flush(args.out, counts)


if __name__ == "__main__":
    main()
