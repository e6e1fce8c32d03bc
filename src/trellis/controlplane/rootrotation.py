"""Root rotation on a running mesh (self-signed CA): trust first, then sign, then forget.

Order is the whole point (docs/ca.md, "Root rotation"): every proxy must trust the new root
before any peer presents a certificate from it. So trellisd pushes ROOTCA (old + new root) to
every proxy, waits for those SDS pushes to be ACKed, and only then reissues every workload
certificate from the new root. When the old root's overlap ends, ROOTCA is pushed once more
without it (`prune_if_due`, called from the certificate rotation loop).

trellisd's xDS serving certificate stays on the root that signed it: agents' Envoys trust
STATE/xds-root-cert.pem as inlined in their bootstrap, which Envoy cannot update live, so the
file keeps that root for as long as the certificate is served. The next trellisd start issues
a serving certificate from the current root.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from trellis.ca import store as ca_store
from trellis.ca.authority import CertificateAuthority
from trellis.controlplane.secrets import WorkloadSecrets
from trellis.errors import TrellisError
from trellis.model import xds_types
from trellis.xds.contract import ProxyStatus

log = logging.getLogger("trellisd")

ACK_TIMEOUT = 10.0  # seconds to wait for every proxy to ACK the new ROOTCA
SETTLE = 0.5  # after the ACKs: Envoy hands a new secret to its worker threads asynchronously

Push = Callable[[str], None]  # push SDS to every proxy at this version
Statuses = Callable[[], list[ProxyStatus]]
Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class RotationSettings:
    state_dir: Path
    ca_dir: Path | None  # a plug-in CA: its operator rotates the root
    xds_root_path: Path | None  # None: plaintext xDS, no trust file for agents
    serving_root_pem: bytes  # the root that signed trellisd's xDS serving certificate


class RootRotator:
    """The CA admin behind `trellis ca status | rotate-root`; one rotation at a time."""

    def __init__(
        self,
        settings: RotationSettings,
        secrets: WorkloadSecrets,
        *,
        push: Push,
        next_version: Callable[[], str],
        statuses: Statuses,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._push = push
        self._next_version = next_version
        self._statuses = statuses
        self._clock = clock
        self._lock = asyncio.Lock()

    def status(self) -> dict[str, Any]:
        """The current root and the retired roots still trusted (never a key)."""
        now = self._clock()
        ca = self._secrets.trust.pruned(now)
        change = ca.next_trust_change(now)
        return {
            "mode": ca.mode.value,
            "trustDomain": ca.trust_domain,
            "caDir": str(self._settings.ca_dir) if self._settings.ca_dir else None,
            "current": [root_info(c) for c in ca.material.roots],
            "retired": [
                {**root_info(r.cert), "trustedUntil": r.trusted_until.isoformat()}
                for r in ca.retired
            ],
            "nextTrustChange": change.isoformat() if change else None,
        }

    async def rotate_root(self, overlap: timedelta) -> dict[str, Any]:
        """New root; ROOTCA with both roots ACKed everywhere; then certs from the new root."""
        if self._settings.ca_dir is not None:
            raise TrellisError(
                f"this mesh uses a plug-in CA (--ca-dir {self._settings.ca_dir}); Trellis never "
                "writes there: rotate its root in the operator phases of docs/ca.md"
            )
        if overlap <= timedelta(0):
            raise TrellisError(f"--overlap must be positive, got {overlap}")
        async with self._lock:
            rotated = await asyncio.to_thread(
                ca_store.rotate_root,
                self._settings.state_dir,
                self._clock(),
                overlap=overlap,
                trust_domain=self._secrets.ca.trust_domain,
            )
            self._secrets.trust_roots_of(rotated)
            self._write_xds_roots()
            lagging = await self._push_and_wait()
            await asyncio.sleep(SETTLE)
            reissued = await asyncio.to_thread(self._secrets.sign_with, rotated)
            lagging += [p for p in await self._push_and_wait() if p not in lagging]
        log.info(
            "event=ca_root_rotation_done reissued=%d lagging=%s",
            len(reissued),
            ",".join(lagging) or "-",
        )
        return {**self.status(), "reissued": len(reissued), "notAcked": lagging}

    async def prune_if_due(self) -> bool:
        """Push ROOTCA without the retired roots whose overlap has ended; True if it did."""
        now = self._clock()
        ca = self._secrets.trust
        if ca.pruned(now).retired == ca.retired:
            return False
        async with self._lock:
            pruned = self._secrets.trust.pruned(now)
            if self._settings.ca_dir is None:
                await self._save(pruned)
            self._secrets.trust_roots_of(pruned)
            self._write_xds_roots()
            self._push(self._next_version())
        log.info("event=ca_retired_root_dropped roots=%d", len(pruned.roots(now)))
        return True

    async def _save(self, ca: CertificateAuthority) -> None:
        """Drop the old root from disk too; on failure the next start does (load_or_create),
        and the renewal loop calling `prune_if_due` must not die of it."""
        try:
            await asyncio.to_thread(ca_store.save, self._settings.state_dir, ca)
        except (OSError, TrellisError) as error:
            log.warning("event=ca_save_failed error=%r", str(error))

    async def _push_and_wait(self) -> list[str]:
        """Push SDS to every proxy and wait (bounded) for the ACKs; the proxies that lag."""
        version = self._next_version()
        self._push(version)
        deadline = time.monotonic() + ACK_TIMEOUT
        while True:
            lagging = [s.proxy.key for s in self._statuses() if not _has_acked(s, version)]
            if not lagging or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if lagging:
            log.warning("event=ca_sds_not_acked proxies=%s version=%s", ",".join(lagging), version)
        return lagging

    def _write_xds_roots(self) -> None:
        """Agents' trust for trellisd: the serving cert's root plus every trusted root."""
        path = self._settings.xds_root_path
        if path is None:
            return
        kept = self._settings.serving_root_pem
        added = [r for r in self._secrets.trust.roots(self._clock()) if r not in kept]
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(kept + b"".join(added))
        tmp.replace(path)


def _has_acked(status: ProxyStatus, version: str) -> bool:
    """Whether this proxy ACKed SDS at `version` or later (no SDS stream: nothing to wait for)."""
    for t in status.types:
        if t.type_url == xds_types.SECRET:
            return _at_least(t.acked_version, version)
    return True


def _at_least(acked: str, version: str) -> bool:
    if acked.isdigit() and version.isdigit():
        return int(acked) >= int(version)
    return acked == version


def root_info(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "notBefore": cert.not_valid_before_utc.isoformat(),
        "notAfter": cert.not_valid_after_utc.isoformat(),
    }


def parse_overlap(seconds: object) -> timedelta:
    """The API's `overlapSeconds` (a positive number) as a timedelta."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise TrellisError(f"overlapSeconds must be a positive number, got {seconds!r}")
    return timedelta(seconds=seconds)
