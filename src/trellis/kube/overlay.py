"""Profile + overlay file + `--set k=v` -> one validated InstallSpec.

The merge happens on plain YAML data (what users write), then pydantic validates the result
once, so an error names the path the user wrote (`components.ingressGateways[0].k8s.replicas`).
Gateway lists merge by `name`, as istioctl merges IstioOperator gateway lists.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import pydantic
import yaml

from trellis.errors import ValidationError, ValidationErrors
from trellis.kube.spec import InstallSpec, Profile

_KIND = "IstioOperator"
_GATEWAY_LISTS = ("ingressGateways", "egressGateways")
_SEGMENT = re.compile(r"^(?P<key>[^\[\]]+)(?P<indexes>(\[\d+\])*)$")

INGRESS_PORTS = [
    {"name": "status-port", "port": 15021, "targetPort": 15021},
    {"name": "http2", "port": 80, "targetPort": 8080},
    {"name": "https", "port": 443, "targetPort": 8443},
]
EGRESS_PORTS = [
    {"name": "http2", "port": 80, "targetPort": 8080},
    {"name": "https", "port": 443, "targetPort": 8443},
]


def _ingress(enabled: bool) -> dict[str, Any]:
    service = {"type": "LoadBalancer", "ports": copy.deepcopy(INGRESS_PORTS)}
    return {"name": "istio-ingressgateway", "enabled": enabled, "k8s": {"service": service}}


def _egress(enabled: bool) -> dict[str, Any]:
    service = {"type": "ClusterIP", "ports": copy.deepcopy(EGRESS_PORTS)}
    return {"name": "istio-egressgateway", "enabled": enabled, "k8s": {"service": service}}


def profile_data(profile: Profile) -> dict[str, Any]:
    """The profile as overlay-shaped data: what each profile turns on (DESIGN §8)."""
    if profile is Profile.minimal:
        gateways = {"ingressGateways": [_ingress(False)], "egressGateways": [_egress(False)]}
    elif profile is Profile.default:
        gateways = {"ingressGateways": [_ingress(True)], "egressGateways": [_egress(False)]}
    else:
        gateways = {"ingressGateways": [_ingress(True)], "egressGateways": [_egress(True)]}
    data: dict[str, Any] = {"profile": profile.value, "components": gateways}
    if profile is Profile.demo:
        data["meshConfig"] = {
            "accessLogFile": "/dev/stdout",
            "defaultConfig": {"tracing": {"sampling": 100.0}},
        }
        data["values"] = {"console": {"enabled": True}, "tracing": {"enabled": True}}
    return data


def load_overlay(text: str) -> dict[str, Any]:
    """An overlay file: an IstioOperator document (its `spec`) or a bare spec mapping."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValidationError(f"not valid YAML: {err}", kind=_KIND) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError("an overlay must be a mapping", kind=_KIND)
    if "spec" in data or data.get("kind") == _KIND:
        spec = data.get("spec") or {}
        if not isinstance(spec, dict):
            raise ValidationError("must be a mapping", kind=_KIND, field="spec")
        return spec
    return data


def merge(base: dict[str, Any], overlay: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Deep merge; maps merge key by key, gateway lists by `name`, other lists are replaced."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        here = f"{path}.{key}" if path else key
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, here)
        elif key in _GATEWAY_LISTS and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_by_name(out[key], value, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_by_name(base: list[Any], overlay: list[Any], path: str) -> list[Any]:
    out = copy.deepcopy(base)
    for i, item in enumerate(overlay):
        if not isinstance(item, dict) or not item.get("name"):
            raise ValidationError("each gateway needs a `name`", kind=_KIND, field=f"{path}[{i}]")
        names = [existing.get("name") if isinstance(existing, dict) else None for existing in out]
        if item["name"] in names:
            at = names.index(item["name"])
            out[at] = merge(out[at], item, f"{path}[{at}]")
        else:
            out.append(copy.deepcopy(item))
    return out


def apply_set(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """One `--set a.b[0].c=value`; the value stays a string and pydantic converts it.

    Strings are kept on purpose: `tag=1.20` must stay "1.20", while "3" or "true" still
    become an int or a bool where the model's field has that type.
    """
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise ValidationError(f"--set {assignment!r}: write PATH=VALUE", kind=_KIND)
    out = copy.deepcopy(data)
    steps = _parse_path(key)
    node: Any = out
    for step, following in zip(steps, [*steps[1:], None], strict=True):
        node = _step_into(node, step, following, key)
    last = steps[-1]
    _assign(node, last, value, key)
    return out


def _parse_path(key: str) -> list[str | int]:
    steps: list[str | int] = []
    for segment in key.split("."):
        match = _SEGMENT.match(segment)
        if not match:
            raise ValidationError(f"--set path {key!r}: cannot read {segment!r}", kind=_KIND)
        steps.append(match["key"])
        steps += [int(i) for i in re.findall(r"\[(\d+)\]", match["indexes"])]
    return steps


def _step_into(node: Any, step: str | int, following: str | int | None, key: str) -> Any:
    if following is None:
        return node
    fresh: Any = [] if isinstance(following, int) else {}
    if isinstance(step, int):
        if not isinstance(node, list) or step > len(node):
            raise ValidationError(f"--set path {key!r}: no list item [{step}]", kind=_KIND)
        if step == len(node):
            node.append(fresh)
        return node[step]
    if not isinstance(node, dict):
        raise ValidationError(f"--set path {key!r}: {step!r} is inside a non-mapping", kind=_KIND)
    return node.setdefault(step, fresh)


def _assign(node: Any, last: str | int, value: str, key: str) -> None:
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise ValidationError(f"--set path {key!r}: no list item [{last}]", kind=_KIND)
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ValidationError(f"--set path {key!r}: {last!r} is inside a non-mapping", kind=_KIND)


def build_spec(
    *,
    profile: str | None = None,
    overlays: Sequence[str] = (),
    sets: Sequence[str] = (),
) -> InstallSpec:
    """Profile (flag, else `profile:` in an overlay or --set, else default), then the overlays,
    then each --set on the merged result (so `ingressGateways[0]` is the profile's gateway)."""
    user: dict[str, Any] = {}
    for text in overlays:
        user = merge(user, load_overlay(text))
    written = user.get("profile")
    for assignment in sets:
        key, _, value = assignment.partition("=")
        if key.strip() == "profile":
            written = value
    chosen = _choose_profile(profile, written)
    data = merge(profile_data(chosen), user)
    for assignment in sets:
        data = apply_set(data, assignment)
    data["profile"] = chosen.value
    return validate_spec(data)


def _choose_profile(flag: str | None, written: object) -> Profile:
    if flag and written and flag != written:
        raise ValidationError(
            f"--profile {flag} conflicts with profile {written!r} in the overlay or --set",
            kind=_KIND,
            field="profile",
        )
    name = str(flag or written or Profile.default.value)
    try:
        return Profile(name)
    except ValueError:
        choices = ", ".join(p.value for p in Profile)
        raise ValidationError(
            f"unknown profile {name!r}; choose one of {choices}", kind=_KIND, field="profile"
        ) from None


def validate_spec(data: dict[str, Any]) -> InstallSpec:
    """Validate merged data; every problem is reported with its path."""
    try:
        return InstallSpec.model_validate(data)
    except pydantic.ValidationError as err:
        problems = [
            ValidationError(_reason(e), kind=_KIND, field=_field_path(e["loc"]))
            for e in err.errors()
        ]
        raise ValidationErrors(problems) from None


def _field_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (check the spelling; see docs/kubernetes.md for the keys)"
    return str(error["msg"])
