"""`trellis analyze`'s analyzers: each code reported when it applies, and quiet when it does not."""

from __future__ import annotations

import pytest

from trellis.analyze import Level, Message, analyze
from trellis.analyze.messages import ALL_TYPES
from trellis.analyze.resources import port_name_follows_convention
from trellis.api.kinds import parse_documents
from trellis.model.registry import Protocol, Service, ServicePort

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports: [{name: http2, port: 80, targetPort: 8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["bookinfo.example.com"]
"""


def vs(body: str, name: str = "reviews", extra_meta: str = "") -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}{extra_meta}}}\nspec:\n{body}"
    )


def run(*docs: str, services: tuple[Service, ...] = ()) -> list[Message]:
    return analyze(parse_documents("\n---\n".join(docs)), services)


def codes(messages: list[Message]) -> list[str]:
    return [m.code for m in messages]


ROUTE_V1 = "  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n"


def test_a_healthy_config_has_no_messages() -> None:
    assert run(SERVICES, vs(ROUTE_V1)) == []


# --- IST0101 ------------------------------------------------------------------------------


def test_missing_subset_is_ist0101_naming_the_field_and_the_rule() -> None:
    [msg] = run(SERVICES, vs(ROUTE_V1.replace("subset: v1", "subset: v9")))
    assert msg.code == "IST0101" and msg.level is Level.ERROR
    assert msg.origin.friendly_name == "VirtualService reviews.default"
    assert msg.field == "spec.http[0].route[0].destination.subset"
    assert "'v9'" in msg.text and "DestinationRule default/reviews has subsets v1, v2" in msg.text


def test_subset_without_any_destination_rule_is_ist0101() -> None:
    docs = SERVICES.split("---")[0]
    assert codes(run(docs, vs(ROUTE_V1))) == ["IST0101"]


def test_unknown_destination_host_is_ist0101_but_registry_services_count() -> None:
    text = vs("  hosts: [reviews]\n  http:\n  - route: [{destination: {host: ratings}}]\n")
    [msg] = run(SERVICES, text)
    assert msg.code == "IST0101" and "ratings.default.svc.cluster.local" in msg.text
    ratings = Service(
        "ratings", "default", "240.240.0.9", (ServicePort("http", 9080, 9080, Protocol.HTTP),)
    )
    assert run(SERVICES, text, services=(ratings,)) == []


def test_service_entry_hosts_are_known_hosts() -> None:
    se = (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\n"
        "spec:\n  hosts: ['*.example.com']\n  ports: [{number: 443, name: tls, protocol: TLS}]\n"
        "  resolution: NONE\n"
    )
    text = vs(
        "  hosts: [api.example.com]\n  tcp:\n  - route: [{destination: {host: api.example.com}}]\n"
    )
    assert run(se, text) == []


def test_missing_gateway_and_missing_delegate_are_ist0101() -> None:
    text = vs(
        "  hosts: [reviews]\n  gateways: [mesh, nowhere]\n  http:\n"
        "  - delegate: {name: gone, namespace: team}\n"
    )
    messages = run(SERVICES, text)
    assert codes(messages) == ["IST0101", "IST0101"]
    assert any('"default/nowhere"' in m.text for m in messages)
    assert any('"team/gone"' in m.text for m in messages)


def test_destination_rule_for_an_unknown_host_is_ist0174() -> None:
    dr = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: x}\n"
        "spec:\n  host: nosuch\n"
    )
    [msg] = run(SERVICES, dr)
    assert (msg.code, msg.level) == ("IST0174", Level.WARNING)


# --- IST0106 / IST0108 / IST0118 ----------------------------------------------------------


def test_stored_config_that_fails_todays_validation_is_ist0106() -> None:
    text = vs(
        "  hosts: [reviews]\n  http:\n  - match: [{uri: {regex: '(?=lookahead)'}}]\n"
        "    route: [{destination: {host: reviews}}]\n"
    )
    [msg] = run(SERVICES, text)
    assert msg.code == "IST0106" and msg.field == "spec.http[0].match[0].uri.regex"
    assert "RE2" in msg.text


def test_unknown_istio_annotation_is_ist0108_others_are_ignored() -> None:
    known = ", annotations: {sidecar.istio.io/inject: 'false', example.com/x: y}"
    assert run(SERVICES, vs(ROUTE_V1, extra_meta=known)) == []
    typo = ", annotations: {sidecar.istio.io/injekt: 'false'}"
    [msg] = run(SERVICES, vs(ROUTE_V1, extra_meta=typo))
    assert (msg.code, msg.level) == ("IST0108", Level.WARNING)
    assert "sidecar.istio.io/injekt" in msg.text


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("http", True),
        ("http-web", True),
        ("grpc-web", True),
        ("tcp-db", True),
        ("web", False),
        ("httpx", False),
        ("", False),
    ],
)
def test_port_naming_convention(name: str, ok: bool) -> None:
    assert port_name_follows_convention(name) is ok


def test_port_name_without_protocol_is_ist0118_unless_app_protocol_is_set() -> None:
    svc = SERVICES.replace("ports: [{name: http, port: 9080}]", "ports: [{name: web, port: 9080}]")
    [msg] = run(svc)
    assert (msg.code, msg.level, msg.field) == ("IST0118", Level.INFO, "spec.ports[0].name")
    with_app = svc.replace("{name: web, port: 9080}", "{name: web, port: 9080, appProtocol: http}")
    assert run(with_app) == []


# --- IST0109 ------------------------------------------------------------------------------


def test_two_mesh_virtual_services_for_one_host_are_ist0109_naming_the_oldest() -> None:
    older = vs(ROUTE_V1, name="zz-old", extra_meta=", creationTimestamp: '2024-01-01T00:00:00Z'")
    newer = vs(ROUTE_V1, name="aa-new", extra_meta=", creationTimestamp: '2025-01-01T00:00:00Z'")
    messages = run(SERVICES, newer, older)
    assert codes(messages) == ["IST0109", "IST0109"]
    assert all("only the oldest, default/zz-old" in m.text for m in messages)


def test_gateway_only_virtual_services_may_share_a_host() -> None:
    bound = "  gateways: [bookinfo-gateway]\n" + ROUTE_V1.replace(
        "reviews]", "bookinfo.example.com]", 1
    )
    messages = run(SERVICES, GATEWAY, vs(bound, name="a"), vs(bound, name="b"))
    assert "IST0109" not in codes(messages)


def test_virtual_services_exported_to_different_namespaces_do_not_conflict() -> None:
    a = vs(ROUTE_V1 + "  exportTo: [team-a]\n", name="a")
    b = vs(ROUTE_V1 + "  exportTo: [team-b]\n", name="b")
    assert run(SERVICES, a, b) == []


# --- IST0130 / IST0131 --------------------------------------------------------------------


def test_rule_after_a_catch_all_is_ist0130() -> None:
    text = vs(
        "  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v1}}]\n"
        "  - match: [{uri: {prefix: /x}}]\n    route: [{destination: {host: reviews}}]\n"
    )
    [msg] = run(SERVICES, text)
    assert (msg.code, msg.level, msg.field) == ("IST0130", Level.WARNING, "spec.http[1]")


def test_prefix_slash_is_a_catch_all_but_a_last_catch_all_is_fine() -> None:
    text = vs(
        "  hosts: [reviews]\n  http:\n  - match: [{uri: {prefix: /}}]\n"
        "    route: [{destination: {host: reviews}}]\n"
        "  - route: [{destination: {host: reviews, subset: v1}}]\n"
    )
    assert codes(run(SERVICES, text)) == ["IST0130"]
    assert run(SERVICES, vs(ROUTE_V1)) == []


def test_duplicate_match_in_a_later_rule_is_ist0131() -> None:
    text = vs(
        "  hosts: [reviews]\n  http:\n"
        "  - match: [{headers: {end-user: {exact: jason}}}]\n"
        "    route: [{destination: {host: reviews, subset: v2}}]\n"
        "  - match: [{uri: {prefix: /a}}, {name: again, headers: {end-user: {exact: jason}}}]\n"
        "    route: [{destination: {host: reviews, subset: v1}}]\n"
        "  - route: [{destination: {host: reviews, subset: v1}}]\n"
    )
    [msg] = run(SERVICES, text)
    assert (msg.code, msg.level, msg.field) == ("IST0131", Level.INFO, "spec.http[1].match[1]")


def test_tcp_rules_after_a_rule_without_match_are_ist0130() -> None:
    text = vs(
        "  hosts: [reviews]\n  tcp:\n  - route: [{destination: {host: reviews}}]\n"
        "  - match: [{port: 9080}]\n    route: [{destination: {host: reviews}}]\n"
    )
    assert codes(run(SERVICES, text)) == ["IST0130"]


# --- IST0132 / IST0145 / IST0162 ----------------------------------------------------------


def test_virtual_service_host_the_gateway_does_not_serve_is_ist0132() -> None:
    ok = vs(
        "  hosts: [bookinfo.example.com]\n  gateways: [bookinfo-gateway]\n  http:\n"
        "  - route: [{destination: {host: reviews}}]\n"
    )
    assert run(SERVICES, GATEWAY, ok) == []
    bad = ok.replace("hosts: [bookinfo.example.com]", "hosts: [shop.example.com]")
    [msg] = run(SERVICES, GATEWAY, bad)
    assert (msg.code, msg.level) == ("IST0132", Level.WARNING)
    assert "shop.example.com" in msg.text and "default/bookinfo-gateway" in msg.text


def test_two_gateways_with_same_selector_port_and_host_are_ist0145() -> None:
    other = GATEWAY.replace("name: bookinfo-gateway", "name: other-gateway")
    messages = run(SERVICES, GATEWAY, other)
    assert codes(messages) == ["IST0145", "IST0145"]
    different_host = other.replace("bookinfo.example.com", "shop.example.com")
    assert run(SERVICES, GATEWAY, different_host) == []


def test_gateway_port_not_on_its_service_is_ist0162() -> None:
    assert run(SERVICES, GATEWAY) == []  # 8080 is the Service's targetPort
    odd = GATEWAY.replace("number: 8080", "number: 9999")
    [msg] = run(SERVICES, odd)
    assert (msg.code, msg.level) == ("IST0162", Level.WARNING)
    assert "9999" in msg.text


# --- IST0128 / IST0129 --------------------------------------------------------------------


def test_simple_tls_without_ca_is_ist0128_and_ist0129_at_port_level() -> None:
    dr = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: tls}\n"
        "spec:\n  host: reviews\n  trafficPolicy:\n    tls: {mode: SIMPLE}\n"
        "    portLevelSettings:\n    - port: {number: 9080}\n      tls: {mode: SIMPLE}\n"
    )
    assert codes(run(SERVICES, dr)) == ["IST0128", "IST0129"]
    with_ca = dr.replace("{mode: SIMPLE}", "{mode: SIMPLE, caCertificates: /etc/ca.pem}")
    assert run(SERVICES, with_ca) == []


# --- output shape and scoping -------------------------------------------------------------


def test_json_has_istioctl_keys_and_log_line_has_istioctl_form() -> None:
    [msg] = run(SERVICES, vs(ROUTE_V1.replace("subset: v1", "subset: v9")))
    data = msg.to_json()
    assert list(data) == ["code", "level", "origin", "message", "documentationUrl"]
    assert data["documentationUrl"].endswith("/analysis/ist0101/")
    assert str(msg).startswith("Error [IST0101] (VirtualService reviews.default) ")


def test_only_selected_namespaces_are_reported_but_all_are_analysed() -> None:
    other_ns = vs(ROUTE_V1.replace("subset: v1", "subset: v9"), extra_meta=", namespace: shop")
    resources = parse_documents(SERVICES + "\n---\n" + other_ns)
    assert analyze(resources, namespaces=["default"]) == []
    assert codes(analyze(resources, namespaces=["shop"])) == ["IST0101", "IST0101"]


def test_errors_sort_before_warnings_and_infos() -> None:
    text = vs(
        "  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v9}}]\n"
        "  - match: [{uri: {prefix: /x}}]\n    route: [{destination: {host: reviews}}]\n"
    )
    levels = [m.level for m in run(SERVICES, text)]
    assert levels == sorted(levels, key=lambda level: level.rank)


def test_every_code_is_istios_form() -> None:
    assert all(t.code.startswith("IST0") and len(t.code) == 7 for t in ALL_TYPES)
    assert len({t.code for t in ALL_TYPES}) == len(ALL_TYPES)
