"""Command line of the Bookinfo services: which service, which version, where to listen.

Environment variables follow Istio's sample and Kubernetes (see `settings_from`); the
command line wins over the environment.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from . import details, productpage, ratings, reviews
from .common import DEFAULT_PORT, ServiceSettings, Upstreams, serve

APP_BUILDERS: Mapping[str, Callable[[ServiceSettings], web.Application]] = {
    "productpage": productpage.build_app,
    "details": details.build_app,
    "reviews": reviews.build_app,
    "ratings": ratings.build_app,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bookinfo.py", description="Run one Bookinfo service (Istio-compatible behaviour)."
    )
    parser.add_argument("service", choices=sorted(APP_BUILDERS))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--host",
        # Set by Trellis without capture (--capture=proxy): the app's own loopback address.
        default=os.environ.get("TRELLIS_APP_HOST") or "0.0.0.0",
        help="address to bind (default $TRELLIS_APP_HOST, else 0.0.0.0)",
    )
    parser.add_argument("--version", help="service version (default $SERVICE_VERSION or v1)")
    return parser.parse_args(argv)


def settings_from(service: str, version: str | None, env: Mapping[str, str]) -> ServiceSettings:
    """Settings from the command line and the environment.

    SERVICE_VERSION, TRELLIS_WORKLOAD_NAME / HOSTNAME (podname), CLUSTER_NAME, the upstream
    <NAME>_HOSTNAME / <NAME>_SERVICE_PORT / SERVICES_DOMAIN, and for reviews ENABLE_RATINGS
    and STAR_COLOR, which override what the version implies, as in Istio's reviews image.
    """
    version = version or env.get("SERVICE_VERSION") or "v1"
    workload = env.get("TRELLIS_WORKLOAD_NAME") or env.get("HOSTNAME") or f"{service}-{version}"
    return ServiceSettings(
        service=service,
        version=version,
        workload=workload,
        cluster=env.get("CLUSTER_NAME") or "Kubernetes",
        upstreams=Upstreams.from_env(env),
        star_color=star_color_for(version, env) if service == "reviews" else None,
    )


def star_color_for(version: str, env: Mapping[str, str]) -> str | None:
    """v1 shows no stars, v2 black, v3 red; ENABLE_RATINGS/STAR_COLOR can say otherwise."""
    color = reviews.STAR_COLOR_BY_VERSION.get(version)
    enabled = env.get("ENABLE_RATINGS")
    if enabled is not None:
        color = (color or "black") if enabled.lower() == "true" else None
    if color is not None and env.get("STAR_COLOR"):
        color = env["STAR_COLOR"]
    return color


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    settings = settings_from(args.service, args.version, os.environ)
    serve(APP_BUILDERS[args.service](settings), settings, host=args.host, port=args.port)
