"""A member's server through its life, with `openstack` as a user types it.

One server, created by the demo member, goes through every action in turn;
each test leaves it ACTIVE for the next.  Usage, limits and quotas are read
while it exists, so their figures count it.
"""

from __future__ import annotations

from typing import Any

import pytest

NAME = "accept-1"
# Nova's power states: `-f json` prints the number (a table prints its name).
RUNNING, PAUSED, SHUTDOWN, SUSPENDED = 1, 3, 4, 7


@pytest.fixture(scope="module")
def server(demo) -> dict[str, Any]:
    """The server `server create --wait` answered with."""
    return demo.json("server", "create", "--flavor", "m1.tiny", "--image", "blank-qcow2",
                     "--nic", "none", "--wait", NAME)


def test_create_waits_until_active(server):
    assert server["name"] == NAME
    assert server["status"] == "ACTIVE"
    assert "blank-qcow2" in server["image"]
    flavor = server["flavor"]
    # OSC shows the embedded flavor (2.47+) as a mapping, older ones as "name (id)".
    assert (flavor.get("original_name") if isinstance(flavor, dict) else flavor).startswith(
        "m1.tiny")


def test_list_and_show(demo, server):
    listed = {s["ID"]: s for s in demo.json("server", "list")}
    assert listed[server["id"]]["Name"] == NAME
    assert listed[server["id"]]["Status"] == "ACTIVE"
    by_name = demo.server(NAME)
    assert by_name["id"] == server["id"]
    assert by_name["OS-EXT-STS:vm_state"] == "active"
    assert by_name["OS-EXT-STS:power_state"] == RUNNING
    assert demo.server(server["id"])["name"] == NAME


@pytest.mark.parametrize(("action", "undo", "status", "vm_state", "power_state"), [
    ("stop", "start", "SHUTOFF", "stopped", SHUTDOWN),
    ("pause", "unpause", "PAUSED", "paused", PAUSED),
    ("suspend", "resume", "SUSPENDED", "suspended", SUSPENDED),
    ("rescue", "unrescue", "RESCUE", "rescued", RUNNING),
])
def test_action_and_its_undo(demo, server, action, undo, status, vm_state, power_state):
    demo("server", action, NAME)
    changed = demo.wait_server(NAME, status)
    assert changed["OS-EXT-STS:vm_state"] == vm_state
    assert changed["OS-EXT-STS:power_state"] == power_state
    demo("server", undo, NAME)
    back = demo.wait_server(NAME, "ACTIVE")
    assert back["OS-EXT-STS:power_state"] == RUNNING


def test_admin_sees_every_project(admin, server):
    assert server["id"] not in {s["ID"] for s in admin.json("server", "list")}
    listed = {s["ID"]: s for s in admin.json("server", "list", "--all-projects", "--long")}
    assert listed[server["id"]]["Host"] in ("compute-1", "compute-2")
    shown = admin.server(server["id"])
    assert shown["OS-EXT-SRV-ATTR:host"] == listed[server["id"]]["Host"]


def test_hard_reboot_waits(demo, server):
    demo("server", "reboot", "--hard", "--wait", NAME)
    assert demo.server(NAME)["status"] == "ACTIVE"


def test_lock_refuses_the_owners_actions_until_unlocked(admin, demo, server):
    demo("server", "lock", "--reason", "maintenance", NAME)
    locked = demo.server(NAME)
    assert locked["locked"] is True
    assert locked["locked_reason"] == "maintenance"
    refused = demo.fails("server", "stop", NAME)
    assert "locked" in refused.stderr.lower() and "409" in refused.stderr, refused.stderr
    assert demo.server(NAME)["status"] == "ACTIVE"
    # Not an admin's.
    admin("server", "pause", server["id"])
    assert admin.wait_server(server["id"], "PAUSED")["locked"] is True
    admin("server", "unpause", server["id"])
    admin.wait_server(server["id"], "ACTIVE")
    demo("server", "unlock", NAME)
    assert demo.server(NAME)["locked"] is False


def test_image_create_waits_for_the_snapshot(demo, server):
    image = demo.json("server", "image", "create", "--name", "accept-snap", "--wait", NAME)
    assert image["name"] == "accept-snap"
    assert image["status"] == "active"
    listed = {i["Name"]: i for i in demo.json("image", "list")}
    assert listed["accept-snap"]["Status"] == "active"
    assert demo.server(NAME)["status"] == "ACTIVE"


def test_usage_list_counts_the_server(admin, demo, server):
    rows = {row["Project"]: row for row in admin.json("usage", "list")}
    # `-f json` prints the project's id and the server usages themselves (a table
    # prints the project's name and their number).
    row = rows[server["project_id"]]
    assert [s["instance_id"] for s in row["Servers"]] == [server["id"]]
    assert row["RAM MB-Hours"] > 0
    own = demo.json("usage", "show")
    assert own["Project"] == server["project_id"]
    assert [s["name"] for s in own["Servers"]] == [NAME]


def test_limits_show_absolute(demo, server):
    # OSC prints openstacksdk's attribute names, not Nova's (maxTotalInstances, ...).
    limits = {row["Name"]: row["Value"] for row in demo.json("limits", "show", "--absolute")}
    assert limits["max_total_instances"] == 10
    assert limits["max_total_cores"] == 20
    assert limits["max_total_ram_size"] == 51200
    assert limits["max_total_keypairs"] == 100
    assert limits["total_instances_used"] == 1
    assert limits["total_cores_used"] == 1
    assert limits["total_ram_used"] == 512


def test_quota_show(demo, server):
    quota = {row["Resource"]: row["Limit"] for row in demo.json("quota", "show")}
    assert quota["instances"] == 10
    assert quota["cores"] == 20
    assert quota["ram"] == 51200
    assert quota["key-pairs"] == 100
    assert quota["server-groups"] == 10
    assert quota["server-group-members"] == 10


def test_event_list_shows_every_action(demo, server):
    events = demo.json("server", "event", "list", NAME)
    actions = [event["Action"] for event in events]
    for action in ("create", "stop", "start", "pause", "unpause", "suspend", "resume",
                   "rescue", "unrescue", "reboot", "lock", "unlock", "createImage"):
        assert action in actions, actions
    request_id = next(e["Request ID"] for e in events if e["Action"] == "create")
    detail = demo.json("server", "event", "show", NAME, request_id)
    assert detail["action"] == "create"
    assert detail["events"], detail


def test_delete_waits_until_gone(demo, server):
    demo("server", "delete", "--wait", NAME)
    gone = demo.fails("server", "show", NAME)
    assert "No Server found" in gone.stderr, gone.stderr
    assert server["id"] not in {s["ID"] for s in demo.json("server", "list")}
