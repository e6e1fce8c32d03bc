"""The sample YAML says what Istio's Bookinfo and httpbin samples say, in our own words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
NETWORKING = SAMPLES / "bookinfo" / "networking"
NETWORKING_VERSIONS = {f"networking.istio.io/{v}" for v in ("v1", "v1beta1", "v1alpha3")}
ALL_FILES = sorted([*NETWORKING.glob("*.yaml"), *SAMPLES.glob("*/*.yaml")])


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def only(path: Path, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in load(path) if d["kind"] == kind]
    return doc


def defined_subsets() -> dict[str, set[str]]:
    return {
        dr["spec"]["host"]: {s["name"] for s in dr["spec"]["subsets"]}
        for dr in load(NETWORKING / "destination-rule-all.yaml")
    }


def http_routes(vs: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [rule["route"] for rule in vs["spec"]["http"]]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_document_names_its_kind_and_version(path: Path) -> None:
    for doc in load(path):
        assert doc["metadata"]["name"]
        if doc["kind"] == "Service":
            assert doc["apiVersion"] == "v1"
        else:
            assert doc["apiVersion"] in NETWORKING_VERSIONS


def test_all_networking_api_versions_are_exercised() -> None:
    used = {doc["apiVersion"] for path in NETWORKING.glob("*.yaml") for doc in load(path)}
    assert used == NETWORKING_VERSIONS


VIRTUAL_SERVICE_FILES = sorted(NETWORKING.glob("virtual-service-*.yaml"))


@pytest.mark.parametrize("path", VIRTUAL_SERVICE_FILES, ids=lambda p: p.name)
def test_routes_use_defined_subsets_and_weights_sum_to_100(path: Path) -> None:
    subsets = defined_subsets()
    for vs in load(path):
        for route in http_routes(vs):
            for target in route:
                dest = target["destination"]
                assert dest["subset"] in subsets[dest["host"]], dest
            if len(route) > 1:
                assert sum(target["weight"] for target in route) == 100


def test_bookinfo_services_listen_on_9080_named_http() -> None:
    services = load(SAMPLES / "bookinfo" / "bookinfo.yaml")
    assert {s["metadata"]["name"] for s in services} == {
        "productpage",
        "details",
        "reviews",
        "ratings",
    }
    for service in services:
        assert service["kind"] == "Service"
        assert service["spec"]["selector"] == {"app": service["metadata"]["name"]}
        assert service["spec"]["ports"] == [{"name": "http", "port": 9080}]


def test_httpbin_service_is_port_8000_named_http() -> None:
    (service,) = load(SAMPLES / "httpbin" / "httpbin.yaml")
    assert service["spec"]["selector"] == {"app": "httpbin"}
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"]) == ("http", 8000)


def test_gateway_exposes_productpage_paths_only() -> None:
    path = NETWORKING / "bookinfo-gateway.yaml"
    gateway, vs = only(path, "Gateway"), only(path, "VirtualService")
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    (server,) = gateway["spec"]["servers"]
    assert (server["port"]["number"], server["port"]["protocol"]) == (8080, "HTTP")
    assert server["hosts"] == ["*"]
    assert vs["spec"]["gateways"] == [gateway["metadata"]["name"]]
    (rule,) = vs["spec"]["http"]
    matches = [next(iter(m["uri"].items())) for m in rule["match"]]
    assert matches == [
        ("exact", "/productpage"),
        ("prefix", "/static"),
        ("exact", "/login"),
        ("exact", "/logout"),
        ("prefix", "/api/v1/products"),
    ]
    (target,) = rule["route"]
    assert target["destination"] == {"host": "productpage", "port": {"number": 9080}}


def test_destination_rules_define_the_deployed_versions() -> None:
    assert defined_subsets() == {
        "productpage": {"v1"},
        "reviews": {"v1", "v2", "v3"},
        "ratings": {"v1"},
        "details": {"v1"},
    }


@pytest.mark.parametrize(
    ("name", "jason", "others"),
    [
        ("virtual-service-reviews-test-v2.yaml", "v2", "v1"),
        ("virtual-service-reviews-jason-v2-v3.yaml", "v2", "v3"),
    ],
)
def test_jason_routing(name: str, jason: str, others: str) -> None:
    (vs,) = load(NETWORKING / name)
    first, second = vs["spec"]["http"]
    assert first["match"] == [{"headers": {"end-user": {"exact": "jason"}}}]
    assert first["route"][0]["destination"]["subset"] == jason
    assert "match" not in second and second["route"][0]["destination"]["subset"] == others


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("virtual-service-reviews-50-v3.yaml", {"v1": 50, "v3": 50}),
        ("virtual-service-reviews-80-20.yaml", {"v1": 80, "v2": 20}),
        ("virtual-service-reviews-90-10.yaml", {"v1": 90, "v2": 10}),
        ("virtual-service-reviews-v2-v3.yaml", {"v2": 50, "v3": 50}),
        ("virtual-service-reviews-v3.yaml", {"v3": 100}),
    ],
)
def test_reviews_traffic_splits(name: str, split: dict[str, int]) -> None:
    (vs,) = load(NETWORKING / name)
    (route,) = http_routes(vs)
    assert {t["destination"]["subset"]: t.get("weight", 100) for t in route} == split


def test_all_v1_pins_every_service() -> None:
    pinned = {
        vs["spec"]["hosts"][0]: http_routes(vs)[0][0]["destination"]["subset"]
        for vs in load(NETWORKING / "virtual-service-all-v1.yaml")
    }
    assert pinned == dict.fromkeys(("productpage", "reviews", "ratings", "details"), "v1")


@pytest.mark.parametrize(
    ("name", "fault"),
    [
        (
            "virtual-service-ratings-test-delay.yaml",
            {"delay": {"percentage": {"value": 100.0}, "fixedDelay": "7s"}},
        ),
        (
            "virtual-service-ratings-test-abort.yaml",
            {"abort": {"percentage": {"value": 100.0}, "httpStatus": 500}},
        ),
    ],
)
def test_ratings_faults_hit_jason_only(name: str, fault: dict[str, Any]) -> None:
    (vs,) = load(NETWORKING / name)
    first, second = vs["spec"]["http"]
    assert first["match"] == [{"headers": {"end-user": {"exact": "jason"}}}]
    assert first["fault"] == fault
    assert "fault" not in second
    assert [t["destination"]["subset"] for t in first["route"] + second["route"]] == ["v1"] * 2
