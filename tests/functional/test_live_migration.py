"""Live migration (os-migrateLive) through the API on simulated hosts, with real
workers: the guest keeps running while it moves, every step reverts, the
checks refuse before anything is recorded, and a migration under way can be
aborted or forced to complete."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

import flows
from flows import live_migrate
from flows.base import Services
from tests.conftest import _fresh_postgres
from tests.functional.checks import agree, faults, messages_lost, run_of
from vmflow import config
from vmflow.db.models import Allocation, FlowRun, Instance, Migration
from vmflow.states import power_state

# Hosts that differ in what a live migration checks.  The default image says
# hw_architecture=x86_64, so nothing is ever built on "arm".
HOSTS = [{"name": "compute-1"}, {"name": "compute-2"}, {"name": "compute-3"},
         {"name": "arm", "arch": "aarch64"}, {"name": "xen", "hypervisor_type": "Xen"},
         {"name": "old", "hypervisor_version": 1000000},
         {"name": "small", "memory_mb": 256}, {"name": "down"}]
SECONDS = 0.5


def _headers(version: str | None) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"} if version else {}


def _boot(api, host: str | None = None, name: str = "mover") -> str:
    server = {"name": name, "flavorRef": "1", "imageRef": api.image_id(), "networks": "none"}
    if host:
        server["host"] = host
    response = api.post("/v2.1/servers", {"server": server}, headers=_headers("2.74"))
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    return server_id


def _host(api, server_id: str) -> str:
    return api.server(server_id)["OS-EXT-SRV-ATTR:host"]


def _live(api, server_id: str, body: dict, version: str | None = "2.25", **kw):
    return api.post(f"/v2.1/servers/{server_id}/action", {"os-migrateLive": body},
                    headers={**_headers(version), **kw.pop("headers", {})}, **kw)


def _migrations(running, server_id: str) -> list[Migration]:
    with running.db.read() as session:
        return list(session.scalars(select(Migration).where(
            Migration.instance_uuid == server_id).order_by(Migration.id)))


def _runs(running, server_id: str) -> list[str]:
    with running.db.read() as session:
        return list(session.scalars(select(FlowRun.operation).where(
            FlowRun.instance_uuid == server_id)))


def _allocations(running) -> list[tuple[str, str]]:
    with running.db.read() as session:
        return [(a.instance_uuid, a.host) for a in session.scalars(select(Allocation))]


def _settled(api, server_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        server = api.server(server_id)
        if server["OS-EXT-STS:task_state"] is None:
            return server
        assert time.monotonic() < deadline, server
        time.sleep(0.02)


def _wait_migration(running, server_id: str, status: str, timeout: float = 30) -> Migration:
    deadline = time.monotonic() + timeout
    while True:
        found = _migrations(running, server_id)
        if found and found[-1].status == status and (status != "running"
                                                     or found[-1].memory_processed):
            return found[-1]
        assert time.monotonic() < deadline, [m.status for m in found]
        time.sleep(0.02)


def _transfers(running) -> list[Path]:
    where = running.cfg.data_dir / "transfers"
    return list(where.iterdir()) if where.exists() else []


class Sampler:
    """Samples the guest's power state on two hosts (through their own drivers)
    while a migration runs, keeping every change."""

    def __init__(self, running, server_id: str, source: str, dest: str) -> None:
        self.drivers = (running.driver(source), running.driver(dest))
        self.server_id = server_id
        self.seen: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = tuple(d.power_state(self.server_id) for d in self.drivers)
            if not self.seen or self.seen[-1] != sample:
                self.seen.append(sample)
            time.sleep(0.001)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


RUNNING, GONE = power_state.RUNNING, power_state.NOSTATE


@pytest.fixture
def running(cloud_factory):
    return cloud_factory(hosts=HOSTS, live_migration_simulated_seconds=SECONDS)


def _assert_moved(running, server_id: str, source: str, dest: str) -> None:
    server = running.api.server(server_id)
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == dest
    agree(running, server_id)  # one guest with its disk and one claim, on dest only
    assert running.driver(dest).power_state(server_id) == RUNNING
    assert _allocations(running) == [(server_id, dest)]
    migration = _migrations(running, server_id)[-1]
    assert (migration.migration_type, migration.status) == ("live-migration", "completed")
    assert (migration.source_compute, migration.dest_compute) == (source, dest)
    assert migration.memory_total == 512 * 1024**2 == migration.memory_processed
    assert migration.memory_remaining == 0
    assert migration.disk_total == 1024**3 == migration.disk_processed  # block migration
    assert _transfers(running) == []
    assert not faults(running, server_id)


def test_live_migration_to_a_given_host(running, caplog):
    api = running.api
    server_id = _boot(api, "compute-1")
    caplog.set_level(logging.INFO)
    with Sampler(running, server_id, "compute-1", "compute-2") as sampler:
        response = _live(api, server_id, {"host": "compute-2", "block_migration": "auto"})
        assert response.status_code == 202, response.text
        assert response.content == b""
        assert api.server(server_id)["status"] == "MIGRATING"
        _settled(api, server_id)
    _assert_moved(running, server_id, "compute-1", "compute-2")
    # The guest ran on the source all along, then on both, then only on the target:
    # it never stopped running anywhere in between.
    assert sampler.seen[0] == (RUNNING, GONE)
    assert sampler.seen[-1] == (GONE, RUNNING)
    assert all(RUNNING in sample for sample in sampler.seen), sampler.seen
    assert (RUNNING, RUNNING) in sampler.seen, sampler.seen  # on both for a moment
    # The hosts' logs in order: started on the target before removed from the source.
    steps = [r.getMessage() for r in caplog.records if r.getMessage().startswith(
        "compute step") and "live_migrate." in r.getMessage()]
    started = steps.index("compute step power_on on compute-2 for live_migrate.transfer-memory")
    removed = steps.index("compute step undefine on compute-1 for live_migrate.switch-over")
    assert started < removed, steps
    actions = api.get(f"/v2.1/servers/{server_id}/os-instance-actions").json()
    assert "live-migration" in {a["action"] for a in actions["instanceActions"]}


def test_live_migration_chosen_by_the_scheduler(running):
    api = running.api
    server_id = _boot(api, "compute-1")
    response = _live(api, server_id, {"host": None, "block_migration": "auto"}, "2.68")
    assert response.status_code == 202, response.text
    _settled(api, server_id)
    dest = _host(api, server_id)
    # Never the source, and only a host whose hypervisor suits the guest and has room.
    assert dest in ("compute-2", "compute-3", "down"), dest  # ("down" is up here)
    _assert_moved(running, server_id, "compute-1", dest)


def test_the_scheduler_finds_no_host_that_suits_the_guest(cloud_factory):
    running = cloud_factory(hosts=[h for h in HOSTS if h["name"] in (
        "compute-1", "arm", "xen", "old", "small")], live_migration_simulated_seconds=SECONDS)
    api = running.api
    server_id = _boot(api, "compute-1")
    response = _live(api, server_id, {"host": None, "block_migration": "auto"})
    assert response.status_code == 202, response.text  # the scheduler is asked in the flow
    server = _settled(api, server_id)
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert "No valid host" in faults(running, server_id)[-1]
    assert _migrations(running, server_id)[-1].status == "error"
    agree(running, server_id)


def test_a_paused_instance_stays_paused(running):
    api = running.api
    server_id = _boot(api, "compute-1")
    assert api.post(f"/v2.1/servers/{server_id}/action", {"pause": None}).status_code == 202
    assert api.wait_status(server_id, ("PAUSED",))["status"] == "PAUSED"
    assert _live(api, server_id, {"host": "compute-3", "block_migration": True}).status_code \
        == 202
    server = _settled(api, server_id)
    assert server["status"] == "PAUSED" and server["OS-EXT-SRV-ATTR:host"] == "compute-3"
    assert running.driver("compute-3").power_state(server_id) == power_state.PAUSED
    assert running.driver("compute-1").power_state(server_id) == GONE


def _force_down(api, host: str) -> None:
    response = api.http.put(api.base + "/v2.1/os-services/force-down",
                            json={"host": host, "binary": "vmflow-compute",
                                  "forced_down": True}, headers=_headers("2.11"), timeout=30)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("body, status, words", [
    ({"host": "compute-1"}, 400, "current host"),
    ({"host": "nowhere"}, 400, "Compute host nowhere could not be found"),
    ({"host": "down"}, 400, "Compute service of down is unavailable at this time"),
    ({"host": "arm"}, 400, "CPU architecture aarch64"),
    ({"host": "xen"}, 400, "hypervisor type is Xen"),
    ({"host": "old"}, 400, "hypervisor version 1000000 is older"),
    ({"host": "small"}, 400, "not enough memory"),
])
def test_checks_refuse_before_anything_is_recorded(running, body, status, words):
    api = running.api
    _force_down(api, "down")
    server_id = _boot(api, "compute-1")
    response = _live(api, server_id, {"block_migration": "auto", **body})
    assert response.status_code == status, response.text
    assert words in response.json()["badRequest"]["message"], response.text
    _nothing_recorded(running, server_id)


def _nothing_recorded(running, server_id: str, status: str = "ACTIVE") -> None:
    server = running.api.server(server_id)
    assert server["status"] == status and server["OS-EXT-STS:task_state"] is None
    assert server["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert _migrations(running, server_id) == []
    assert "live_migrate" not in _runs(running, server_id)
    assert _allocations(running) == [(server_id, "compute-1")]


def test_state_and_policy_refusals(running):
    api = running.api
    server_id = _boot(api, "compute-1")
    member = _live(api, server_id, {"host": "compute-2", "block_migration": "auto"},
                   headers={"X-Roles": "member"})
    assert member.status_code == 403, member.text
    _nothing_recorded(running, server_id)
    assert api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None}).status_code == 202
    assert api.wait_status(server_id, ("SHUTOFF",))["status"] == "SHUTOFF"
    stopped = _live(api, server_id, {"host": "compute-2", "block_migration": "auto"})
    assert stopped.status_code == 409, stopped.text
    assert "vm_state stopped" in stopped.json()["conflictingRequest"]["message"]
    _nothing_recorded(running, server_id, "SHUTOFF")


@pytest.mark.parametrize("version, body, words", [
    ("2.1", {"host": "compute-2", "block_migration": True},
     "'disk_over_commit' is a required property"),
    ("2.24", {"host": "compute-2", "block_migration": "auto", "disk_over_commit": False},
     "is not a boolean"),
    ("2.25", {"host": "compute-2", "block_migration": True, "disk_over_commit": False},
     "'disk_over_commit' was unexpected"),
    ("2.25", {"host": "compute-2", "block_migration": True, "force": True},
     "'force' was unexpected"),
    ("2.30", {"host": None, "block_migration": "auto", "force": True}, "'force' needs 'host'"),
    ("2.68", {"host": "compute-2", "block_migration": "auto", "force": False},
     "'force' was unexpected"),
    ("2.25", {"block_migration": "auto"}, "'host' is a required property"),
    ("2.25", {"host": "compute-2"}, "'block_migration' is a required property"),
    ("2.25", {"host": "compute-2", "block_migration": "maybe"}, "not a boolean or 'auto'"),
    ("2.25", {"host": "compute 2", "block_migration": "auto"}, "not a host name"),
])
def test_bodies_by_microversion_are_refused(running, version, body, words):
    server_id = _boot(running.api, "compute-1")
    response = _live(running.api, server_id, body, version)
    assert response.status_code == 400, response.text
    assert words in response.json()["badRequest"]["message"], response.text
    _nothing_recorded(running, server_id)


@pytest.mark.parametrize("version, body", [
    ("2.1", {"host": "compute-2", "block_migration": "true", "disk_over_commit": False}),
    ("2.30", {"host": "compute-2", "block_migration": "auto", "force": True}),
])
def test_bodies_by_microversion_are_accepted(running, version, body):
    server_id = _boot(running.api, "compute-1")
    response = _live(running.api, server_id, body, version)
    assert response.status_code == 202, response.text
    _settled(running.api, server_id)
    _assert_moved(running, server_id, "compute-1", "compute-2")


def test_without_block_migration_the_storage_must_be_shared(running):
    api = running.api
    server_id = _boot(api, "compute-1")
    response = _live(api, server_id, {"host": "compute-2", "block_migration": False})
    assert response.status_code == 202, response.text  # the hosts are asked in the flow
    server = _settled(api, server_id)
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert "does not share its instance storage" in faults(running, server_id)[-1]
    assert _migrations(running, server_id)[-1].status == "error"
    agree(running, server_id)


def _step_names() -> list[str]:
    services = Services(config=config.Config(data_dir="/nonexistent"), db=None)
    return flows.task_names(live_migrate.get_flow(services))


@pytest.mark.parametrize("step", _step_names())
def test_a_failure_at_any_step_leaves_the_guest_running_on_its_source(cloud_factory, step):
    running = cloud_factory(host_count=2, inject_step_failures=[step],
                            live_migration_simulated_seconds=0.2)
    api = running.api
    server_id = _boot(api, "compute-1")
    response = _live(api, server_id, {"host": "compute-2", "block_migration": "auto"})
    assert response.status_code == 202, response.text
    assert run_of(running, server_id, "live_migrate").state == "REVERTED"
    server = _settled(api, server_id)
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert running.driver("compute-1").power_state(server_id) == RUNNING
    agree(running, server_id)  # nothing on compute-2: no guest, disk or claim
    assert _allocations(running) == [(server_id, "compute-1")]
    assert _transfers(running) == []
    assert any(f"injected by configuration in step {step}" in m
               for m in faults(running, server_id)), faults(running, server_id)
    assert _migrations(running, server_id)[-1].status == "error"


def test_abort_during_the_transfer(cloud_factory):
    running = cloud_factory(host_count=2, live_migration_simulated_seconds=30.0)
    api = running.api
    server_id = _boot(api, "compute-1")
    assert _live(api, server_id, {"host": "compute-2", "block_migration": "auto"}).status_code \
        == 202
    migration = _wait_migration(running, server_id, "running")
    assert 0 < migration.memory_processed < migration.memory_total
    assert migration.memory_remaining == migration.memory_total - migration.memory_processed
    # What an administrator sees of it (servers/{id}/migrations, 2.23).
    listed = api.get(f"/v2.1/servers/{server_id}/migrations", headers=_headers("2.23"))
    assert listed.status_code == 200, listed.text
    shown = {m["id"]: m for m in listed.json()["migrations"]}[migration.id]
    assert shown["status"] == "running" and shown["memory_total_bytes"] == 512 * 1024**2
    assert 0 < shown["memory_processed_bytes"] < shown["memory_total_bytes"]
    started = time.monotonic()
    path = f"/v2.1/servers/{server_id}/migrations/{migration.id}"
    assert api.delete(path, headers=_headers("2.23")).status_code == 404  # not before 2.24
    member = api.delete(path, headers={**_headers("2.24"), "X-Roles": "member"})
    assert member.status_code == 403, member.text
    response = api.delete(path, headers=_headers("2.24"))
    assert response.status_code == 202, response.text
    server = _settled(api, server_id)
    assert time.monotonic() - started < 10, "the abort waited for the transfer"
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert running.driver("compute-1").power_state(server_id) == RUNNING
    agree(running, server_id)
    assert _allocations(running) == [(server_id, "compute-1")]
    assert _migrations(running, server_id)[-1].status == "cancelled"
    assert _transfers(running) == []
    assert not faults(running, server_id)  # an administrator's decision, not a fault
    again = api.delete(path, headers=_headers("2.24"))
    assert again.status_code == 409, again.text  # no longer migrating


def test_abort_and_force_complete_refusals_then_abort_while_queued(cloud_factory):
    running = cloud_factory(host_count=2, live_migration_simulated_seconds=SECONDS)
    api = running.api
    server_id = _boot(api, "compute-1")
    with messages_lost(running):  # the conductor never hears of it: it stays queued
        assert _live(api, server_id, {"host": "compute-2",
                                      "block_migration": "auto"}).status_code == 202
    migration = _migrations(running, server_id)[-1]
    assert migration.status == "queued"
    path = f"/v2.1/servers/{server_id}/migrations/{migration.id}"
    queued = api.delete(path, headers=_headers("2.64"))
    assert queued.status_code == 400 and "is queued" in queued.text, queued.text
    force = api.post(path + "/action", {"force_complete": None}, headers=_headers("2.22"))
    assert force.status_code == 400 and "cannot force complete" in force.text, force.text
    assert api.post(path + "/action", {"force_complete": None},
                    headers=_headers("2.21")).status_code == 404
    bad = api.post(path + "/action", {"force_complete": {"now": 1}}, headers=_headers("2.22"))
    assert bad.status_code == 400, bad.text
    unknown = api.delete(f"/v2.1/servers/{server_id}/migrations/{migration.id + 99}",
                         headers=_headers("2.65"))
    assert unknown.status_code == 404, unknown.text
    # From 2.65 a queued live migration can be aborted: the run is rolled back.
    assert api.delete(path, headers=_headers("2.65")).status_code == 202
    server = _settled(api, server_id)
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert _migrations(running, server_id)[-1].status == "cancelled"
    agree(running, server_id)


def test_force_complete_ends_the_transfer_now(cloud_factory):
    running = cloud_factory(host_count=2, live_migration_simulated_seconds=60.0)
    api = running.api
    server_id = _boot(api, "compute-1")
    assert _live(api, server_id, {"host": "compute-2", "block_migration": "auto"}).status_code \
        == 202
    migration = _wait_migration(running, server_id, "running")
    started = time.monotonic()
    response = api.post(f"/v2.1/servers/{server_id}/migrations/{migration.id}/action",
                        {"force_complete": None}, headers=_headers("2.22"))
    assert response.status_code == 202, response.text
    _settled(api, server_id)
    assert time.monotonic() - started < 10
    _assert_moved(running, server_id, "compute-1", "compute-2")
    with running.db.read() as session:
        metadata = session.get(Instance, server_id).system_metadata or {}
    assert live_migrate.FORCE_COMPLETE_KEY not in metadata


# -- PostgreSQL -------------------------------------------------------------------------

@pytest.fixture
def pg_running(cloud_factory, postgres_server):
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(contextlib.contextmanager(_fresh_postgres)(postgres_server))
        running = cloud_factory(database_url=url, host_count=2,
                                live_migration_simulated_seconds=SECONDS,
                                inject_step_failures=["live_migrate.finish"])
        yield running
        running.stop()  # before its database is dropped


def test_on_postgresql_a_failure_after_the_switch_over_brings_the_guest_back(pg_running):
    api = pg_running.api
    server_id = _boot(api, "compute-1")
    assert _live(api, server_id, {"host": "compute-2", "block_migration": "auto"}).status_code \
        == 202
    assert run_of(pg_running, server_id, "live_migrate").state == "REVERTED"
    server = _settled(api, server_id)
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == "compute-1"
    assert pg_running.driver("compute-1").power_state(server_id) == RUNNING
    agree(pg_running, server_id)
    assert _allocations(pg_running) == [(server_id, "compute-1")]
    assert _migrations(pg_running, server_id)[-1].status == "error"
