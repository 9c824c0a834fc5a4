"""Evacuate (issue #6): rebuild a server whose host is down on another host,
keeping its identity; the dead host destroys its stale copy when it is back.

Embedded clouds (a host is made "down" by forcing its compute service down, as
an operator does once the host is fenced; its worker keeps reporting, so it
cleans up as soon as the evacuation is done), and compute hosts as separate
processes whose simulated hypervisors outlive them (``hosts_apart``): one is
stopped, its guests stay, it is evacuated from, then started again.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

import flows
from flows.base import Services
from tests.functional.checks import faults, guests, run_of, wait_hosts
from vmflow.config import Config
from vmflow.db.models import Allocation, ComputeNode, FlowRun, Migration
from vmflow.states import power_state

LATEST = {"OpenStack-API-Version": "compute 2.85"}
FAST = {"spawn_poll_attempts": 3, "shutdown_timeout": 0.3, "report_interval": 1.0,
        "service_down_time": 60.0}
EVACUATE = {"evacuate": {}}


def _version(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


def _create_on(api, name: str, host: str) -> str:
    _wait_for(lambda: _state(api, host) == "up", f"{host} reported", 60)
    response = api.post("/v2.1/servers", {"server": {
        "name": name, "flavorRef": "1", "imageRef": api.image_id(), "host": host,
        "networks": "none"}},
        headers=_version("2.74"))
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    server = api.wait_status(server_id)
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == host, server
    return server_id


def _state(api, host: str) -> str:
    services = api.get("/v2.1/os-services", params={"binary": "vmflow-compute",
                                                    "host": host}).json()["services"]
    return services[0]["state"] if services else "unknown"


def _evacuate(api, server_id: str, body: dict | None = None, version: str = "2.85",
              headers: dict | None = None):
    """POST the action ``body`` (an evacuation unless told otherwise)."""
    return api.post(f"/v2.1/servers/{server_id}/action", body or EVACUATE,
                    headers={**_version(version), **(headers or {})})


def _force_down(api, host: str, down: bool = True) -> None:
    response = api.http.put(f"{api.base}/v2.1/os-services/force-down",
                            json={"host": host, "binary": "vmflow-compute",
                                  "forced_down": down},
                            headers=_version("2.11"), timeout=30)
    assert response.status_code == 200, response.text


def _settled(api, server_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        server = api.server(server_id, "2.85")
        if server["OS-EXT-STS:task_state"] is None and server["status"] != "BUILD":
            return server
        assert time.monotonic() < deadline, server
        time.sleep(0.05)


def _migrations(running, server_id: str) -> list[Migration]:
    with running.db.read() as session:
        return list(session.scalars(select(Migration).where(
            Migration.instance_uuid == server_id).order_by(Migration.id)))


def _claims(running, consumer: str) -> list[str]:
    with running.db.read() as session:
        return sorted(a.host for a in session.scalars(select(Allocation).where(
            Allocation.instance_uuid == consumer)))


def _usage(running, host: str) -> tuple[int, int, int]:
    with running.db.read() as session:
        node = session.scalar(select(ComputeNode).where(ComputeNode.host == host))
        return node.vcpus_used, node.memory_mb_used, node.local_gb_used


def _wait_for(check, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def _cleaned_up(running, server_id: str) -> None:
    """Wait until every host the server was evacuated from has destroyed its copy
    (the forced-down hosts of an embedded cloud keep reporting)."""
    _wait_for(lambda: "done" not in {m.status for m in _migrations(running, server_id)},
              "the dead hosts cleaned up")
    assert _migrations(running, server_id)[-1].status == "completed"


def _runs(running, server_id: str) -> list[str]:
    with running.db.read() as session:
        return list(session.scalars(select(FlowRun.operation).where(
            FlowRun.instance_uuid == server_id)))


@pytest.fixture
def running(cloud_factory):
    return cloud_factory(**FAST)


# -- the embedded cloud ---------------------------------------------------------------

def test_evacuate_rebuilds_elsewhere_and_the_dead_host_cleans_up(running):
    api = running.api
    server_id = _create_on(api, "phoenix", "compute-1")
    before = api.server(server_id, "2.85")
    assert _evacuate(api, server_id).status_code == 409  # its host is up
    assert _migrations(running, server_id) == [] and _runs(running, server_id) == ["launch"]

    _force_down(api, "compute-1")
    response = _evacuate(api, server_id)
    assert response.status_code == 200 and response.content == b"", response.text
    server = _settled(api, server_id)
    target = server["OS-EXT-SRV-ATTR:host"]
    assert server["status"] == "ACTIVE" and target != "compute-1"
    for key in ("id", "name", "flavor", "metadata", "created", "OS-EXT-SRV-ATTR:instance_name"):
        assert server[key] == before[key], key
    assert running.driver(target).power_state(server_id) == power_state.RUNNING
    assert run_of(running, server_id, "evacuate").state == "SUCCESS"

    # The dead host reports (forced down, its worker runs): its copy goes, the
    # claim its migration held there is released, the migration is completed.
    migration = _wait_for(lambda: [m for m in _migrations(running, server_id)
                                   if m.status == "completed"], "migration completed")[0]
    assert (migration.migration_type, migration.source_compute, migration.dest_compute) == (
        "evacuation", "compute-1", target)
    assert running.driver("compute-1").list_instances() == []
    assert not running.driver("compute-1").disk_exists(server_id)
    assert _claims(running, migration.uuid) == [] and _usage(running, "compute-1") == (0, 0, 0)
    assert _claims(running, server_id) == [target] and _usage(running, target) == (1, 512, 1)
    assert running.driver(target).list_instances() == [server_id]
    assert api.server(server_id)["status"] == "ACTIVE"


def test_evacuate_to_a_named_host_and_a_stopped_server_stays_stopped(running):
    api = running.api
    server_id = _create_on(api, "named", "compute-1")
    assert _evacuate(api, server_id, {"os-stop": None}).status_code == 202
    assert _settled(api, server_id)["status"] == "SHUTOFF"
    _force_down(api, "compute-1")
    body = {"evacuate": {"host": "compute-3", "force": True}}  # the scheduler is not asked
    assert _evacuate(api, server_id, body, "2.29").status_code == 200
    server = _settled(api, server_id)
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("SHUTOFF", "compute-3")
    assert running.driver("compute-3").power_state(server_id) == power_state.SHUTDOWN
    # Once stopped, still so: it starts on its new host.
    assert _evacuate(api, server_id, {"os-start": None}).status_code == 202
    assert _settled(api, server_id)["status"] == "ACTIVE"
    assert running.driver("compute-3").power_state(server_id) == power_state.RUNNING
    _cleaned_up(running, server_id)


def test_shared_instance_storage_keeps_the_disk(cloud_factory):
    running = cloud_factory(shared_instance_storage=True, **FAST)
    api = running.api
    server_id = _create_on(api, "keeper", "compute-1")
    disk = running.cfg.data_dir / "hosts" / "compute-1" / "instances" / server_id / "disk"
    with open(disk, "r+b") as fh:  # what the guest wrote
        fh.seek(4096)
        fh.write(b"precious data")
    checksum = running.driver("compute-1").disk_checksum(server_id)
    _force_down(api, "compute-1")
    assert _evacuate(api, server_id, {"evacuate": {"onSharedStorage": False}},
                     "2.1").status_code == 400  # the cloud's storage is shared
    response = _evacuate(api, server_id, {"evacuate": {"onSharedStorage": True}}, "2.1")
    assert response.status_code == 200 and response.json() == {"adminPass": None}
    server = _settled(api, server_id)
    target = server["OS-EXT-SRV-ATTR:host"]
    assert server["status"] == "ACTIVE" and target != "compute-1"
    assert running.driver(target).disk_checksum(server_id) == checksum
    _cleaned_up(running, server_id)
    assert running.driver(target).disk_checksum(server_id) == checksum  # not deleted


def test_bad_targets_and_bodies_are_refused_with_nothing_recorded(running):
    api = running.api
    server_id = _create_on(api, "refused", "compute-1")
    _force_down(api, "compute-1")
    _force_down(api, "compute-2")
    cases = [
        ({"evacuate": {"host": "compute-9"}}, "2.85", 404),  # unknown (Nova: 404)
        ({"evacuate": {"host": "compute-1"}}, "2.85", 400),  # its own host
        ({"evacuate": {"host": "compute-2"}}, "2.85", 400),  # down
        ({"evacuate": {"host": "compute-2", "force": True}}, "2.29", 400),  # down, forced
        ({"evacuate": {"force": True}}, "2.29", 400),  # forced to no host
        ({"evacuate": {"host": "compute-3", "force": True}}, "2.28", 400),  # no force yet
        ({"evacuate": {"host": "compute-3", "force": True}}, "2.68", 400),  # no more force
        ({"evacuate": {"host": "bad host!"}}, "2.85", 400),
        ({"evacuate": {"surprise": 1}}, "2.85", 400),
        ({"evacuate": None}, "2.1", 400),
        ({"evacuate": []}, "2.85", 400),
        ({"evacuate": {"onSharedStorage": False}}, "2.14", 400),  # gone from 2.14
        ({"evacuate": {}}, "2.13", 400),  # required below 2.14
        ({"evacuate": {"onSharedStorage": "maybe"}}, "2.1", 400),
        ({"evacuate": {"onSharedStorage": True, "adminPass": "pw"}}, "2.1", 400),
        ({"evacuate": {"onSharedStorage": True}}, "2.1", 400),  # storage is not shared
    ]
    for body, version, status in cases:
        response = _evacuate(api, server_id, body, version)
        assert response.status_code == status, (body, version, response.text)
        assert "computeFault" not in response.text
    member = _evacuate(api, server_id, headers={"X-Roles": "member"})
    assert member.status_code == 403, member.text
    assert _migrations(running, server_id) == [] and _runs(running, server_id) == ["launch"]
    server = api.server(server_id)
    assert (server["status"], server["OS-EXT-STS:task_state"]) == ("ACTIVE", None)

    # Below 2.14 the answer holds the admin password (given, or generated).
    response = _evacuate(api, server_id, {"evacuate": {"onSharedStorage": "false",
                                                       "adminPass": "s3cret"}}, "2.1")
    assert response.status_code == 200 and response.json() == {"adminPass": "s3cret"}
    assert _settled(api, server_id)["OS-EXT-SRV-ATTR:host"] == "compute-3"
    _force_down(api, "compute-2", down=False)
    _force_down(api, "compute-3")
    response = _evacuate(api, server_id, {"evacuate": {"onSharedStorage": False}}, "2.1")
    assert response.status_code == 200 and response.json()["adminPass"]  # generated
    assert _settled(api, server_id)["OS-EXT-SRV-ATTR:host"] == "compute-2"
    _cleaned_up(running, server_id)


def _steps() -> list[tuple[str, bool]]:
    """(step, shared storage) for every step of the flow, and on shared storage
    again for every step from the one that takes the dead host's disk (a
    failure there must give the disk back)."""
    services = Services(config=Config(), db=None)
    found = [(step, False) for step in flows.task_names(flows.build("evacuate", services, {}))]
    shared = flows.task_names(flows.build("evacuate", services, {"shared": True}))
    found += [(step, True) for step in shared[shared.index("evacuate.adopt-disk"):]]
    return found


STEPS = _steps()


@pytest.mark.parametrize(("step", "shared"), STEPS,
                         ids=[f"{s}{'-shared' if shared else ''}" for s, shared in STEPS])
def test_a_failure_at_each_step_leaves_the_server_on_its_dead_host(cloud_factory, step,
                                                                   shared):
    running = cloud_factory(shared_instance_storage=shared, **FAST)
    api = running.api
    server_id = _create_on(api, "unlucky", "compute-1")
    checksum = running.driver("compute-1").disk_checksum(server_id)
    _force_down(api, "compute-1")
    running.cfg.inject_step_failures[:] = [step]
    try:
        assert _evacuate(api, server_id).status_code == 200
        assert run_of(running, server_id, "evacuate").state == "REVERTED"
    finally:
        running.cfg.inject_step_failures[:] = []
    server = _settled(api, server_id)
    assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", "compute-1"), step
    assert step in faults(running, server_id)[-1], faults(running, server_id)
    assert [m.status for m in _migrations(running, server_id)] == ["failed"]
    # Still there on its host, disk untouched; nothing left anywhere else.
    assert running.driver("compute-1").list_instances() == [server_id]
    assert running.driver("compute-1").disk_checksum(server_id) == checksum
    assert _claims(running, server_id) == ["compute-1"]
    for host in ("compute-2", "compute-3"):
        assert running.driver(host).list_instances() == [], host
        assert not running.driver(host).disk_exists(server_id), host
        assert _usage(running, host) == (0, 0, 0), host
    # Nothing was left in the way: the evacuation goes through now.
    assert _evacuate(api, server_id).status_code == 200
    assert run_of(running, server_id, "evacuate").state == "SUCCESS"
    assert _settled(api, server_id)["OS-EXT-SRV-ATTR:host"] != "compute-1"
    _cleaned_up(running, server_id)
    assert running.driver("compute-1").list_instances() == []


# -- a compute process stopped, evacuated from, and started again ----------------------

@pytest.fixture
def apart(monkeypatch, request):
    """``hosts_apart`` with a short service-down time (the cloud reads it from
    the environment when it is made)."""
    monkeypatch.setenv("VMFLOW_SERVICE_DOWN_TIME", "3")
    return request.getfixturevalue("hosts_apart")


def test_evacuate_from_a_stopped_compute_process_that_comes_back(apart, tmp_path):
    api = apart.api
    workers = {h: apart.compute(h) for h in ("compute-1", "compute-2", "compute-3")}
    wait_hosts(api, 3)
    auto = _create_on(api, "auto", "compute-1")
    named = _create_on(api, "named", "compute-1")
    assert _evacuate(api, auto).status_code == 409  # compute-1 is up

    workers["compute-1"].terminate()
    assert workers["compute-1"].wait(20) == 0
    _wait_for(lambda: _state(api, "compute-1") == "down", "compute-1 down", 20)
    assert guests(apart, "compute-1") == {auto: 1, named: 1}  # its hypervisor runs on

    assert _evacuate(api, auto, {"evacuate": None}).status_code == 200
    assert _evacuate(api, named, {"evacuate": {"host": "compute-3"}}).status_code == 200
    moved = {sid: _settled(api, sid) for sid in (auto, named)}
    assert moved[named]["OS-EXT-SRV-ATTR:host"] == "compute-3"
    assert moved[auto]["OS-EXT-SRV-ATTR:host"] in ("compute-2", "compute-3")
    for sid, server in moved.items():
        assert server["status"] == "ACTIVE" and server["id"] == sid
        assert guests(apart, server["OS-EXT-SRV-ATTR:host"])[sid] == 1
        migration = _migrations(apart, sid)[-1]
        assert migration.status == "done"  # the dead host's claim is still held
        assert _claims(apart, migration.uuid) == ["compute-1"]
        assert _claims(apart, sid) == [server["OS-EXT-SRV-ATTR:host"]]
    assert guests(apart, "compute-1") == {auto: 1, named: 1}  # nobody could ask it
    # An evacuated server is deleted while its old host is still down: its new
    # host is cleaned, the dead one is left to clean up when back.
    assert api.delete(f"/v2.1/servers/{named}").status_code == 204
    api.wait_gone(named, timeout=30)
    assert named not in guests(apart, "compute-3")

    apart.compute("compute-1")  # back: its first report cleans up
    _wait_for(lambda: all(m.status == "completed" for sid in moved
                          for m in _migrations(apart, sid)), "migrations completed", 60)
    assert guests(apart, "compute-1") == {}
    instances = tmp_path / "compute-data" / "hosts" / "compute-1" / "instances"
    assert not (instances / auto).exists() and not (instances / named).exists()
    assert _usage(apart, "compute-1") == (0, 0, 0)
    with apart.db.read() as session:
        assert not list(session.scalars(select(Allocation).where(
            Allocation.host == "compute-1")))
    host = moved[auto]["OS-EXT-SRV-ATTR:host"]
    assert api.server(auto)["status"] == "ACTIVE"
    assert guests(apart, host)[auto] == 1
    assert _claims(apart, auto) == [host]


# -- the conductor killed at each step -------------------------------------------------

CRASHES = [f"{step}:{when}" for step, shared in STEPS if not shared
           for when in ("before-save", "after-save")]


def test_an_evacuation_survives_its_conductor(distributed):
    """One server goes back and forth between the two hosts (each in turn forced
    down); each evacuation's conductor dies at the next point, after a step's
    effect and before its result is saved or just after; a new conductor takes
    the run over and the evacuation ends as it would have: one guest, one disk,
    one claim, on the new host, and the dead host cleaned up."""
    api = distributed.api
    distributed.conductor()
    server_id = _create_on(api, "phoenix", "compute-1")
    distributed.stop_conductors()
    here, there = "compute-1", "compute-2"
    for crash in CRASHES:
        _force_down(api, there, down=False)
        _force_down(api, here)
        dying = distributed.conductor(crash)
        assert _evacuate(api, server_id).status_code == 200, crash
        assert dying.wait(60) == 137, f"the conductor did not die at {crash}"
        distributed.conductor()  # the replacement, once the lease has expired
        run = run_of(distributed, server_id, "evacuate")
        assert (run.state, run.epoch) == ("SUCCESS", 2), (crash, run.state, run.epoch)
        server = _settled(api, server_id)
        assert (server["status"], server["OS-EXT-SRV-ATTR:host"]) == ("ACTIVE", there), crash
        assert distributed.driver(there).power_state(server_id) == power_state.RUNNING
        _cleaned_up(distributed, server_id)
        assert distributed.driver(here).list_instances() == [], crash
        assert not distributed.driver(here).disk_exists(server_id), crash
        assert _claims(distributed, server_id) == [there], crash
        assert _usage(distributed, here) == (0, 0, 0), crash
        distributed.stop_conductors()
        here, there = there, here
