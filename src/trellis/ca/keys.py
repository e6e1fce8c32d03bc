"""Private keys, CSRs and PEM handling shared by the CA and the agent.

RSA 2048 everywhere we generate keys, as Istio does by default (its CA root and its agents'
workload keys); the plug-in CA may bring an RSA or EC key of its own.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trellis.ca.errors import CAError

RSA_KEY_BITS = 2048
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def new_private_key() -> rsa.RSAPrivateKey:
    """A fresh RSA 2048 key (Istio's default key type and size)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)


def private_key_pem(key: SigningKey) -> bytes:
    """Unencrypted PKCS#8 PEM, the form Envoy's SDS secrets and Istio's ca-key.pem use."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes, *, source: str) -> SigningKey:
    """Parse an unencrypted RSA or EC private key; CAError names `source` if it is not one."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise CAError(f"{source}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CAError(f"{source}: only RSA and EC private keys are supported")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certs(pem: bytes, *, source: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (may be empty); CAError names `source` if unreadable."""
    if b"-----BEGIN" not in pem:
        return []
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise CAError(f"{source}: not a PEM certificate bundle ({error})") from None


def build_csr(key: SigningKey, uri_sans: list[str]) -> bytes:
    """A PEM CSR carrying the workload's SPIFFE ID, as an agent sends it (the CA re-checks it)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uri_sans]),
        critical=True,
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check its self-signature (proof the requester holds the key)."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as error:
        raise CAError(f"CSR is not valid PEM ({error})") from None
    if not csr.is_signature_valid:
        raise CAError("CSR signature does not verify: the requester does not hold its key")
    return csr


def same_public_key(a: PublicKey, b: PublicKey) -> bool:
    """Whether two public keys are the same key (compared by their DER encoding)."""
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(der, spki) == b.public_bytes(der, spki)
