"""The self-signed CA: what its root and the workload/serving certificates it signs look like."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from trellis.ca.authority import (
    DEFAULT_WORKLOAD_TTL,
    CAMode,
    CertificateAuthority,
)
from trellis.ca.errors import CAError
from trellis.ca.keys import build_csr, new_private_key
from trellis.ca.profiles import CLOCK_SKEW_BACKDATE

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SA_A = "spiffe://cluster.local/ns/default/sa/a"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create_self_signed(now=NOW)


@pytest.fixture(scope="module")
def workload_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # fast; RSA is tested through the CSR path


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def verify_client(
    ca: CertificateAuthority, chain_pem: bytes, at: datetime
) -> list[x509.GeneralName]:
    """RFC 5280 path validation with cryptography's verifier, as a TLS peer would do it."""
    leaf, *intermediates = x509.load_pem_x509_certificates(chain_pem)
    store = verification.Store([load(r) for r in ca.roots()])
    verifier = verification.PolicyBuilder().store(store).time(at).build_client_verifier()
    return list(verifier.verify(leaf, intermediates).subjects or [])


def test_root_is_an_rsa_2048_ca_for_ten_years(ca: CertificateAuthority) -> None:
    root = ca.material.cert
    assert ca.mode is CAMode.SELF_SIGNED
    assert root.public_key().key_size == 2048  # type: ignore[union-attr]
    assert root.subject == root.issuer
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert root.not_valid_after_utc - NOW == timedelta(days=3650)
    assert ca.roots() == [root.public_bytes(serialization.Encoding.PEM)]


def test_workload_cert_carries_the_spiffe_id_and_istios_usages(
    ca: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    issued = ca.issue_workload_cert("default", "a", workload_key.public_key(), now=NOW)
    cert = load(issued.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [SA_A]
    assert issued.spiffe_id == SA_A
    assert cert.subject == x509.Name([])
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.public_key() == workload_key.public_key()


def test_workload_cert_lives_24h_from_now_and_starts_backdated(
    ca: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    issued = ca.issue_workload_cert("default", "a", workload_key.public_key(), now=NOW)
    assert issued.not_after == NOW + DEFAULT_WORKLOAD_TTL
    assert issued.not_before == NOW - CLOCK_SKEW_BACKDATE
    short = ca.issue_workload_cert("default", "a", workload_key.public_key(), now=NOW,
                                   ttl=timedelta(hours=1))  # fmt: skip
    assert short.not_after == NOW + timedelta(hours=1)


def test_workload_cert_verifies_to_the_root_until_it_expires(
    ca: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    issued = ca.issue_workload_cert("default", "a", workload_key.public_key(), now=NOW)
    assert issued.chain_pem == issued.cert_pem  # the root signs directly: no intermediates
    assert verify_client(ca, issued.chain_pem, NOW) == [x509.UniformResourceIdentifier(SA_A)]
    with pytest.raises(verification.VerificationError):
        verify_client(ca, issued.chain_pem, NOW + DEFAULT_WORKLOAD_TTL + timedelta(seconds=1))


def test_other_ca_does_not_verify(workload_key: ec.EllipticCurvePrivateKey) -> None:
    one = CertificateAuthority.create_self_signed(now=NOW)
    other = CertificateAuthority.create_self_signed(now=NOW)
    issued = one.issue_workload_cert("default", "a", workload_key.public_key(), now=NOW)
    with pytest.raises(verification.VerificationError):
        verify_client(other, issued.chain_pem, NOW)


def test_csr_with_the_granted_identity_is_signed(ca: CertificateAuthority) -> None:
    key = new_private_key()
    issued = ca.issue_workload_cert("default", "a", build_csr(key, [SA_A]), now=NOW)
    assert load(issued.cert_pem).public_key() == key.public_key()


def test_csr_asking_for_another_identity_is_refused(ca: CertificateAuthority) -> None:
    csr = build_csr(new_private_key(), ["spiffe://cluster.local/ns/kube-system/sa/admin"])
    with pytest.raises(CAError, match=r"grant only spiffe://cluster\.local/ns/default/sa/a"):
        ca.issue_workload_cert("default", "a", csr, now=NOW)


def test_garbage_csr_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(CAError, match="CSR"):
        ca.issue_workload_cert("default", "a", b"not a csr", now=NOW)


def test_ttl_over_the_maximum_or_not_positive_is_refused(
    ca: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(CAError, match="maximum workload TTL"):
        ca.issue_workload_cert("default", "a", workload_key.public_key(), now=NOW,
                               ttl=timedelta(days=91))  # fmt: skip
    with pytest.raises(CAError, match="positive"):
        ca.issue_workload_cert("default", "a", workload_key.public_key(), now=NOW,
                               ttl=timedelta(0))  # fmt: skip


def test_cert_never_outlives_the_ca(workload_key: ec.EllipticCurvePrivateKey) -> None:
    ca = CertificateAuthority.create_self_signed(now=NOW, root_ttl=timedelta(hours=2))
    issued = ca.issue_workload_cert("default", "a", workload_key.public_key(), now=NOW)
    assert issued.not_after == ca.material.cert.not_valid_after_utc
    with pytest.raises(CAError, match="expired"):
        ca.issue_workload_cert("default", "a", workload_key.public_key(),
                               now=NOW + timedelta(hours=3))  # fmt: skip


def test_trust_domain_is_configurable(workload_key: ec.EllipticCurvePrivateKey) -> None:
    ca = CertificateAuthority.create_self_signed(now=NOW, trust_domain="example.org")
    issued = ca.issue_workload_cert("prod", "web", workload_key.public_key(), now=NOW)
    assert issued.spiffe_id == "spiffe://example.org/ns/prod/sa/web"


def test_serving_cert_verifies_for_its_dns_name_and_ip(ca: CertificateAuthority) -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    serving = ca.issue_serving_cert(["trellisd.trellis-system.svc"], [loopback], now=NOW)
    cert = load(serving.issued.cert_pem)
    assert serving.issued.spiffe_id is None
    key = serialization.load_pem_private_key(serving.private_key_pem, None)
    assert key.public_key() == cert.public_key()
    store = verification.Store([load(r) for r in ca.roots()])
    for subject in (
        x509.DNSName("trellisd.trellis-system.svc"),
        x509.IPAddress(loopback),
    ):
        verifier = (
            verification.PolicyBuilder().store(store).time(NOW).build_server_verifier(subject)
        )
        verifier.verify(cert, [])
    verifier = verification.PolicyBuilder().store(store).time(NOW).build_server_verifier(
        x509.DNSName("evil.example"))  # fmt: skip
    with pytest.raises(verification.VerificationError):
        verifier.verify(cert, [])


def test_serving_cert_needs_a_name(ca: CertificateAuthority) -> None:
    with pytest.raises(CAError, match="DNS name or IP"):
        ca.issue_serving_cert([], now=NOW)
