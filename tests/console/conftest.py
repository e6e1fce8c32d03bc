"""Browser fixtures: Debian's chromium driven by Playwright, screenshots kept as artifacts."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserType, Page, expect, sync_playwright

from tests.console.fixture_server import AppThread, build_fixture_app

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser builds cannot be downloaded here; Debian's chromium works with
# Playwright's CDP driver when these flags keep it from phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("TRELLIS_TEST_ARTIFACTS", "test-artifacts")) / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


def launch_chromium(playwright_chromium: BrowserType) -> Browser:
    if not Path(CHROMIUM).exists():
        pytest.fail("the console browser tests need Debian's chromium (setup.sh installs it)")
    return playwright_chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# Module scope, not session: sync Playwright keeps an event loop running in this thread while
# it lives, and the asyncio tests that run after tests/console would find it there.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = launch_chromium(p.chromium)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def fixture_console() -> Iterator[str]:
    """URL of the canned-API test double serving the real web UI."""
    with AppThread(build_fixture_app()) as server:
        yield server.url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=str(artifacts_dir() / f"{name}.png"), full_page=True)


def login(page: Page, base_url: str, token: str) -> None:
    page.goto(f"{base_url}/#/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"#/graph"))
    expect(page.locator("#graph-canvas")).to_have_attribute("data-state", "ready")
