"""A full disk under the state directory: `apply` fails clearly and the store stays sound.

The mesh's state directory is a small tmpfs this module mounts (and unmounts), so filling it
touches nothing else on the host. The mesh runs without capture: the store is what is tested.
(A read-only remount is not possible while trellisd holds its files open for writing, and
chmod does not stop root; a full disk is the honest fault here.)
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.meshctl import Mesh, cli_json, eventually, own_mesh

pytestmark = pytest.mark.e2e

TMPFS_SIZE = "64m"
FILLER_CHUNK = 256 * 1024
BIG_APPLY_COUNT = 150  # VirtualServices in the apply that cannot fit

BEFORE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: before-the-disk-filled}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin}}]
"""


def _big_apply() -> str:
    """Many resources with long descriptions-like header values: far more than a few pages."""
    docs = []
    for i in range(BIG_APPLY_COUNT):
        value = f"{i:04d}" * 1000
        docs.append(
            f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: filler-{i}}}
spec:
  hosts: [filler-{i}.example.com]
  http:
  - headers: {{request: {{set: {{x-pad: "{value}"}}}}}}
    route: [{{destination: {{host: filler-{i}.example.com}}}}]
"""
        )
    return "---\n".join(docs)


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "state"
    mountpoint.mkdir()
    source = f"trellis-chaos-{uuid.uuid4().hex[:8]}"
    opts = f"size={TMPFS_SIZE},mode=0755"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, source, str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        _unmount(mountpoint)


def _unmount(mountpoint: Path) -> None:
    """Unmount, polling: a process may be closing its last file on it right after `down`."""

    def unmounted() -> bool:
        return subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode == 0

    try:
        eventually(unmounted, timeout=30, what=f"{mountpoint} to unmount")
    except AssertionError:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)
        raise


def _fill(path: Path) -> int:
    """Write zeros until the filesystem is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * FILLER_CHUNK
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                break
        # the last, partial chunk: byte by byte is too slow; halve until nothing fits
        size = FILLER_CHUNK // 2
        while size:
            try:
                written += f.write(b"\0" * size)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                size //= 2
    return written


def _integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def _names(mesh: Mesh) -> set[str]:
    items = cli_json(mesh, "get", "virtualservices", "-A")
    return {item["metadata"]["name"] for item in (items if isinstance(items, list) else [items])}


def test_apply_on_a_full_disk_fails_clearly_and_leaves_the_store_intact(
    small_state_dir: Path,
) -> None:
    with own_mesh(small_state_dir, "--no-tracing", "--capture", "proxy") as mesh:
        mesh.apply(BEFORE)
        filler = small_state_dir / "filler"
        try:
            assert _fill(filler) > 0
            failed = mesh.cli("apply", "-f", "-", input=_big_apply(), check=False)
        finally:
            filler.unlink(missing_ok=True)
        message = failed.stdout + failed.stderr
        assert failed.returncode != 0, message
        assert "Traceback" not in message
        assert "config store could not write" in message and "full" in message, message
        # The failed apply wrote nothing; what was there before is still there and sound.
        assert _integrity(small_state_dir / "config.db") == "ok"
        assert _names(mesh) == {"before-the-disk-filled"}
        # With space again the store takes writes as before.
        mesh.apply(_big_apply())
        assert len(_names(mesh)) == BIG_APPLY_COUNT + 1
        assert _integrity(small_state_dir / "config.db") == "ok"
