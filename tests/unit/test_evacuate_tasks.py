"""Evacuate's tasks (flows/evacuate.py) executed and reverted directly against
real pieces: a database, two libvirt test-driver hosts, the scheduler; and the
dead host's clean-up when it is back.  The flow's wiring is checked too."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from taskflow.types import failure

import flows
from flows import evacuate
from flows.base import Services
from vmflow import exception
from vmflow.config import Config
from vmflow.context import RequestContext
from vmflow.db import instances as instances_db
from vmflow.db.models import Allocation, Instance, InstanceFault, Migration, Service
from vmflow.states import power_state, task_states, vm_states
from vmflow.states.actions import ACTIONS

ACTION = ACTIONS["evacuate"]
ADMIN = RequestContext(request_id="req-1", project_id="admin", user_id="root", is_admin=True)


def _names(**params) -> list[str]:
    return flows.task_names(flows.build("evacuate", Services(config=Config(), db=None), params))


def test_the_graph_checks_before_it_changes_and_fits_the_instance():
    names = _names()
    assert names == ["evacuate.begin", "evacuate.select-target", "evacuate.claim-target",
                     "evacuate.cache-image", "evacuate.create-disk",
                     "evacuate.check-source-down", "evacuate.define-domain",
                     "evacuate.power-on", "evacuate.wait-for-running", "evacuate.finish"]
    stopped = _names(start=False)
    assert "evacuate.power-on" not in stopped and stopped[-1] == "evacuate.finish"
    shared = _names(shared=True)
    assert "evacuate.adopt-disk" in shared and "evacuate.create-disk" not in shared


def _set_service(services, host: str, **values) -> None:
    with services.db.write() as session:
        row = session.scalar(select(Service).where(Service.host == host))
        for key, value in values.items():
            setattr(row, key, value)


def _instance(services, uid: str) -> Instance:
    with services.db.read() as session:
        return session.get(Instance, uid)


def _migration(services, migration_uuid: str) -> Migration:
    with services.db.read() as session:
        return session.scalar(select(Migration).where(Migration.uuid == migration_uuid))


def _claims(services) -> list[tuple[str, str]]:
    with services.db.read() as session:
        return sorted((a.instance_uuid, a.host) for a in session.scalars(select(Allocation)))


def _admit(services, uid: str, **kwargs) -> str:
    """What the API does: take the task_state and record the migration, in one
    transaction (an exception undoes both)."""
    migration_uuid = str(uuid.uuid4())
    options = {"host": None, "force": False, "on_shared_storage": None, **kwargs}
    with services.db.write() as session:
        assert instances_db.update_if(session, uid, {"task_state": task_states.REBUILDING},
                                      expected_task_state=None)
        evacuate.admit(session, services.config, ADMIN, session.get(Instance, uid),
                       migration_uuid, **options)
    return migration_uuid


@pytest.fixture
def dead(services, running_instance):
    """The running instance's host, compute-1, forced down by an operator."""
    _set_service(services, "compute-1", forced_down=True)
    return running_instance


def test_admission_refuses_what_cannot_be_evacuated(services, running_instance):
    uid = running_instance
    with pytest.raises(exception.Conflict):  # compute-1 is up
        _admit(services, uid)
    _set_service(services, "compute-1", forced_down=True)
    with pytest.raises(exception.NotFound):
        _admit(services, uid, host="compute-9")
    with pytest.raises(exception.Invalid):
        _admit(services, uid, host="compute-1")
    with pytest.raises(exception.Invalid):  # the cloud's storage is not shared
        _admit(services, uid, on_shared_storage=True)
    _set_service(services, "compute-2", forced_down=True)
    with pytest.raises(exception.Invalid):
        _admit(services, uid, host="compute-2")
    instance = _instance(services, uid)
    assert (instance.task_state, instance.host) == (None, "compute-1")
    with services.db.read() as session:
        assert list(session.scalars(select(Migration))) == []


def _through_define(services, uid: str, migration_uuid: str) -> tuple[dict, str, str]:
    before, source = evacuate.EvacuateBegin(services, ACTION).execute(uid, migration_uuid)
    candidates, _decision = evacuate.SelectTarget(services, "s").execute(uid, source, None,
                                                                          False)
    assert candidates == ["compute-2"]
    target = evacuate.ClaimTarget(services, "c").execute(uid, migration_uuid, source,
                                                          candidates)
    evacuate.CacheImage(services, "i").execute(uid, target)
    evacuate.CreateDisk(services, "d").execute(uid, target)
    evacuate.CheckSourceDown(services, "x").execute(source)
    evacuate.DefineDomain(services, "def").execute(uid, target)
    return before, source, target


def test_evacuation_moves_the_instance_and_the_dead_host_cleans_up(services, dead):
    uid = dead
    migration_uuid = _admit(services, uid)
    assert _migration(services, migration_uuid).status == "accepted"
    before, source, target = _through_define(services, uid, migration_uuid)
    assert _migration(services, migration_uuid).status == "pre-migrating"
    assert _instance(services, uid).task_state == task_states.REBUILD_SPAWNING
    evacuate.PowerOn(services, "on").execute(uid, target)
    evacuate.EvacuateFinish(services, ACTION).execute(uid, migration_uuid, before, source,
                                                      target)
    instance = _instance(services, uid)
    assert (instance.host, instance.vm_state, instance.task_state, instance.power_state) == (
        "compute-2", vm_states.ACTIVE, None, power_state.RUNNING)
    assert _migration(services, migration_uuid).status == "done"
    # The dead host's claim is its migration's now; its guest is still there.
    assert _claims(services) == sorted([(uid, "compute-2"), (migration_uuid, "compute-1")])
    drivers = {h: m.driver for h, m in services.compute.managers.items()}
    assert drivers["compute-1"].list_instances() == [uid]
    with services.db.read() as session:
        assert evacuate.stale_hosts(session, uid) == {"compute-1"}

    assert evacuate.destroy_evacuated(services, "compute-2") == []  # not its business
    assert evacuate.destroy_evacuated(services, "compute-1") == [uid]
    assert drivers["compute-1"].list_instances() == []
    assert not drivers["compute-1"].disk_exists(uid)
    assert drivers["compute-2"].power_state(uid) == power_state.RUNNING
    assert _claims(services) == [(uid, "compute-2")]
    assert _migration(services, migration_uuid).status == "completed"
    assert evacuate.destroy_evacuated(services, "compute-1") == []  # once only


def _failed(kind: type[Exception] = exception.HypervisorError) -> dict:
    try:
        if kind is exception.NoValidHost:
            raise exception.NoValidHost(reason="none left")
        raise exception.HypervisorError(host="compute-2", step="x", reason="boom")
    except exception.VmflowError:
        return {"x": failure.Failure()}


def test_reverts_leave_the_instance_on_its_dead_host(services, dead):
    uid = dead
    migration_uuid = _admit(services, uid)
    before, source, target = _through_define(services, uid, migration_uuid)
    evacuate.PowerOn(services, "on").execute(uid, target)
    evacuate.PowerOn(services, "on").revert(None, uid, target)
    evacuate.DefineDomain(services, "def").revert(None, uid, target)
    evacuate.CreateDisk(services, "d").revert(None, uid, target)
    evacuate.ClaimTarget(services, "c").revert(target, uid, source)
    evacuate.EvacuateBegin(services, ACTION).revert((before, source), uid, migration_uuid,
                                                    flow_failures=_failed())
    instance = _instance(services, uid)
    assert (instance.host, instance.vm_state, instance.task_state) == (
        "compute-1", vm_states.ACTIVE, None)
    assert _migration(services, migration_uuid).status == "failed"
    assert _claims(services) == [(uid, "compute-1")]
    target_driver = services.compute.managers["compute-2"].driver
    assert target_driver.list_instances() == [] and not target_driver.disk_exists(uid)
    with services.db.read() as session:
        fault = session.scalar(select(InstanceFault).where(InstanceFault.instance_uuid == uid))
    assert "evacuate failed" in fault.message.lower() and "boom" in fault.message


def test_no_valid_host_marks_the_migration_error(services, dead):
    uid = dead
    _set_service(services, "compute-2", disabled=True)
    migration_uuid = _admit(services, uid)
    before, source = evacuate.EvacuateBegin(services, ACTION).execute(uid, migration_uuid)
    with pytest.raises(exception.NoValidHost):
        evacuate.SelectTarget(services, "s").execute(uid, source, None, False)
    # Forced to a named host, the scheduler is not asked.
    assert evacuate.SelectTarget(services, "s").execute(uid, source, "compute-2", True)[0] == [
        "compute-2"]
    evacuate.EvacuateBegin(services, ACTION).revert((before, source), uid, migration_uuid,
                                                    flow_failures=_failed(exception.NoValidHost))
    assert _migration(services, migration_uuid).status == "error"
    assert _instance(services, uid).task_state is None


def test_the_source_coming_back_stops_the_evacuation(services, dead):
    evacuate.CheckSourceDown(services, "x").execute("compute-1")
    _set_service(services, "compute-1", forced_down=False)
    with pytest.raises(exception.Conflict):
        evacuate.CheckSourceDown(services, "x").execute("compute-1")


def test_shared_storage_moves_the_disk_and_gives_it_back(services, dead):
    uid = dead
    drivers = {h: m.driver for h, m in services.compute.managers.items()}
    disk = drivers["compute-1"]._disk(uid)
    with open(disk, "r+b") as fh:
        fh.write(b"the guest's data")
    checksum = drivers["compute-1"].disk_checksum(uid)
    _admit(services, uid)
    adopt = evacuate.AdoptDisk(services, "a")
    adopt.execute(uid, "compute-1", "compute-2")
    adopt.execute(uid, "compute-1", "compute-2")  # again, after a crash: nothing more
    assert drivers["compute-2"].disk_checksum(uid) == checksum
    assert not drivers["compute-1"].disk_exists(uid)
    adopt.revert(None, uid, "compute-1", "compute-2")
    assert drivers["compute-1"].disk_checksum(uid) == checksum
    assert not drivers["compute-2"].disk_exists(uid)
