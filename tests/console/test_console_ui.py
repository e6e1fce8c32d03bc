"""The console web UI in real headless Chromium, against a test double of the console API.

The API answers come from tests/console/fixture_server.py (canned JSON in the shapes of
docs/console-api.md); the HTML, JavaScript, cytoscape layout and browser are all real.
test_console_real.py drives the real console server against a real mesh.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.console import canned
from tests.console.conftest import login, screenshot

pytestmark = pytest.mark.e2e


def test_bad_token_shows_error_and_stays_on_login(page: Page, fixture_console: str) -> None:
    page.goto(f"{fixture_console}/")
    expect(page).to_have_url(re.compile(r"#/login"))
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_label("Token").press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Invalid token.")
    screenshot(page, "login-error")
    expect(page).to_have_url(re.compile(r"#/login"))


def test_good_token_opens_graph_with_all_nodes_and_list(page: Page, fixture_console: str) -> None:
    login(page, fixture_console, "admin-token")
    canvas = page.locator("#graph-canvas")
    expect(canvas).to_have_attribute("data-nodes", str(canned.GRAPH_NODES))
    expect(page.locator("#graph-nodes > li")).to_have_count(canned.GRAPH_NODES)
    edges = page.locator("#graph-edges > li")
    expect(edges).to_have_count(int(canvas.get_attribute("data-edges") or 0))
    expect(page.locator("#graph-nodes")).to_contain_text("unknown (unknown")
    expect(page.locator("#graph-nodes")).to_contain_text("istio-ingressgateway")
    expect(edges.first).to_contain_text("requests/s")
    expect(page.locator("#graph-edges")).to_contain_text("mTLS")
    expect(page.locator("#graph-nodes .health-Failure")).to_have_count(1)
    expect(page.locator("#graph-nodes li", has_text="svc-11")).to_contain_text("proxy not synced")
    screenshot(page, "graph-50")


def test_graph_controls_reload_graph_and_stay_in_the_url(page: Page, fixture_console: str) -> None:
    login(page, fixture_console, "admin-token")
    page.get_by_label("Graph type").select_option("service")
    expect(page).to_have_url(re.compile(r"graphType=service"))
    expect(page.locator("#graph-nodes")).to_contain_text("(service, shop)")
    page.get_by_label("Auto refresh (10 s)").uncheck()
    expect(page).to_have_url(re.compile(r"refresh=off"))
    page.get_by_label("Window").select_option("3600s")
    expect(page).to_have_url(re.compile(r"duration=3600s"))


def test_keyboard_drill_down_from_graph_list(page: Page, fixture_console: str) -> None:
    login(page, fixture_console, "admin-token")
    page.get_by_role("button", name="Refresh now").focus()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#graph-nodes') !== null"):
            break
    first_link = page.locator("#graph-nodes a").first
    expect(first_link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Workload: istio-ingressgateway")
    expect(page.locator("#metrics-inbound svg polyline").first).to_be_attached()


def test_workload_detail_shows_charts_pods_config_logs_and_trace_timeline(
    page: Page, fixture_console: str
) -> None:
    login(page, fixture_console, "admin-token")
    page.goto(f"{fixture_console}/#/namespaces/shop/workloads/svc-01-v1")
    expect(page.get_by_role("heading", level=1)).to_have_text("Workload: svc-01-v1")
    expect(page.locator("#metrics-inbound figure")).to_have_count(3)
    expect(page.locator("#metrics-outbound figure")).to_have_count(3)
    expect(page.get_by_role("cell", name="svc-01-v1-0")).to_be_visible()
    expect(page.locator("#envoy-config")).to_contain_text("virtualInbound")
    expect(page.locator("#envoy-config")).to_contain_text(
        "outbound|9080||svc-01.shop.svc.cluster.local"
    )
    expect(page.locator("#logs")).to_contain_text("app line 0")
    page.get_by_label("Container").select_option("proxy")
    expect(page.locator("#logs")).to_contain_text("proxy line 0")
    bars = page.locator("#trace-timeline .bar")
    expect(bars).to_have_count(3)
    # Span c starts 26 ms into a 40 ms trace: its bar begins at 65 % of the track.
    expect(page.locator("[data-span-id=c] .bar")).to_have_attribute(
        "style", re.compile(r"left:65\.00%")
    )
    screenshot(page, "workload-detail")


@pytest.mark.parametrize("kind", ["workloads", "services", "apps"])
def test_lists_show_health_and_link_to_details(page: Page, fixture_console: str, kind: str) -> None:
    login(page, fixture_console, "admin-token")
    page.get_by_role(
        "link",
        name={"workloads": "Workloads", "services": "Services", "apps": "Applications"}[kind],
    ).click()
    rows = page.locator(f"#{kind}-list tbody tr")
    expect(rows).to_have_count(len(canned.SERVICES))
    expect(page.locator(f"#{kind}-list .health-Failure")).to_have_count(1)
    if kind == "workloads":
        expect(page.locator("#workloads-list")).to_contain_text("STALE")
    screenshot(page, f"list-{kind}")
    rows.nth(1).get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("svc-01")
    screenshot(page, f"detail-{kind}")


def test_config_edit_shows_validation_message_inline(page: Page, fixture_console: str) -> None:
    login(page, fixture_console, "admin-token")
    page.get_by_role("link", name="Istio config").click()
    expect(page.locator("#config-list tbody tr")).to_have_count(2)
    screenshot(page, "config-list")
    page.locator("#config-list tr", has_text="VirtualService").get_by_role(
        "link", name="svc-01"
    ).click()
    expect(page.locator("#config-yaml")).to_contain_text("host: svc-01")
    page.get_by_role("link", name="Edit").click()
    editor = page.get_by_label("YAML")
    editor.fill(editor.input_value().replace("host: svc-01", "host: nowhere"))
    page.get_by_role("button", name="Validate").click()
    checks = page.locator("#validation")
    expect(checks).to_contain_text("IST0101")
    expect(checks).to_contain_text("Referenced host not found: 'nowhere'")
    expect(checks).to_contain_text("spec.http[0].route[0].destination.host")
    expect(checks.locator(".sev-error")).to_have_text("error")
    screenshot(page, "config-validation")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#apply-checks")).to_contain_text("IST0101")


def test_config_delete_asks_for_confirmation(page: Page, fixture_console: str) -> None:
    login(page, fixture_console, "admin-token")
    page.goto(f"{fixture_console}/#/istio/shop/DestinationRule/svc-01")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"#/istio$"))
    expect(page.locator("#config-list tbody tr")).to_have_count(1)


def test_view_role_sees_no_write_buttons(page: Page, fixture_console: str) -> None:
    login(page, fixture_console, "view-token")
    expect(page.locator("#user")).to_have_text("token-user (view)")
    page.get_by_role("link", name="Istio config").click()
    expect(page.locator("#config-list tbody tr").first).to_be_visible()
    expect(page.get_by_role("link", name="Create")).to_have_count(0)
    page.get_by_role("link", name="svc-01").first.click()
    expect(page.locator("#config-yaml")).to_be_visible()
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    screenshot(page, "config-view-role")
    page.goto(page.url + "/edit")
    expect(page.get_by_role("button", name="Validate")).to_be_visible()
    expect(page.get_by_role("button", name="Apply")).to_have_count(0)


def test_logout_returns_to_login_and_forgets_session(page: Page, fixture_console: str) -> None:
    login(page, fixture_console, "admin-token")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"#/login"))
    page.goto(f"{fixture_console}/#/graph")
    expect(page).to_have_url(re.compile(r"#/login"))
    expect(page.get_by_label("Token")).to_be_visible()
