"""The dashboard in keystone mode: log in, see the project's instances, be sent
back to the login when the token dies, log out."""

from __future__ import annotations

import re

import requests
from playwright.sync_api import Page, expect

from vmflow.identity import bootstrap


def _token(base: str, user: str, password: str, project: str) -> str:
    response = requests.post(f"{base}/identity/v3/auth/tokens", timeout=30, json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}})
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def test_login_then_instances_and_a_wrong_password_is_refused(dashboard_cloud, page: Page,
                                                                screenshot):
    running = dashboard_cloud(auth_strategy="keystone")
    base = running.api.base
    accounts = {a.user: a for a in bootstrap.bootstrap(running.db, running.cfg)}
    demo_password = accounts["demo"].password
    token = _token(base, "demo", demo_password, "demo")
    image = requests.get(f"{base}/v2.1/images?name=blank-qcow2", timeout=10,
                         headers={"X-Auth-Token": token}).json()["images"][0]["id"]
    created = requests.post(f"{base}/v2.1/servers", timeout=30, headers={"X-Auth-Token": token},
                            json={"server": {"name": "demo-web", "flavorRef": "1",
                                             "imageRef": image}})
    assert created.status_code == 202, created.text

    # A page without a session goes to the login form, and comes back after it.
    page.goto(f"{base}/dashboard/instances")
    expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))
    page.get_by_label("User name").fill("demo")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_label("Project").fill("demo")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_contain_text("not right")
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.get_by_label("User name")).to_have_value("demo")
    screenshot("login-refused")

    page.get_by_label("Password").fill(demo_password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/dashboard/instances")
    row = page.locator('#instances tbody tr[data-name="demo-web"]')
    expect(row.locator("td.status")).to_have_text("ACTIVE")
    expect(page.locator("#nav-user")).to_contain_text("demo")

    # The token lives in an HttpOnly, SameSite=Strict cookie, and counts only with
    # the dashboard's header: the same cookie alone is refused.
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "vmflow_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert demo_password not in cookie["value"]
    assert page.request.get(f"{base}/v2.1/servers").status == 401
    assert page.request.get(f"{base}/v2.1/servers",
                            headers={"X-Vmflow-Dashboard": "1"}).status == 200

    # A token that stops being valid (a new password revokes the user's tokens)
    # sends the page back to the login form at its next poll.
    admin = _token(base, "admin", accounts["admin"].password, "admin")
    demo_id = requests.get(f"{base}/identity/v3/users?name=demo", timeout=10,
                           headers={"X-Auth-Token": admin}).json()["users"][0]["id"]
    changed = requests.patch(f"{base}/identity/v3/users/{demo_id}", timeout=30,
                             headers={"X-Auth-Token": admin},
                             json={"user": {"password": "a-new-password"}})
    assert changed.status_code == 200
    expect(page).to_have_url(re.compile(r"/dashboard/login\?expired=1"))
    expect(page.locator("#login-notice")).to_contain_text("expired")

    # Log in again, then out: the pages are closed again.
    page.get_by_label("User name").fill("demo")
    page.get_by_label("Password").fill("a-new-password")
    page.get_by_label("Project").fill("demo")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{base}/dashboard/instances")
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#login-notice")).to_contain_text("logged out")
    page.goto(f"{base}/dashboard/")
    expect(page).to_have_url(re.compile(r"/dashboard/login\?next="))
