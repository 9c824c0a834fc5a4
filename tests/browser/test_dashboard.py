"""The dashboard end to end: a real browser drives the pages, the pages drive the
real cloud through its API.  Every wait is for something to appear on the page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect


def _launch(running, name: str, flavor: str = "1") -> str:
    response = running.api.create(name, flavor=flavor)
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def _row(page: Page, name: str):
    return page.locator(f'#instances tbody tr[data-name="{name}"]')


def test_launch_from_the_form_then_stop_from_the_instance_page(dashboard_cloud, page: Page,
                                                               screenshot):
    running = dashboard_cloud()
    base = running.api.base
    for other in ("db-1", "cache-1"):
        _launch(running, other)

    page.goto(f"{base}/dashboard/instances")
    expect(page.locator("#launch-image option")).not_to_have_count(0)
    page.get_by_label("Name").fill("web-1")
    small = next(f["id"] for f in running.api.get("/v2.1/flavors").json()["flavors"]
                 if f["name"] == "m1.small")
    page.get_by_label("Flavor").select_option(value=small)
    page.get_by_role("button", name="Launch", exact=True).click()
    expect(page.locator("#launch-result")).to_contain_text("Launch of web-1 accepted")

    # The list follows the launch without a reload, until the instance is ACTIVE.
    row = _row(page, "web-1")
    expect(row.locator("td.status")).to_have_text("ACTIVE")
    expect(row.locator("td.host")).to_have_text(re.compile(r"compute-\d"))
    expect(row.locator("td.power")).to_have_text("RUNNING")
    expect(row).to_contain_text("m1.small")
    # Only what ACTIVE allows: stop and reboot here, start nowhere.
    expect(row.locator('button[data-action="stop"]')).to_be_visible()
    expect(row.locator('button[data-action="start"]')).to_have_count(0)
    for other in ("db-1", "cache-1"):
        expect(_row(page, other).locator("td.status")).to_have_text("ACTIVE")
    screenshot("instances")

    # The row's other actions are in a menu a keyboard can open and leave.
    more = row.get_by_role("button", name="More actions for web-1")
    more.focus()
    page.keyboard.press("Enter")
    menu = row.locator(".menu-panel")
    expect(menu).to_be_visible()
    expect(menu.locator("button").first).to_be_focused()
    expect(menu.locator('button[data-action="pause"]')).to_be_visible()
    expect(menu.locator('button[data-action="unpause"]')).to_have_count(0)
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(more).to_be_focused()

    row.get_by_role("link", name="web-1").click()
    expect(page.locator("#status")).to_contain_text("ACTIVE")
    stop = page.locator('#toolbar button[data-action="stop"]')
    expect(page.locator('#toolbar button[data-action="start"]')).to_have_count(0)

    # The confirmation is a real dialog: Escape cancels it and nothing happens ...
    stop.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Stop web-1?")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#status")).to_contain_text("ACTIVE")
    # ... and confirming it stops the instance.
    stop.click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_contain_text("SHUTOFF")
    expect(page.locator('#toolbar button[data-action="start"]')).to_be_visible()
    expect(page.locator('#toolbar button[data-action="stop"]')).to_have_count(0)
    stop_action = page.locator('details.action[data-action="stop"]')
    expect(stop_action).to_contain_text("Success")
    expect(page.locator("#console pre, #console p")).not_to_have_text("Loading…")
    expect(page.locator("#diagnostics table, #diagnostics p")).not_to_have_text("Loading…")
    stop_action.locator("summary strong").click()
    expect(stop_action.locator(".events")).to_contain_text("stop.finish")
    screenshot("instance-detail")

    # The stop's flow: a chain of steps, all done.
    stop_action.get_by_role("link", name="flow view").click()
    expect(page.locator("#live")).to_have_text("finished")
    nodes = page.locator("svg.flow-graph .node")
    expect(nodes).to_have_count(5)
    expect(page.locator('svg.flow-graph .node[data-status="done"]')).to_have_count(5)
    expect(page.locator("#run-facts")).to_contain_text("5: 5 done")


def test_api_errors_are_shown_as_messages(dashboard_cloud, page: Page, screenshot):
    running = dashboard_cloud()
    page.goto(f"{running.api.base}/dashboard/instances")
    expect(page.locator("#launch-image option")).not_to_have_count(0)
    image = page.get_by_label("Image").input_value()

    # No name: the API's own words, not the browser's, and no stack trace.
    page.get_by_role("button", name="Launch", exact=True).click()
    refused = running.api.post("/v2.1/servers", {"server": {"name": "", "flavorRef": "1",
                                                            "imageRef": image}})
    assert refused.status_code == 400
    alert = page.locator("#launch-result [role=alert]")
    expect(alert).to_contain_text(refused.json()["badRequest"]["message"])
    expect(alert).to_contain_text("HTTP 400 badRequest")
    expect(alert.get_by_role("link")).to_have_attribute("href",
                                                        re.compile(r"/dashboard/trace/req-"))

    # More servers at a time than the project's quota allows: the API's 403 is shown.
    too_many = running.api.post("/v2.1/servers", {"server": {
        "name": "many", "flavorRef": "1", "imageRef": image, "min_count": 11,
        "max_count": 11}})
    assert too_many.status_code == 403
    page.get_by_label("Name").fill("many")
    page.get_by_label("Count").fill("11")
    page.get_by_role("button", name="Launch", exact=True).click()
    expect(alert).to_contain_text(too_many.json()["forbidden"]["message"])
    expect(alert).to_contain_text("HTTP 403")
    expect(page.locator("body")).not_to_contain_text("Traceback")
    screenshot("launch-error")

    # A page for something that does not exist says so.
    page.goto(f"{running.api.base}/dashboard/flows/00000000-0000-0000-0000-000000000000")
    expect(page.locator("#poll-errors [role=alert]")).to_contain_text("could not be found")


def test_flow_view_of_a_failed_launch(dashboard_cloud, page: Page, screenshot):
    # Every host fails to power the guest on: the build is rescheduled until it
    # runs out of attempts, then everything reverts and the instance is in ERROR.
    running = dashboard_cloud(inject_failures={f"compute-{i}": "power_on" for i in (1, 2, 3)})
    server_id = _launch(running, "doomed")
    page.goto(f"{running.api.base}/dashboard/instances/{server_id}")
    expect(page.locator("#status")).to_contain_text("ERROR")
    expect(page.locator("#fault")).to_contain_text("Fault:")

    create = page.locator('details.action[data-action="create"]')
    expect(create).to_contain_text("Error")
    create.get_by_role("link", name="flow view").click()

    expect(page.locator("#live")).to_have_text("finished")
    failed = page.locator('svg.flow-graph .node[data-step="launch.power-on"]')
    expect(failed).to_have_attribute("data-status", "failed")
    # The error is on the node itself (shortened to fit; whole for screen readers).
    expect(failed.locator("text.error")).to_contain_text("Compute host")
    expect(failed).to_have_attribute("aria-label", re.compile("error: .*failed during power_on"))
    expect(page.locator('svg.flow-graph .node[data-step="launch.mark-active"]')) \
        .to_have_attribute("data-status", "pending")
    expect(page.locator('svg.flow-graph .node[data-step="launch.reschedule"]')) \
        .to_contain_text("attempt 3")
    expect(page.locator('svg.flow-graph .node[data-status="reverted"]')).not_to_have_count(0)
    # The failed step is selected: its error is in the step panel.
    expect(page.locator("#step-title")).to_have_text("power-on")
    expect(page.locator("#step [role=alert]")).to_contain_text("HypervisorError")
    expect(page.locator("#run-facts")).to_contain_text("launch.power-on")
    # Every attempt is in the history: three failed power-ons on three hosts.
    history = page.locator("#events tbody tr", has_text="launch.power-on")
    expect(history.filter(has_text="failed")).to_have_count(3)
    screenshot("flow-failed-launch")

    # Keyboard: steps are focusable and the arrow keys walk the graph.
    failed.focus()
    page.keyboard.press("ArrowUp")
    expect(page.locator("#step-title")).to_have_text("define-domain")


def test_flow_view_of_a_failed_last_step(dashboard_cloud, page: Page):
    running = dashboard_cloud(inject_step_failures=["launch.mark-active"])
    server_id = _launch(running, "almost")
    running.api.wait_status(server_id)
    flows = running.api.get(f"/dashboard/api/flows?instance={server_id}").json()["flows"]
    page.goto(f"{running.api.base}/dashboard/flows/{flows[0]['id']}")
    node = page.locator('svg.flow-graph .node[data-step="launch.mark-active"]')
    expect(node).to_have_attribute("data-status", "failed")
    expect(node.locator("text.error")).to_contain_text("Failure injected")
    expect(page.locator("#step [role=alert]")).to_contain_text(
        "Failure injected by configuration in step launch.mark-active")
    expect(page.locator('svg.flow-graph .node[data-status="reverted"]')).to_have_count(12)


def test_flow_view_follows_a_running_operation(dashboard_cloud, page: Page):
    # A guest that ignores ACPI: the stop waits out its shutdown timeout, polling.
    # Ten seconds of it: long enough for the page to load and see the run
    # going on a loaded machine.
    running = dashboard_cloud(hosts=[{"name": "compute-1", "acpi_shutdown": False}],
                              shutdown_timeout=10.0)
    server_id = _launch(running, "deaf")
    running.api.wait_status(server_id)
    response = running.api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None})
    assert response.status_code == 202, response.text
    request_id = response.headers["X-OpenStack-Request-Id"]
    flows = running.api.get(f"/dashboard/api/flows?instance={server_id}").json()["flows"]
    stop = next(f for f in flows if f["request_id"] == request_id)

    page.goto(f"{running.api.base}/dashboard/flows/{stop['id']}")
    expect(page.locator("#live")).to_have_text("live: updated every second")
    expect(page.locator('svg.flow-graph .node[data-status="running"]')).not_to_have_count(0)
    expect(page.locator('svg.flow-graph .node[data-step="stop.finish"]')) \
        .to_have_attribute("data-status", "pending")
    # Without a reload, it ends.
    expect(page.locator('svg.flow-graph .node[data-step="stop.finish"]')) \
        .to_have_attribute("data-status", "done", timeout=30_000)
    expect(page.locator("#live")).to_have_text("finished")
    expect(page.locator("#run-status")).to_contain_text("done")


def test_request_trace_merges_every_service(dashboard_cloud, page: Page, screenshot):
    running = dashboard_cloud()
    server_id = _launch(running, "traced")
    running.api.wait_status(server_id)
    page.goto(f"{running.api.base}/dashboard/instances/{server_id}")
    create = page.locator('details.action[data-action="create"]')
    request_id = create.get_attribute("data-request-id")
    create.get_by_role("link", name=request_id).click()

    expect(page).to_have_url(re.compile(f"/dashboard/trace/{request_id}$"))
    rows = page.locator("#entries tbody tr[data-source]")
    expect(rows.first).to_be_visible()
    modules = set(page.locator("#entries tr[data-source=log] td.module").all_inner_texts())
    assert {"webapp.access", "workers.conductor", "flows.engine", "scheduler.manager"} <= modules
    expect(page.locator("#entries tr[data-source=flow]").first).to_be_visible()
    expect(page.locator("#entries tr[data-source=notification]").first).to_be_visible()
    times = page.locator("#entries tr[data-source] td.time time").evaluate_all(
        "els => els.map(e => e.getAttribute('datetime'))")
    assert times == sorted(times)
    screenshot("trace")

    # Filters hide a source without reloading.
    page.get_by_role("checkbox", name="log lines").uncheck()
    expect(page.locator("#entries tr[data-source=log]")).to_have_count(0)
    expect(page.locator("#entries tr[data-source=flow]").first).to_be_visible()


def test_trace_without_a_log_directory_still_shows_events(cloud_factory, page: Page):
    running = cloud_factory()
    response = running.api.create("quiet")
    running.api.wait_status(response.json()["server"]["id"])
    page.goto(f"{running.api.base}/dashboard/trace/"
              f"{response.headers['X-OpenStack-Request-Id']}")
    expect(page.locator("#no-log-dir")).to_contain_text("No log directory is configured")
    expect(page.locator("#entries tr[data-source=flow]").first).to_be_visible()


def test_overview_and_admin(dashboard_cloud, page: Page, screenshot):
    running = dashboard_cloud()
    # A flavor no host has the disk for: its launch ends in ERROR (no valid host).
    huge = running.api.post("/v2.1/flavors", {"flavor": {"name": "m1.hugedisk", "ram": 512,
                                                        "vcpus": 1, "disk": 5000}})
    assert huge.status_code == 200, huge.text
    fine = [_launch(running, name) for name in ("web-1", "web-2", "db-1")]
    broken = _launch(running, "too-big", flavor=huge.json()["flavor"]["id"])
    for server_id in [*fine, broken]:
        running.api.wait_status(server_id)
    running.api.post(f"/v2.1/servers/{fine[2]}/action", {"os-stop": None})
    running.api.wait_status(fine[2], ("SHUTOFF",))

    page.goto(f"{running.api.base}/dashboard/")
    expect(page.locator("#hosts-up")).to_have_text("3")
    expect(page.locator("#hosts-down")).to_have_text("0")
    expect(page.locator("#capacity")).to_contain_text("vCPUs")
    expect(page.locator("#status-counts")).to_contain_text("ACTIVE")
    expect(page.locator("#status-counts")).to_contain_text("SHUTOFF")
    expect(page.locator("#error-instances")).to_contain_text("too-big")
    expect(page.locator("#error-instances")).to_contain_text("No valid host")
    expect(page.locator("#failed-flows")).to_contain_text("launch.select-destinations")
    screenshot("overview")

    page.get_by_role("link", name="Admin").click()
    expect(page.locator("#hypervisors")).to_contain_text("compute-3")
    expect(page.locator("#hypervisors")).to_contain_text("web-1")
    expect(page.locator("#services")).to_contain_text("vmflow-compute")
    expect(page.locator("#flavors")).to_contain_text("m1.hugedisk")
    expect(page.locator("#images")).to_contain_text("blank-qcow2")
    expect(page.locator("#zones")).to_contain_text("nova")
    expect(page.locator("#aggregates")).not_to_contain_text("Loading")
    screenshot("admin")
