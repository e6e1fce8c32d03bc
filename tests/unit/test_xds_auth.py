"""xDS credentials: TLS with the CA's serving cert, join tokens checked per stream, SDS secrets."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import Message

from trellis.ca.authority import CertificateAuthority
from trellis.ca.identity import JoinTokenIssuer
from trellis.controlplane.auth import TOKEN_HEADER, JoinTokenAuthenticator
from trellis.controlplane.secrets import WorkloadSecrets
from trellis.model.proxy import Proxy, ProxyType
from trellis.model.xds_types import CLUSTER
from trellis.xds.lightclient import LightAdsClient, Received, probe_stream
from trellis.xds.server import AdsServer, ServerTls

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NODE = "sidecar~198.18.0.1~details-v1.default~default.svc.cluster.local"
META = {"SERVICE_ACCOUNT": "bookinfo-details"}
KEY = b"k" * 32
TIMEOUT = 5.0
NOTHING = Received()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create_self_signed(now=datetime.now(UTC))


def token(workload: str = "details-v1", sa: str = "bookinfo-details", key: bytes = KEY) -> str:
    return JoinTokenIssuer(key).mint(
        namespace="default", service_account=sa, workload=workload, now=datetime.now(UTC)
    )


def generator(proxy: Proxy, type_url: str) -> Mapping[str, Message]:
    return {"c": cluster_pb2.Cluster(name="c")} if type_url == CLUSTER else {}


@pytest.fixture
async def server(ca: CertificateAuthority) -> AsyncIterator[AdsServer]:
    serving = ca.issue_serving_cert(
        ["localhost"], [ipaddress.ip_address("127.0.0.1")], now=datetime.now(UTC)
    )
    auth = JoinTokenAuthenticator(JoinTokenIssuer(KEY), lambda: datetime.now(UTC))
    ads = AdsServer(generator, authenticator=auth)
    await ads.start("127.0.0.1", 0, ServerTls(serving.issued.chain_pem, serving.private_key_pem))
    yield ads
    await ads.stop(0)


def client(
    server: AdsServer, ca: CertificateAuthority, metadata: tuple[tuple[str, str], ...]
) -> LightAdsClient:
    creds = grpc.ssl_channel_credentials(root_certificates=ca.root_bundle_pem())
    return LightAdsClient(
        f"127.0.0.1:{server.port}",
        NODE,
        metadata=META,
        credentials=creds,
        call_metadata=metadata,
    )


async def test_proxy_with_its_join_token_gets_config_over_tls(
    server: AdsServer, ca: CertificateAuthority
) -> None:
    async with client(server, ca, ((TOKEN_HEADER, token()),)) as ads:
        await ads.wait_for(lambda: "c" in ads.received.get(CLUSTER, NOTHING).resources, TIMEOUT)


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        ((TOKEN_HEADER, "tj1.bogus.bogus"),),
        ((TOKEN_HEADER, token(workload="reviews-v1")),),
        ((TOKEN_HEADER, token(sa="bookinfo-reviews")),),
        ((TOKEN_HEADER, token(key=b"x" * 32)),),
    ],
    ids=["no-token", "malformed", "other-workload", "other-service-account", "other-mesh"],
)
async def test_stream_without_valid_credentials_is_refused(
    server: AdsServer,
    ca: CertificateAuthority,
    metadata: tuple[tuple[str, str], ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    code = await probe_stream(
        f"127.0.0.1:{server.port}",
        NODE,
        metadata=META,
        credentials=grpc.ssl_channel_credentials(root_certificates=ca.root_bundle_pem()),
        call_metadata=metadata,
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "event=xds.unauthenticated proxy=details-v1.default" in caplog.text


# -- SDS secrets -----------------------------------------------------------------------------

PROXY = Proxy(ProxyType.SIDECAR, "198.18.0.1", "details-v1", "default", {}, "bookinfo-details")


def leaf(secrets: Mapping[str, Message]) -> x509.Certificate:
    secret = secrets["default"]
    assert isinstance(secret, secret_pb2.Secret)
    return x509.load_pem_x509_certificate(secret.tls_certificate.certificate_chain.inline_bytes)


def test_default_secret_names_the_proxys_spiffe_identity(ca: CertificateAuthority) -> None:
    secrets = WorkloadSecrets(ca, Clock())
    served = secrets.secrets_for(PROXY)
    assert set(served) == {"default", "ROOTCA"}
    san = leaf(served).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["spiffe://cluster.local/ns/default/sa/bookinfo-details"]
    assert leaf(served).not_valid_after_utc == NOW + timedelta(hours=24)


def test_proxies_of_one_identity_share_a_certificate(ca: CertificateAuthority) -> None:
    secrets = WorkloadSecrets(ca, Clock())
    twin = Proxy(ProxyType.SIDECAR, "198.18.0.2", "details-v2", "default", {}, "bookinfo-details")
    other = Proxy(ProxyType.SIDECAR, "198.18.0.3", "ratings-v1", "default", {}, "bookinfo-ratings")
    first = leaf(secrets.secrets_for(PROXY)).serial_number
    assert leaf(secrets.secrets_for(twin)).serial_number == first
    assert leaf(secrets.secrets_for(other)).serial_number != first


def test_certificate_is_reissued_at_half_life(ca: CertificateAuthority) -> None:
    clock = Clock()
    secrets = WorkloadSecrets(ca, clock, ttl=timedelta(seconds=60))
    before = leaf(secrets.secrets_for(PROXY)).serial_number
    assert secrets.scheduler.seconds_until_next() == 30.0
    clock.now += timedelta(seconds=29)
    assert secrets.rotate_due() == []
    clock.now += timedelta(seconds=1)
    assert secrets.rotate_due() == [("default", "bookinfo-details")]
    assert leaf(secrets.secrets_for(PROXY)).serial_number != before


def test_describe_shows_the_certificate_but_never_the_key(ca: CertificateAuthority) -> None:
    secrets = WorkloadSecrets(ca, Clock())
    shown = secrets.describe(PROXY)
    default = shown["secrets"][0]
    assert default["spiffeId"] == "spiffe://cluster.local/ns/default/sa/bookinfo-details"
    assert default["notAfter"] == (NOW + timedelta(hours=24)).isoformat()
    assert "PRIVATE KEY" not in repr(shown)
    assert len(shown["secrets"][1]["roots"]) == 1


def test_due_certificate_without_a_proxy_is_dropped_not_renewed(ca: CertificateAuthority) -> None:
    clock = Clock()
    secrets = WorkloadSecrets(ca, clock, ttl=timedelta(seconds=60))
    before = leaf(secrets.secrets_for(PROXY)).serial_number
    clock.now += timedelta(seconds=30)
    assert secrets.rotate_due(active=set()) == []
    assert secrets.scheduler.next_due() is None
    assert leaf(secrets.secrets_for(PROXY)).serial_number != before  # a fresh one on demand
