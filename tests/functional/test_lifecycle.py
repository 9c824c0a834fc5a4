"""Lifecycle operations through the HTTP API of an embedded cloud: stop, start,
reboot, pause, suspend, lock, snapshot, rebuild, rescue.

Everything is real: the Flask app, the conductor and compute Celery workers,
the database and libvirt test-driver hosts.  What is checked is what a user or
an operator sees: statuses, the guest on the hypervisor, instance actions and
their events, faults, notifications.
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest
from sqlalchemy import select

import flows
from flows.base import Services
from tests.functional.checks import accepted
from vmflow.db.models import Image, InstanceFault, Notification
from vmflow.states import power_state
from webapp.api.microversion import MAX_VERSION

# Short timeouts, so that the failure paths (which poll until they give up) are quick.
FAST = {"spawn_poll_attempts": 3, "shutdown_timeout": 0.3, "report_interval": 60.0}

# One simulated host whose guests ignore ACPI shutdown requests.
DEAF = [{"name": "compute-1", "acpi_shutdown": False}]

# The newest compute microversion: createImage answers the image id (2.45), lock
# takes a reason (2.73), events show their host (2.62) and details (2.84).
LATEST = {"OpenStack-API-Version": f"compute {MAX_VERSION}"}

STOP = {"os-stop": None}
START = {"os-start": None}


@pytest.fixture
def running(cloud_factory):
    return cloud_factory(**FAST)


def _launch(running, name: str = "vm") -> dict:
    response = running.api.create(name)
    assert response.status_code == 202, response.text
    server = running.api.wait_status(response.json()["server"]["id"])
    assert server["status"] == "ACTIVE"
    return server


def _act(running, server_id: str, body: dict, headers: dict | None = None, **kw):
    return running.api.post(f"/v2.1/servers/{server_id}/action", body,
                            headers={**LATEST, **(headers or {})}, **kw)


def _settled(running, server_id: str) -> dict:
    """The server once no operation holds it (task_state None)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        server = running.api.server(server_id)
        if server["OS-EXT-STS:task_state"] is None:
            return server
        time.sleep(0.02)
    raise AssertionError(f"server {server_id} stayed in {server['OS-EXT-STS:task_state']}")


def _do(running, server_id: str, body: dict, status: str) -> dict:
    response = _act(running, server_id, body)
    assert response.status_code == accepted(body), response.text
    server = _settled(running, server_id)
    assert server["status"] == status, server
    return server


def _power(running, server: dict) -> int:
    return running.driver(server["OS-EXT-SRV-ATTR:host"]).power_state(server["id"])


def _actions(running, server_id: str) -> list[dict]:
    body = running.api.get(f"/v2.1/servers/{server_id}/os-instance-actions").json()
    return body["instanceActions"]


def _events(running, server_id: str, request_id: str) -> list[dict]:
    response = running.api.get(f"/v2.1/servers/{server_id}/os-instance-actions/{request_id}",
                               headers=LATEST)
    assert response.status_code == 200, response.text
    return response.json()["instanceAction"]["events"]


def test_power_operations_change_the_guest_and_are_recorded(running):
    server = _launch(running)
    sid = server["id"]
    steps = [(STOP, "SHUTOFF", power_state.SHUTDOWN), (START, "ACTIVE", power_state.RUNNING),
             ({"reboot": {"type": "SOFT"}}, "ACTIVE", power_state.RUNNING),
             ({"reboot": {"type": "HARD"}}, "ACTIVE", power_state.RUNNING),
             ({"pause": None}, "PAUSED", power_state.PAUSED),
             ({"unpause": None}, "ACTIVE", power_state.RUNNING),
             ({"suspend": None}, "SUSPENDED", power_state.SUSPENDED),
             ({"resume": None}, "ACTIVE", power_state.RUNNING)]
    for body, status, power in steps:
        after = _do(running, sid, body, status)
        assert after["OS-EXT-STS:power_state"] == power, body
        assert _power(running, after) == power, body  # the hypervisor agrees
        assert after["OS-EXT-SRV-ATTR:host"] == server["OS-EXT-SRV-ATTR:host"]

    names = [a["action"] for a in _actions(running, sid)]
    assert names == ["resume", "suspend", "unpause", "pause", "reboot", "reboot", "start",
                     "stop", "create"]
    stop = _actions(running, sid)[-2]
    assert stop["request_id"].startswith("req-") and stop["message"] is None
    assert stop["user_id"] == "demo" and stop["project_id"] == "demo"
    events = _events(running, sid, stop["request_id"])
    assert [e["event"] for e in events] == ["stop.begin", "stop.request-shutdown",
                                            "stop.poll-off", "stop.wait-for-shutoff",
                                            "stop.finish"]
    assert all(e["result"] == "Success" and e["host"] == server["OS-EXT-SRV-ATTR:host"]
               and e["start_time"] and e["finish_time"] for e in events)

    with running.db.read() as session:
        kinds = [n.event_type for n in session.scalars(
            select(Notification).where(Notification.instance_uuid == sid)
            .order_by(Notification.id))]
        first = session.scalar(select(Notification).where(
            Notification.event_type == "instance.stop.end"))
        assert first.request_id == stop["request_id"]
        assert first.payload["state_before"]["vm_state"] == "active"
        assert first.payload["state"]["vm_state"] == "stopped"
    assert kinds[:4] == ["instance.create.start", "instance.create.end",
                         "instance.stop.start", "instance.stop.end"]
    assert len(kinds) == 2 + 2 * len(steps)


def test_a_guest_that_ignores_acpi_is_powered_off_after_the_timeout(cloud_factory):
    running = cloud_factory(hosts=DEAF, **FAST)
    server = _launch(running)
    after = _do(running, server["id"], STOP, "SHUTOFF")
    assert _power(running, after) == power_state.SHUTDOWN
    request_id = _actions(running, server["id"])[0]["request_id"]
    events = _events(running, server["id"], request_id)
    waits = [e for e in events if e["event"] == "stop.wait-for-shutoff"]
    assert len(waits) > 1 and waits[-1]["result"] == "Success"  # polled, then forced


PAUSE, SUSPEND, RESCUE = {"pause": None}, {"suspend": None}, {"rescue": None}

# Every operation, from a state that does not allow it: (how to get there, its
# status and vm_state), then the refused action.
ILLEGAL = [
    ([PAUSE], "PAUSED", "paused", STOP),
    ([], "ACTIVE", "active", START),
    ([PAUSE], "PAUSED", "paused", {"reboot": {"type": "SOFT"}}),
    ([RESCUE], "RESCUE", "rescued", {"reboot": {"type": "HARD"}}),
    ([STOP], "SHUTOFF", "stopped", PAUSE),
    ([], "ACTIVE", "active", {"unpause": None}),
    ([STOP], "SHUTOFF", "stopped", SUSPEND),
    ([], "ACTIVE", "active", {"resume": None}),
    ([RESCUE], "RESCUE", "rescued", {"createImage": {"name": "x"}}),
    ([PAUSE], "PAUSED", "paused", {"rebuild": {"imageRef": "IMAGE"}}),
    ([SUSPEND], "SUSPENDED", "suspended", RESCUE),
    ([], "ACTIVE", "active", {"unrescue": None}),
]


@pytest.mark.parametrize(("setup", "status", "state", "body"), ILLEGAL,
                         ids=[next(iter(case[3])) + "-" + case[1] for case in ILLEGAL])
def test_an_action_the_state_does_not_allow_is_409_naming_the_state(running, setup, status,
                                                                    state, body):
    server = _launch(running)
    for first in setup:
        _do(running, server["id"], first, status)
    if "rebuild" in body:
        body = {"rebuild": {"imageRef": running.api.image_id()}}
    before = _actions(running, server["id"])
    response = _act(running, server["id"], body)
    assert response.status_code == 409, response.text
    message = response.json()["conflictingRequest"]["message"]
    assert f"vm_state {state}" in message and server["id"] in message
    assert _actions(running, server["id"]) == before  # nothing recorded
    assert running.api.server(server["id"])["status"] == status


def test_two_concurrent_actions_one_is_accepted_the_other_409(cloud_factory):
    running = cloud_factory(hosts=DEAF, **FAST)
    server = _launch(running)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(lambda body: _act(running, server["id"], body).status_code,
                                [STOP, PAUSE]))
    assert codes == [202, 409]
    _settled(running, server["id"])
    assert len(_actions(running, server["id"])) == 2  # create and the one accepted


@pytest.mark.parametrize("body", [
    {"os-stop": {"x": 1}}, {"reboot": {}}, {"reboot": {"type": "GENTLE"}},
    {"reboot": None}, {"os-stop": None, "pause": None}, {"fly": None},
    {"createImage": {}}, {"createImage": {"name": ""}}, {"rebuild": {"imageRef": "nope"}},
    {"rebuild": {"imageRef": "7d3fe0a1-8d3f-4d3c-9a52-1f0c2a3b4c5d"}},
    {"rescue": {"rescue_image_ref": 5}}, {"lock": {"locked_reason": 7}},
])
def test_bad_action_bodies_are_400_and_change_nothing(running, body):
    server = _launch(running)
    response = _act(running, server["id"], body)
    assert response.status_code == 400, response.text
    assert response.json()["badRequest"]["message"]
    assert running.api.server(server["id"])["OS-EXT-STS:task_state"] is None
    assert [a["action"] for a in _actions(running, server["id"])] == ["create"]


def test_unknown_server_is_404(running):
    response = _act(running, "7d3fe0a1-8d3f-4d3c-9a52-1f0c2a3b4c5d", STOP)
    assert response.status_code == 404
    assert _act(running, "not-a-uuid", STOP).status_code == 404


def _steps_of(operation: str, running) -> list[str]:
    return flows.task_names(flows.build(operation, Services(config=running.cfg, db=None), {}))


# operation, the action's body, status before, status after, how to get there first
OPERATIONS = [
    ("stop", STOP, "ACTIVE", "SHUTOFF", []),
    ("start", START, "SHUTOFF", "ACTIVE", [STOP]),
    ("reboot", {"reboot": {"type": "SOFT"}}, "ACTIVE", "ACTIVE", []),
    ("reboot_hard", {"reboot": {"type": "HARD"}}, "ACTIVE", "ACTIVE", []),
    ("pause", {"pause": None}, "ACTIVE", "PAUSED", []),
    ("unpause", {"unpause": None}, "PAUSED", "ACTIVE", [{"pause": None}]),
    ("suspend", {"suspend": None}, "ACTIVE", "SUSPENDED", []),
    ("resume", {"resume": None}, "SUSPENDED", "ACTIVE", [{"suspend": None}]),
    ("snapshot", {"createImage": {"name": "snap"}}, "ACTIVE", "ACTIVE", []),
    ("rebuild", {"rebuild": {"imageRef": "IMAGE"}}, "ACTIVE", "ACTIVE", []),
    ("rescue", {"rescue": None}, "ACTIVE", "RESCUE", []),
    ("unrescue", {"unrescue": None}, "RESCUE", "ACTIVE", [{"rescue": None}]),
]


@pytest.mark.parametrize(("operation", "body", "status", "_after", "setup"), OPERATIONS,
                         ids=[o[0] for o in OPERATIONS])
def test_a_failure_at_each_step_rolls_back_with_a_fault(running, operation, body, status,
                                                        _after, setup):
    server = _launch(running)
    sid = server["id"]
    if operation == "rebuild":
        body = {"rebuild": {"imageRef": running.api.image_id()}}
    for first in setup:
        _do(running, sid, first, status)
    power = _power(running, server)
    for step in _steps_of(operation, running):
        running.cfg.inject_step_failures[:] = [step]
        try:
            response = _act(running, sid, body)
            assert response.status_code == accepted(body), response.text
            after = _settled(running, sid)
        finally:
            running.cfg.inject_step_failures[:] = []
        assert after["status"] == status, (step, after)  # as before the operation
        assert _power(running, after) == power, step  # and so is the guest
        action = _actions(running, sid)[0]
        assert action["message"] == "Error", step
        events = _events(running, sid, action["request_id"])
        failed = [e for e in events if e["result"] == "Error"]
        assert failed[0]["event"] == step and "injected" in failed[0]["details"], step
        with running.db.read() as session:
            fault = session.scalar(select(InstanceFault).where(
                InstanceFault.instance_uuid == sid).order_by(InstanceFault.id.desc()))
            assert step in fault.message, (step, fault.message)
            error = session.scalar(select(Notification).where(
                Notification.instance_uuid == sid,
                Notification.event_type == f"instance.{operation}.error")
                .order_by(Notification.id.desc()))
            assert error is not None and error.request_id == action["request_id"], step
    # Nothing was left behind: the operation still works once nothing fails.
    _do(running, sid, body, _after)


def test_snapshot_then_boot_a_new_server_from_it(running):
    server = _launch(running)
    response = _act(running, server["id"], {"createImage": {"name": "snap-1",
                                                             "metadata": {"purpose": "test"}}})
    assert response.status_code == 202, response.text
    image_id = response.json()["image_id"]
    assert "Location" not in response.headers  # from 2.45 the id is in the body instead
    assert _settled(running, server["id"])["status"] == "ACTIVE"
    image = running.api.get(f"/v2.1/images/{image_id}").json()["image"]
    assert image["status"] == "ACTIVE" and image["name"] == "snap-1"
    assert image["metadata"]["image_type"] == "snapshot"
    assert image["metadata"]["instance_uuid"] == server["id"]
    assert image["metadata"]["purpose"] == "test"
    assert image["metadata"]["hw_architecture"] == "x86_64"  # the source image's
    assert _power(running, server) == power_state.RUNNING  # unpaused after the copy

    new = running.api.post("/v2.1/servers", {"server": {"name": "from-snap", "flavorRef": "1",
                                                        "imageRef": image_id}})
    assert new.status_code == 202, new.text
    booted = running.api.wait_status(new.json()["server"]["id"])
    assert booted["status"] == "ACTIVE" and booted["image"]["id"] == image_id


def test_a_failed_snapshot_leaves_no_image(running):
    server = _launch(running)
    running.cfg.inject_step_failures[:] = ["snapshot.activate-image"]
    response = _act(running, server["id"], {"createImage": {"name": "broken"}})
    image_id = response.json()["image_id"]
    assert _settled(running, server["id"])["status"] == "ACTIVE"
    running.cfg.inject_step_failures[:] = []
    assert running.api.get(f"/v2.1/images/{image_id}").status_code == 404
    assert "broken" not in [i["name"] for i in running.api.get("/v2.1/images").json()["images"]]
    with running.db.read() as session:
        location = session.get(Image, image_id).location
    assert not location  # the file was never recorded, and was deleted


def test_rebuild_keeps_identity_and_replaces_the_image(running):
    server = _launch(running, "old-name")
    snap = _act(running, server["id"], {"createImage": {"name": "base-2"}}).json()["image_id"]
    _settled(running, server["id"])
    response = _act(running, server["id"], {"rebuild": {"imageRef": snap, "name": "new-name"}})
    assert response.status_code == 202, response.text
    assert response.json()["server"]["status"] == "REBUILD"
    assert response.json()["server"]["image"]["id"] == snap  # the image it is rebuilt from
    after = _settled(running, server["id"])
    assert after["status"] == "ACTIVE" and after["image"]["id"] == snap
    assert after["name"] == "new-name" and after["id"] == server["id"]
    assert after["OS-EXT-SRV-ATTR:host"] == server["OS-EXT-SRV-ATTR:host"]
    assert after["flavor"] == server["flavor"]
    assert _power(running, after) == power_state.RUNNING

    # A stopped server is rebuilt and stays stopped.
    _do(running, server["id"], STOP, "SHUTOFF")
    after = _do(running, server["id"], {"rebuild": {"imageRef": running.api.image_id()}},
                "SHUTOFF")
    assert after["image"]["id"] == running.api.image_id()


def test_rescue_then_unrescue_leaves_the_original_disk_untouched(running):
    server = _launch(running)
    driver = running.driver(server["OS-EXT-SRV-ATTR:host"])
    original = driver.domain_disks(server["id"])
    checksum = driver.disk_checksum(server["id"])
    assert len(original) == 1

    response = _act(running, server["id"], {"rescue": None})
    assert response.status_code == 200 and set(response.json()) == {"adminPass"}
    rescued = _settled(running, server["id"])
    assert rescued["status"] == "RESCUE"
    disks = driver.domain_disks(server["id"])
    assert len(disks) == 2 and disks[1] == original[0] and disks[0].endswith("disk.rescue")
    assert driver.power_state(server["id"]) == power_state.RUNNING

    _do(running, server["id"], {"unrescue": None}, "ACTIVE")
    assert driver.domain_disks(server["id"]) == original
    assert driver.disk_checksum(server["id"]) == checksum
    assert not any(p.endswith("disk.rescue") for p in driver.domain_disks(server["id"]))


MEMBER = {"X-Roles": "member"}
OTHER_ADMIN = {"X-Roles": "admin", "X-Auth-Project-Id": "ops"}


def test_a_locked_server_refuses_its_owner_but_not_an_admin(running):
    server = _launch(running)
    sid = server["id"]
    response = _act(running, sid, {"lock": {"locked_reason": "maintenance"}}, headers=MEMBER)
    assert response.status_code == 202, response.text
    shown = running.api.server(sid, version="2.73")
    assert shown["locked"] is True and shown["locked_reason"] == "maintenance"

    refused = _act(running, sid, STOP, headers=MEMBER)
    assert refused.status_code == 409
    assert "locked" in refused.json()["conflictingRequest"]["message"]
    assert running.api.delete(f"/v2.1/servers/{sid}", headers=MEMBER).status_code == 409
    _do(running, sid, STOP, "SHUTOFF")  # an admin may act

    assert _act(running, sid, {"unlock": None}, headers=MEMBER).status_code == 202
    assert running.api.server(sid, version="2.9")["locked"] is False
    _do(running, sid, START, "ACTIVE")
    assert [a["action"] for a in _actions(running, sid)][:4] == ["start", "unlock", "stop",
                                                                 "lock"]


def test_a_lock_set_by_an_admin_is_lifted_only_by_an_admin(running):
    server = _launch(running)
    sid = server["id"]
    assert _act(running, sid, {"lock": None}, headers=OTHER_ADMIN).status_code == 202
    response = _act(running, sid, {"unlock": None}, headers=MEMBER)
    assert response.status_code == 403
    assert _act(running, sid, {"unlock": None}, headers=OTHER_ADMIN).status_code == 202


def test_delete_works_in_the_middle_of_an_operation(cloud_factory):
    running = cloud_factory(hosts=DEAF, **dict(FAST, shutdown_timeout=3.0))
    server = _launch(running)
    assert _act(running, server["id"], STOP).status_code == 202
    time.sleep(0.2)  # the stop is waiting for the guest to shut down
    assert running.api.server(server["id"])["OS-EXT-STS:task_state"] == "powering-off"
    assert running.api.delete(f"/v2.1/servers/{server['id']}").status_code == 204
    running.api.wait_gone(server["id"])
    assert running.driver("compute-1").list_instances() == []


def test_a_guest_stopped_behind_our_back_becomes_shutoff(cloud_factory):
    running = cloud_factory(**dict(FAST, report_interval=0.3))
    server = _launch(running)
    paused = _launch(running, "paused")
    _do(running, paused["id"], {"pause": None}, "PAUSED")
    host = server["OS-EXT-SRV-ATTR:host"]
    running.driver(host).power_off(server["id"])  # shut down from inside the guest
    deadline = time.monotonic() + 10
    while running.api.server(server["id"])["status"] != "SHUTOFF":
        assert time.monotonic() < deadline, "the power-state sync never noticed"
        time.sleep(0.05)
    shown = running.api.server(server["id"])
    assert shown["OS-EXT-STS:power_state"] == power_state.SHUTDOWN
    with running.db.read() as session:
        note = session.scalar(select(Notification).where(
            Notification.instance_uuid == server["id"],
            Notification.event_type == "instance.power_sync.end"))
    assert note.payload["state_before"]["vm_state"] == "active"
    assert note.payload["state"]["vm_state"] == "stopped"
    # The drift is recorded, not fought: the guest can be started again.
    _do(running, server["id"], START, "ACTIVE")
    # An instance whose guest matches its state is left alone.
    assert running.api.server(paused["id"])["status"] == "PAUSED"


@pytest.mark.parametrize("setup", [[STOP], [PAUSE], [SUSPEND], [RESCUE], [STOP, RESCUE]],
                         ids=["stopped", "paused", "suspended", "rescued", "stopped-rescued"])
def test_delete_from_every_state_leaves_nothing_behind(running, setup):
    server = _launch(running)
    for body in setup:
        _act(running, server["id"], body)
        _settled(running, server["id"])
    host = server["OS-EXT-SRV-ATTR:host"]
    assert running.api.delete(f"/v2.1/servers/{server['id']}").status_code == 204
    running.api.wait_gone(server["id"])
    driver = running.driver(host)
    assert driver.list_instances() == [] and not driver.disk_exists(server["id"])
    assert not (driver.instances_dir / server["id"]).exists()  # rescue disk included


def test_a_hard_reboot_brings_back_a_suspended_server_afresh(running):
    server = _launch(running)
    _do(running, server["id"], SUSPEND, "SUSPENDED")
    after = _do(running, server["id"], {"reboot": {"type": "HARD"}}, "ACTIVE")
    assert _power(running, after) == power_state.RUNNING


@pytest.mark.parametrize(("operation", "body", "status", "_after", "setup"), OPERATIONS,
                         ids=[o[0] for o in OPERATIONS])
def test_the_same_action_twice_at_once_one_202_one_409(running, operation, body, status,
                                                       _after, setup):
    server = _launch(running)
    for first in setup:
        _do(running, server["id"], first, status)
    if operation == "rebuild":
        body = {"rebuild": {"imageRef": running.api.image_id()}}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        codes = sorted(pool.map(lambda _: _act(running, server["id"], body).status_code,
                                range(2)))
    assert codes == sorted([accepted(body), 409]), operation
    assert _settled(running, server["id"])["status"] == _after


def test_an_undo_that_fails_ends_in_error_with_a_fault(cloud_factory):
    running = cloud_factory(host_count=1, inject_failures={"compute-1": "unpause"},
                            inject_step_failures=["pause.finish"], **FAST)
    server = _launch(running)
    assert _act(running, server["id"], PAUSE).status_code == 202
    after = _settled(running, server["id"])
    assert after["status"] == "ERROR"
    assert after["fault"]["message"].startswith("pause failed")  # the latest fault
    with running.db.read() as session:
        messages = [f.message for f in session.scalars(select(InstanceFault).where(
            InstanceFault.instance_uuid == server["id"]))]
    assert any(m.startswith("Could not undo pause.pause-guest") for m in messages)
    # ERROR is not a dead end: a hard reboot brings the guest back.
    _do(running, server["id"], {"reboot": {"type": "HARD"}}, "ACTIVE")


def test_console_output_and_diagnostics(running):
    server = _launch(running)
    response = _act(running, server["id"], {"os-getConsoleOutput": {"length": 10}})
    assert response.status_code == 200, response.text
    # Test-driver guests run nothing: their host writes a synthetic boot log.
    output = response.json()["output"]
    assert "synthetic console log" in output and server["id"] in output
    assert output.rstrip().endswith("login:")
    diag = running.api.get(f"/v2.1/servers/{server['id']}/diagnostics", headers=LATEST)
    assert diag.status_code == 200, diag.text
    body = diag.json()
    assert body["state"] == "running" and body["driver"] == "libvirt"
    assert body["num_cpus"] == 1 and body["memory_details"]["maximum"] == 512
    assert body["num_disks"] == 1
    member = running.api.get(f"/v2.1/servers/{server['id']}/diagnostics", headers=MEMBER)
    assert member.status_code == 403
    bad = _act(running, server["id"], {"os-getConsoleOutput": {"length": "x"}})
    assert bad.status_code == 400


def test_guests_no_instance_owns_here_are_cleaned_up(cloud_factory):
    running = cloud_factory(host_count=2, **dict(FAST, report_interval=0.3))
    server = _launch(running)
    home = server["OS-EXT-SRV-ATTR:host"]
    away = "compute-2" if home == "compute-1" else "compute-1"
    flavor = {"name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1}
    stray = "0b0e0f00-0000-4000-8000-000000000001"
    for host, uuid in ((away, server["id"]), (away, stray)):  # a stale copy, a stranger
        running.driver(host).define({"uuid": uuid, "name": "ghost", "flavor": flavor})
        running.driver(host).power_on(uuid)
    deadline = time.monotonic() + 10
    while running.driver(away).list_instances():
        assert time.monotonic() < deadline, running.driver(away).list_instances()
        time.sleep(0.05)
    assert running.driver(home).list_instances() == [server["id"]]  # the real one stays
    assert running.api.server(server["id"])["status"] == "ACTIVE"


def test_unknown_guests_are_only_reported_when_so_configured(cloud_factory):
    running = cloud_factory(host_count=1, destroy_unknown_guests=False,
                            **dict(FAST, report_interval=0.2))
    stray = "0b0e0f00-0000-4000-8000-000000000002"
    running.driver("compute-1").define({"uuid": stray, "name": "pet", "flavor": {
        "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1}})
    time.sleep(1.0)  # several reports
    assert running.driver("compute-1").list_instances() == [stray]
