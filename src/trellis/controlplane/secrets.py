"""SDS in trellisd: each proxy's `default` certificate and the mesh's `ROOTCA`, rotated at half life.

trellisd makes the workload key itself and sends it to Envoy over the (TLS) xDS stream, unlike
Istio, where the agent keeps the key and sends a CSR: acceptable on one machine, where trellisd
and the agents share a host (docs/DECISIONS.md). Keys and certificates are cached per identity
(namespace, service account), so every proxy of one identity gets the same secret, and reissued
when `rotate_due` finds them at half life.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from google.protobuf.message import Message

from trellis.ca.authority import DEFAULT_WORKLOAD_TTL, CertificateAuthority, IssuedCert
from trellis.ca.keys import new_private_key, private_key_pem
from trellis.ca.rotation import RotationScheduler, next_rotation
from trellis.ca.sds import DEFAULT_SECRET, ROOTCA_SECRET, root_secret, workload_secret
from trellis.model.proxy import Proxy

log = logging.getLogger("trellisd")

IdentityKey = tuple[str, str]  # (namespace, service account)


@dataclass(frozen=True, slots=True)
class _Held:
    issued: IssuedCert
    secret: Message  # the `default` Secret, built once per issuance
    rotate_at: datetime


class WorkloadSecrets:
    """Issues, caches and rotates workload certificates; answers SDS for a proxy."""

    def __init__(
        self,
        ca: CertificateAuthority,
        clock: Callable[[], datetime],
        *,
        ttl: timedelta = DEFAULT_WORKLOAD_TTL,
    ) -> None:
        self._ca = ca
        self._trust = ca  # differs from _ca only during a root rotation (trust goes first)
        self._clock = clock
        self._ttl = ttl
        self._held: dict[IdentityKey, _Held] = {}
        self._lock = threading.Lock()
        self.scheduler = RotationScheduler(clock)

    @property
    def ca(self) -> CertificateAuthority:
        return self._ca

    @property
    def trust(self) -> CertificateAuthority:
        """The CA whose roots ROOTCA carries (ahead of `ca` while a new root is rolled out)."""
        return self._trust

    def trust_roots_of(self, ca: CertificateAuthority) -> None:
        """Root rotation, step 1: ROOTCA carries `ca`'s roots; signing stays as it was."""
        self._trust = ca

    def sign_with(self, ca: CertificateAuthority) -> list[IdentityKey]:
        """Root rotation, step 2: `ca` signs from now on; every held certificate is reissued
        by it at once. The identities whose `default` secret changed. Makes a key per identity:
        run it in a thread; SDS answers meanwhile (the lock is not held while signing)."""
        with self._lock:
            self._ca = self._trust = ca
            keys = sorted(self._held)
        fresh = {key: self._issue(key) for key in keys}
        with self._lock:
            self._held.update(fresh)
        log.info("event=certs_reissued_for_new_root identities=%d", len(keys))
        return keys

    def secrets_for(self, proxy: Proxy) -> dict[str, Message]:
        """`default` for the proxy's own identity and `ROOTCA` (every trusted root)."""
        held = self._get((proxy.namespace, proxy.service_account))
        return {DEFAULT_SECRET: held.secret, ROOTCA_SECRET: root_secret(self._roots())}

    def rotate_due(self, active: Collection[IdentityKey] | None = None) -> list[IdentityKey]:
        """Reissue every certificate at its rotation point; the identities that changed.

        With `active` (the identities of connected proxies), a due certificate nobody uses
        any more is dropped instead: the next proxy of that identity gets a fresh one.
        """
        due = [_parse_name(name) for name in self.scheduler.due()]
        if active is not None:
            for key in [k for k in due if k not in active]:
                self._forget(key)
            due = [k for k in due if k in active]
        with self._lock:
            for key in due:
                old = self._held.get(key)
                self._held[key] = self._issue(key)
                log.info(
                    "event=cert_rotated spiffe_id=%s old_serial=%x new_serial=%x",
                    self._held[key].issued.spiffe_id,
                    old.issued.serial if old else 0,
                    self._held[key].issued.serial,
                )
        return due

    def describe(self, proxy: Proxy) -> dict[str, Any]:
        """What `trellis proxy-config secret` shows: never the private key."""
        held = self._get((proxy.namespace, proxy.service_account))
        return {
            "proxy": proxy.key,
            "secrets": [
                {
                    "name": DEFAULT_SECRET,
                    "spiffeId": held.issued.spiffe_id,
                    "serial": format(held.issued.serial, "x"),
                    "notBefore": held.issued.not_before.isoformat(),
                    "notAfter": held.issued.not_after.isoformat(),
                    "rotateAt": held.rotate_at.isoformat(),
                    "certChain": held.issued.chain_pem.decode(),
                },
                {"name": ROOTCA_SECRET, "roots": [_root_info(pem) for pem in self._roots()]},
            ],
        }

    def _forget(self, key: IdentityKey) -> None:
        with self._lock:
            self._held.pop(key, None)
        self.scheduler.forget(_name(key))
        log.info("event=cert_dropped identity=%s reason=no-proxy", _name(key))

    def _roots(self) -> list[bytes]:
        return self._trust.roots(self._clock())

    def _get(self, key: IdentityKey) -> _Held:
        with self._lock:
            held = self._held.get(key)
            if held is None:
                held = self._held[key] = self._issue(key)
            return held

    def _issue(self, key: IdentityKey) -> _Held:
        now = self._clock()
        private = new_private_key()
        issued = self._ca.issue_workload_cert(*key, private.public_key(), now=now, ttl=self._ttl)
        # Half life counted from issuance, not from the backdated not_before: a short TTL
        # (tests, 60 s) would otherwise be due at once.
        self.scheduler.track(_name(key), now, issued.not_after)
        rotate_at = next_rotation(now, issued.not_after)
        log.info(
            "event=cert_issued spiffe_id=%s serial=%x not_after=%s",
            issued.spiffe_id,
            issued.serial,
            issued.not_after.isoformat(),
        )
        secret = workload_secret(issued.chain_pem, private_key_pem(private))
        return _Held(issued, secret, rotate_at)


def _name(key: IdentityKey) -> str:
    return f"{key[0]}/{key[1]}"


def _parse_name(name: str) -> IdentityKey:
    namespace, _, service_account = name.partition("/")
    return namespace, service_account


def _root_info(pem: bytes) -> dict[str, str]:
    cert = x509.load_pem_x509_certificate(pem)
    return {
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "notBefore": cert.not_valid_before_utc.isoformat(),
        "notAfter": cert.not_valid_after_utc.isoformat(),
    }
