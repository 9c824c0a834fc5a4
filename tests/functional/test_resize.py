"""Resize and cold migration, with confirm and revert, through the HTTP API of
an embedded cloud (real Celery workers, libvirt test-driver hosts, SQLite).

What is checked is what a user or an operator sees (statuses, flavor, host,
migrations) and what the hosts and claims hold: after every outcome, one
guest runs where the instance lives, and the claims match the disks.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

import flows
from flows.base import Services
from tests.conftest import make_config
from tests.functional.checks import faults, run_of
from vmflow.db import moves
from vmflow.db.models import (
    Allocation,
    ComputeNode,
    FlowRun,
    Instance,
    Migration,
    utcnow,
)
from vmflow.states import power_state
from webapp.api.microversion import MAX_VERSION

FAST = {"spawn_poll_attempts": 3, "shutdown_timeout": 0.3, "report_interval": 60.0,
        "host_count": 2}
LATEST = {"OpenStack-API-Version": f"compute {MAX_VERSION}"}
MEMBER = {"X-Roles": "member"}
TINY = (1, 512, 1)  # vcpus, memory_mb, disk_gb of m1.tiny (flavor "1")
SMALL = (1, 2048, 20)  # m1.small (flavor "2")


@pytest.fixture
def running(cloud_factory):
    return cloud_factory(**FAST)


def _launch(running, name: str = "vm") -> dict:
    response = running.api.create(name)
    assert response.status_code == 202, response.text
    server = running.api.wait_status(response.json()["server"]["id"])
    assert server["status"] == "ACTIVE", server
    return server


def _act(running, server_id: str, body: dict, headers: dict | None = None):
    return running.api.post(f"/v2.1/servers/{server_id}/action", body,
                            headers={**LATEST, **(headers or {})})


def _settled(running, server_id: str, timeout: float = 60) -> dict:
    """The server once no operation holds it and its flow runs have ended (a
    confirm or revert cleans up the side it left after its state is set)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = running.api.server(server_id, MAX_VERSION)
        if server["OS-EXT-STS:task_state"] is None and not _running_flows(running, server_id):
            return server
        time.sleep(0.02)
    raise AssertionError(f"server {server_id} stayed in {server['OS-EXT-STS:task_state']}")


def _running_flows(running, server_id: str) -> list[str]:
    with running.db.read() as session:
        return [run.operation for run in session.scalars(select(FlowRun).where(
            FlowRun.instance_uuid == server_id))
            if run.state not in ("SUCCESS", "REVERTED", "FAILURE") or run.owner is not None]


def _do(running, server_id: str, body: dict, status: str, code: int = 202,
        headers: dict | None = None) -> dict:
    response = _act(running, server_id, body, headers)
    assert response.status_code == code, response.text
    server = _settled(running, server_id)
    assert server["status"] == status, (server, faults(running, server_id))
    return server


def guests(running, host: str) -> dict[str, int]:
    """The guests the host's hypervisor has, with their power states."""
    return running.driver(host).power_states()


def _other(host: str) -> str:
    return "compute-2" if host == "compute-1" else "compute-1"


def _claims(running, server_id: str) -> dict[str, tuple[str, tuple[int, int, int]]]:
    """host -> (consumer: "instance" or "migration", (vcpus, memory_mb, disk_gb))."""
    with running.db.read() as session:
        mine = list(session.scalars(select(Allocation).where(
            Allocation.instance_uuid == server_id)))
        migrations = {m.uuid for m in session.scalars(select(Migration).where(
            Migration.instance_uuid == server_id))}
        theirs = list(session.scalars(select(Allocation).where(
            Allocation.instance_uuid.in_(migrations))))
    return {a.host: (who, (a.vcpus, a.memory_mb, a.disk_gb))
            for who, rows in (("instance", mine), ("migration", theirs)) for a in rows}


def _usage(running) -> dict[str, tuple[int, int, int]]:
    with running.db.read() as session:
        return {n.host: (n.vcpus_used, n.memory_mb_used, n.local_gb_used)
                for n in session.scalars(select(ComputeNode))}


def _migrations(running, server_id: str) -> list[Migration]:
    with running.db.read() as session:
        return list(session.scalars(select(Migration).where(
            Migration.instance_uuid == server_id).order_by(Migration.id)))


def _only_on(running, server_id: str, host: str, size: tuple[int, int, int],
             state: int = power_state.RUNNING) -> None:
    """One guest (in ``state``) with its disk on ``host``, one claim of ``size``
    held by the instance there; nothing of it on any other host, and no
    transfer directory left."""
    assert _claims(running, server_id) == {host: ("instance", size)}
    for name in running.cloud.compute.managers:
        mine = name == host
        assert guests(running, name) == ({server_id: state} if mine else {}), name
        assert running.driver(name).disk_exists(server_id) == mine, name
        assert _usage(running)[name] == (size if mine else (0, 0, 0)), name
    transfers = running.cfg.data_dir / "transfers"
    assert not transfers.exists() or not any(transfers.iterdir())


def _disk_gb(running, host: str, server_id: str) -> float:
    return (running.driver(host).instances_dir / server_id / "disk").stat().st_size / 1024**3


# -- happy paths ----------------------------------------------------------------------

def test_resize_up_then_confirm(running):
    server = _launch(running)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    resized = _do(running, sid, {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE")
    target = resized["OS-EXT-SRV-ATTR:host"]
    assert target == _other(source)
    assert resized["flavor"]["original_name"] == "m1.small"
    assert resized["OS-EXT-STS:vm_state"] == "resized"
    # Both hosts hold the instance's resources until it is confirmed; the
    # source's guest waits there, powered off.
    assert _claims(running, sid) == {source: ("migration", TINY), target: ("instance", SMALL)}
    assert guests(running, source) == {sid: power_state.SHUTDOWN}
    assert guests(running, target) == {sid: power_state.RUNNING}
    assert _disk_gb(running, target, sid) == 20  # grown to the new root disk
    [migration] = _migrations(running, sid)
    assert (migration.status, migration.migration_type) == ("finished", "resize")
    assert (migration.source_compute, migration.dest_compute) == (source, target)

    confirmed = _do(running, sid, {"confirmResize": None}, "ACTIVE", code=204)
    assert confirmed["OS-EXT-SRV-ATTR:host"] == target
    assert confirmed["flavor"]["original_name"] == "m1.small"
    _only_on(running, sid, target, SMALL)
    assert _migrations(running, sid)[0].status == "confirmed"
    actions = [a["action"] for a in running.api.get(
        f"/v2.1/servers/{sid}/os-instance-actions").json()["instanceActions"]]
    assert actions[:2] == ["confirmResize", "resize"]


def test_resize_then_revert_goes_back_to_the_source(running):
    server = _launch(running)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    _do(running, sid, {"resize": {"flavorRef": "2", "OS-DCF:diskConfig": "AUTO"}},
        "VERIFY_RESIZE")
    reverted = _do(running, sid, {"revertResize": None}, "ACTIVE")
    assert reverted["OS-EXT-SRV-ATTR:host"] == source
    assert reverted["flavor"]["original_name"] == "m1.tiny"
    assert reverted["OS-EXT-STS:power_state"] == power_state.RUNNING
    _only_on(running, sid, source, TINY)
    assert _migrations(running, sid)[0].status == "reverted"
    with running.db.read() as session:
        instance = session.get(Instance, sid)
        assert instance.old_flavor is None and instance.new_flavor is None
    # The instance takes the next operation as usual.
    _do(running, sid, {"reboot": {"type": "HARD"}}, "ACTIVE")


def test_a_stopped_instance_is_resized_and_stays_stopped(running):
    server = _launch(running)
    sid = server["id"]
    _do(running, sid, {"os-stop": None}, "SHUTOFF")
    resized = _do(running, sid, {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE")
    assert resized["OS-EXT-STS:power_state"] == power_state.SHUTDOWN
    assert guests(running, resized["OS-EXT-SRV-ATTR:host"]) == {sid: power_state.SHUTDOWN}
    confirmed = _do(running, sid, {"confirmResize": None}, "SHUTOFF", code=204)
    _only_on(running, sid, confirmed["OS-EXT-SRV-ATTR:host"], SMALL, power_state.SHUTDOWN)
    # And a revert brings it back stopped too.
    _do(running, sid, {"resize": {"flavorRef": "3"}}, "VERIFY_RESIZE")
    _do(running, sid, {"revertResize": None}, "SHUTOFF")
    _only_on(running, sid, confirmed["OS-EXT-SRV-ATTR:host"], SMALL, power_state.SHUTDOWN)


@pytest.mark.parametrize("settle", ["confirmResize", "revertResize"])
def test_admin_migrates_without_a_host(running, settle):
    server = _launch(running)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    migrated = _do(running, sid, {"migrate": None}, "VERIFY_RESIZE")
    target = migrated["OS-EXT-SRV-ATTR:host"]
    assert target == _other(source)
    assert migrated["flavor"]["original_name"] == "m1.tiny"
    assert _claims(running, sid) == {source: ("migration", TINY), target: ("instance", TINY)}
    assert _migrations(running, sid)[0].migration_type == "migration"
    code = 204 if settle == "confirmResize" else 202
    after = _do(running, sid, {settle: None}, "ACTIVE", code=code)
    home = target if settle == "confirmResize" else source
    assert after["OS-EXT-SRV-ATTR:host"] == home
    _only_on(running, sid, home, TINY)
    actions = [a["action"] for a in running.api.get(
        f"/v2.1/servers/{sid}/os-instance-actions").json()["instanceActions"]]
    assert actions[:2] == [settle, "migrate"]


def test_admin_migrates_to_a_named_host(cloud_factory):
    running = cloud_factory(**dict(FAST, host_count=3))
    server = _launch(running)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    target = next(h for h in ("compute-1", "compute-2", "compute-3") if h != source)
    for _ in range(2):  # there and back: each time to the host named
        _do(running, sid, {"migrate": {"host": target}}, "VERIFY_RESIZE")
        assert running.api.server(sid, MAX_VERSION)["OS-EXT-SRV-ATTR:host"] == target
        _do(running, sid, {"confirmResize": None}, "ACTIVE", code=204)
        _only_on(running, sid, target, TINY)
        source, target = target, source
    # Its own host is refused (400), as is a host that does not exist; before 2.56
    # no host may be named.
    assert running.api.server(sid, MAX_VERSION)["OS-EXT-SRV-ATTR:host"] == source
    for body in ({"migrate": {"host": source}}, {"migrate": {"host": "compute-9"}}):
        response = _act(running, sid, body)
        assert response.status_code == 400, response.text
    old = running.api.post(f"/v2.1/servers/{sid}/action", {"migrate": {"host": target}},
                           headers={"OpenStack-API-Version": "compute 2.55"})
    assert old.status_code == 400, old.text
    assert len(_migrations(running, sid)) == 2


def test_a_member_may_not_migrate_and_nothing_is_recorded(running):
    server = _launch(running)
    sid = server["id"]
    response = _act(running, sid, {"migrate": None}, MEMBER)
    assert response.status_code == 403, response.text
    assert "forbidden" in response.json()
    assert running.api.server(sid)["OS-EXT-STS:task_state"] is None
    assert _migrations(running, sid) == []
    actions = running.api.get(f"/v2.1/servers/{sid}/os-instance-actions").json()
    assert [a["action"] for a in actions["instanceActions"]] == ["create"]
    # A member resizes their own server, and confirms it.
    _do(running, sid, {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE", headers=MEMBER)
    _do(running, sid, {"confirmResize": None}, "ACTIVE", code=204, headers=MEMBER)


def test_resize_on_the_same_host_when_allowed(cloud_factory):
    running = cloud_factory(**dict(FAST, host_count=1, allow_resize_to_same_host=True))
    server = _launch(running)
    sid = server["id"]
    resized = _do(running, sid, {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE")
    assert resized["OS-EXT-SRV-ATTR:host"] == "compute-1"
    # One host, two claims: the migration's (old flavor) and the instance's (new).
    with running.db.read() as session:
        held = sorted((a.instance_uuid == sid, a.memory_mb) for a in session.scalars(
            select(Allocation)))
    assert held == [(False, 512), (True, 2048)]
    assert _usage(running)["compute-1"] == (2, 2560, 21)
    assert guests(running, "compute-1") == {sid: power_state.RUNNING}
    assert _disk_gb(running, "compute-1", sid) == 20
    reverted = _do(running, sid, {"revertResize": None}, "ACTIVE")
    assert reverted["flavor"]["original_name"] == "m1.tiny"
    _only_on(running, sid, "compute-1", TINY)
    assert _disk_gb(running, "compute-1", sid) == 1  # the old disk is back
    _do(running, sid, {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE")
    _do(running, sid, {"confirmResize": None}, "ACTIVE", code=204)
    _only_on(running, sid, "compute-1", SMALL)
    assert not (running.driver("compute-1").instances_dir / sid / "disk.pre-rebuild").exists()


def test_a_resize_on_one_host_needs_the_option(cloud_factory):
    running = cloud_factory(**dict(FAST, host_count=1))
    server = _launch(running)
    sid = server["id"]
    after = _do(running, sid, {"resize": {"flavorRef": "2"}}, "ACTIVE")
    assert after["flavor"]["original_name"] == "m1.tiny"
    assert "No valid host" in faults(running, sid)[-1]
    assert _migrations(running, sid)[0].status == "error"
    _only_on(running, sid, "compute-1", TINY)


def test_an_unconfirmed_resize_is_confirmed_after_the_window(cloud_factory):
    running = cloud_factory(**dict(FAST, resize_confirm_window=1.0))
    server = _launch(running)
    sid = server["id"]
    _do(running, sid, {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE")
    deadline = time.monotonic() + 30
    while running.api.server(sid)["status"] != "ACTIVE":
        assert time.monotonic() < deadline, running.api.server(sid)
        time.sleep(0.1)
    after = _settled(running, sid)
    _only_on(running, sid, after["OS-EXT-SRV-ATTR:host"], SMALL)
    assert _migrations(running, sid)[0].status == "confirmed"
    assert run_of(running, sid, "confirm_resize").state == "SUCCESS"


def test_delete_while_waiting_for_confirm_cleans_both_hosts(running):
    server = _launch(running)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    target = _do(running, sid, {"resize": {"flavorRef": "2"}},
                 "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"]
    assert running.api.delete(f"/v2.1/servers/{sid}").status_code == 204
    running.api.wait_gone(sid)
    for host in (source, target):
        assert guests(running, host) == {}, host
        assert not (running.driver(host).instances_dir / sid).exists(), host
        assert _usage(running)[host] == (0, 0, 0), host
    assert _claims(running, sid) == {}


def test_both_hosts_accept_the_commands_of_a_move(cloud_factory):
    """Every command is confirmed with the conductor (fresh for 0 s): the source
    must accept confirm's commands though the instance lives on the target and
    only its migration holds a claim there."""
    running = cloud_factory(**dict(FAST, host_command_fresh_seconds=0.0))
    server = _launch(running)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    target = _do(running, sid, {"resize": {"flavorRef": "2"}},
                 "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"]
    _do(running, sid, {"confirmResize": None}, "ACTIVE", code=204)
    _only_on(running, sid, target, SMALL)
    _do(running, sid, {"migrate": None}, "VERIFY_RESIZE")
    _do(running, sid, {"revertResize": None}, "ACTIVE")
    _only_on(running, sid, target, SMALL)
    assert source != target


def _strand(running, server_id: str, task_state: str, status: str | None = None) -> None:
    """As if the API died right after taking the task_state (and, for a new
    move, recording its migration): no flow run drives it."""
    with running.db.write() as session:
        session.execute(update(Instance).where(Instance.uuid == server_id).values(
            task_state=task_state, updated_at=utcnow() - dt.timedelta(seconds=120)))
        if status == "pre-migrating":
            moves.create(session, server_id, moves.RESIZE, status, source_compute="compute-1")
        elif status is not None:
            moves.set_status(session, _migrations(running, server_id)[-1].uuid, status)


def test_moves_nobody_drives_are_let_go(running):
    server = _launch(running)
    sid = server["id"]
    _strand(running, sid, "resize_prep", "pre-migrating")
    assert running.cloud.conductor.resolve_stranded(grace=60) == [sid]
    assert _migrations(running, sid)[-1].status == "error"
    _do(running, sid, {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE")
    _strand(running, sid, "resize_confirming", "confirming")
    assert running.cloud.conductor.resolve_stranded(grace=60) == [sid]
    assert _settled(running, sid)["status"] == "VERIFY_RESIZE"
    assert _migrations(running, sid)[-1].status == "finished"
    after = _do(running, sid, {"confirmResize": None}, "ACTIVE", code=204)
    _only_on(running, sid, after["OS-EXT-SRV-ATTR:host"], SMALL)


# -- bad input ------------------------------------------------------------------------

@pytest.mark.parametrize("body, code", [
    ({"resize": {"flavorRef": "1"}}, 400),  # the same flavor
    ({"resize": {"flavorRef": "404"}}, 400),  # no such flavor
    ({"resize": {}}, 400),  # no flavor
    ({"resize": {"flavorRef": "2", "extra": 1}}, 400),
    ({"resize": {"flavorRef": "2", "OS-DCF:diskConfig": "SOMETIMES"}}, 400),
    ({"resize": None}, 400),
    ({"migrate": {"host": ""}}, 400),
    ({"migrate": {"host": "compute-1", "x": 1}}, 400),
    ({"migrate": "compute-1"}, 400),
    ({"confirmResize": None}, 409),  # not resized: the state refuses it
    ({"revertResize": None}, 409),
    ({"confirmResize": {"now": True}}, 400),
], ids=["same-flavor", "unknown-flavor", "no-flavor", "extra-key", "disk-config",
        "null-resize", "empty-host", "migrate-extra", "migrate-string", "confirm-active",
        "revert-active", "confirm-args"])
def test_bad_requests_are_refused_and_leave_no_trace(running, body, code):
    server = _launch(running)
    sid = server["id"]
    response = _act(running, sid, body)
    assert response.status_code == code, response.text
    assert ("badRequest" if code == 400 else "conflictingRequest") in response.json()
    if body == {"resize": {"flavorRef": "1"}}:
        assert "same flavor" in response.json()["badRequest"]["message"]
    assert running.api.server(sid)["OS-EXT-STS:task_state"] is None
    assert _migrations(running, sid) == []
    actions = running.api.get(f"/v2.1/servers/{sid}/os-instance-actions").json()
    assert [a["action"] for a in actions["instanceActions"]] == ["create"]


def test_a_smaller_root_disk_and_a_quota_are_refused(running):
    server = _launch(running)
    sid = server["id"]
    _do(running, sid, {"resize": {"flavorRef": "3"}}, "VERIFY_RESIZE")
    _do(running, sid, {"confirmResize": None}, "ACTIVE", code=204)
    smaller = _act(running, sid, {"resize": {"flavorRef": "2"}})  # 40 GB -> 20 GB
    assert smaller.status_code == 400 and "smaller root disk" in smaller.text
    running.api.http.put(running.api.base + "/v2.1/os-quota-sets/demo",
                         json={"quota_set": {"ram": 5000}}, timeout=30)
    over = _act(running, sid, {"resize": {"flavorRef": "4"}})  # 8192 MB of RAM
    assert over.status_code == 403, over.text
    assert len(_migrations(running, sid)) == 1
    # Confirm twice: the second is refused by the state (409); a revert too.
    assert _act(running, sid, {"confirmResize": None}).status_code == 409
    assert _act(running, sid, {"revertResize": None}).status_code == 409


# -- a failure at each step ------------------------------------------------------------

def _steps(operation: str, **params) -> list[str]:
    cfg = make_config(Path("/nonexistent"))
    return flows.task_names(flows.build(operation, Services(config=cfg, db=None), params))


@pytest.mark.parametrize("step", _steps("resize", start=True))
def test_a_failure_at_each_resize_step_leaves_the_instance_on_its_source(running, step):
    server = _launch(running)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    running.cfg.inject_step_failures[:] = [step]
    try:
        after = _do(running, sid, {"resize": {"flavorRef": "2"}}, "ACTIVE")
    finally:
        running.cfg.inject_step_failures[:] = []
    assert after["OS-EXT-SRV-ATTR:host"] == source
    assert after["flavor"]["original_name"] == "m1.tiny"
    assert after["OS-EXT-STS:power_state"] == power_state.RUNNING
    assert step in faults(running, sid)[-1], faults(running, sid)
    _only_on(running, sid, source, TINY)
    [migration] = _migrations(running, sid)
    assert migration.status == "error"
    assert run_of(running, sid, "resize").state == "REVERTED"
    # Nothing was left behind: the resize works once nothing fails.
    _do(running, sid, {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE")


@pytest.mark.parametrize("step", _steps("migrate", start=False))
def test_a_failure_at_each_step_of_a_stopped_migration(running, step):
    server = _launch(running)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    _do(running, sid, {"os-stop": None}, "SHUTOFF")
    running.cfg.inject_step_failures[:] = [step]
    try:
        after = _do(running, sid, {"migrate": None}, "SHUTOFF")
    finally:
        running.cfg.inject_step_failures[:] = []
    assert after["OS-EXT-SRV-ATTR:host"] == source
    assert step in faults(running, sid)[-1], faults(running, sid)
    _only_on(running, sid, source, TINY, power_state.SHUTDOWN)


@pytest.mark.parametrize(("settle", "step"),
                         [("confirmResize", s) for s in _steps("confirm_resize")]
                         + [("revertResize", s) for s in _steps("revert_resize", start=True)])
def test_a_failed_confirm_or_revert_leaves_it_waiting_and_can_be_repeated(running, settle,
                                                                           step):
    server = _launch(running)
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    target = _do(running, sid, {"resize": {"flavorRef": "2"}},
                 "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"]
    code = 204 if settle == "confirmResize" else 202
    running.cfg.inject_step_failures[:] = [step]
    try:
        after = _do(running, sid, {settle: None}, "VERIFY_RESIZE", code=code)
    finally:
        running.cfg.inject_step_failures[:] = []
    assert after["OS-EXT-SRV-ATTR:host"] == target
    assert after["flavor"]["original_name"] == "m1.small"
    assert step in faults(running, sid)[-1], faults(running, sid)
    assert _migrations(running, sid)[0].status == "finished"
    # Asked again, it goes through and leaves one guest, one claim.
    done = _do(running, sid, {settle: None}, "ACTIVE", code=code)
    if settle == "confirmResize":
        _only_on(running, sid, target, SMALL)
    else:
        assert done["flavor"]["original_name"] == "m1.tiny"
        _only_on(running, sid, source, TINY)


# -- migration records -----------------------------------------------------------------

def test_os_migrations_lists_them_as_nova_does(running):
    server = _launch(running)
    sid = server["id"]
    _do(running, sid, {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE")
    _do(running, sid, {"confirmResize": None}, "ACTIVE", code=204)
    _do(running, sid, {"migrate": None}, "VERIFY_RESIZE")
    host = running.api.server(sid, MAX_VERSION)["OS-EXT-SRV-ATTR:host"]

    old = running.api.get("/v2.1/os-migrations").json()["migrations"]
    assert [m["status"] for m in old] == ["confirmed", "finished"]  # oldest first
    assert "migration_type" not in old[0] and "uuid" not in old[0]
    assert old[0]["old_instance_type_id"] != old[0]["new_instance_type_id"]
    assert set(old[0]) == {"id", "created_at", "updated_at", "status", "source_compute",
                           "source_node", "dest_compute", "dest_node", "dest_host",
                           "instance_uuid", "old_instance_type_id", "new_instance_type_id"}

    def listed(query: str = "", version: str = MAX_VERSION) -> list[dict]:
        response = running.api.get(f"/v2.1/os-migrations{query}",
                                   headers={"OpenStack-API-Version": f"compute {version}"})
        assert response.status_code == 200, response.text
        return response.json()["migrations"]

    new = listed()
    assert [m["migration_type"] for m in new] == ["migration", "resize"]  # newest first
    assert new[0]["uuid"] and new[0]["user_id"] == "demo" and new[0]["project_id"] == "demo"
    assert "links" not in new[0]  # only live migrations in progress have links
    assert [m["status"] for m in listed("?status=finished")] == ["finished"]
    assert [m["migration_type"] for m in listed("?migration_type=resize")] == ["resize"]
    assert len(listed(f"?instance_uuid={sid}")) == 2
    assert len(listed(f"?host={host}")) >= 1
    assert listed("?source_compute=nowhere") == []
    page = running.api.get("/v2.1/os-migrations?limit=1", headers=LATEST).json()
    assert len(page["migrations"]) == 1 and "marker=" in page["migrations_links"][0]["href"]
    rest = listed(f"?marker={page['migrations'][0]['uuid']}")
    assert [m["migration_type"] for m in rest] == ["resize"]
    assert running.api.get("/v2.1/os-migrations?marker=nope",
                           headers=LATEST).status_code == 400
    # Admin only.
    assert running.api.get("/v2.1/os-migrations", headers=MEMBER).status_code == 403
    # servers/{id}/migrations lists only live migrations in progress (Nova's rule).
    mine = running.api.get(f"/v2.1/servers/{sid}/migrations", headers=LATEST)
    assert mine.status_code == 200 and mine.json() == {"migrations": []}
    one = running.api.get(f"/v2.1/servers/{sid}/migrations/{new[0]['id']}", headers=LATEST)
    assert one.status_code == 404
    assert running.api.get(f"/v2.1/servers/{sid}/migrations").status_code == 404  # < 2.23
