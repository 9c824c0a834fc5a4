"""Resize tasks and the claim hand-over, called directly on a real database and
libvirt test-driver hosts (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from flows import migrate
from vmflow import exception
from vmflow.db import catalog, claims, moves
from vmflow.db import instances as instances_db
from vmflow.db.models import utcnow
from vmflow.states import task_states


def _small(services) -> dict:
    with services.db.read() as session:
        return catalog.flavor_dict(catalog.get_flavor(session, "2"))


def _prepared(services, uid: str) -> str:
    """What the API does when it accepts a resize: task_state and migration."""
    migration_uuid = str(uuid.uuid4())
    with services.db.write() as session:
        assert instances_db.update_if(session, uid, {"task_state": task_states.RESIZE_PREP},
                                      expected_task_state=None)
        moves.create(session, uid, moves.RESIZE, "pre-migrating", source_compute="compute-1",
                     migration_uuid=migration_uuid)
    return migration_uuid


def _held(services, uid: str, migration_uuid: str) -> dict[str, list[str]]:
    with services.db.read() as session:
        return {who: sorted(a.host for a in claims.allocations_of(session, consumer))
                for who, consumer in (("instance", uid), ("migration", migration_uuid))}


def test_claim_target_hands_the_source_claim_to_the_migration(services, running_instance):
    uid = running_instance
    migration_uuid = _prepared(services, uid)
    task = migrate.ClaimTarget(services, "resize.claim-target")
    small = _small(services)
    target = task.execute(uid, migration_uuid, "compute-1", small, ["compute-2"])
    assert target == "compute-2"
    assert _held(services, uid, migration_uuid) == {"instance": ["compute-2"],
                                                    "migration": ["compute-1"]}
    with services.db.read() as session:
        assert claims.consumers_of(session, uid) == [uid, migration_uuid]
        assert sorted(a.host for a in claims.held_for(session, uid)) == ["compute-1",
                                                                        "compute-2"]
        assert moves.get(session, migration_uuid).dest_compute == "compute-2"
    # Run again after a crash: the claim made the first time stands.
    assert task.execute(uid, migration_uuid, "compute-1", small, ["compute-1"]) == "compute-2"
    task.revert(target, uid, migration_uuid, "compute-1", small)
    assert _held(services, uid, migration_uuid) == {"instance": ["compute-1"], "migration": []}
    task.revert(target, uid, migration_uuid, "compute-1", small)  # twice: harmless
    assert _held(services, uid, migration_uuid) == {"instance": ["compute-1"], "migration": []}


def test_a_candidate_without_room_gives_the_claim_back(services, running_instance):
    uid = running_instance
    migration_uuid = _prepared(services, uid)
    huge = dict(_small(services), memory_mb=10**6)
    with pytest.raises(exception.NoValidHost):
        migrate.ClaimTarget(services, "c").execute(uid, migration_uuid, "compute-1", huge,
                                                   ["compute-2"])
    assert _held(services, uid, migration_uuid) == {"instance": ["compute-1"], "migration": []}


def test_the_source_guest_of_an_unconfirmed_resize_is_not_foreign(services, running_instance):
    uid = running_instance
    migration_uuid = _prepared(services, uid)
    with services.db.write() as session:
        instances_db.update_if(session, uid, {"task_state": None, "host": "compute-2",
                                              "updated_at": utcnow() - dt.timedelta(seconds=5)})
        moves.update_fields(session, migration_uuid, status="finished",
                            dest_compute="compute-2")
    with services.db.read() as session:
        assert instances_db.foreign_guests(session, "compute-1", [uid], utcnow()) == ([], [])
    with services.db.write() as session:
        moves.set_status(session, migration_uuid, "confirmed")
    with services.db.read() as session:
        assert instances_db.foreign_guests(session, "compute-1", [uid], utcnow()) == ([], [uid])


def test_same_host_import_sets_the_old_disk_aside_and_its_revert_puts_it_back(
        services, running_instance, managers):
    uid = running_instance
    migration_uuid = _prepared(services, uid)
    driver = managers["compute-1"].driver
    services.compute.call("compute-1", "export_disk", instance_uuid=uid,
                          transfer_dir=migrate.transfer_dir(services, migration_uuid))
    with services.db.write() as session:
        instances_db.update_if(session, uid, {"task_state": task_states.RESIZE_MIGRATING})
    task = migrate.ImportDisk(services, "resize.import-disk")
    task.execute(uid, migration_uuid, "compute-1", "compute-1", _small(services))
    assert (driver.instances_dir / uid / "disk").stat().st_size == 20 * 1024**3
    assert (driver.instances_dir / uid / "disk.pre-rebuild").stat().st_size == 1024**3
    task.revert(None, uid, "compute-1", "compute-1")
    assert (driver.instances_dir / uid / "disk").stat().st_size == 1024**3
    assert not (driver.instances_dir / uid / "disk.pre-rebuild").exists()
