"""Flow replay after failure: a conductor killed in the middle of an operation is
replaced, and the operation is driven to its end with no step's effect twice.

The conductors are separate `vmflow conductor` processes over Redis and
PostgreSQL; the API and the compute hosts run in the test process (their
guests survive: what dies is the conductor).  The dying conductor ends itself
with ``os._exit`` at a chosen point, as kill -9 would: after a step's effect and
before its result is saved (``before-save``), or just after it is saved
(``after-save``).  A second conductor takes the flow once the first one's lease
has expired.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

import flows
from flows import launch
from flows.base import Services
from tests.functional.checks import agree, faults, guests, messages_lost, run_of, wait_hosts
from vmflow.config import Config
from vmflow.db.models import Allocation, ComputeNode, FlowRun

_TASKS = flows.tasks(flows.build("launch", Services(config=Config(), db=None), {}))
# The steps the conductor runs (admission runs in the API).
_CONDUCTOR_SIDE = _TASKS[[t.name for t in _TASKS].index(launch.ADMISSION_LAST_STEP) + 1:]
LAUNCH_CRASHES = [f"{t.name}:{when}" for t in _CONDUCTOR_SIDE
                  for when in ("before-save", "after-save")]
LAUNCH_HOST_CRASHES = [f"compute.{t.name}:{when}" for t in _CONDUCTOR_SIDE
                       if isinstance(t, launch.HostTask) for when in ("before", "after")]


@pytest.mark.parametrize("crash", LAUNCH_CRASHES)
def test_a_launch_survives_its_conductor(distributed, crash):
    api = distributed.api
    first = distributed.conductor(crash)
    server_id = api.create("phoenix").json()["server"]["id"]
    assert first.wait(60) == 137, "the first conductor did not die where it was told to"
    distributed.conductor()  # the replacement
    server = api.wait_status(server_id, timeout=60)
    assert server["status"] == "ACTIVE", server
    agree(distributed, server_id)
    run = run_of(distributed, server_id, "launch")
    assert run.state == "SUCCESS" and run.epoch == 2 and run.owner is None


@pytest.mark.parametrize("crash", ["stop.request-shutdown:before-save",
                                   "stop.wait-for-shutoff:after-save",
                                   "stop.finish:before-save"])
def test_a_stop_survives_its_conductor(distributed, crash):
    api = distributed.api
    distributed.conductor()
    server_id = api.create("phoenix").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    for proc in distributed.conductors:  # the next one will die during the stop
        proc.terminate()
        proc.wait(20)
    first = distributed.conductor(crash)
    assert api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None}).status_code == 202
    assert first.wait(60) == 137
    distributed.conductor()
    deadline = time.monotonic() + 60
    while api.server(server_id)["OS-EXT-STS:task_state"] is not None:
        assert time.monotonic() < deadline, "the stop never finished"
        time.sleep(0.05)
    server = api.server(server_id)
    assert server["status"] == "SHUTOFF", server
    host = server["OS-EXT-SRV-ATTR:host"]
    assert distributed.driver(host).power_state(server_id) == 4
    assert run_of(distributed, server_id, "stop").state == "SUCCESS"
    agree(distributed, server_id)



def _launched(distributed) -> str:
    """An ACTIVE server, launched by a conductor that is stopped afterwards."""
    api = distributed.api
    distributed.conductor()
    server_id = api.create("phoenix").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    for proc in distributed.conductors:
        proc.terminate()
        proc.wait(20)
    return server_id


def test_an_operator_rolls_back_a_stop_whose_conductor_died(distributed):
    api = distributed.api
    server_id = _launched(distributed)
    first = distributed.conductor("stop.request-shutdown:before-save")
    assert api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None}).status_code == 202
    assert first.wait(60) == 137  # died with the guest shut down, the step unsaved
    host = api.server(server_id)["OS-EXT-SRV-ATTR:host"]
    assert distributed.driver(host).power_state(server_id) == 4
    run = _unfinished(distributed, server_id, "stop")
    assert api.post(f"/v2.1/os-flows/{run.id}/action", {"rollback": None}).status_code == 202

    distributed.conductor()  # takes the run once the dead one's lease has expired
    run = run_of(distributed, server_id, "stop")
    assert run.state == "REVERTED" and run.rollback_requested_at is not None
    server = api.server(server_id)
    assert server["status"] == "ACTIVE" and server["OS-EXT-STS:task_state"] is None
    assert "operator's request" in faults(distributed, server_id)[-1]
    # The step cut short by the crash was undone: the guest runs again.
    assert distributed.driver(host).power_state(server_id) == 1
    agree(distributed, server_id)


def test_a_run_whose_conductors_keep_dying_is_given_up(distributed):
    api = distributed.api
    server_id = _launched(distributed)
    crash = "stop.request-shutdown:before-save"
    dying = distributed.conductor(crash)
    assert api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None}).status_code == 202
    assert dying.wait(60) == 137
    assert distributed.conductor(crash).wait(60) == 137  # the poison strikes again
    distributed.conductor()  # third time: over max_flow_attempts (2), not driven again
    run = run_of(distributed, server_id, "stop")
    assert run.state == "FAILURE" and run.attempts == 3
    server = api.server(server_id)
    assert server["status"] == "ERROR" and server["OS-EXT-STS:task_state"] is None
    assert "Gave up on stop after 2 attempts" in server["fault"]["message"]

    # An operator rolls it back: a fresh budget of attempts, and the step the
    # crashes cut short is undone.
    assert api.post(f"/v2.1/os-flows/{run.id}/action", {"rollback": None}).status_code == 202
    deadline = time.monotonic() + 30
    while (run := run_of(distributed, server_id, "stop")).state != "REVERTED":
        assert time.monotonic() < deadline, run.state
        time.sleep(0.1)
    host = server["OS-EXT-SRV-ATTR:host"]
    assert distributed.driver(host).power_state(server_id) == 1


def _unfinished(running, server_id: str, operation: str) -> FlowRun:
    with running.db.read() as session:
        run = session.scalar(select(FlowRun).where(FlowRun.instance_uuid == server_id,
                                                   FlowRun.operation == operation))
    assert run.state not in ("SUCCESS", "REVERTED", "FAILURE"), run.state
    return run


# -- compute workers die; their hypervisors do not -----------------------------------------

def test_guests_outlive_a_killed_compute_worker(hosts_apart):
    api = hosts_apart.api
    worker = hosts_apart.compute("compute-1")
    wait_hosts(api, 1)
    server_id = api.create("survivor").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    worker.kill()  # SIGKILL
    worker.wait(10)
    assert guests(hosts_apart, "compute-1") == {server_id: 1}  # still running

    hosts_apart.compute("compute-1")  # back, to the same hypervisor state
    response = api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None})
    assert response.status_code == 202
    assert api.wait_status(server_id, ("SHUTOFF",))["status"] == "SHUTOFF"
    assert guests(hosts_apart, "compute-1") == {server_id: 5}  # libvirt's SHUTOFF
    assert api.delete(f"/v2.1/servers/{server_id}").status_code == 204
    api.wait_gone(server_id)
    assert guests(hosts_apart, "compute-1") == {}


@pytest.mark.parametrize("crash", LAUNCH_HOST_CRASHES)
def test_a_launch_survives_a_compute_worker_killed_mid_step(hosts_apart, crash):
    api = hosts_apart.api
    doomed = hosts_apart.compute("compute-1", crash)
    hosts_apart.compute("compute-2")
    wait_hosts(api, 2)
    # compute-2 is disabled until compute-1 has died, so the launch starts on compute-1.
    body = {"host": "compute-2", "binary": "vmflow-compute"}
    assert api.http.put(api.base + "/v2.1/os-services/disable", json=body).status_code == 200
    time.sleep(1.1)
    server_id = api.create("phoenix").json()["server"]["id"]
    assert doomed.wait(60) == 137
    assert api.http.put(api.base + "/v2.1/os-services/enable", json=body).status_code == 200
    hosts_apart.compute("compute-1")  # restarted: it can undo what it half did
    server = api.wait_status(server_id, timeout=90)
    assert server["status"] == "ACTIVE", server
    home = server["OS-EXT-SRV-ATTR:host"]
    deadline = time.monotonic() + 20
    while True:  # leftovers on the host that failed are undone or cleaned up
        seen = {h: list(guests(hosts_apart, h)) for h in ("compute-1", "compute-2")}
        if seen == {home: [server_id], ({"compute-1", "compute-2"} - {home}).pop(): []}:
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    with hosts_apart.db.read() as session:
        allocations = [a.host for a in session.scalars(select(Allocation).where(
            Allocation.instance_uuid == server_id))]
        usage = {n.host: n.vcpus_used for n in session.scalars(select(ComputeNode))}
    assert allocations == [home]
    assert usage == {home: 1, ({"compute-1", "compute-2"} - {home}).pop(): 0}


# -- an operator's view of flows ---------------------------------------------------------

def test_operators_list_show_and_resume_flows(cloud):
    api = cloud.api
    with messages_lost(cloud) as lost:  # the broker loses the message
        server_id = api.create("lost").json()["server"]["id"]
    assert len(lost) == 1 and api.server(server_id)["status"] == "BUILD"

    flows = api.get("/v2.1/os-flows", params={"unfinished": "1"}).json()["flows"]
    assert [f["id"] for f in flows] == lost and flows[0]["owner"] is None
    shown = api.get(f"/v2.1/os-flows/{lost[0]}").json()["flow"]
    assert shown["operation"] == "launch" and shown["instance_uuid"] == server_id
    assert [s["name"] for s in shown["steps"] if s["state"] == "SUCCESS"][:3] == [
        "launch.validate-request", "launch.check-quota", "launch.create-instance-record"]

    assert api.post(f"/v2.1/os-flows/{lost[0]}/action", {"resume": None}).status_code == 202
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    deadline = time.monotonic() + 10
    while api.get(f"/v2.1/os-flows/{lost[0]}").json()["flow"]["state"] != "SUCCESS":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again = api.post(f"/v2.1/os-flows/{lost[0]}/action", {"resume": None})
    assert again.status_code == 409 and "has ended (SUCCESS)" in again.text

    member = {"X-Roles": "member"}
    assert api.get("/v2.1/os-flows", headers=member).status_code == 403
    assert api.post(f"/v2.1/os-flows/{lost[0]}/action", {"explode": None}).status_code == 400
    assert api.get("/v2.1/os-flows/7d3fe0a1-8d3f-4d3c-9a52-1f0c2a3b4c5d").status_code == 404
