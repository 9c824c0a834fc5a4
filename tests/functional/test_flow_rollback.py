"""An operator rolls back a flow run that is stuck or failed (os-flows).

Embedded clouds, real workers: a launch whose message was lost, a stop stuck
waiting for a guest that ignores ACPI (the rollback cuts the wait short), and a
stop whose revert failed (the rollback runs the failed revert again).  The
same after a conductor died is in test_replay.py.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import select

from flows import actions
from tests.functional.checks import messages_lost
from vmflow.db.models import Allocation, FlowRun, InstanceFault
from vmflow.states import power_state

DEAF = [{"name": "compute-1", "acpi_shutdown": False}]


def _run(running, server_id: str, operation: str) -> FlowRun:
    with running.db.read() as session:
        return session.scalar(select(FlowRun).where(FlowRun.instance_uuid == server_id,
                                                    FlowRun.operation == operation))


def _ended(running, flow_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        flow = running.api.get(f"/v2.1/os-flows/{flow_id}").json()["flow"]
        if flow["state"] in ("SUCCESS", "REVERTED", "FAILURE") and flow["owner"] is None:
            return flow
        assert time.monotonic() < deadline, f"flow {flow_id} stayed {flow['state']}"
        time.sleep(0.05)


def _settled(running, server_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        server = running.api.server(server_id)
        if server["OS-EXT-STS:task_state"] is None:
            return server
        assert time.monotonic() < deadline, server
        time.sleep(0.05)


def _faults(running, server_id: str) -> list[str]:
    with running.db.read() as session:
        return [f.message for f in session.scalars(select(InstanceFault).where(
            InstanceFault.instance_uuid == server_id).order_by(InstanceFault.id))]


def test_a_launch_whose_message_was_lost_is_rolled_back(cloud):
    api = cloud.api
    with messages_lost(cloud) as lost:  # the broker loses the message
        server_id = api.create("stuck").json()["server"]["id"]

    response = api.post(f"/v2.1/os-flows/{lost[0]}/action", {"rollback": None})
    assert response.status_code == 202, response.text
    flow = _ended(cloud, lost[0])
    assert flow["state"] == "REVERTED" and flow["rollback_requested_at"]
    reverted = {s["name"]: s["state"] for s in flow["steps"]}
    assert reverted["launch.create-instance-record"] == "REVERTED"
    assert reverted["launch.select-destinations"] in ("REVERTED", "PENDING")

    server = api.server(server_id)
    assert server["status"] == "ERROR"
    assert "operator's request" in server["fault"]["message"]
    with cloud.db.read() as session:
        assert not list(session.scalars(select(Allocation).where(
            Allocation.instance_uuid == server_id)))
    again = api.post(f"/v2.1/os-flows/{lost[0]}/action", {"rollback": None})
    assert again.status_code == 409 and "nothing to roll back" in again.text
    # The instance can be deleted as any instance in ERROR.
    assert api.delete(f"/v2.1/servers/{server_id}").status_code == 204
    api.wait_gone(server_id)


def test_a_stop_stuck_waiting_for_its_guest_is_rolled_back(cloud_factory):
    running = cloud_factory(hosts=DEAF, shutdown_timeout=120.0, report_interval=60.0)
    api = running.api
    server_id = api.create("deaf").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    assert api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None}).status_code == 202
    time.sleep(0.5)  # the stop now waits (up to two minutes) for a guest that ignores it
    run = _run(running, server_id, "stop")
    assert run.state == "RUNNING"
    assert api.server(server_id)["OS-EXT-STS:task_state"] == "powering-off"

    started = time.monotonic()
    assert api.post(f"/v2.1/os-flows/{run.id}/action", {"rollback": None}).status_code == 202
    flow = _ended(running, run.id)
    assert time.monotonic() - started < 10, "the rollback waited for the stuck step"
    assert flow["state"] == "REVERTED"
    server = _settled(running, server_id)
    assert server["status"] == "ACTIVE"
    assert running.driver("compute-1").power_state(server_id) == power_state.RUNNING
    assert any("operator's request" in m for m in _faults(running, server_id))
    # The instance takes the next operation as usual.
    assert api.post(f"/v2.1/servers/{server_id}/action",
                    {"reboot": {"type": "HARD"}}).status_code == 202
    assert _settled(running, server_id)["status"] == "ACTIVE"


def test_a_run_whose_revert_failed_is_rolled_back_again(cloud_factory, monkeypatch):
    running = cloud_factory(inject_step_failures=["stop.finish"], shutdown_timeout=0.3,
                            report_interval=60.0)
    api = running.api
    server_id = api.create("unlucky").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"

    original = actions.Begin.revert
    calls = []

    def revert_fails_once(self, result, instance_uuid, flow_failures=None, **kwargs):
        calls.append(self.name)  # (TaskFlow reads a revert's arguments off its signature)
        if len(calls) == 1:
            raise RuntimeError("the database went away during the revert")
        return original(self, result, instance_uuid, flow_failures=flow_failures, **kwargs)

    monkeypatch.setattr(actions.Begin, "revert", revert_fails_once)
    assert api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None}).status_code == 202
    deadline = time.monotonic() + 30
    while (run := _run(running, server_id, "stop")).state != "FAILURE":
        assert time.monotonic() < deadline, run.state
        time.sleep(0.05)
    # The guest was started again by request-shutdown's revert; only the last
    # revert (clearing task_state) failed, so the instance is stuck in it.
    assert api.server(server_id)["OS-EXT-STS:task_state"] == "powering-off"
    resume = api.post(f"/v2.1/os-flows/{run.id}/action", {"resume": None})
    assert resume.status_code == 409  # a failed run is not resumed; it is rolled back

    assert api.post(f"/v2.1/os-flows/{run.id}/action", {"rollback": None}).status_code == 202
    flow = _ended(running, run.id)
    assert flow["state"] == "REVERTED", flow
    assert calls == ["stop.begin", "stop.begin"]
    server = _settled(running, server_id)
    assert server["status"] == "ACTIVE"
    assert running.driver("compute-1").power_state(server_id) == power_state.RUNNING


@pytest.mark.parametrize("body, status", [
    ({"rollback": {"now": True}}, 400), ({"resume": None, "rollback": None}, 400),
    ({"explode": None}, 400), ({}, 400)])
def test_flow_actions_refuse_bad_bodies(cloud, body, status):
    with messages_lost(cloud) as lost:  # the broker loses the message
        cloud.api.create("held")
    response = cloud.api.post(f"/v2.1/os-flows/{lost[0]}/action", body)
    assert response.status_code == status, response.text
    assert "badRequest" in response.json()
    with cloud.db.read() as session:
        assert session.get(FlowRun, lost[0]).rollback_requested_at is None
    member = cloud.api.post(f"/v2.1/os-flows/{lost[0]}/action", {"rollback": None},
                            headers={"X-Roles": "member"})
    assert member.status_code == 403


# -- instances held by an operation that has no run (Nova's _init_instance) ------------

def _strand(running, server_id: str, **values) -> None:
    """As if the API died right after taking the instance's task_state."""
    from sqlalchemy import update

    from vmflow.db.models import Instance, utcnow

    with running.db.write() as session:
        session.execute(update(Instance).where(Instance.uuid == server_id).values(
            updated_at=utcnow() - dt.timedelta(seconds=120), **values))


def test_instances_held_by_an_operation_without_a_run_are_resolved(cloud_factory):
    running = cloud_factory(report_interval=60.0)
    api = running.api
    ids = [api.create(f"held-{i}").json()["server"]["id"] for i in range(3)]
    for server_id in ids:
        assert api.wait_status(server_id)["status"] == "ACTIVE"
    stopping, deleting, building = ids
    _strand(running, stopping, task_state="powering-off")
    _strand(running, deleting, task_state="deleting")
    _strand(running, building, task_state="scheduling", vm_state="building")
    host = api.server(stopping)["OS-EXT-SRV-ATTR:host"]

    conductor = running.cloud.conductor
    assert sorted(conductor.resolve_stranded(grace=60)) == sorted(ids)
    assert conductor.resolve_stranded(grace=60) == []  # resolved once
    server = api.server(stopping)
    assert server["status"] == "ACTIVE" and server["OS-EXT-STS:task_state"] is None
    assert running.driver(host).power_state(stopping) == power_state.RUNNING
    api.wait_gone(deleting)  # the delete it was marked for was carried out
    server = api.server(building)
    assert server["status"] == "ERROR" and "interrupted" in server["fault"]["message"]
    # An instance whose operation has a run (even one nobody drives yet) is left
    # to that run.
    with messages_lost(running):  # the broker loses the message
        assert api.post(f"/v2.1/servers/{stopping}/action", {"os-stop": None}).status_code == 202
    _strand(running, stopping)
    assert conductor.resolve_stranded(grace=60) == []
    assert api.server(stopping)["OS-EXT-STS:task_state"] == "powering-off"
