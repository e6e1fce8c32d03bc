"""The mesh certificate authority: signs workload and serving certificates, owns the trust bundle.

Pure: keys and certificates in memory, time passed in. `trellis.ca.store` loads and saves it.
Two modes, as in Istio: a self-signed root made on first start (the root signs workload certs
directly), or the operator's own intermediate plugged in (Istio's `cacerts` layout).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trellis.ca.chain import CAFiles, SigningMaterial, validate_ca_files
from trellis.ca.errors import CAError
from trellis.ca.identity import DEFAULT_TRUST_DOMAIN, spiffe_id
from trellis.ca.keys import (
    RSA_KEY_BITS,
    PublicKey,
    cert_pem,
    load_csr,
    new_private_key,
    private_key_pem,
)
from trellis.ca.profiles import (
    CLOCK_SKEW_BACKDATE,
    IPAddress,
    build_root,
    build_serving_leaf,
    build_workload_leaf,
)

DEFAULT_WORKLOAD_TTL = timedelta(hours=24)  # Istio's DEFAULT_WORKLOAD_CERT_TTL
DEFAULT_MAX_WORKLOAD_TTL = timedelta(days=90)  # Istio's MAX_WORKLOAD_CERT_TTL
DEFAULT_SERVING_TTL = timedelta(hours=24)
DEFAULT_ROOT_TTL = timedelta(days=3650)  # Istio's self-signed root lives 10 years

WorkloadKey = PublicKey | x509.CertificateSigningRequest | bytes  # bytes = a PEM CSR


class CAMode(enum.Enum):
    SELF_SIGNED = "self-signed"  # Trellis made the root and keeps it in the state dir
    PLUGGED = "plugged"  # the operator's root/intermediate (`--ca-dir`), never modified


@dataclass(frozen=True, slots=True)
class RetiredRoot:
    """A root replaced by a rotation, still trusted until every cert it signed has expired."""

    cert: x509.Certificate
    trusted_until: datetime


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A signed leaf. `chain_pem` is the leaf then its intermediates: Envoy's certificate_chain."""

    cert_pem: bytes
    chain_pem: bytes
    not_before: datetime
    not_after: datetime
    spiffe_id: str | None  # None for trellisd's serving cert
    serial: int


@dataclass(frozen=True, slots=True)
class ServingCert:
    """trellisd's own TLS certificate; the CA made the key, so it hands it back too."""

    issued: IssuedCert
    private_key_pem: bytes


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """Signs with `material`; trusts its roots plus `retired` roots until their overlap ends.

    Immutable: rotation returns a new CA, which the caller swaps in and saves.
    """

    material: SigningMaterial
    mode: CAMode
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    retired: tuple[RetiredRoot, ...] = ()
    max_workload_ttl: timedelta = DEFAULT_MAX_WORKLOAD_TTL

    @classmethod
    def create_self_signed(
        cls,
        *,
        now: datetime,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        root_ttl: timedelta = DEFAULT_ROOT_TTL,
        max_workload_ttl: timedelta = DEFAULT_MAX_WORKLOAD_TTL,
    ) -> CertificateAuthority:
        """A new RSA 2048 root that signs workload certificates itself (Istio's self-signed CA)."""
        return cls(
            material=_new_root_material(now=now, trust_domain=trust_domain, ttl=root_ttl),
            mode=CAMode.SELF_SIGNED,
            trust_domain=trust_domain,
            max_workload_ttl=max_workload_ttl,
        )

    @classmethod
    def from_plugin(
        cls,
        files: CAFiles,
        *,
        now: datetime,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        max_workload_ttl: timedelta = DEFAULT_MAX_WORKLOAD_TTL,
    ) -> CertificateAuthority:
        """The operator's CA from Istio's plug-in files; PluginCAError names a bad file."""
        material = validate_ca_files(files, now=now)
        return cls(material, CAMode.PLUGGED, trust_domain, (), max_workload_ttl)

    # -- issuing ---------------------------------------------------------------------------

    def issue_workload_cert(
        self,
        namespace: str,
        service_account: str,
        key: WorkloadKey,
        *,
        now: datetime,
        ttl: timedelta = DEFAULT_WORKLOAD_TTL,
    ) -> IssuedCert:
        """A certificate for spiffe://<td>/ns/<ns>/sa/<sa>; the identity comes from the caller's
        verified credentials, never from the CSR (a CSR asking for another one is refused)."""
        uri = spiffe_id(self.trust_domain, namespace, service_account)
        public_key = _public_key_of(key, uri)
        not_before, not_after = self._validity(now, ttl, limit=self.max_workload_ttl)
        leaf = build_workload_leaf(
            public_key,
            spiffe_uri=uri,
            issuer=self.material.cert,
            issuer_key=self.material.key,
            not_before=not_before,
            not_after=not_after,
        )
        return self._issued(leaf, uri)

    def issue_serving_cert(
        self,
        dns_names: Sequence[str],
        ips: Sequence[IPAddress] = (),
        *,
        now: datetime,
        ttl: timedelta = DEFAULT_SERVING_TTL,
    ) -> ServingCert:
        """A server certificate (and its new key) for trellisd's gRPC TLS listener."""
        if not dns_names and not ips:
            raise CAError("a serving certificate needs at least one DNS name or IP address")
        key = new_private_key()
        not_before, not_after = self._validity(now, ttl, limit=None)
        leaf = build_serving_leaf(
            key.public_key(),
            dns_names=dns_names,
            ips=ips,
            issuer=self.material.cert,
            issuer_key=self.material.key,
            not_before=not_before,
            not_after=not_after,
        )
        return ServingCert(self._issued(leaf, None), private_key_pem(key))

    def _validity(
        self, now: datetime, ttl: timedelta, *, limit: timedelta | None
    ) -> tuple[datetime, datetime]:
        """Backdated start; end at now + ttl but never after the signing chain expires."""
        if ttl <= timedelta(0):
            raise CAError(f"certificate TTL must be positive, got {ttl}")
        if limit is not None and ttl > limit:
            raise CAError(f"requested TTL {ttl} is over the CA's maximum workload TTL {limit}")
        ca_end = min(
            c.not_valid_after_utc for c in (self.material.cert, *self.material.intermediates)
        )
        if now >= ca_end:
            raise CAError(f"the CA's signing certificate expired at {ca_end.isoformat()}")
        return now - CLOCK_SKEW_BACKDATE, min(now + ttl, ca_end)

    def _issued(self, leaf: x509.Certificate, uri: str | None) -> IssuedCert:
        chain = b"".join(cert_pem(c) for c in (leaf, *self.material.intermediates))
        return IssuedCert(
            cert_pem=cert_pem(leaf),
            chain_pem=chain,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            spiffe_id=uri,
            serial=leaf.serial_number,
        )

    # -- trust -----------------------------------------------------------------------------

    def roots(self, now: datetime | None = None) -> list[bytes]:
        """Trusted roots as PEM, current first: what the ROOTCA secret carries. With `now`,
        retired roots whose overlap has ended are left out."""
        retired = [r.cert for r in self.retired if now is None or now < r.trusted_until]
        return [cert_pem(c) for c in (*self.material.roots, *retired)]

    def root_bundle_pem(self, now: datetime | None = None) -> bytes:
        return b"".join(self.roots(now))

    def next_trust_change(self, now: datetime) -> datetime | None:
        """When the trust bundle next shrinks (a retired root dropped): push ROOTCA again then."""
        ends = [r.trusted_until for r in self.retired if r.trusted_until > now]
        return min(ends, default=None)

    def pruned(self, now: datetime) -> CertificateAuthority:
        """This CA without the retired roots whose overlap has ended."""
        return replace(self, retired=tuple(r for r in self.retired if now < r.trusted_until))

    def with_rotated_root(
        self, *, now: datetime, overlap: timedelta, root_ttl: timedelta = DEFAULT_ROOT_TTL
    ) -> CertificateAuthority:
        """A new root signs from now on; the old one stays trusted until now + overlap."""
        if self.mode is not CAMode.SELF_SIGNED:
            raise CAError("a plugged-in CA's root is rotated by its operator (see docs/ca.md)")
        if overlap < timedelta(0):
            raise CAError(f"root rotation overlap must not be negative, got {overlap}")
        kept = self.pruned(now).retired
        return replace(
            self,
            material=_new_root_material(now=now, trust_domain=self.trust_domain, ttl=root_ttl),
            retired=(*kept, RetiredRoot(self.material.cert, now + overlap)),
        )


def _new_root_material(*, now: datetime, trust_domain: str, ttl: timedelta) -> SigningMaterial:
    key = new_private_key()
    root = build_root(key, trust_domain=trust_domain, now=now, ttl=ttl)
    return SigningMaterial(cert=root, key=key, intermediates=(), roots=(root,))


def _public_key_of(key: WorkloadKey, uri: str) -> PublicKey:
    """The key to certify; a CSR must prove possession and may name no identity but `uri`."""
    if isinstance(key, bytes):
        key = load_csr(key)
    if isinstance(key, x509.CertificateSigningRequest):
        _check_csr(key, uri)
        public = key.public_key()
    else:
        public = key
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < RSA_KEY_BITS:
        raise CAError(f"RSA keys shorter than {RSA_KEY_BITS} bits are refused ({public.key_size})")
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CAError("only RSA and EC workload keys are supported")
    return public


def _check_csr(csr: x509.CertificateSigningRequest, uri: str) -> None:
    if not csr.is_signature_valid:
        raise CAError("CSR signature does not verify: the requester does not hold its key")
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    asked = [str(name.value) for name in sans]
    if asked != [uri]:
        raise CAError(f"CSR asks for {', '.join(asked)}; the caller's credentials grant only {uri}")
