"""The X.509 profiles the mesh CA signs: its own root, workload leaves, trellisd's serving cert.

Workload leaves follow Istio's: empty subject, the SPIFFE URI as the only (critical) SAN, key
usage digitalSignature+keyEncipherment, extended key usage serverAuth+clientAuth, SHA-256.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trellis.ca.keys import PublicKey, SigningKey

# Leaves start a little in the past so a peer whose clock is behind still accepts them.
CLOCK_SKEW_BACKDATE = timedelta(minutes=5)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _usage(*, digital_signature: bool, key_encipherment: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def build_root(
    key: SigningKey, *, trust_domain: str, now: datetime, ttl: timedelta
) -> x509.Certificate:
    """A self-signed root; its CN carries the creation time so rotated roots are told apart."""
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Trellis root CA {now:%Y-%m-%dT%H:%M:%SZ}"),
    ])  # fmt: skip
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_BACKDATE)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _usage(digital_signature=True, key_encipherment=False, cert_sign=True), critical=True
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """Point at the issuer's own key id when it has one (a plug-in CA may compute it its way)."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _leaf_builder(
    public_key: PublicKey, issuer: x509.Certificate, not_before: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _usage(digital_signature=True, key_encipherment=True, cert_sign=False), critical=True
        )
        .add_extension(_authority_key_id(issuer), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def build_workload_leaf(
    public_key: PublicKey,
    *,
    spiffe_uri: str,
    issuer: x509.Certificate,
    issuer_key: SigningKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A workload certificate: empty subject, so the SAN carries the identity and is critical."""
    builder = _leaf_builder(public_key, issuer, not_before, not_after).subject_name(x509.Name([]))
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        critical=False,
    ).add_extension(
        x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_uri)]), critical=True
    )
    return builder.sign(issuer_key, hashes.SHA256())


def build_serving_leaf(
    public_key: PublicKey,
    *,
    dns_names: Sequence[str],
    ips: Sequence[IPAddress],
    issuer: x509.Certificate,
    issuer_key: SigningKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """trellisd's own TLS server certificate: DNS and IP SANs, serverAuth only."""
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ip) for ip in ips]
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])] if dns_names else []
    )
    builder = _leaf_builder(public_key, issuer, not_before, not_after).subject_name(subject)
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
    ).add_extension(x509.SubjectAlternativeName(sans), critical=not dns_names)
    return builder.sign(issuer_key, hashes.SHA256())
