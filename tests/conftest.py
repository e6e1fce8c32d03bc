"""Options shared by the whole test suite."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*/expected.json from the current compiler output",
    )
    # Registered here, not in tests/chaos/conftest.py: pytest reads options only from the
    # conftest files it loads at start-up, and `pytest tests --slow` must know the flag.
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (the longer fault tests in tests/chaos)",
    )
