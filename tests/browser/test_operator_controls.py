"""What an operator changes from the dashboard, end to end in a real browser: compute
services disabled and enabled with a reason, usage per project over a period, and
stuck flow runs resumed or rolled back.  Every answer shown is the real API's."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import SCREENSHOTS, TIMEOUT_MS, VIEWPORT

# Long enough that no conductor re-drives a stuck run on its own during a test:
# only the operator's button does.
PATIENT = {"flow_lease_seconds": 600.0}
# What a datetime-local field holds (seconds are dropped when they are zero).
MINUTE = "%Y-%m-%dT%H:%M"


def _launch(running, name: str, flavor: str = "1", project: str = "demo") -> str:
    response = running.api.post("/v2.1/servers", {"server": {
        "name": name, "flavorRef": flavor, "imageRef": running.api.image_id()}},
        headers={"X-Auth-Project-Id": project})
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def _stuck_launch(running, name: str) -> tuple[str, str]:
    """A launch whose message to the conductor is lost: admitted (the instance is
    in BUILD), its flow run waiting for a conductor that never hears of it."""
    compute_api = running.app.extensions["vmflow"]["compute_api"]
    lost: list[str] = []
    compute_api._hand_to_conductor = lost.append
    try:
        server_id = _launch(running, name)
    finally:
        del compute_api._hand_to_conductor
    assert len(lost) == 1
    return server_id, lost[0]


def _service(running, host: str) -> dict:
    services = running.api.get("/v2.1/os-services", params={"host": host,
                                                          "binary": "vmflow-compute"})
    (service,) = services.json()["services"]
    return service


def _node(page: Page, step: str):
    return page.locator(f'svg.flow-graph .node[data-step="{step}"]')


@pytest.fixture
def other_operator(browser: Browser) -> Iterator[BrowserContext]:
    """A second operator's browser (its own clock: Playwright's is per context)."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


def _stale_tab(context: BrowserContext, url: str, errors: list[str]) -> Page:
    """A tab on ``url`` that stops updating once loaded (its timers are held), so
    it still offers what the run allowed then."""
    tab = context.new_page()
    tab.on("pageerror", lambda err: errors.append(str(err)))
    tab.clock.install()
    tab.goto(url)
    expect(tab.locator("#flow-actions button")).to_have_count(2)
    tab.clock.pause_at(tab.evaluate("Date.now()") + 1)
    tab.wait_for_timeout(300)  # a refresh under way ends
    expect(tab.locator("#flow-actions button")).to_have_count(2)
    return tab


def _shot(tab: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# -- services ----------------------------------------------------------------------------

def test_disable_then_enable_a_compute_service_with_a_reason(dashboard_cloud, page: Page,
                                                             screenshot):
    running = dashboard_cloud()
    page.goto(f"{running.api.base}/dashboard/admin")
    dialog = page.locator("#dialog")
    result = page.locator("#service-result")
    disable = page.get_by_role("button", name="Disable vmflow-compute on compute-2")

    # From the keyboard; Escape cancels and nothing changes.
    disable.focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Disable vmflow-compute on compute-2?")
    expect(dialog).to_contain_text("no new instances")
    reason = dialog.get_by_label("Reason (shown with the service)")
    expect(reason).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert _service(running, "compute-2")["status"] == "enabled"

    # No reason: the API refuses, and its own words are shown.
    disable.click()
    dialog.get_by_role("button", name="Disable", exact=True).click()
    refused = running.api.http.put(f"{running.api.base}/v2.1/os-services/disable-log-reason",
                                   json={"host": "compute-2", "binary": "vmflow-compute",
                                         "disabled_reason": ""}, timeout=30)
    assert refused.status_code == 400
    alert = result.locator("[role=alert]")
    expect(alert).to_contain_text(refused.json()["badRequest"]["message"])
    expect(alert).to_contain_text("HTTP 400 badRequest")
    expect(alert.get_by_role("link")).to_have_attribute("href",
                                                        re.compile(r"/dashboard/trace/req-"))
    assert _service(running, "compute-2")["status"] == "enabled"

    # With a reason: disabled, the reason shown on its row.
    disable.click()
    reason.fill("disk replacement")
    screenshot("admin-service-dialog")
    page.keyboard.press("Enter")
    expect(result.locator("[role=status]")).to_contain_text(
        "vmflow-compute on compute-2 is now disabled (reason: disk replacement).")
    row = page.locator("#services tbody tr", has_text="compute-2")
    expect(row).to_contain_text("disabled")
    expect(row).to_contain_text("disk replacement")
    service = _service(running, "compute-2")
    assert (service["status"], service["disabled_reason"]) == ("disabled", "disk replacement")
    assert _service(running, "compute-1")["status"] == "enabled"
    # The zone table follows; the keyboard stays on the row, now offering Enable.
    expect(page.locator("#zones")).to_contain_text("vmflow-compute up, disabled")
    enable = page.get_by_role("button", name="Enable vmflow-compute on compute-2")
    expect(enable).to_be_focused()
    screenshot("admin-service-disabled")

    # Enable asks first (focus on Cancel), then enables and clears the reason.
    page.keyboard.press("Enter")
    expect(dialog).to_contain_text("Enable vmflow-compute on compute-2?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Enable", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(result.locator("[role=status]")).to_contain_text(
        "vmflow-compute on compute-2 is now enabled.")
    expect(row).not_to_contain_text("disk replacement")
    service = _service(running, "compute-2")
    assert (service["status"], service["disabled_reason"]) == ("enabled", None)
    expect(page.get_by_role("button", name="Disable vmflow-compute on compute-2")) \
        .to_be_focused()


# -- usage per project -------------------------------------------------------------------

def test_usage_per_project_shows_each_project_after_a_boot(dashboard_cloud, page: Page,
                                                           screenshot):
    running = dashboard_cloud()
    api = running.api
    web = _launch(running, "web-1")
    gone = _launch(running, "gone-1", flavor="2")
    other = _launch(running, "billing-1", flavor="3", project="acme")
    for server_id in (web, gone, other):
        assert api.wait_status(server_id)["status"] == "ACTIVE"
    assert api.delete(f"/v2.1/servers/{gone}").status_code == 204
    api.wait_gone(gone)

    page.goto(f"{api.base}/dashboard/admin")
    usage = page.locator("#usage")
    demo = usage.locator('tr.project[data-project="demo"]')
    acme = usage.locator('tr.project[data-project="acme"]')
    expect(demo).to_be_visible()
    expect(acme).to_be_visible()
    expect(demo.locator("td").nth(1)).to_have_text("2")  # web-1, and gone-1 while it lived
    expect(acme.locator("td").nth(1)).to_have_text("1")
    for row in (demo, acme):
        expect(row.locator("td").nth(2)).not_to_have_text("0")  # hours
    expect(usage.locator("tfoot")).to_contain_text("All projects")
    expect(usage.locator("p.period")).to_contain_text(re.compile(r"From .* UTC to .* UTC"))

    # A project's servers open from the keyboard, each with its flavor and state.
    toggle = page.get_by_role("button", name="demo, 2 servers")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    servers = page.locator(f'#{toggle.get_attribute("aria-controls")}')
    expect(servers).to_be_hidden()
    toggle.focus()
    page.keyboard.press("Enter")
    expect(servers).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    web_row = servers.locator(f'tr[data-server="{web}"]')
    gone_row = servers.locator(f'tr[data-server="{gone}"]')
    expect(web_row).to_contain_text("m1.tiny")
    expect(web_row).to_contain_text("active")
    expect(web_row).to_contain_text("running")
    expect(web_row.get_by_role("link", name="web-1")).to_have_attribute(
        "href", f"/dashboard/instances/{web}")
    expect(gone_row).to_contain_text("gone-1 (deleted)")
    expect(gone_row).to_contain_text("m1.small")
    expect(gone_row).to_contain_text("terminated")
    expect(servers).not_to_contain_text("billing-1")
    page.keyboard.press("Enter")  # and close again
    expect(servers).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(servers).to_be_visible()
    screenshot("admin-usage")

    # A period before anything ran: nothing to show.
    before = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    page.get_by_label("Start (UTC)").fill(before.strftime(MINUTE))
    page.get_by_label("End (UTC)").fill((before + dt.timedelta(hours=1)).strftime(MINUTE))
    page.get_by_role("button", name="Show usage").click()
    expect(usage).to_contain_text("No instance of any project ran during this period.")

    # The end before the start: the API's message, not a stack trace.
    page.get_by_label("End (UTC)").fill((before - dt.timedelta(hours=1)).strftime(MINUTE))
    page.get_by_role("button", name="Show usage").click()
    alert = usage.locator("[role=alert]")
    expect(alert).to_contain_text("must come before the end time")
    expect(alert).to_contain_text("HTTP 400 badRequest")
    expect(page.locator("body")).not_to_contain_text("Traceback")

    # Back to the last 24 hours (the end left empty: now).
    page.get_by_role("button", name="Last 24 hours").click()
    expect(demo).to_be_visible()
    expect(page.get_by_label("End (UTC)")).to_have_value("")


# -- stuck flows -------------------------------------------------------------------------

def test_resume_a_stuck_launch_from_its_flow_view(dashboard_cloud, page: Page, screenshot,
                                                  other_operator):
    running = dashboard_cloud(**PATIENT)
    server_id, flow_id = _stuck_launch(running, "stuck-1")
    url = f"{running.api.base}/dashboard/flows/{flow_id}"
    errors: list[str] = []
    stale = _stale_tab(other_operator, url, errors)
    page.goto(url)

    expect(page.locator("#run-facts")).to_contain_text("nobody: no conductor has taken it")
    expect(_node(page, "launch.create-instance-record")).to_have_attribute("data-status", "done")
    expect(_node(page, "launch.select-destinations")).to_have_attribute("data-status", "pending")
    resume = page.locator('#flow-actions button[data-action="resume"]')
    expect(resume).to_have_text("Resume")
    expect(page.locator('#flow-actions button[data-action="rollback"]')).to_have_text("Roll back")
    time.sleep(1.5)  # nothing moves on its own
    assert running.api.server(server_id)["status"] == "BUILD"
    screenshot("flow-stuck")

    resume.focus()
    page.keyboard.press("Enter")
    answer = page.locator("#action-result [role=status]")
    expect(answer).to_contain_text("Resume accepted")
    expect(answer).to_contain_text("HTTP 202")
    # The live view follows the run to its end, without a reload.
    expect(_node(page, "launch.mark-active")).to_have_attribute("data-status", "done")
    expect(page.locator("#run-status")).to_contain_text("done")
    expect(page.locator("#live")).to_have_text("finished")
    expect(page.locator("#flow-actions button")).to_have_count(0)
    expect(answer).to_contain_text("The run has ended: done SUCCESS")
    assert running.api.wait_status(server_id)["status"] == "ACTIVE"
    screenshot("flow-resumed")

    page.locator("#crumbs").get_by_role("link", name="stuck-1").click()
    expect(page.locator("#status")).to_contain_text("ACTIVE")

    # The other operator's tab still offers Resume: the API's 409 is shown, then the
    # tab catches up with the run.
    stale.locator('#flow-actions button[data-action="resume"]').click()
    alert = stale.locator("#action-result [role=alert]")
    expect(alert).to_contain_text("Resume was not accepted")
    expect(alert).to_contain_text(f"Flow run {flow_id} has ended (SUCCESS)")
    expect(alert).to_contain_text("HTTP 409 conflictingRequest")
    expect(alert.get_by_role("link")).to_have_attribute("href",
                                                        re.compile(r"/dashboard/trace/req-"))
    expect(stale.locator("#action-result")).to_be_focused()
    expect(stale.locator("#run-status")).to_contain_text("done")
    expect(stale.locator("#flow-actions button")).to_have_count(0)
    _shot(stale, "flow-resume-409")
    assert not errors, f"script errors on the other tab: {errors}"


def test_roll_back_a_stuck_launch_from_its_flow_view(dashboard_cloud, page: Page, screenshot,
                                                     other_operator):
    # Needs POST /os-flows/{id}/action {"rollback": null} (202 for an unfinished run,
    # reverted by a conductor): until that lands the API answers 400 and this fails.
    running = dashboard_cloud(**PATIENT)
    server_id, flow_id = _stuck_launch(running, "stuck-2")
    url = f"{running.api.base}/dashboard/flows/{flow_id}"
    errors: list[str] = []
    stale = _stale_tab(other_operator, url, errors)
    page.goto(url)
    rollback = page.locator('#flow-actions button[data-action="rollback"]')
    dialog = page.locator("#dialog")

    # It asks first; Escape leaves the run as it was.
    rollback.click()
    expect(dialog).to_contain_text("Roll back this launch of stuck-2?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#action-result")).to_be_empty()
    assert running.api.get(f"/v2.1/os-flows/{flow_id}").json()["flow"]["state"] not in (
        "SUCCESS", "REVERTED", "FAILURE")

    rollback.click()
    dialog.get_by_role("button", name="Roll back").click()
    answer = page.locator("#action-result")
    expect(answer).to_contain_text("Rollback accepted")
    # The live view follows the revert: every step that ran is undone.
    expect(page.locator("#run-status")).to_contain_text("reverted")
    expect(_node(page, "launch.create-instance-record")).to_have_attribute("data-status",
                                                                            "reverted")
    expect(_node(page, "launch.mark-active")).to_have_attribute("data-status", "pending")
    expect(page.locator("#live")).to_have_text("finished")
    expect(page.locator("#flow-actions button")).to_have_count(0)
    expect(answer).to_contain_text("The run has ended: reverted REVERTED")
    assert running.api.wait_status(server_id, ("ERROR",))["status"] == "ERROR"
    screenshot("flow-rolled-back")

    # The other operator's tab still offers Roll back: the API's 409 is shown.
    stale.locator('#flow-actions button[data-action="rollback"]').click()
    stale.locator("#dialog").get_by_role("button", name="Roll back").click()
    alert = stale.locator("#action-result [role=alert]")
    expect(alert).to_contain_text("Rollback was not accepted")
    expect(alert).to_contain_text(f"Flow run {flow_id} has ended (REVERTED)")
    expect(alert).to_contain_text("HTTP 409 conflictingRequest")
    expect(stale.locator("#run-status")).to_contain_text("reverted")
    _shot(stale, "flow-rollback-409")
    assert not errors, f"script errors on the other tab: {errors}"
