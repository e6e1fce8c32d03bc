"""Parsing Istio resources: every kind, every served version, camelCase on the wire."""

from __future__ import annotations

import pytest
import yaml

from trellis.api.core import Service, TransportProtocol
from trellis.api.duration import parse_duration
from trellis.api.kinds import ALL_KINDS, parse_documents, parse_resource, resolve_kind
from trellis.api.networking import (
    ClientTLSMode,
    DestinationRule,
    Gateway,
    Location,
    Resolution,
    ServerTLSMode,
    ServiceEntry,
    Sidecar,
    SimpleLB,
    VirtualService,
    WorkloadEntry,
    WorkloadGroup,
)
from trellis.errors import TrellisError

SPECS: dict[str, str] = {
    "VirtualService": """
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        end-user: {exact: jason}
      uri: {prefix: /reviews}
      ignoreUriCase: true
    route:
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      headers:
        request: {set: {x-canary: "yes"}, remove: [x-debug]}
    timeout: 0.5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure"}
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 100}}
      abort: {httpStatus: 500, percentage: {value: 12.5}}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 75
    - destination: {host: reviews, subset: v3}
      weight: 25
    mirror: {host: reviews, subset: v1}
    mirrorPercentage: {value: 10}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
      allowMethods: [GET]
      maxAge: 24h
  tcp:
  - match: [{port: 27017}]
    route: [{destination: {host: mongo, port: {number: 27017}}}]
""",
    "DestinationRule": """
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, ttl: 0s}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s}}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1, h2UpgradePolicy: UPGRADE}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
""",
    "Gateway": """
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert, minProtocolVersion: TLSV1_2}
""",
    "ServiceEntry": """
  hosts: [www.googleapis.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: https, protocol: HTTPS}
  location: MESH_EXTERNAL
  resolution: DNS
""",
    "WorkloadEntry": """
  address: 198.18.0.10
  ports: {http: 9080}
  labels: {app: ratings, version: v2}
  serviceAccount: bookinfo-ratings
""",
    "Sidecar": """
  workloadSelector: {labels: {app: ratings}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
    captureMode: NONE
  egress:
  - hosts: ["./*", "istio-system/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
""",
    "WorkloadGroup": """
  metadata: {labels: {app: ratings}}
  template: {ports: {http: 9080}, serviceAccount: bookinfo-ratings}
  probe: {periodSeconds: 5, httpGet: {path: /ready, port: 9080}}
""",
}


def _doc(kind: str, version: str, name: str = "reviews") -> str:
    return (
        f"apiVersion: networking.istio.io/{version}\nkind: {kind}\n"
        f"metadata:\n  name: {name}\n  namespace: bookinfo\nspec:{SPECS[kind]}"
    )


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_networking_kind_parses_in_every_served_version(kind: str, version: str) -> None:
    [resource] = parse_documents(_doc(kind, version))
    assert resource.kind == kind
    assert resource.api_version == f"networking.istio.io/{version}"
    assert resource.key == (kind, "bookinfo", "reviews")


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_to_wire_round_trips_what_the_user_wrote(kind: str) -> None:
    text = _doc(kind, "v1")
    [resource] = parse_documents(text)
    assert resource.to_wire() == yaml.safe_load(text)


def test_virtual_service_fields_are_typed() -> None:
    [vs] = parse_documents(_doc("VirtualService", "v1"))
    assert isinstance(vs, VirtualService)
    first, second = vs.spec.http
    assert first.match[0].headers["end-user"].match_kind == "exact"
    assert first.match[0].headers["end-user"].value == "jason"
    assert first.route[0].destination.port_number == 9080
    assert first.route[0].headers is not None
    assert first.route[0].headers.request is not None
    assert first.route[0].headers.request.set == {"x-canary": "yes"}
    assert first.fault is not None and first.fault.abort is not None
    assert first.fault.abort.percent_value == 12.5
    assert first.timeout is not None and parse_duration(first.timeout) == 0.5
    assert [m.percent_value for m in second.all_mirrors] == [10.0]
    assert vs.spec.applies_to_mesh


def test_destination_rule_fields_are_typed() -> None:
    [dr] = parse_documents(_doc("DestinationRule", "v1alpha3"))
    assert isinstance(dr, DestinationRule)
    policy = dr.spec.traffic_policy
    assert policy is not None and policy.outlier_detection is not None
    assert policy.outlier_detection.consecutive_5xx_errors == 7
    assert policy.tls is not None and policy.tls.mode is ClientTLSMode.ISTIO_MUTUAL
    v2 = dr.spec.subset("v2")
    assert v2 is not None and v2.traffic_policy is not None
    assert v2.traffic_policy.load_balancer is not None
    assert v2.traffic_policy.load_balancer.simple is SimpleLB.ROUND_ROBIN
    assert dr.spec.subset("v9") is None


def test_other_networking_kinds_are_typed() -> None:
    gw, se, we, sc, wg = (
        parse_documents(_doc(kind, "v1beta1"))[0]
        for kind in ("Gateway", "ServiceEntry", "WorkloadEntry", "Sidecar", "WorkloadGroup")
    )
    assert isinstance(gw, Gateway) and gw.spec.servers[1].tls is not None
    assert gw.spec.servers[1].tls.mode is ServerTLSMode.SIMPLE
    assert isinstance(se, ServiceEntry) and se.spec.resolution is Resolution.DNS
    assert se.spec.location is Location.MESH_EXTERNAL
    assert isinstance(we, WorkloadEntry) and we.spec.ports == {"http": 9080}
    assert isinstance(sc, Sidecar) and sc.spec.egress[0].hosts == ["./*", "istio-system/*"]
    assert isinstance(wg, WorkloadGroup) and wg.spec.probe == {
        "periodSeconds": 5,
        "httpGet": {"path": "/ready", "port": 9080},
    }


SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, labels: {app: reviews}}
spec:
  selector: {app: reviews}
  clusterIP: 240.240.0.7
  ports:
  - {name: http, port: 9080}
  - {name: grpc-admin, port: 9090, targetPort: 19090, appProtocol: grpc}
"""


def test_core_service_defaults_target_port_and_protocol() -> None:
    [svc] = parse_documents(SERVICE, default_namespace="bookinfo")
    assert isinstance(svc, Service)
    assert svc.namespace == "bookinfo"
    http, grpc = svc.spec.ports
    assert (http.port, http.target_port, http.protocol) == (9080, 9080, TransportProtocol.TCP)
    assert (grpc.target_port, grpc.app_protocol) == (19090, "grpc")
    assert svc.spec.cluster_ip == "240.240.0.7"
    assert svc.to_wire()["spec"]["clusterIP"] == "240.240.0.7"


def test_empty_documents_and_lists_are_unwrapped() -> None:
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [yaml.safe_load(_doc("WorkloadEntry", "v1", name=f"vm-{i}")) for i in range(2)],
    }
    text = "---\n---\n" + yaml.safe_dump(listed) + "---\n" + SERVICE + "\n---\n"
    resources = parse_documents(text)
    assert [r.name for r in resources] == ["vm-0", "vm-1", "reviews"]


def test_namespace_defaults_to_the_given_one_but_an_explicit_one_wins() -> None:
    [svc] = parse_documents(SERVICE, default_namespace="prod")
    [vs] = parse_documents(_doc("VirtualService", "v1"), default_namespace="prod")
    assert (svc.namespace, vs.namespace) == ("prod", "bookinfo")


def test_parse_resource_ignores_status() -> None:
    doc = yaml.safe_load(_doc("ServiceEntry", "v1"))
    doc["status"] = {"addresses": [{"value": "240.240.1.1"}]}
    assert isinstance(parse_resource(doc), ServiceEntry)


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("vs", VirtualService),
        ("VirtualServices", VirtualService),
        ("dr", DestinationRule),
        ("destinationrule", DestinationRule),
        ("gw", Gateway),
        ("gateways", Gateway),
        ("se", ServiceEntry),
        ("serviceentries", ServiceEntry),
        ("we", WorkloadEntry),
        ("WorkloadEntries", WorkloadEntry),
        ("wg", WorkloadGroup),
        ("sidecars", Sidecar),
        ("svc", Service),
        ("Service", Service),
    ],
)
def test_cli_words_resolve_to_kinds(word: str, kind: type) -> None:
    assert resolve_kind(word) is kind


def test_unknown_cli_word_lists_supported_kinds() -> None:
    with pytest.raises(TrellisError, match="supported kinds: VirtualService, DestinationRule"):
        resolve_kind("pods")


def test_all_kinds_lists_every_model() -> None:
    security = {"PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication"}
    assert {cls.KIND for cls in ALL_KINDS} == {*SPECS, "Service", *security, "Telemetry"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("0.5s", 0.5),
        ("100ms", 0.1),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("250us", 0.00025),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "10x", "s", "-1s", "1.5.2s", "10 s"])
def test_parse_duration_rejects_non_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
