"""Shelve, shelveOffload and unshelve through the HTTP API of an embedded cloud.

Everything is real: the Flask app, the conductor and compute Celery workers,
the database, the image store and libvirt test-driver hosts.  What is checked
is what a user or an operator sees (statuses, hosts, images, instance actions,
faults) and what is left on the hosts (guests, disks, claims).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

import flows
from flows.base import Services
from tests.functional.checks import faults
from vmflow.db.models import Allocation, ComputeNode, FlowRun, Image, Instance
from vmflow.states import power_state
from webapp.api.microversion import MAX_VERSION

# Short timeouts, so that the failure paths (which poll until they give up) are quick.
FAST = {"spawn_poll_attempts": 3, "shutdown_timeout": 0.3, "report_interval": 60.0}
LATEST = {"OpenStack-API-Version": f"compute {MAX_VERSION}"}
MARKER = b"written by the guest before it was shelved"
MARKER_AT = 7 * 1024**2

SHELVE = {"shelve": None}
OFFLOAD = {"shelveOffload": None}
UNSHELVE = {"unshelve": None}


@pytest.fixture
def running(cloud_factory):
    """A cloud whose shelved instances keep their host until offloaded by hand."""
    return cloud_factory(shelved_offload_time=-1, **FAST)


def _launch(running, name: str = "vm") -> dict:
    response = running.api.create(name)
    assert response.status_code == 202, response.text
    server = running.api.wait_status(response.json()["server"]["id"])
    assert server["status"] == "ACTIVE"
    return server


def _act(running, server_id: str, body: dict, headers: dict | None = None):
    return running.api.post(f"/v2.1/servers/{server_id}/action", body,
                            headers={**LATEST, **(headers or {})})


def _settled(running, server_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        server = running.api.server(server_id)
        if server["OS-EXT-STS:task_state"] is None:
            return server
        assert time.monotonic() < deadline, server
        time.sleep(0.02)


def _do(running, server_id: str, body: dict, status: str) -> dict:
    response = _act(running, server_id, body)
    assert response.status_code == 202, response.text
    server = _settled(running, server_id)
    assert server["status"] == status, (body, server, faults(running, server_id))
    return server


def _footprint(running, server_id: str) -> tuple[list[str], list[str], list[str]]:
    """Hosts holding the instance's claims, guests and disks."""
    with running.db.read() as session:
        held = sorted(a.host for a in session.scalars(select(Allocation).where(
            Allocation.instance_uuid == server_id)))
    managers = running.cloud.compute.managers
    guests = sorted(h for h, m in managers.items() if server_id in m.driver.list_instances())
    disks = sorted(h for h, m in managers.items() if m.driver.disk_exists(server_id))
    return held, guests, disks


def _usage(running) -> dict[str, tuple[int, int, int]]:
    with running.db.read() as session:
        return {n.host: (n.vcpus_used, n.memory_mb_used, n.local_gb_used)
                for n in session.scalars(select(ComputeNode))}


def _shelved_images(running, server_id: str) -> list[tuple[str, str]]:
    """(id, status) of the instance's shelved images that are not deleted."""
    with running.db.read() as session:
        return sorted((i.id, i.status) for i in session.scalars(select(Image).where(
            Image.name.like("%-shelved"), Image.status != "deleted"))
            if (i.properties or {}).get("instance_uuid") == server_id)


def _stray_files(running) -> list[str]:
    """Files of the image store that no live image names."""
    store = Path(running.cfg.data_dir) / "images"
    with running.db.read() as session:
        known = {i.location for i in session.scalars(select(Image).where(
            Image.status != "deleted")) if i.location}
    return sorted(str(p) for p in store.iterdir() if str(p) not in known)


def _system_metadata(running, server_id: str) -> dict:
    with running.db.read() as session:
        return dict(session.get(Instance, server_id).system_metadata or {})


def _actions(running, server_id: str) -> list[str]:
    body = running.api.get(f"/v2.1/servers/{server_id}/os-instance-actions").json()
    return [a["action"] for a in body["instanceActions"]]


def _disk(running, host: str, server_id: str) -> Path:
    return running.driver(host).instances_dir / server_id / "disk"


def _scribble(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.seek(MARKER_AT)
        fh.write(MARKER)


def _marked(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(MARKER_AT)
        return fh.read(len(MARKER)) == MARKER


# -- the happy paths ---------------------------------------------------------------------

def test_shelve_then_unshelve_on_the_same_host(running):
    server = _launch(running, "keeper")
    sid, host = server["id"], server["OS-EXT-SRV-ATTR:host"]
    _scribble(_disk(running, host, sid))

    shelved = _do(running, sid, SHELVE, "SHELVED")
    assert shelved["OS-EXT-SRV-ATTR:host"] == host  # kept until offloaded
    assert shelved["OS-EXT-STS:power_state"] == power_state.SHUTDOWN
    assert running.driver(host).power_state(sid) == power_state.SHUTDOWN
    assert _footprint(running, sid) == ([host], [host], [host])
    (image_id, status), = _shelved_images(running, sid)
    assert status == "active"
    image = running.api.get(f"/v2.1/images/{image_id}").json()["image"]
    assert image["name"] == "keeper-shelved"
    assert image["metadata"]["image_type"] == "snapshot"
    assert image["metadata"]["instance_uuid"] == sid
    meta = _system_metadata(running, sid)
    assert meta["shelved_image_id"] == image_id and meta["shelved_host"] == host
    assert meta["shelved_at"]

    unshelved = _do(running, sid, UNSHELVE, "ACTIVE")
    assert unshelved["OS-EXT-SRV-ATTR:host"] == host
    assert unshelved["OS-EXT-STS:power_state"] == power_state.RUNNING
    assert running.driver(host).power_state(sid) == power_state.RUNNING
    assert _marked(_disk(running, host, sid))  # the same disk, never copied
    assert _shelved_images(running, sid) == []  # the shelved image is deleted
    assert running.api.get(f"/v2.1/images/{image_id}").status_code == 404
    assert not set(_system_metadata(running, sid)) & {"shelved_image_id", "shelved_at",
                                                      "shelved_host"}
    assert _stray_files(running) == []
    assert _actions(running, sid)[:2] == ["unshelve", "shelve"]


def test_offloaded_at_once_then_unshelved_on_another_host_with_its_disk(cloud_factory):
    running = cloud_factory(**FAST)  # shelved_offload_time 0: offload in the shelve
    api = running.api
    server = _launch(running, "traveller")
    sid, first = server["id"], server["OS-EXT-SRV-ATTR:host"]
    _scribble(_disk(running, first, sid))
    before = _usage(running)
    assert before[first] == (1, 512, 1)

    offloaded = _do(running, sid, SHELVE, "SHELVED_OFFLOADED")
    assert offloaded["OS-EXT-SRV-ATTR:host"] is None  # as Nova shows it
    assert offloaded["OS-EXT-SRV-ATTR:hypervisor_hostname"] is None
    assert offloaded["OS-EXT-STS:power_state"] == power_state.NOSTATE
    assert _footprint(running, sid) == ([], [], [])
    assert _usage(running)[first] == (0, 0, 0)
    assert _system_metadata(running, sid)["shelved_host"] == first
    assert len(_shelved_images(running, sid)) == 1

    # The first host takes no new guests: the scheduler must choose another.
    disabled = api.http.put(f"{api.base}/v2.1/os-services/disable",
                            json={"host": first, "binary": "vmflow-compute"}, timeout=30)
    assert disabled.status_code == 200, disabled.text
    running.cloud.conductor.scheduler.cache.invalidate()

    unshelved = _do(running, sid, UNSHELVE, "ACTIVE")
    second = unshelved["OS-EXT-SRV-ATTR:host"]
    assert second not in (None, first)
    assert running.driver(second).power_state(sid) == power_state.RUNNING
    assert _footprint(running, sid) == ([second], [second], [second])
    assert _marked(_disk(running, second, sid))  # what the guest wrote came along
    usage = _usage(running)
    assert usage[first] == (0, 0, 0) and usage[second] == (1, 512, 1)
    assert _shelved_images(running, sid) == [] and _stray_files(running) == []
    assert unshelved["OS-EXT-AZ:availability_zone"] == "nova"


def test_shelve_offload_is_for_admins(running):
    server = _launch(running)
    sid, host = server["id"], server["OS-EXT-SRV-ATTR:host"]
    _do(running, sid, SHELVE, "SHELVED")

    refused = _act(running, sid, OFFLOAD, headers={"X-Roles": "member"})
    assert refused.status_code == 403, refused.text
    assert "forbidden" in refused.json()
    assert running.api.server(sid)["OS-EXT-STS:task_state"] is None
    with running.db.read() as session:
        assert session.scalar(select(FlowRun).where(
            FlowRun.instance_uuid == sid, FlowRun.operation == "shelve_offload")) is None
    assert _footprint(running, sid) == ([host], [host], [host])

    offloaded = _do(running, sid, OFFLOAD, "SHELVED_OFFLOADED")
    assert offloaded["OS-EXT-SRV-ATTR:host"] is None
    assert _footprint(running, sid) == ([], [], [])
    assert _actions(running, sid)[0] == "shelveOffload"
    # A member may unshelve.
    assert _act(running, sid, UNSHELVE, headers={"X-Roles": "member"}).status_code == 202
    assert _settled(running, sid)["status"] == "ACTIVE"


def test_shelved_instances_are_offloaded_after_shelved_offload_time(cloud_factory):
    running = cloud_factory(shelved_offload_time=1, shelved_poll_interval=0.2, **FAST)
    server = _launch(running)
    sid, host = server["id"], server["OS-EXT-SRV-ATTR:host"]
    _do(running, sid, SHELVE, "SHELVED")
    assert _footprint(running, sid) == ([host], [host], [host])
    deadline = time.monotonic() + 30
    while running.api.server(sid)["status"] != "SHELVED_OFFLOADED":
        assert time.monotonic() < deadline, running.api.server(sid)
        time.sleep(0.1)
    assert _settled(running, sid)["OS-EXT-SRV-ATTR:host"] is None
    assert _footprint(running, sid) == ([], [], [])
    assert _actions(running, sid)[0] == "shelveOffload"
    assert _do(running, sid, UNSHELVE, "ACTIVE")["OS-EXT-SRV-ATTR:host"]


def test_an_unshelve_may_name_a_zone_from_2_77(cloud_factory):
    running = cloud_factory(**FAST)
    api = running.api
    server = _launch(running)
    sid = server["id"]
    _do(running, sid, SHELVE, "SHELVED_OFFLOADED")
    # A zone of its own for the last host.
    aggregate = api.post("/v2.1/os-aggregates", {"aggregate": {
        "name": "far", "availability_zone": "far-zone"}})
    assert aggregate.status_code == 200, aggregate.text
    added = api.post(f"/v2.1/os-aggregates/{aggregate.json()['aggregate']['id']}/action",
                     {"add_host": {"host": "compute-3"}})
    assert added.status_code == 200, added.text
    running.cloud.conductor.scheduler.cache.invalidate()
    unshelved = _do(running, sid, {"unshelve": {"availability_zone": "far-zone"}}, "ACTIVE")
    assert unshelved["OS-EXT-SRV-ATTR:host"] == "compute-3"
    assert unshelved["OS-EXT-AZ:availability_zone"] == "far-zone"


# -- refusals ------------------------------------------------------------------------------

def test_states_that_do_not_allow_it_are_409(running):
    server = _launch(running)
    sid = server["id"]
    for body in (UNSHELVE, OFFLOAD):  # an active server
        response = _act(running, sid, body)
        assert response.status_code == 409, (body, response.text)
        assert "conflictingRequest" in response.json()
    _do(running, sid, SHELVE, "SHELVED")
    again = _act(running, sid, SHELVE)
    assert again.status_code == 409 and "conflictingRequest" in again.json()
    # Only an offloaded server may be given a zone.
    zoned = _act(running, sid, {"unshelve": {"availability_zone": "nova"}})
    assert zoned.status_code == 409, zoned.text
    assert running.api.server(sid)["OS-EXT-STS:task_state"] is None
    assert _actions(running, sid) == ["shelve", "create"]


@pytest.mark.parametrize("body, version", [
    ({"shelve": {"now": True}}, None), ({"shelve": 1}, None), ({"shelveOffload": "x"}, None),
    ({"unshelve": {"availability_zone": 5}}, None),
    ({"unshelve": {"availability_zone": None}}, None),
    ({"unshelve": {"availability_zone": ""}}, None),
    ({"unshelve": {"availability_zone": "nowhere"}}, None),
    ({"unshelve": {"host": "compute-1"}}, None), ({"unshelve": "soon"}, None),
    ({"unshelve": {"availability_zone": "nova"}}, "2.76"),
])
def test_bad_bodies_are_400_and_change_nothing(cloud_factory, body, version):
    running = cloud_factory(**FAST)
    server = _launch(running)
    sid = server["id"]
    if "unshelve" in body:
        _do(running, sid, SHELVE, "SHELVED_OFFLOADED")
    before = running.api.server(sid)
    headers = {"OpenStack-API-Version": f"compute {version}"} if version else None
    response = _act(running, sid, body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["badRequest"]["message"]
    after = running.api.server(sid)
    assert (after["status"], after["OS-EXT-STS:task_state"]) == (before["status"], None)
    assert len(_actions(running, sid)) == (2 if "unshelve" in body else 1)


# -- delete ------------------------------------------------------------------------------

@pytest.mark.parametrize("offload_time, status", [(0, "SHELVED_OFFLOADED"), (-1, "SHELVED")])
def test_delete_of_a_shelved_server_deletes_its_image(cloud_factory, offload_time, status):
    running = cloud_factory(shelved_offload_time=offload_time, **FAST)
    server = _launch(running)
    sid = server["id"]
    _do(running, sid, SHELVE, status)
    (image_id, _), = _shelved_images(running, sid)
    assert running.api.delete(f"/v2.1/servers/{sid}").status_code == 204
    running.api.wait_gone(sid)
    assert _footprint(running, sid) == ([], [], [])
    assert running.api.get(f"/v2.1/images/{image_id}").status_code == 404
    assert _shelved_images(running, sid) == [] and _stray_files(running) == []
    assert set(_usage(running).values()) == {(0, 0, 0)}


# -- a failure at each step ------------------------------------------------------------------

def _steps_of(running, operation: str, params: dict) -> list[str]:
    return flows.task_names(flows.build(operation, Services(config=running.cfg, db=None),
                                        params))


# id, operation, its flow's parameters, shelved_offload_time, how to get there first,
# the body, the status before and after.
CASES = [
    ("shelve", "shelve", {"offload": False}, -1, [], SHELVE, "ACTIVE", "SHELVED"),
    ("shelve-and-offload", "shelve", {"offload": True}, 0, [], SHELVE, "ACTIVE",
     "SHELVED_OFFLOADED"),
    ("shelve-stopped", "shelve", {"offload": False}, -1, [({"os-stop": None}, "SHUTOFF")],
     SHELVE, "SHUTOFF", "SHELVED"),
    ("shelve-paused", "shelve", {"offload": True, "graceful": False}, 0,
     [({"pause": None}, "PAUSED")], SHELVE, "PAUSED", "SHELVED_OFFLOADED"),
    ("shelve-suspended", "shelve", {"offload": False, "graceful": False}, -1,
     [({"suspend": None}, "SUSPENDED")], SHELVE, "SUSPENDED", "SHELVED"),
    ("shelve_offload", "shelve_offload", {}, -1, [(SHELVE, "SHELVED")], OFFLOAD, "SHELVED",
     "SHELVED_OFFLOADED"),
    ("unshelve", "unshelve", {"offloaded": False}, -1, [(SHELVE, "SHELVED")], UNSHELVE,
     "SHELVED", "ACTIVE"),
    ("unshelve-offloaded", "unshelve", {"offloaded": True}, 0,
     [(SHELVE, "SHELVED_OFFLOADED")], UNSHELVE, "SHELVED_OFFLOADED", "ACTIVE"),
]


@pytest.mark.parametrize(("operation", "params", "offload_time", "setup", "body", "status",
                          "after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_failure_at_each_step_leaves_the_instance_where_it_was(
        running, operation, params, offload_time, setup, body, status, after):
    running.cfg.shelved_offload_time = offload_time
    server = _launch(running)
    sid = server["id"]
    for first, reached in setup:
        _do(running, sid, first, reached)
    place = _footprint(running, sid)
    host = running.api.server(sid)["OS-EXT-SRV-ATTR:host"]
    power = running.driver(host).power_state(sid) if host else None
    images = _shelved_images(running, sid)
    usage = _usage(running)
    for step in _steps_of(running, operation, params):
        running.cfg.inject_step_failures[:] = [step]
        try:
            response = _act(running, sid, body)
            assert response.status_code == 202, (step, response.text)
            server = _settled(running, sid)
        finally:
            running.cfg.inject_step_failures[:] = []
        assert server["status"] == status, (step, server, faults(running, sid))
        assert server["OS-EXT-SRV-ATTR:host"] == host, step
        assert step in faults(running, sid)[-1], (step, faults(running, sid))
        assert _footprint(running, sid) == place, step  # nothing leaked, nothing lost
        assert _usage(running) == usage, step
        if host:
            assert running.driver(host).power_state(sid) == power, step
        assert _shelved_images(running, sid) == images, step  # no stray image, none lost
        assert _stray_files(running) == [], step
        assert _actions(running, sid)[0] == {"shelve_offload": "shelveOffload"}.get(
            operation, operation), step
    # Nothing was left behind: the operation still works once nothing fails.
    _do(running, sid, body, after)
