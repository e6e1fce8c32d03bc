"""The release mirror's content: this release's rendered manifests for every profile, the
spec each was rendered from, the chart's values schema and the list of images, in a
directory that `trellis release-mirror serve` serves from inside the cluster.

Air-gapped clusters cannot reach a registry of manifests outside; the mirror runs the
release's own image, so everything an upgrade needs is rendered by the release itself and
fetched over the cluster network (`trellis upgrade --mirror URL`). Building is pure
rendering (`manifests.render_objects`); nothing is downloaded.

Layout of the directory (and of the URLs the server serves, same paths):
  index.json               {"release", "profiles": {P: {"manifests", "spec"}}, "images",
                            "valuesSchema" (null when no chart was given)}
  manifests/P.yaml         what `trellis manifest generate --profile P` prints
  specs/P.json             the InstallSpec of P (the install record stores it)
  images.txt               every image any profile or the injected sidecar uses, one a line
  values.schema.json       the Helm chart's values schema
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trellis import __version__
from trellis.errors import TrellisError, ValidationError
from trellis.kube.cluster import RESOURCES
from trellis.kube.manifests import render_objects, to_yaml
from trellis.kube.objects import MANAGED_BY
from trellis.kube.overlay import build_spec, validate_spec
from trellis.kube.spec import InstallSpec, Profile

INDEX = "index.json"
IMAGES = "images.txt"
VALUES_SCHEMA = "values.schema.json"


@dataclass(frozen=True, slots=True)
class MirrorBuild:
    """What `build` wrote: the files (relative paths) and the images listed."""

    files: tuple[str, ...]
    images: tuple[str, ...]


def build(
    out: Path,
    *,
    overlays: list[str] | None = None,
    sets: list[str] | None = None,
    chart_schema: Path | None = None,
) -> MirrorBuild:
    """Render every profile (with `overlays`/`sets` on top, e.g. the chart's hub and tag)
    into `out`; the images list covers all of them."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    profiles: dict[str, dict[str, str]] = {}
    images: set[str] = set()
    for profile in Profile:
        spec = build_spec(profile=profile.value, overlays=overlays or [], sets=sets or [])
        objects = render_objects(spec)
        images |= set(_images(objects)) | {spec.image(spec.values.global_.proxy.image)}
        manifests, spec_file = f"manifests/{profile.value}.yaml", f"specs/{profile.value}.json"
        _write(out / manifests, to_yaml(objects))
        _write(out / spec_file, json.dumps(spec_json(spec), indent=1, sort_keys=True) + "\n")
        profiles[profile.value] = {"manifests": manifests, "spec": spec_file}
        files += [manifests, spec_file]
    _write(out / IMAGES, "".join(f"{image}\n" for image in sorted(images)))
    files.append(IMAGES)
    schema = None
    if chart_schema is not None:
        shutil.copyfile(chart_schema, out / VALUES_SCHEMA)
        schema = VALUES_SCHEMA
        files.append(VALUES_SCHEMA)
    index = {"release": __version__, "profiles": profiles, "images": IMAGES, "valuesSchema": schema}
    _write(out / INDEX, json.dumps(index, indent=1, sort_keys=True) + "\n")
    files.append(INDEX)
    return MirrorBuild(tuple(files), tuple(sorted(images)))


def spec_json(spec: InstallSpec) -> dict[str, Any]:
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True)
    return data


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _images(objects: list[dict[str, Any]]) -> Iterator[str]:
    for obj in objects:
        pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
            if container.get("image"):
                yield str(container["image"])


def render_request(profile: str | None, overlays: list[str], sets: list[str]) -> dict[str, Any]:
    """The body of `POST /render` (overlays as YAML text)."""
    return {"profile": profile, "overlays": overlays, "sets": sets}


def render_response(body: Any) -> dict[str, Any]:
    """Answer a `POST /render` body with this release's code: {"spec", "objects"}; raises
    ValidationError naming what is wrong with the request or the overlay."""
    if not isinstance(body, dict) or set(body) - {"profile", "overlays", "sets"}:
        raise ValidationError('the body must be {"profile", "overlays", "sets"}')
    overlays, sets = body.get("overlays") or [], body.get("sets") or []
    if not all(isinstance(x, str) for x in [*overlays, *sets]):
        raise ValidationError("overlays and sets must be lists of strings")
    profile = body.get("profile")
    spec = build_spec(profile=str(profile) if profile else None, overlays=overlays, sets=sets)
    return {"spec": spec_json(spec), "objects": render_objects(spec)}


def checked_release(
    spec_data: Any, objects: Any, url: str
) -> tuple[InstallSpec, list[dict[str, Any]]]:
    """The spec and objects a mirror sent, refused unless every object is one the installer
    handles, carries Trellis's labels and sits in the spec's namespace (or is cluster-wide)."""
    spec = validate_spec(spec_data)
    if not isinstance(objects, list) or not objects:
        raise TrellisError(f"the release mirror {url} sent no objects")
    for obj in objects:
        problem = _object_problem(obj, spec.namespace)
        if problem:
            raise TrellisError(
                f"the release mirror {url} sent an object the installer refuses: {problem}"
            )
    return spec, objects


def _object_problem(obj: Any, namespace: str) -> str | None:
    if not isinstance(obj, dict):
        return "not an object"
    meta = obj.get("metadata") or {}
    name = f"{obj.get('kind')} {meta.get('name')}"
    plural_scope = RESOURCES.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
    if plural_scope is None:
        return f"{obj.get('apiVersion')} {obj.get('kind')} is not a kind Trellis installs"
    labels = meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in MANAGED_BY.items()):
        return f"{name} lacks the app.kubernetes.io/managed-by: trellis labels"
    if plural_scope[1] and meta.get("namespace") != namespace:
        return f"{name} is in namespace {meta.get('namespace')!r}, not {namespace!r}"
    return None


def load_manifests(text: str) -> list[dict[str, Any]]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as err:
        raise TrellisError(f"the release mirror's manifests are not valid YAML: {err}") from None
