"""e2e helpers; the shared Bookinfo mesh (`bookinfo`) is in tests/conftest.py so tests/e2e,
tests/console and tests/chaos share one mesh per session."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.meshctl import Mesh, free_port, httpbin_service

__all__ = ["free_port", "netns_with_prefix"]


def netns_with_prefix(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]


@pytest.fixture(scope="module")
def httpbin(bookinfo: Mesh) -> Iterator[Mesh]:
    """httpbin v1 with its sidecar and Service (samples/httpbin), for one test module."""
    with httpbin_service(bookinfo):
        yield bookinfo
