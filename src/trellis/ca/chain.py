"""Checks on CA material (Istio's plug-in layout) before the CA signs anything with it.

Layout (Istio's `cacerts`): ca-cert.pem is the signing certificate, ca-key.pem its key,
root-cert.pem the trusted root(s), cert-chain.pem the chain from ca-cert.pem up to a root.
Every failure names the file to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from trellis.ca.errors import CAError, PluginCAError
from trellis.ca.keys import SigningKey, load_certs, load_private_key, same_public_key

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
ROOT_CERT = "root-cert.pem"
CERT_CHAIN = "cert-chain.pem"


@dataclass(frozen=True, slots=True)
class CAFiles:
    """The four files of the plug-in layout, as bytes; `location` is used in error messages."""

    ca_cert: bytes
    ca_key: bytes
    root_cert: bytes
    cert_chain: bytes
    location: str


@dataclass(frozen=True, slots=True)
class SigningMaterial:
    """Validated CA material: the signer, its key, the intermediates a leaf must carry, roots."""

    cert: x509.Certificate
    key: SigningKey
    intermediates: tuple[x509.Certificate, ...]  # ca-cert first, roots excluded
    roots: tuple[x509.Certificate, ...]


def validate_ca_files(files: CAFiles, *, now: datetime) -> SigningMaterial:
    """Parse and check the plug-in layout: key matches cert, cert is a CA, chain reaches a root."""
    path = _pather(files.location)
    cert = _one_cert(files.ca_cert, path(CA_CERT))
    key = _load_key(files.ca_key, path(CA_KEY))
    if not same_public_key(key.public_key(), cert.public_key()):  # type: ignore[arg-type]
        raise PluginCAError(
            path(CA_KEY), f"private key does not match the certificate in {CA_CERT}"
        )
    _require_ca(cert, path(CA_CERT))
    _require_current(cert, path(CA_CERT), now)
    roots = tuple(load_certs(files.root_cert, source=path(ROOT_CERT)))
    if not roots:
        raise PluginCAError(path(ROOT_CERT), "holds no certificate")
    for root in roots:
        _require_ca(root, path(ROOT_CERT))
    chain = _chain_from(cert, load_certs(files.cert_chain, source=path(CERT_CHAIN)))
    _verify_chain(chain, roots, path(CERT_CHAIN), path(ROOT_CERT))
    intermediates = tuple(c for c in chain if c not in roots)
    return SigningMaterial(cert=cert, key=key, intermediates=intermediates, roots=roots)


def _pather(location: str) -> Callable[[str], str]:
    return lambda name: f"{location.rstrip('/')}/{name}" if location else name


def _one_cert(pem: bytes, source: str) -> x509.Certificate:
    try:
        certs = load_certs(pem, source=source)
    except CAError as error:
        raise PluginCAError(source, str(error).removeprefix(f"{source}: ")) from None
    if len(certs) != 1:
        raise PluginCAError(source, f"must hold exactly one certificate, found {len(certs)}")
    return certs[0]


def _load_key(pem: bytes, source: str) -> SigningKey:
    try:
        return load_private_key(pem, source=source)
    except CAError as error:
        raise PluginCAError(source, str(error).removeprefix(f"{source}: ")) from None


def _require_ca(cert: x509.Certificate, source: str) -> None:
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise PluginCAError(
            source, f"{_describe(cert)} is not a CA certificate (basicConstraints CA:TRUE missing)"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise PluginCAError(
            source, f"{_describe(cert)} may not sign certificates (keyUsage lacks keyCertSign)"
        )


def _require_current(cert: x509.Certificate, source: str, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise PluginCAError(
            source, f"{_describe(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}"
        )
    if now >= cert.not_valid_after_utc:
        raise PluginCAError(
            source, f"{_describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}"
        )


def _chain_from(cert: x509.Certificate, listed: list[x509.Certificate]) -> list[x509.Certificate]:
    """cert-chain.pem normally starts with ca-cert.pem; accept it without, and empty."""
    return listed if listed and listed[0] == cert else [cert, *listed]


def _verify_chain(
    chain: list[x509.Certificate],
    roots: tuple[x509.Certificate, ...],
    chain_file: str,
    root_file: str,
) -> None:
    for child, parent in pairwise(chain):
        if not _issued_by(child, parent):
            raise PluginCAError(
                chain_file,
                f"{_describe(child)} is not signed by the next certificate, {_describe(parent)}",
            )
    last = chain[-1]
    if last in roots or any(_issued_by(last, root) for root in roots):
        return
    raise PluginCAError(
        root_file, f"no root here signed {_describe(last)}, the top of {chain_file}"
    )


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _describe(cert: x509.Certificate) -> str:
    subject = cert.subject.rfc4514_string() or "(empty subject)"
    return f"certificate {subject!r}"
