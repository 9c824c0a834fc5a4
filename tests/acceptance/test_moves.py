"""Resize, migrate, live migration, shelve and evacuate with `openstack`.

Each test brings its own server (the demo member's) and deletes it, so they
run in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def server(demo, request) -> Iterator[dict[str, Any]]:
    name = f"accept-{request.node.name.removeprefix('test_').replace('_', '-')[:40]}"
    created = demo.json("server", "create", "--flavor", "m1.tiny", "--image", "blank-qcow2",
                        "--nic", "none", "--wait", name)
    assert created["status"] == "ACTIVE", created
    yield created
    demo("server", "delete", "--wait", created["id"])


def _flavor_name(server: dict[str, Any]) -> str:
    flavor = server["flavor"]
    return flavor["original_name"] if isinstance(flavor, dict) else flavor.split(" (")[0]


def test_resize_then_confirm(demo, server):
    demo("server", "resize", "--flavor", "m1.small", "--wait", server["id"])
    resized = demo.wait_server(server["id"], "VERIFY_RESIZE")
    assert _flavor_name(resized) == "m1.small"
    demo("server", "resize", "confirm", server["id"])
    confirmed = demo.wait_server(server["id"], "ACTIVE")
    assert _flavor_name(confirmed) == "m1.small"
    assert confirmed["OS-EXT-STS:power_state"] == 1
    limits = {r["Name"]: r["Value"] for r in demo.json("limits", "show", "--absolute")}
    assert limits["total_ram_used"] == 2048


def test_resize_then_revert(demo, server):
    demo("server", "resize", "--flavor", "m1.small", "--wait", server["id"])
    demo.wait_server(server["id"], "VERIFY_RESIZE")
    demo("server", "resize", "revert", server["id"])
    reverted = demo.wait_server(server["id"], "ACTIVE")
    assert _flavor_name(reverted) == "m1.tiny"


def test_admin_migrates_to_another_host(admin, demo, server):
    before = admin.server(server["id"])["OS-EXT-SRV-ATTR:host"]
    admin("server", "migrate", "--wait", server["id"])
    admin.wait_server(server["id"], "VERIFY_RESIZE")
    admin("server", "migration", "confirm", server["id"])
    after = admin.wait_server(server["id"], "ACTIVE")
    assert after["OS-EXT-SRV-ATTR:host"] not in (None, before)
    assert _flavor_name(after) == "m1.tiny"
    assert "migrate" in {e["Action"] for e in demo.json("server", "event", "list",
                                                          server["id"])}


def test_admin_live_migrates(admin, server):
    before = admin.server(server["id"])["OS-EXT-SRV-ATTR:host"]
    admin("server", "migrate", "--live-migration", "--wait", server["id"])
    after = admin.wait_server(server["id"], "ACTIVE")
    assert after["OS-EXT-SRV-ATTR:host"] not in (None, before)


def test_a_member_may_not_migrate(demo, server):
    refused = demo.fails("server", "migrate", server["id"])
    assert "403" in refused.stderr and "Policy doesn't allow" in refused.stderr, \
        refused.stderr
    assert demo.server(server["id"])["status"] == "ACTIVE"


def test_shelve_then_unshelve(demo, server):
    demo("server", "shelve", "--wait", server["id"])
    shelved = demo.server(server["id"])
    assert shelved["status"] in ("SHELVED", "SHELVED_OFFLOADED"), shelved
    images = {i["Name"] for i in demo.json("image", "list")}
    assert f"{server['name']}-shelved" in images
    demo("server", "unshelve", "--wait", server["id"])
    unshelved = demo.wait_server(server["id"], "ACTIVE")
    assert unshelved["OS-EXT-STS:power_state"] == 1
    events = {e["Action"] for e in demo.json("server", "event", "list", server["id"])}
    assert {"shelve", "unshelve"} <= events


def test_admin_evacuates_a_server_whose_host_is_down(admin, server):
    host = admin.server(server["id"])["OS-EXT-SRV-ATTR:host"]
    refused = admin.fails("server", "evacuate", server["id"])  # its host is up
    assert "409" in refused.stderr, refused.stderr
    service = ("--os-compute-api-version", "2.11", "compute", "service", "set")
    admin(*service, "--down", host, "vmflow-compute")
    try:
        # (no --wait: this openstackclient waits for 'ACTIVE' among lower-cased
        # statuses, so it never returns, against Nova as well)
        admin("server", "evacuate", server["id"])
        after = admin.wait_server(server["id"], "ACTIVE")
    finally:
        admin(*service, "--up", host, "vmflow-compute")
    assert after["OS-EXT-SRV-ATTR:host"] not in (None, host)
    assert after["id"] == server["id"] and after["name"] == server["name"]
