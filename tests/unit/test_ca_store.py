"""The self-signed CA in the state dir: private on disk, stable across restarts, root rotation."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification

from trellis.ca import store
from trellis.ca.authority import CAMode, CertificateAuthority
from trellis.ca.errors import CAError
from trellis.ca.keys import cert_pem

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def verifies(ca: CertificateAuthority, chain_pem: bytes, at: datetime) -> bool:
    leaf, *rest = x509.load_pem_x509_certificates(chain_pem)
    roots = [x509.load_pem_x509_certificate(r) for r in ca.roots(at)]
    verifier = (verification.PolicyBuilder().store(verification.Store(roots)).time(at)
                .build_client_verifier())  # fmt: skip
    try:
        verifier.verify(leaf, rest)
    except verification.VerificationError:
        return False
    return True


def workload(ca: CertificateAuthority, at: datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return ca.issue_workload_cert("default", "a", key.public_key(), now=at).chain_pem


def test_first_start_creates_a_private_ca_dir(tmp_path: Path) -> None:
    ca = store.load_or_create(tmp_path, now=NOW)
    directory = tmp_path / "ca"
    assert mode(directory) == 0o700
    assert mode(directory / "ca-key.pem") == 0o600
    assert {p.name for p in directory.iterdir()} == {
        "ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem", "retired-roots.json"}  # fmt: skip
    assert (directory / "root-cert.pem").read_bytes() == cert_pem(ca.material.cert)
    assert not list(tmp_path.glob("ca.*"))  # no staging left behind


def test_restart_loads_the_same_root(tmp_path: Path) -> None:
    first = store.load_or_create(tmp_path, now=NOW)
    again = store.load_or_create(tmp_path, now=NOW + DAY)
    assert again.mode is CAMode.SELF_SIGNED
    assert again.roots() == first.roots()
    assert verifies(again, workload(first, NOW), NOW)


def test_rotation_keeps_the_old_root_trusted_during_the_overlap(tmp_path: Path) -> None:
    old = store.load_or_create(tmp_path, now=NOW)
    old_cert = workload(old, NOW)
    rotated = store.rotate_root(tmp_path, NOW + DAY, overlap=DAY)
    assert rotated.material.cert != old.material.cert
    assert rotated.roots(NOW + DAY) == [
        cert_pem(rotated.material.cert),
        cert_pem(old.material.cert),
    ]
    new_cert = workload(rotated, NOW + DAY)
    during = NOW + DAY + timedelta(hours=12)
    assert verifies(rotated, new_cert, during) and verifies(rotated, old_cert, NOW + DAY)
    assert not verifies(old, new_cert, during)  # why ROOTCA must carry both before new certs
    assert rotated.next_trust_change(NOW + DAY) == NOW + 2 * DAY


def test_rotation_survives_a_restart_and_drops_the_old_root_after_the_overlap(
    tmp_path: Path,
) -> None:
    old = store.load_or_create(tmp_path, now=NOW)
    rotated = store.rotate_root(tmp_path, NOW, overlap=DAY)
    during = store.load_or_create(tmp_path, now=NOW + DAY / 2)
    assert during.roots() == rotated.roots() and len(during.roots()) == 2
    assert during.retired[0].trusted_until == NOW + DAY
    assert during.material.cert == rotated.material.cert
    after = store.load_or_create(tmp_path, now=NOW + DAY)
    assert after.roots() == [cert_pem(rotated.material.cert)]
    assert cert_pem(old.material.cert) not in (tmp_path / "ca" / "root-cert.pem").read_bytes()
    assert after.next_trust_change(NOW + DAY) is None


def test_roots_at_a_time_leave_out_ended_overlaps() -> None:
    ca = CertificateAuthority.create_self_signed(now=NOW).with_rotated_root(now=NOW, overlap=DAY)
    assert len(ca.roots(NOW)) == 2 and len(ca.roots(NOW + DAY)) == 1
    twice = ca.with_rotated_root(now=NOW + DAY / 2, overlap=DAY)
    assert len(twice.roots(NOW + DAY / 2)) == 3  # two rotations in a row: all still trusted
    assert len(twice.roots(NOW + DAY)) == 2


def test_default_overlap_is_the_maximum_workload_ttl(tmp_path: Path) -> None:
    store.load_or_create(tmp_path, now=NOW)
    rotated = store.rotate_root(tmp_path, NOW)
    assert rotated.retired[0].trusted_until == NOW + rotated.max_workload_ttl


def test_interrupted_save_is_recovered(tmp_path: Path) -> None:
    ca = store.load_or_create(tmp_path, now=NOW)
    directory = tmp_path / "ca"
    directory.rename(tmp_path / "ca.staging")  # crash after moving the old copy aside
    assert store.load_or_create(tmp_path, now=NOW).roots() == ca.roots()
    (tmp_path / "ca.staging").mkdir()  # crash while writing a staging copy
    (tmp_path / "ca.staging" / "ca-key.pem").write_bytes(b"half")
    assert store.load_or_create(tmp_path, now=NOW).roots() == ca.roots()
    assert not (tmp_path / "ca.staging").exists()


def test_join_token_key_is_private_and_stable(tmp_path: Path) -> None:
    key = store.load_or_create_token_key(tmp_path)
    assert len(key) == 32
    assert mode(tmp_path / "join-token.key") == 0o600
    assert store.load_or_create_token_key(tmp_path) == key


def test_unreadable_retired_roots_file_is_named(tmp_path: Path) -> None:
    store.load_or_create(tmp_path, now=NOW)
    (tmp_path / "ca" / "retired-roots.json").write_text("[1, 2]")
    with pytest.raises(CAError, match=r"retired-roots\.json"):
        store.load_or_create(tmp_path, now=NOW)
