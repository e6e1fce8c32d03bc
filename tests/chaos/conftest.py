"""Fault tests: each module runs its own mesh; `slow` tests run only with `--slow`."""

from __future__ import annotations

import os

import pytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("slow") and not item.config.getoption("--slow"):
        pytest.skip("slow fault test: run with --slow")
    if item.get_closest_marker("e2e") and os.geteuid() != 0:
        pytest.fail("the fault tests need root (network namespaces, iptables, mounts)")
