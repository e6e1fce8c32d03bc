"""The console web UI served by the real console (`trellis console`) over the shared Bookinfo
mesh, in real headless Chromium: real login, real graph from real sidecar metrics, real Envoy
config, real validation. Nothing is written to the shared mesh (validation only, no Apply).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import login, screenshot
from tests.e2e.meshctl import Mesh
from tests.e2e.test_console_api import Console, console_token, own_console

pytestmark = pytest.mark.e2e

GRAPH_TIMEOUT_MS = 90_000  # the embedded scrape needs two samples with traffic between them


@pytest.fixture(scope="module")
def real_console(bookinfo: Mesh) -> Iterator[Console]:
    with own_console(bookinfo, "--console-roles", "view") as console:
        yield console


@pytest.fixture
def traffic(bookinfo: Mesh) -> Iterator[None]:
    """Requests to /productpage through the ingress gateway for as long as the test runs."""
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            bookinfo.http("/productpage")
            stop.wait(0.2)  # pacing the load, not waiting for a condition

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(timeout=20)


def test_real_console_graph_drill_down_and_validation(
    page: Page, bookinfo: Mesh, real_console: Console, traffic: None
) -> None:
    url = f"http://127.0.0.1:{real_console.port}"
    login(page, url, console_token(bookinfo))
    nodes = page.locator("#graph-nodes")
    # auto refresh (10 s) brings the edges in once the scrape has seen traffic
    expect(page.locator("#graph-edges")).to_contain_text("reviews", timeout=GRAPH_TIMEOUT_MS)
    expect(nodes).to_contain_text("productpage")
    expect(page.locator("#graph-edges")).to_contain_text("mTLS")
    screenshot(page, "real-graph")

    link = nodes.get_by_role("link", name=re.compile(r"^productpage"))
    link.first.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("productpage")
    expect(page.locator("#metrics-inbound figure").first).to_be_visible()

    page.goto(f"{url}/#/namespaces/default/workloads/productpage-v1")
    expect(page.get_by_role("cell", name="productpage-v1", exact=True)).to_be_visible()
    expect(page.locator("main")).to_contain_text("SYNCED")
    expect(page.locator("#envoy-config")).to_contain_text("virtualInbound")
    expect(page.locator("#envoy-config")).to_contain_text(
        "outbound|9080||reviews.default.svc.cluster.local"
    )
    screenshot(page, "real-workload")

    page.goto(f"{url}/#/istio/default/DestinationRule/reviews/edit")
    editor = page.get_by_label("YAML")
    expect(editor).to_have_value(re.compile(r"name: v3"))
    # a VirtualService routing to a subset the DestinationRule does not define
    editor.fill(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews, namespace: default}\n"
        "spec:\n  hosts: [reviews]\n  http:\n  - route:\n"
        "    - destination: {host: reviews, subset: v9}\n"
    )
    page.get_by_role("button", name="Validate").click()
    checks = page.locator("#validation")
    expect(checks).to_contain_text("IST0101")
    expect(checks).to_contain_text("v9")
    screenshot(page, "real-validation")


def test_real_console_view_role_has_no_write_actions(
    page: Page, bookinfo: Mesh, real_console: Console
) -> None:
    url = f"http://127.0.0.1:{real_console.port}"
    login(page, url, console_token(bookinfo, "view"))
    page.goto(f"{url}/#/istio/default/DestinationRule/reviews")
    expect(page.locator("#config-yaml")).to_contain_text("reviews")
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"#/login"))
