"""Flow replay for every operation on an existing instance.

* The conductor is killed at each step, once after the step's effect and before
  its result is saved, once just after it is saved; a new conductor takes the
  run over, and the operation ends as it would have, with one guest, one disk,
  one claim.
* The compute worker is killed at each step that goes to the host, once before
  the step's effect and once after it; it comes back at once to the same
  hypervisor, and the operation is rolled back to where it started.

The step names come from the flows themselves (and, for the host steps, from
the host's log of a normal run), so a step added later is covered without
touching this file.  Launch has its own cases in test_replay.py.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

import flows
from flows.base import Services
from tests.functional.checks import accepted, agree, faults, guests, run_of, wait_hosts
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


CRASHES = [(op, f"{step}:{when}") for op in OPERATIONS for step in _steps(op)
           for when in ("before-save", "after-save")]


def _act(api, server_id: str, body: dict | None):
    """Ask for the operation; it must be accepted (Nova's answer for it)."""
    if body is None:
        response = api.delete(f"/v2.1/servers/{server_id}")
    else:
        if "rebuild" in body:
            body = {"rebuild": {"imageRef": api.image_id()}}
        response = api.post(f"/v2.1/servers/{server_id}/action", body)
    assert response.status_code == accepted(body), response.text
    return response


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
        _act(api, server_id, first)
        _settled(api, server_id)
    assert dying.poll() is None

    _act(api, server_id, body)
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
    _act(api, server_id, {"os-stop": None})
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


# -- the compute worker killed before and after each host step of each operation ---------

STATUS_BEFORE = {"start": "SHUTOFF", "unpause": "PAUSED", "resume": "SUSPENDED",
                 "unrescue": "RESCUE"}


def _host_steps(running, operation: str) -> list[str]:
    """The flow steps of ``operation`` that sent commands to a host, in order, as
    the host's own log tells them ("compute step <method> on <host> for <step>")."""
    seen: list[str] = []
    for log in sorted(running.log_dir.glob("*compute*.log")):
        for line in log.read_text().splitlines():
            step = line.rpartition(" for ")[2] if "compute step " in line else ""
            if step.startswith(f"{operation}.") and step not in seen:
                seen.append(step)
    return seen


def _prepared(api, name: str, before: list[dict]) -> str:
    server_id = api.create(name).json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    for first in before:
        _act(api, server_id, first)
        _settled(api, server_id)
    return server_id


# After a run that went through, what brings the instance back to where the
# operation starts from (a polled step retries a call its worker died on, so
# a crash there can end in success).
UNDO = {"stop": {"os-start": None}, "start": {"os-stop": None}, "resume": {"suspend": None},
        "rescue": {"unrescue": None}, "unrescue": {"rescue": None}}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_an_operation_survives_its_compute_worker(hosts_apart, operation):
    """The compute worker is killed at each host step of the operation, once
    before the step's effect and once after it (before it could answer), and
    restarted at once, to the same hypervisor, ready to die at the next point.
    A step whose call timed out has an unknown outcome, so its revert undoes it
    and the instance is back where it was (a delete ends in ERROR, from where
    it is deleted again); a polled step tries its call again and the operation
    goes through.  Either way the database and the guest agree."""
    api = hosts_apart.api
    body, before, status_after = OPERATIONS[operation]
    worker = hosts_apart.compute("compute-1")
    wait_hosts(api, 1)
    # A normal run first, on a server of its own: which steps go to the host.
    scout = _prepared(api, "scout", before)
    scout_body = {"createImage": {"name": "scout-snap"}} if operation == "snapshot" else body
    _act(api, scout, scout_body)
    if operation != "delete":
        _settled(api, scout)
        assert api.delete(f"/v2.1/servers/{scout}").status_code == 204
    api.wait_gone(scout)
    steps = _host_steps(hosts_apart, operation)
    assert steps, "the operation sent nothing to its host"
    points = [f"compute.{step}:{when}" for step in steps for when in ("before", "after")]

    server_id = _prepared(api, "phoenix", before)
    status_before = STATUS_BEFORE.get(operation, "ACTIVE")
    worker.terminate()
    worker.wait(20)
    worker = hosts_apart.compute("compute-1", points[0])
    time.sleep(2.5)  # started, and consuming its queue
    hit: list[str] = []
    while len(hit) < len(points):
        tried = len(hit)
        _act(api, server_id, body)
        deadline = time.monotonic() + 90
        while True:  # until the operation has ended, bringing back each worker that died
            if worker.poll() is not None:
                assert worker.returncode == 137, worker.returncode
                hit.append(points[len(hit)])
                worker = hosts_apart.compute(
                    "compute-1", points[len(hit)] if len(hit) < len(points) else "")
            server = api.server(server_id)
            if server["OS-EXT-STS:task_state"] is None and server["status"] in SETTLED:
                run = run_of(hosts_apart, server_id, operation)
                break
            assert time.monotonic() < deadline, (hit, server["status"])
            time.sleep(0.1)
        assert len(hit) > tried, f"the compute worker did not die at {points[tried]}"
        if operation == "delete":
            assert run.state == "REVERTED", (hit, run.state)
            assert server["status"] == "ERROR" and "Delete failed" in server["fault"]["message"]
            continue
        if run.state == "REVERTED":
            assert server["status"] == status_before, (hit, server)
            assert "did not answer" in faults(hosts_apart, server_id)[-1], hit
        else:
            assert run.state == "SUCCESS" and server["status"] == status_after, (hit, run.state)
        assert guests(hosts_apart, "compute-1") == {
            server_id: GUEST_STATE[server["status"]]}, hit
        if server["status"] != status_before:
            _act(api, server_id, UNDO[operation])
            assert _settled(api, server_id)["status"] == status_before
    assert hit == points
    # Once the points are used up, the operation goes through.
    _act(api, server_id, body)
    if operation == "delete":
        api.wait_gone(server_id)
        assert guests(hosts_apart, "compute-1") == {}
    else:
        assert run_of(hosts_apart, server_id, operation).state == "SUCCESS"
        server = _settled(api, server_id)
        assert guests(hosts_apart, "compute-1") == {server_id: GUEST_STATE[server["status"]]}
    with hosts_apart.db.read() as session:
        claims = [a.host for a in session.scalars(select(Allocation).where(
            Allocation.instance_uuid == server_id))]
        if operation == "snapshot":  # only the scout's snapshot and the last one stand
            assert sorted(i.name for i in session.scalars(select(Image).where(
                Image.status == "active", Image.name.like("%-snap")))) == ["phoenix-snap",
                                                                          "scout-snap"]
    assert claims == ([] if operation == "delete" else ["compute-1"])
