"""The `istio-init` container's program: set up traffic capture in the pod, then exit.

Runs once as root with NET_ADMIN/NET_RAW so the long-running sidecar never needs them
(`python3 -m trellis.kube.capture_init`). The rules are the agent's own (agent/capture.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trellis.agent.capture import CaptureOptions, setup_capture
from trellis.errors import TrellisError


def parse_options(argv: Sequence[str]) -> CaptureOptions:
    parser = argparse.ArgumentParser(prog="istio-init", description=__doc__)
    parser.add_argument("--proxy-uid", type=int, default=1337)
    parser.add_argument("--exclude-inbound-ports", default="", help="N,N,...")
    parser.add_argument("--exclude-outbound-cidrs", default="", help="CIDR,CIDR,...")
    args = parser.parse_args(argv)
    try:
        ports = tuple(int(p) for p in args.exclude_inbound_ports.split(",") if p.strip())
    except ValueError:
        parser.error(f"--exclude-inbound-ports wants N,N,..., got {args.exclude_inbound_ports!r}")
    cidrs = tuple(c.strip() for c in args.exclude_outbound_cidrs.split(",") if c.strip())
    return CaptureOptions(
        proxy_uid=args.proxy_uid,
        proxy_gid=args.proxy_uid,
        exclude_inbound_ports=ports,
        exclude_outbound_cidrs=cidrs,
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    try:
        setup_capture(options)
    except TrellisError as err:
        print(f"istio-init: {err}", file=sys.stderr)
        sys.exit(1)
    print("istio-init: traffic capture set up", file=sys.stderr)


if __name__ == "__main__":
    main()
