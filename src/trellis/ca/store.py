"""Where the CA lives on disk: `STATE/ca/` for the self-signed CA, or the operator's `--ca-dir`.

Both use Istio's plug-in file names (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem).
The state dir copy is Trellis's: directory 0700, keys 0600, replaced as a whole (write a staging
directory, then rename) so a crash never leaves a key beside the wrong certificate. The
operator's directory is only ever read.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from trellis.ca.authority import (
    DEFAULT_MAX_WORKLOAD_TTL,
    CAMode,
    CertificateAuthority,
    RetiredRoot,
)
from trellis.ca.chain import CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT, CAFiles
from trellis.ca.errors import CAError, PluginCAError
from trellis.ca.identity import DEFAULT_TRUST_DOMAIN, new_token_key
from trellis.ca.keys import cert_pem, private_key_pem

log = logging.getLogger(__name__)

CA_DIRNAME = "ca"
RETIRED_ROOTS = "retired-roots.json"  # {sha256 of a root's DER: trusted-until, ISO 8601}
TOKEN_KEY_FILE = "join-token.key"
PLUGIN_FILES = (CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN)


def ca_dir(state_dir: Path) -> Path:
    return state_dir / CA_DIRNAME


def load_or_create(
    state_dir: Path,
    *,
    now: datetime,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    max_workload_ttl: timedelta = DEFAULT_MAX_WORKLOAD_TTL,
) -> CertificateAuthority:
    """The mesh's self-signed CA from STATE/ca/, made (and saved) on first use."""
    path = ca_dir(state_dir)
    _recover(path)
    if not (path / CA_KEY).exists():
        ca = CertificateAuthority.create_self_signed(
            now=now, trust_domain=trust_domain, max_workload_ttl=max_workload_ttl
        )
        save(state_dir, ca)
        log.info("event=ca_created path=%s root_serial=%x", path, ca.material.cert.serial_number)
        return ca
    ca = _load_state(path, now=now, trust_domain=trust_domain, max_workload_ttl=max_workload_ttl)
    pruned = ca.pruned(now)
    if pruned.retired != ca.retired:
        save(state_dir, pruned)  # an overlap ended: drop the old root from disk too
    return pruned


def load_plugin(
    directory: Path,
    *,
    now: datetime,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
    max_workload_ttl: timedelta = DEFAULT_MAX_WORKLOAD_TTL,
) -> CertificateAuthority:
    """The operator's CA from Istio's plug-in layout (`trellis up --ca-dir`); read, never written."""
    files = _read_files(directory)
    if (directory / CA_KEY).stat().st_mode & 0o077:
        log.warning("event=ca_key_readable_by_others path=%s", directory / CA_KEY)
    return CertificateAuthority.from_plugin(
        files, now=now, trust_domain=trust_domain, max_workload_ttl=max_workload_ttl
    )


def rotate_root(
    state_dir: Path,
    now: datetime,
    *,
    overlap: timedelta = DEFAULT_MAX_WORKLOAD_TTL,
    trust_domain: str = DEFAULT_TRUST_DOMAIN,
) -> CertificateAuthority:
    """Replace the self-signed root: the new one signs from now, the old stays trusted until
    now + overlap (default: the longest workload TTL, so every cert it signed has expired)."""
    ca = load_or_create(state_dir, now=now, trust_domain=trust_domain)
    rotated = ca.with_rotated_root(now=now, overlap=overlap)
    save(state_dir, rotated)
    log.info(
        "event=ca_root_rotated path=%s new_serial=%x old_trusted_until=%s",
        ca_dir(state_dir),
        rotated.material.cert.serial_number,
        (now + overlap).isoformat(),
    )
    return rotated


def save(state_dir: Path, ca: CertificateAuthority) -> None:
    """Write a self-signed CA to STATE/ca/ as a whole (staging directory, then rename)."""
    if ca.mode is not CAMode.SELF_SIGNED:
        raise CAError("only the self-signed CA is saved in the state dir; a plug-in CA stays put")
    roots = b"".join(ca.roots())
    chain = b"".join(cert_pem(c) for c in (ca.material.cert, *ca.material.intermediates))
    retired = {_fingerprint(r.cert): r.trusted_until.isoformat() for r in ca.retired}
    _commit(
        ca_dir(state_dir),
        public={CA_CERT: cert_pem(ca.material.cert), ROOT_CERT: roots, CERT_CHAIN: chain,
                RETIRED_ROOTS: json.dumps(retired, indent=2).encode()},
        private={CA_KEY: private_key_pem(ca.material.key)},
    )  # fmt: skip


def load_or_create_token_key(state_dir: Path) -> bytes:
    """The HMAC secret for join tokens, STATE/join-token.key (0600), made on first use."""
    path = state_dir / TOKEN_KEY_FILE
    if path.exists():
        return path.read_bytes()
    state_dir.mkdir(parents=True, exist_ok=True)
    key = new_token_key()
    try:
        _write(path, key, 0o600, exclusive=True)
    except FileExistsError:
        return path.read_bytes()  # another process made it first: use theirs
    return key


# -- reading ---------------------------------------------------------------------------------


def _read_files(directory: Path) -> CAFiles:
    if not directory.is_dir():
        raise PluginCAError(str(directory), "is not a directory")
    missing = [name for name in PLUGIN_FILES if not (directory / name).is_file()]
    if missing:
        raise PluginCAError(
            str(directory / missing[0]),
            "missing: a CA directory needs "
            + ", ".join(PLUGIN_FILES)
            + " (Istio's plug-in layout)",
        )
    read = {name: (directory / name).read_bytes() for name in PLUGIN_FILES}
    return CAFiles(read[CA_CERT], read[CA_KEY], read[ROOT_CERT], read[CERT_CHAIN], str(directory))


def _load_state(
    path: Path, *, now: datetime, trust_domain: str, max_workload_ttl: timedelta
) -> CertificateAuthority:
    plugged = CertificateAuthority.from_plugin(
        _read_files(path), now=now, trust_domain=trust_domain, max_workload_ttl=max_workload_ttl
    )
    until = _read_retired(path / RETIRED_ROOTS)
    current = tuple(r for r in plugged.material.roots if _fingerprint(r) not in until)
    retired = tuple(
        RetiredRoot(r, until[_fingerprint(r)])
        for r in plugged.material.roots
        if _fingerprint(r) in until
    )
    material = replace(plugged.material, roots=current)
    return replace(plugged, material=material, mode=CAMode.SELF_SIGNED, retired=retired)


def _read_retired(path: Path) -> dict[str, datetime]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {str(k): datetime.fromisoformat(str(v)) for k, v in raw.items()}
    except (ValueError, AttributeError) as error:
        raise CAError(
            f"{path}: unreadable ({error}); it maps retired roots to trusted-until times"
        ) from None


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


# -- writing ---------------------------------------------------------------------------------


def _commit(path: Path, *, public: dict[str, bytes], private: dict[str, bytes]) -> None:
    """Replace `path` with a directory holding exactly these files, atomically enough:
    a crash leaves either the old directory or a complete staging one `_recover` adopts."""
    staging, previous = _siblings(path)
    shutil.rmtree(staging, ignore_errors=True)
    _make_private_dir(staging)
    for name, data in public.items():
        _write(staging / name, data, 0o644)
    for name, data in private.items():
        _write(staging / name, data, 0o600)
    shutil.rmtree(previous, ignore_errors=True)
    if path.exists():
        path.rename(previous)
    staging.rename(path)
    shutil.rmtree(previous, ignore_errors=True)
    _fsync_dir(path.parent)


def _recover(path: Path) -> None:
    """Finish or undo a `_commit` a crash interrupted."""
    staging, previous = _siblings(path)
    if not path.exists() and staging.exists():
        staging.rename(path)  # staging is complete: the old copy was already moved aside
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)


def _siblings(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".staging"), path.with_name(path.name + ".previous")


def _make_private_dir(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700)
    path.chmod(0o700)  # mkdir's mode is filtered by the umask


def _write(path: Path, data: bytes, mode: int, *, exclusive: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    with os.fdopen(os.open(path, flags, mode), "wb") as file:
        os.fchmod(file.fileno(), mode)
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
