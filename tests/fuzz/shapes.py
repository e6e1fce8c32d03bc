"""Hypothesis strategies for documents shaped like Trellis's resources, with wrong parts.

Built from each pydantic model's JSON schema (`model_json_schema()`): objects get a random
subset of their properties, arrays a few items, enums their values, and at every node there
is a small chance of something of the wrong type or an unknown key instead. That reaches
deep fields (a retry's perTryTimeout, a JWT rule's fromHeaders) that text fuzzing never
gets to, with values near enough to valid that many documents pass the schema and go on to
semantic validation and the store. (hypothesis-jsonschema would do the shaping, but its
0.23 release fails on this hypothesis version's object strategies.)
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from trellis.api.base import Resource
from trellis.api.kinds import api_versions

Schema = dict[str, Any]
Strategy = st.SearchStrategy[Any]

# Strings that mean something somewhere in Istio's APIs, so shaped documents often pass.
_MEANINGFUL = (
    "reviews", "reviews.default.svc.cluster.local", "*", "*.example.com", "api.example.com",
    "v1", "v2", "default", "default/*", "./*", "istio-system/*", "mesh", "http", "HTTP",
    "HTTPS", "TCP", "GRPC", "GET", "/api", "/", "10s", "1.5s", "0s", "100ms", "5xx",
    "198.18.0.1", "198.18.0.0/16", "::1", "unix:///tmp/x.sock", "x-user", "cluster.local/ns/default/sa/x",
    "https://example.com/jwks", "request.headers['x']", "response.code >= 400", "", " ",
    "prometheus", "envoy", "a" * 300,
)  # fmt: skip
_MEANINGFUL_INTS = (0, 1, 80, 443, 8080, 9080, 65535, 65536, -1, 2**31, 2**32, 2**64, 10**30)

# Anything JSON/YAML can hold, for the "wrong type here" branch.
_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JUNK: Strategy = st.recursive(
    _LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def resource_documents(cls: type[Resource], *, wrongness: int = 40) -> Strategy:
    """Documents for `cls` (kind, apiVersion, metadata, spec) with roughly one node in
    `wrongness` replaced by junk or given an unknown key."""
    schema = cls.model_json_schema(by_alias=True)
    shaper = _Shaper(schema.get("$defs", {}), wrongness)
    spec_schema = schema["properties"].get("spec", {"type": "object"})
    return st.fixed_dictionaries(
        {
            "apiVersion": shaper.maybe_wrong(st.sampled_from(api_versions(cls))),
            "kind": st.just(cls.KIND),
            "metadata": _metadata(shaper),
            "spec": shaper.shape(spec_schema, depth=0),
        }
    )


def _metadata(shaper: _Shaper) -> Strategy:
    names = st.sampled_from(["reviews", "a", "b.c", "x-1"]) | st.from_regex(
        r"\A[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?\Z"
    )
    labels = st.dictionaries(st.sampled_from(["app", "version", "x"]), st.sampled_from(_MEANINGFUL))
    return st.fixed_dictionaries(
        {"name": shaper.maybe_wrong(names)},
        optional={
            "namespace": st.sampled_from(["default", "istio-system", "prod"]),
            "labels": shaper.maybe_wrong(labels),
            "annotations": shaper.maybe_wrong(labels),
        },
    )


class _Shaper:
    """Turns one JSON schema node into a strategy; `defs` resolves `$ref`s."""

    def __init__(self, defs: dict[str, Schema], wrongness: int) -> None:
        self.defs = defs
        self.wrongness = wrongness

    def maybe_wrong(self, right: Strategy) -> Strategy:
        """`right`, except about one time in `wrongness`, when it is junk."""
        return st.integers(0, self.wrongness - 1).flatmap(lambda n: JUNK if n == 0 else right)

    def shape(self, schema: Schema, depth: int) -> Strategy:
        return self.maybe_wrong(self._right(schema, depth))

    def _right(self, schema: Schema, depth: int) -> Strategy:
        if "$ref" in schema:
            return self._right(self.defs[schema["$ref"].rsplit("/", 1)[-1]], depth)
        if "anyOf" in schema:
            return st.one_of([self._right(s, depth) for s in schema["anyOf"]])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "const" in schema:
            return st.just(schema["const"])
        kind = schema.get("type")
        if isinstance(kind, list):
            return st.one_of([self._right({**schema, "type": k}, depth) for k in kind])
        return self._typed(kind, schema, depth)

    def _typed(self, kind: str | None, schema: Schema, depth: int) -> Strategy:
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            if depth > 6:
                return st.just([])
            items = self.shape(schema.get("items", {}), depth + 1)
            return st.lists(items, max_size=3)
        if kind == "string":
            return _mostly(st.sampled_from(_MEANINGFUL), st.text(max_size=20))
        if kind == "integer":
            return _mostly(st.sampled_from(_MEANINGFUL_INTS), st.integers())
        if kind == "number":
            return st.sampled_from([0.0, 0.5, 50.0, 100.0, 100.5, -1.0]) | st.floats()
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        return JUNK  # no type: anything goes

    def _object(self, schema: Schema, depth: int) -> Strategy:
        if depth > 6:
            return st.just({})
        properties: dict[str, Schema] = schema.get("properties", {})
        required = set(schema.get("required", ()))
        optional = {
            key: self.shape(sub, depth + 1)
            for key, sub in properties.items()
            if key not in required
        }
        # Unknown keys are how typos look; maps (labels, headers) take any string key.
        extra = schema.get("additionalProperties", not properties)
        if extra is not False:
            values = self.shape(extra if isinstance(extra, dict) else {}, depth + 1)
            optional[""] = st.dictionaries(st.sampled_from(_MEANINGFUL[:12]), values, max_size=2)
        shaped = st.fixed_dictionaries(
            {key: self.shape(properties[key], depth + 1) for key in sorted(required)},
            optional=optional,
        ).map(_merge_map_entries)
        return shaped if extra is not False else self._maybe_typo(shaped)

    def _maybe_typo(self, shaped: Strategy) -> Strategy:
        """About one object in `wrongness` also gets a field the schema does not know."""
        return st.tuples(shaped, st.integers(0, self.wrongness - 1), JUNK).map(
            lambda t: {**t[0], "typoField": t[2]} if t[1] == 0 else t[0]
        )


def _mostly(usual: Strategy, rare: Strategy) -> Strategy:
    """`usual` three times in four: random text rarely makes a valid host or duration."""
    return st.integers(0, 3).flatmap(lambda n: rare if n == 0 else usual)


def _merge_map_entries(obj: dict[str, Any]) -> dict[str, Any]:
    """A map's generated entries sit under the "" key (fixed_dictionaries needs fixed keys)."""
    entries = obj.pop("", None)
    return {**entries, **obj} if isinstance(entries, dict) else obj
