"""The offload's steps and their reverts, called directly against real pieces (a
database, libvirt test hosts, the image store): what each undoes, and what it
does when it cannot."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import update
from taskflow.types import failure

from flows import shelve, snapshot
from vmflow import exception
from vmflow.db import catalog, claims
from vmflow.db.models import ComputeNode, Image, Instance, InstanceFault, utcnow
from vmflow.states import power_state, task_states, vm_states

MARKER = b"kept through offload and back"


def _usage(services, host: str) -> tuple[int, int, int]:
    with services.db.read() as session:
        node = session.query(ComputeNode).filter_by(host=host).one()
        return node.vcpus_used, node.memory_mb_used, node.local_gb_used


def _shelved(services, uid: str) -> str:
    """Power the guest off and copy its disk into an active image, as a shelve does."""
    driver = services.compute.managers["compute-1"].driver
    driver.power_off(uid)
    with open(driver.instances_dir / uid / "disk", "r+b") as fh:
        fh.seek(1024**2)
        fh.write(MARKER)
    image_id = f"shelved-{uid[:8]}"
    with services.db.write() as session:
        instance = session.get(Instance, uid)
        catalog.create_snapshot_image(session, image_id, "vm-shelved", instance, {})
        instance.task_state = task_states.SHELVING_OFFLOADING
    upload = snapshot.CopyDisk(services, "c").execute(uid, "compute-1", image_id)
    snapshot.ActivateImage(services, "a").execute(image_id, upload)
    return image_id


def test_offload_steps_remove_the_guest_and_their_reverts_put_it_back(services,
                                                                       running_instance):
    uid = running_instance
    driver = services.compute.managers["compute-1"].driver
    image_id = _shelved(services, uid)
    undefine = shelve.UndefineGuest(services, "u")
    disks = shelve.DeleteDisks(services, "d")
    release = shelve.ReleaseClaim(services, "r")
    for _ in range(2):  # every step is safe to repeat
        undefine.execute(uid, "compute-1")
        disks.execute(uid, "compute-1")
        released = release.execute(uid, "compute-1")
    assert released is False  # the second time: released already
    assert driver.list_instances() == [] and not driver.disk_exists(uid)
    assert _usage(services, "compute-1") == (0, 0, 0)

    release.revert(released, uid, "compute-1")  # even "nothing released" re-claims
    disks.revert(None, uid, "compute-1", image_id)
    undefine.revert(None, uid, "compute-1")
    assert driver.list_instances() == [uid]
    assert driver.power_state(uid) == power_state.SHUTDOWN
    with open(driver.instances_dir / uid / "disk", "rb") as fh:
        fh.seek(1024**2)
        assert fh.read(len(MARKER)) == MARKER  # made again from the shelved image
    assert _usage(services, "compute-1") == (1, 512, 1)
    release.revert(True, uid, "compute-1")  # claimed already: not counted twice
    assert _usage(services, "compute-1") == (1, 512, 1)


def test_a_claim_that_cannot_be_made_again_is_a_fault(services, running_instance):
    uid = running_instance
    _shelved(services, uid)
    release = shelve.ReleaseClaim(services, "shelve_offload.release-claim")
    assert release.execute(uid, "compute-1") is True
    with services.db.write() as session:  # someone else takes the whole host meanwhile
        session.execute(update(ComputeNode).where(ComputeNode.host == "compute-1")
                        .values(vcpus_used=ComputeNode.vcpus))
    release.revert(True, uid, "compute-1")
    with services.db.read() as session:
        assert claims.allocations_of(session, uid) == []
        fault = session.query(InstanceFault).filter_by(instance_uuid=uid).one()
    assert "shelve_offload.release-claim" in fault.message and "no room" in fault.message


def test_a_step_refused_before_it_acted_reverts_nothing(services, running_instance):
    uid = running_instance
    refused = failure.Failure.from_exception(exception.InjectedFailure(step="r"))
    shelve.ReleaseClaim(services, "r").revert(refused, uid, "compute-1")
    shelve.UndefineGuest(services, "u").revert(refused, uid, "compute-1")
    assert _usage(services, "compute-1") == (1, 512, 1)  # still its one claim


def test_unshelve_finish_deletes_the_image_and_the_keys(services, running_instance):
    uid = running_instance
    image_id = _shelved(services, uid)
    with services.db.read() as session:
        location = session.get(Image, image_id).location
    with services.db.write() as session:
        instance = session.get(Instance, uid)
        instance.vm_state, instance.task_state = vm_states.SHELVED, task_states.UNSHELVING
        instance.system_metadata = {"shelved_image_id": image_id, "shelved_at": "x",
                                    "shelved_host": "compute-1", "other": "kept"}
    finish = shelve.UnshelveFinish(services, offloaded=False)
    before = {"vm_state": vm_states.SHELVED, "power_state": "SHUTDOWN"}
    finish.execute(uid, before, "compute-1")
    with services.db.read() as session:
        row = session.get(Instance, uid)
        assert (row.vm_state, row.task_state) == (vm_states.ACTIVE, None)
        assert row.system_metadata == {"other": "kept"}
        assert session.get(Image, image_id).status == "deleted"
    assert not Path(location).exists()


def test_only_instances_shelved_long_enough_are_due(services, running_instance):
    uid = running_instance
    long_ago = (utcnow() - dt.timedelta(seconds=30)).isoformat()
    with services.db.write() as session:
        session.execute(update(Instance).where(Instance.uuid == uid).values(
            vm_state=vm_states.SHELVED, system_metadata={"shelved_at": long_ago}))
    with services.db.read() as session:
        assert [i.uuid for i in shelve.due_for_offload(session, 10)] == [uid]
        assert shelve.due_for_offload(session, 60) == []
    with services.db.write() as session:  # an operation holds it: left alone
        session.execute(update(Instance).where(Instance.uuid == uid).values(
            task_state=task_states.UNSHELVING))
    with services.db.read() as session:
        assert shelve.due_for_offload(session, 10) == []
