"""Envoy SDS `Secret` resources for a workload: its certificate (`default`) and trust (`ROOTCA`).

Pure builders; the xDS server sends them, the compiler refers to them by name (Istio's names).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

DEFAULT_SECRET = "default"
ROOTCA_SECRET = "ROOTCA"
SECRET_TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def workload_secret(
    cert_chain_pem: bytes, private_key_pem: bytes, *, name: str = DEFAULT_SECRET
) -> secret_pb2.Secret:
    """The workload's own certificate: leaf + intermediates and its private key, inline."""
    secret = secret_pb2.Secret(name=name)
    secret.tls_certificate.certificate_chain.inline_bytes = cert_chain_pem
    secret.tls_certificate.private_key.inline_bytes = private_key_pem
    return secret


def root_secret(
    roots_pem: Sequence[bytes] | bytes, *, name: str = ROOTCA_SECRET
) -> secret_pb2.Secret:
    """The mesh's trusted roots (all of them during a root rotation) as a validation context."""
    bundle = roots_pem if isinstance(roots_pem, bytes) else b"".join(roots_pem)
    if b"-----BEGIN CERTIFICATE-----" not in bundle:
        raise ValueError("a ROOTCA secret needs at least one PEM certificate")
    context = common_pb2.CertificateValidationContext()
    context.trusted_ca.inline_bytes = bundle
    return secret_pb2.Secret(name=name, validation_context=context)
