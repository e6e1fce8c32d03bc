"""`trellis release-mirror serve`: the release mirror over HTTP, and the client side that
`trellis upgrade --mirror URL` uses.

The server serves only the files `index.json` lists (no directory walking), `GET /healthz`,
and `POST /render`: the release's own rendering of a profile with overlays and `--set`s, for
upgrades that carry an overlay (the static files cover the bare profiles). Plain HTTP on the
cluster network: the content is public release data, and a Service in the mesh's namespace
is its only address.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from trellis.errors import TrellisError, ValidationError
from trellis.kube.release_mirror import (
    INDEX,
    checked_release,
    load_manifests,
    render_request,
    render_response,
)
from trellis.kube.spec import InstallSpec

_TYPES = {".json": "application/json", ".yaml": "application/yaml", ".txt": "text/plain"}


def _served_files(root: Path) -> dict[str, Path]:
    """URL path -> file, for exactly the files the index names (and the index itself)."""
    try:
        index = json.loads((root / INDEX).read_text())
    except (OSError, ValueError) as err:
        raise TrellisError(
            f"{root} is not a release mirror (no readable {INDEX}: {err}); "
            "run `trellis release-mirror build --out DIR` first"
        ) from None
    names = [INDEX, index["images"]]
    for entry in index["profiles"].values():
        names += [entry["manifests"], entry["spec"]]
    if index.get("valuesSchema"):
        names.append(index["valuesSchema"])
    return {f"/{name}": root / name for name in names}


def mirror_app(root: Path) -> web.Application:
    files = _served_files(root)

    async def static(request: web.Request) -> web.StreamResponse:
        path = "/" + INDEX if request.path == "/" else request.path
        found = files.get(path)
        if found is None:
            raise web.HTTPNotFound(text=f"{request.path}: not part of this release mirror\n")
        return web.Response(text=found.read_text(), content_type=_TYPES[found.suffix])

    async def render(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            return web.json_response(render_response(body))
        except (ValueError, ValidationError) as err:
            return web.json_response({"error": str(err)}, status=422)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/render", render)
    app.router.add_get("/{tail:.*}", static)
    return app


async def fetch_release(
    url: str, profile: str | None, overlays: list[str], sets: list[str]
) -> tuple[InstallSpec, list[dict[str, Any]]]:
    """The spec and objects to install, from the mirror at `url`: the static rendering of a
    bare profile, or `POST /render` when there are overlays or sets."""
    base = url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            if overlays or sets:
                async with session.post(
                    f"{base}/render", json=render_request(profile, overlays, sets)
                ) as response:
                    data = await response.json(content_type=None)
                    if response.status == 422:
                        raise ValidationError(
                            f"the release mirror refused the overlay: {data['error']}"
                        )
                    response.raise_for_status()
                return checked_release(data["spec"], data["objects"], url)
            index = await _get_json(session, f"{base}/{INDEX}")
            entry = index["profiles"].get(profile or "default")
            if entry is None:
                known = ", ".join(sorted(index["profiles"]))
                raise ValidationError(
                    f"the release mirror has no profile {profile!r} (it has {known})"
                )
            spec_data = await _get_json(session, f"{base}/{entry['spec']}")
            async with session.get(f"{base}/{entry['manifests']}") as response:
                response.raise_for_status()
                objects = load_manifests(await response.text())
            return checked_release(spec_data, objects, url)
    except (aiohttp.ClientError, TimeoutError, KeyError, TypeError) as err:
        raise TrellisError(
            f"cannot read the release mirror at {url}: {err or type(err).__name__}"
        ) from None


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.json(content_type=None)
