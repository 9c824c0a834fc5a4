"""Flow replay for every operation on an existing instance: the conductor is
killed at each step (after the step's effect, before its result is saved, and
just after the last step's result is saved), a new conductor takes the run over,
and the operation ends as it would have, with one guest, one disk, one claim.

The step names come from the flows themselves, so a step added later is
covered without touching this file.  Launch has its own cases in
test_replay.py; the compute worker killed mid-step is at the end of this file.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

import flows
from flows.base import Services
from tests.functional.checks import agree, faults, guests, run_of, wait_hosts
from vmflow.config import Config
from vmflow.db.models import Allocation, Image

# operation: (API body, what must be done first, the status it ends in)
OPERATIONS = {
    "stop": ({"os-stop": None}, [], "SHUTOFF"),
    "start": ({"os-start": None}, [{"os-stop": None}], "ACTIVE"),
    "reboot": ({"reboot": {"type": "SOFT"}}, [], "ACTIVE"),
    "reboot_hard": ({"reboot": {"type": "HARD"}}, [], "ACTIVE"),
    "pause": ({"pause": None}, [], "PAUSED"),
    "unpause": ({"unpause": None}, [{"pause": None}], "ACTIVE"),
    "suspend": ({"suspend": None}, [], "SUSPENDED"),
    "resume": ({"resume": None}, [{"suspend": None}], "ACTIVE"),
    "snapshot": ({"createImage": {"name": "phoenix-snap"}}, [], "ACTIVE"),
    "rebuild": ({"rebuild": {"imageRef": None}}, [], "ACTIVE"),
    "rescue": ({"rescue": None}, [], "RESCUE"),
    "unrescue": ({"unrescue": None}, [{"rescue": None}], "ACTIVE"),
    "delete": (None, [], None),
}
# libvirt's domain state for each status (the guest must agree with the API).
GUEST_STATE = {"ACTIVE": 1, "RESCUE": 1, "PAUSED": 3, "SHUTOFF": 5, "SUSPENDED": 5}
SETTLED = ("ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "RESCUE", "ERROR")


def _steps(operation: str) -> list[str]:
    graph = flows.build(operation, Services(config=Config(), db=None),
                        {"start": True} if operation == "rebuild" else {})
    return flows.task_names(graph)


CRASHES = [(op, f"{step}:before-save") for op in OPERATIONS for step in _steps(op)] + [
    (op, f"{_steps(op)[-1]}:after-save") for op in OPERATIONS]


def _act(api, server_id: str, body: dict | None):
    if body is None:
        return api.delete(f"/v2.1/servers/{server_id}")
    if "rebuild" in body:
        body = {"rebuild": {"imageRef": api.image_id()}}
    return api.post(f"/v2.1/servers/{server_id}/action", body)


def _settled(api, server_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        server = api.server(server_id)
        if server["OS-EXT-STS:task_state"] is None and server["status"] in SETTLED:
            return server
        assert time.monotonic() < deadline, f"stuck: {server['status']}, " \
                                            f"{server['OS-EXT-STS:task_state']}"
        time.sleep(0.05)


@pytest.mark.parametrize("operation, crash", CRASHES, ids=[c for _op, c in CRASHES])
def test_an_operation_survives_its_conductor(distributed, operation, crash):
    api = distributed.api
    body, before, status = OPERATIONS[operation]
    # The conductor that will die does the preparations too (the crash point is
    # a step of this operation only), which saves a conductor's start.
    dying = distributed.conductor(crash)
    server_id = api.create("phoenix").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    for first in before:
        assert _act(api, server_id, first).status_code == 202
        _settled(api, server_id)
    assert dying.poll() is None

    assert _act(api, server_id, body).status_code in (202, 204)
    assert dying.wait(60) == 137, "the conductor did not die where it was told to"
    distributed.conductor()  # the replacement, once the lease has expired

    run = run_of(distributed, server_id, operation)
    assert run.state == "SUCCESS" and run.epoch == 2, (run.state, run.epoch)
    if operation == "delete":
        api.wait_gone(server_id)
        for host in ("compute-1", "compute-2"):
            assert distributed.driver(host).list_instances() == []
            assert not distributed.driver(host).disk_exists(server_id)
        with distributed.db.read() as session:
            assert not list(session.scalars(select(Allocation).where(
                Allocation.instance_uuid == server_id)))
        return
    server = _settled(api, server_id)
    assert server["status"] == status, server
    host = server["OS-EXT-SRV-ATTR:host"]
    domain = distributed.driver(host)._conn.lookupByUUIDString(server_id)
    assert domain.state()[0] == GUEST_STATE[status]
    if operation == "snapshot":
        with distributed.db.read() as session:
            images = list(session.scalars(select(Image).where(Image.name == "phoenix-snap")))
        assert [i.status for i in images] == ["active"]
    agree(distributed, server_id)


@pytest.mark.parametrize("crash", ["stop.request-shutdown:revert-before-save",
                                   "stop.begin:revert-before-save"])
def test_a_revert_survives_its_conductor(distributed, crash):
    """Killed in the middle of a rollback: the revert runs again and succeeds."""
    api = distributed.api
    dying = distributed.conductor(crash, VMFLOW_INJECT_STEP_FAILURES="stop.finish")
    server_id = api.create("phoenix").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    assert _act(api, server_id, {"os-stop": None}).status_code == 202
    assert dying.wait(60) == 137
    distributed.conductor()
    run = run_of(distributed, server_id, "stop")
    assert run.state == "REVERTED" and run.epoch == 2
    server = _settled(api, server_id)
    assert server["status"] == "ACTIVE"
    assert "stop.finish" in faults(distributed, server_id)[-1]
    host = server["OS-EXT-SRV-ATTR:host"]
    assert distributed.driver(host).power_state(server_id) == 1
    agree(distributed, server_id)


# -- the compute worker killed just after the effect of each operation's host step ------

# operation: the host step whose effect happens just before the worker dies (its
# reply is lost; the conductor's call times out and the operation reverts).
MAIN_HOST_STEP = {
    "stop": "shutdown", "start": "power_on", "reboot": "shutdown",
    "reboot_hard": "power_off", "pause": "pause", "unpause": "unpause",
    "suspend": "suspend", "resume": "resume", "snapshot": "snapshot_disk",
    "rebuild": "rebuild_disk", "rescue": "define_rescue", "unrescue": "define_normal",
    "delete": "undefine",
}
STATUS_BEFORE = {"start": "SHUTOFF", "unpause": "PAUSED", "resume": "SUSPENDED",
                 "unrescue": "RESCUE"}


@pytest.mark.parametrize("operation", list(MAIN_HOST_STEP))
def test_an_operation_survives_its_compute_worker(hosts_apart, operation):
    """The worker dies after the step's effect, before it could answer; it is
    restarted at once, to the same hypervisor.  The conductor's call times out,
    the outcome of the step is unknown, so its revert undoes it: the instance
    is back where it was (a delete ends in ERROR, from where it is deleted)."""
    api = hosts_apart.api
    body, before, _status = OPERATIONS[operation]
    worker = hosts_apart.compute("compute-1")
    wait_hosts(api, 1)
    server_id = api.create("phoenix").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    for first in before:
        assert _act(api, server_id, first).status_code == 202
        _settled(api, server_id)
    worker.terminate()  # (launch uses some of the same host steps)
    worker.wait(20)
    dying = hosts_apart.compute("compute-1", f"compute.{MAIN_HOST_STEP[operation]}:after")
    time.sleep(2.5)  # started, and consuming its queue

    assert _act(api, server_id, body).status_code in (202, 204)
    assert dying.wait(60) == 137, "the compute worker did not die where it was told to"
    hosts_apart.compute("compute-1")  # back at once: it can undo what it did

    server = _settled(api, server_id, timeout=90)
    run = run_of(hosts_apart, server_id, operation)
    assert run.state == "REVERTED", run.state
    if operation == "delete":
        assert server["status"] == "ERROR" and "Delete failed" in server["fault"]["message"]
        assert api.delete(f"/v2.1/servers/{server_id}").status_code == 204
        api.wait_gone(server_id)
        assert guests(hosts_apart, "compute-1") == {}
        return
    status = STATUS_BEFORE.get(operation, "ACTIVE")
    assert server["status"] == status, server
    assert "did not answer" in faults(hosts_apart, server_id)[-1]
    assert guests(hosts_apart, "compute-1") == {server_id: GUEST_STATE[status]}
    if operation == "snapshot":
        with hosts_apart.db.read() as session:
            assert [i.status for i in session.scalars(
                select(Image).where(Image.name == "phoenix-snap"))] in ([], ["deleted"])
