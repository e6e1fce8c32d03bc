"""The operator's own CA in Istio's plug-in layout: accepted when sound, refused naming the file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from trellis.ca import store
from trellis.ca.authority import CAMode
from trellis.ca.errors import CAError, PluginCAError
from trellis.ca.keys import SigningKey, cert_pem, private_key_pem
from trellis.ca.profiles import build_root

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # an operator may well use EC; it is fast too


def intermediate(
    name: str, key: SigningKey, issuer: x509.Certificate, issuer_key: SigningKey, *,
    ca: bool = True, not_after: datetime = NOW + YEAR,
) -> x509.Certificate:  # fmt: skip
    """An intermediate CA as an operator's openssl or step-ca would make it."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = x509.KeyUsage(True, False, False, False, False, ca, ca, False, False)
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1)).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),  # type: ignore[arg-type]
                       critical=False)
        .sign(issuer_key, hashes.SHA256())
    )  # fmt: skip


@dataclass
class Operator:
    """An operator's PKI: an offline root and a per-mesh intermediate signed by it."""

    root: x509.Certificate
    root_key: SigningKey
    ca: x509.Certificate
    ca_key: SigningKey

    def write(self, directory: Path, **override: bytes) -> Path:
        directory.mkdir(exist_ok=True)
        files = {
            "ca-cert.pem": cert_pem(self.ca),
            "ca-key.pem": private_key_pem(self.ca_key),
            "root-cert.pem": cert_pem(self.root),
            "cert-chain.pem": cert_pem(self.ca) + cert_pem(self.root),
        }
        for name, data in (
            files | {k.replace("_", "-") + ".pem": v for k, v in override.items()}
        ).items():
            (directory / name).write_bytes(data)
        (directory / "ca-key.pem").chmod(0o600)
        return directory


@pytest.fixture(scope="module")
def operator() -> Operator:
    root_key, ca_key = ec_key(), ec_key()
    root = build_root(root_key, trust_domain="corp", now=NOW - timedelta(days=1), ttl=10 * YEAR)
    return Operator(root, root_key, intermediate("mesh-ca", ca_key, root, root_key), ca_key)


def test_plugged_ca_signs_leaves_that_chain_through_the_intermediate(
    operator: Operator, tmp_path: Path
) -> None:
    ca = store.load_plugin(operator.write(tmp_path / "cacerts"), now=NOW)
    assert ca.mode is CAMode.PLUGGED
    issued = ca.issue_workload_cert("default", "a", ec_key().public_key(), now=NOW)
    leaf, *rest = x509.load_pem_x509_certificates(issued.chain_pem)
    assert rest == [operator.ca]  # Envoy sends leaf + intermediate; the root comes from ROOTCA
    assert ca.roots() == [cert_pem(operator.root)]
    trust = verification.Store([operator.root])
    verifier = verification.PolicyBuilder().store(trust).time(NOW).build_client_verifier()
    chain = verifier.verify(leaf, rest).chain
    assert chain[-1] == operator.root


def test_cert_chain_may_omit_ca_cert_and_root(operator: Operator, tmp_path: Path) -> None:
    for chain in (cert_pem(operator.root), b""):
        ca = store.load_plugin(operator.write(tmp_path / "c", cert_chain=chain), now=NOW)
        assert ca.material.intermediates == (operator.ca,)


def test_plugin_dir_is_never_modified(operator: Operator, tmp_path: Path) -> None:
    directory = operator.write(tmp_path / "cacerts")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}
    ca = store.load_plugin(directory, now=NOW)
    ca.issue_workload_cert("default", "a", ec_key().public_key(), now=NOW)
    with pytest.raises(CAError, match="operator"):
        ca.with_rotated_root(now=NOW, overlap=timedelta(hours=24))
    with pytest.raises(CAError, match="self-signed"):
        store.save(tmp_path / "state", ca)
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}
    assert after == before


def test_two_roots_in_root_cert_are_both_trusted(operator: Operator, tmp_path: Path) -> None:
    new_root_key = ec_key()
    new_root = build_root(new_root_key, trust_domain="corp", now=NOW, ttl=10 * YEAR)
    roots = cert_pem(new_root) + cert_pem(operator.root)
    ca = store.load_plugin(operator.write(tmp_path / "c", root_cert=roots), now=NOW)
    assert ca.roots() == [cert_pem(new_root), cert_pem(operator.root)]


def bad(operator: Operator, tmp_path: Path, **override: bytes) -> PluginCAError:
    with pytest.raises(PluginCAError) as caught:
        store.load_plugin(operator.write(tmp_path / "cacerts", **override), now=NOW)
    return caught.value


def test_missing_file_is_named(operator: Operator, tmp_path: Path) -> None:
    directory = operator.write(tmp_path / "cacerts")
    (directory / "cert-chain.pem").unlink()
    with pytest.raises(PluginCAError, match=r"cacerts/cert-chain.pem: missing"):
        store.load_plugin(directory, now=NOW)
    with pytest.raises(PluginCAError, match="not a directory"):
        store.load_plugin(tmp_path / "nowhere", now=NOW)


def test_key_not_matching_the_cert_is_refused(operator: Operator, tmp_path: Path) -> None:
    error = bad(operator, tmp_path, ca_key=private_key_pem(ec_key()))
    assert error.path.endswith("ca-key.pem") and "does not match" in error.reason


def test_garbage_files_are_named(operator: Operator, tmp_path: Path) -> None:
    assert bad(operator, tmp_path, ca_key=b"nonsense").path.endswith("ca-key.pem")
    assert bad(operator, tmp_path, ca_cert=b"nonsense").path.endswith("ca-cert.pem")
    assert bad(operator, tmp_path, root_cert=b"").path.endswith("root-cert.pem")


def test_leaf_as_ca_cert_is_refused(operator: Operator, tmp_path: Path) -> None:
    key = ec_key()
    leaf = intermediate("not-a-ca", key, operator.root, operator.root_key, ca=False)
    error = bad(operator, tmp_path, ca_cert=cert_pem(leaf), ca_key=private_key_pem(key),
                cert_chain=cert_pem(leaf))  # fmt: skip
    assert error.path.endswith("ca-cert.pem") and "not a CA" in error.reason


def test_chain_not_reaching_the_root_is_refused(operator: Operator, tmp_path: Path) -> None:
    stranger_key = ec_key()
    stranger = build_root(stranger_key, trust_domain="other", now=NOW, ttl=YEAR)
    error = bad(operator, tmp_path, root_cert=cert_pem(stranger))
    assert error.path.endswith("root-cert.pem") and "no root here signed" in error.reason
    error = bad(operator, tmp_path, cert_chain=cert_pem(operator.ca) + cert_pem(stranger))
    assert error.path.endswith("cert-chain.pem") and "not signed by the next" in error.reason


def test_expired_intermediate_is_refused(operator: Operator, tmp_path: Path) -> None:
    key = ec_key()
    old = intermediate(
        "old", key, operator.root, operator.root_key, not_after=NOW - timedelta(hours=1)
    )
    error = bad(operator, tmp_path, ca_cert=cert_pem(old), ca_key=private_key_pem(key),
                cert_chain=cert_pem(old))  # fmt: skip
    assert error.path.endswith("ca-cert.pem") and "expired" in error.reason


def test_leaf_ttl_is_clamped_to_the_intermediate(operator: Operator, tmp_path: Path) -> None:
    key = ec_key()
    short = intermediate("short", key, operator.root, operator.root_key,
                         not_after=NOW + timedelta(hours=2))  # fmt: skip
    ca = store.load_plugin(operator.write(tmp_path / "c", ca_cert=cert_pem(short),
                           ca_key=private_key_pem(key), cert_chain=cert_pem(short)), now=NOW)  # fmt: skip
    issued = ca.issue_workload_cert("default", "a", ec_key().public_key(), now=NOW)
    assert issued.not_after == NOW + timedelta(hours=2)


def test_readable_key_is_warned_about(
    operator: Operator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = operator.write(tmp_path / "cacerts")
    os.chmod(directory / "ca-key.pem", 0o644)
    store.load_plugin(directory, now=NOW)
    assert "ca_key_readable_by_others" in caplog.text
