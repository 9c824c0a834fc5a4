"""Shelve, shelve-offload and unshelve (Nova's ``shelve``, ``shelveOffload`` and
``unshelve``): put an instance aside as an image, free its host, bring it back.

Graphs::

    shelve:          begin -> request-shutdown -> wait-for-shutoff [poll; forced]
                     (power-off instead, for a paused or suspended guest)
                     -> copy-disk -> activate-image
                     [-> undefine -> delete-disks -> release-claim]  (offload at once)
                     -> finish (SHELVED; SHELVED_OFFLOADED when offloaded)
    shelve_offload:  begin -> undefine -> delete-disks -> release-claim
                     -> finish (SHELVED_OFFLOADED, no host)
    unshelve         begin -> power-on -> wait-for-running [poll] -> finish (ACTIVE)
    (SHELVED):
    unshelve         begin -> select-destination -> claim -> cache-image -> create-disk
    (offloaded):     -> define-domain -> power-on -> wait-for-running [poll]
                     -> finish (ACTIVE)

The API creates the shelved image (``<name>-shelved``, queued, the snapshot's
properties) with the task_state change, as a snapshot does.  The shelve's finish
records ``shelved_image_id``, ``shelved_at`` and ``shelved_host`` in the
instance's system metadata; an offload happens in the shelve itself when
``shelved_offload_time`` is 0, later from the conductor when it is positive
(:func:`start_due_offloads`), never by itself when it is -1.  Unshelve's finish
deletes the shelved image and those keys, in the transaction that makes the
instance ACTIVE.

Every step reverts, so a failure leaves the instance where it was (ACTIVE,
STOPPED, PAUSED, SUSPENDED, SHELVED or SHELVED_OFFLOADED) with a fault:

* The offload's order makes it undoable: the guest is undefined (revert: define
  it again) before its disks go (revert: the root disk is made again from the
  shelved image, whose contents it is), and the claim is released last (revert:
  claimed again; if another instance took the room meanwhile, the instance keeps
  its guest without a claim, and a fault says so).
* A suspended guest's saved memory is lost when it is powered off; a revert
  suspends it again, so it is SUSPENDED as before, but boots afresh when resumed.
* An unshelve from SHELVED_OFFLOADED leaves nothing on the host it chose: the
  guest is powered off and undefined, the disk deleted and the claim released;
  the shelved image stays, so the unshelve can be tried again.

One task_state covers each operation (``shelving``, ``shelving_offloading``,
``unshelving``); Nova's finer shelving image states are not shown.  Server
groups' policies are not applied when an unshelve chooses a host.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from taskflow.patterns import linear_flow

from flows import engine as flow_engine
from flows.actions import Begin, Finish, HostStep, boot_steps, shutdown_steps
from flows.base import (
    Services,
    VmTask,
    already_ended,
    failed,
    may_have_acted,
    notify,
    outcome_unknown,
    publish,
)
from flows.launch import CacheImage, config_drive_metadata
from flows.snapshot import ActivateImage, CopyDisk, SnapshotBegin, image_dir
from scheduler.request_spec import RequestSpec
from vmflow import context, exception
from vmflow.db import catalog, claims
from vmflow.db import images as images_db
from vmflow.db import instances as instances_db
from vmflow.db.models import Image, Instance, utcnow
from vmflow.states import power_state, task_states, vm_states
from vmflow.states.actions import ACTIONS

LOG = logging.getLogger(__name__)

# The system metadata a shelved instance carries (Nova's keys).
SHELVED_KEYS = ("shelved_image_id", "shelved_at", "shelved_host")

# An offloaded instance: off any host, no guest.
OFFLOADED = {"vm_state": vm_states.SHELVED_OFFLOADED, "power_state": power_state.NOSTATE,
             "host": None, "node": None}


# -- helpers ------------------------------------------------------------------------

def guest_definition(services: Services, instance_uuid: str) -> dict[str, Any]:
    """What a host needs to define the instance's guest (its config drive included)."""
    with services.db.read() as session:
        instance = session.get(Instance, instance_uuid)
        return {"uuid": instance.uuid, "name": instance.name, "flavor": instance.flavor,
                "config_drive": config_drive_metadata(instance)}


def shelved_image(services: Services, image_id: str) -> dict[str, Any]:
    """The shelved image as a host needs it; ImageNotFound if it is gone."""
    with services.db.read() as session:
        image = session.get(Image, image_id) if image_id else None
        if image is None or image.status != images_db.ACTIVE:
            raise exception.ImageNotFound(image_id=image_id)
        return catalog.image_dict(image)


def drop_shelved_image(session, instance: Instance) -> str | None:
    """Mark the instance's shelved image deleted, in ``session``'s transaction;
    returns its file, for :func:`remove_image_file` once committed (None if
    there was none)."""
    image_id = (instance.system_metadata or {}).get("shelved_image_id")
    image = session.get(Image, image_id) if image_id else None
    if image is None or image.status == images_db.DELETED:
        return None
    return images_db.mark_deleted(session, image) or None


def remove_image_file(services: Services, location: str | None) -> None:
    """Delete an image's file from the image store (nothing outside it)."""
    if not location:
        return
    path = Path(location)
    if str(path.parent) == image_dir(services):
        path.unlink(missing_ok=True)


def _flavor_of(services: Services, instance_uuid: str) -> dict[str, Any]:
    with services.db.read() as session:
        return dict(session.get(Instance, instance_uuid).flavor)


# -- shelve ---------------------------------------------------------------------------

class PowerOffGuest(HostStep):
    """Power off a guest that is not running (paused or suspended); a suspended
    guest's saved memory is discarded, as Nova's shelve discards it.

    Revert: bring the guest back to its state before: powered on and paused
    again, or suspended again (booted afresh: its old memory is gone).
    """

    method = "power_off"

    def revert(self, result: Any, instance_uuid: str, host: str, before: dict[str, Any],
               **_kw: Any) -> None:
        was = before["power_state"]
        if not may_have_acted(result) or was not in ("RUNNING", "PAUSED", "SUSPENDED"):
            return
        self.undo(host, "power_on", instance_uuid)
        if was == "PAUSED":
            self.undo(host, "pause", instance_uuid)
        elif was == "SUSPENDED":
            self.undo(host, "suspend", instance_uuid)


class ShelveFinish(Finish):
    """SHELVED, or SHELVED_OFFLOADED (no host) when the offload ran too; records
    the shelved image, when and where in the instance's system metadata; clears
    task_state; notifies end.

    Revert: nothing to undo; this is the last step.
    """

    def __init__(self, services: Services, offload: bool) -> None:
        super().__init__(services, ACTIONS["shelve"])
        self.offload = offload

    def end_state(self, before: dict[str, Any], **inputs: Any) -> dict[str, Any]:
        values = super().end_state(before)
        with self.svc.db.read() as session:
            meta = dict(session.get(Instance, inputs["instance"]).system_metadata or {})
        meta.update(shelved_image_id=inputs["image_id"], shelved_at=utcnow().isoformat(),
                    shelved_host=inputs["host"])
        values["system_metadata"] = meta
        if self.offload:
            values.update(OFFLOADED)
        return values

    def execute(self, instance_uuid: str, before: dict[str, Any], image_id: str,
                host: str) -> None:
        super().execute(instance_uuid, before, instance=instance_uuid, image_id=image_id,
                        host=host)


# -- offload ----------------------------------------------------------------------------

class UndefineGuest(HostStep):
    """Remove the (powered off) guest's definition from its host.

    Revert: define the guest again, powered off, as it was.
    """

    method = "undefine"

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(host, "define", instance_uuid,
                      instance=guest_definition(self.svc, instance_uuid))


class DeleteDisks(HostStep):
    """Delete the instance's disks on its host: their contents are in the shelved
    image.

    Revert: make the root disk again from the shelved image (the contents it had
    when shelved), for the guest that undefine's revert defines again.
    """

    method = "delete_disks"

    def revert(self, result: Any, instance_uuid: str, host: str, image_id: str,
               **_kw: Any) -> None:
        if not may_have_acted(result):
            return
        try:
            image = shelved_image(self.svc, image_id)
        except exception.ImageNotFound:  # deleted through the image API meanwhile
            image = {"id": image_id, "location": "", "disk_format": "qcow2"}  # fails: ERROR
        self.undo(host, "create_disk_from_snapshot", instance_uuid,
                  instance_uuid=instance_uuid, image=image,
                  root_gb=_flavor_of(self.svc, instance_uuid)["root_gb"])


class ReleaseClaim(VmTask):
    """Release the instance's claim on its host (the scheduler's view follows).

    Provides whether a claim was released.

    Revert: claim the same resources on that host again.  If another instance
    took them meanwhile, the instance keeps its guest there without a claim: a
    fault says so (the host's usage no longer counts it).
    """

    default_provides = "released"

    def execute(self, instance_uuid: str, host: str) -> bool:
        flavor = _flavor_of(self.svc, instance_uuid)
        with self.svc.db.write() as session:
            released = claims.release(session, instance_uuid, host)
        if released and self.svc.scheduler is not None:
            self.svc.scheduler.cache.consumed(host, claims.Resources.of_flavor(flavor), -1)
        return bool(released)

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        # Not "result is False": run again after a crash that followed the
        # release, the step finds nothing to release, and the claim is still due.
        if failed(result) and not outcome_unknown(result):
            return
        asked = claims.Resources.of_flavor(_flavor_of(self.svc, instance_uuid))
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            if instance is None or instance.task_state == task_states.DELETING:
                return
            if any(a.host == host for a in claims.allocations_of(session, instance_uuid)):
                return  # never released (cut short before it acted), or claimed again
            if not claims.claim(session, instance_uuid, host, asked):
                instances_db.add_fault(session, instance_uuid, code=500, host=host,
                                       message=f"Could not undo {self.name}: {host} has no "
                                               "room left for the instance's claim")
                LOG.error("could not claim %s on %s again", instance_uuid, host)
                return
        if self.svc.scheduler is not None:
            self.svc.scheduler.cache.consumed(host, asked)


class OffloadFinish(Finish):
    """SHELVED_OFFLOADED, off its host; clears task_state; notifies end.

    Revert: nothing to undo; this is the last step.
    """

    def end_state(self, before: dict[str, Any], **inputs: Any) -> dict[str, Any]:
        return {**super().end_state(before), **OFFLOADED}


def offload_steps(services: Services, op: str) -> list[Any]:
    """Take a shelved (powered off) instance off its host (input ``image_id``)."""
    return [UndefineGuest(services, f"{op}.undefine"),
            DeleteDisks(services, f"{op}.delete-disks"),
            ReleaseClaim(services, f"{op}.release-claim")]


# -- unshelve ---------------------------------------------------------------------------

class OffloadedBegin(Begin):
    """As every operation's begin, for an instance that has no host yet (it
    provides ``before`` and ``shelved_on``, the host it had: none).

    Revert: as every operation's begin.
    """

    default_provides = ("before", "shelved_on")


class SelectDestination(VmTask):
    """Ask the scheduler for hosts for the instance's flavor and shelved image,
    in the requested availability zone (if any), best first.

    Provides the candidates, the scheduler's decision and the shelved image.

    Revert: nothing to undo (no side effect).
    """

    default_provides = ("candidates", "scheduling", "image")

    def execute(self, instance_uuid: str, availability_zone: str | None = None
                ) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        with self.svc.db.read() as session:
            instance = session.get(Instance, instance_uuid)
            image_id = (instance.system_metadata or {}).get("shelved_image_id")
            spec = RequestSpec(instance_uuid=instance_uuid, project_id=instance.project_id,
                               flavor=dict(instance.flavor), image={},
                               availability_zone=availability_zone)
        image = shelved_image(self.svc, image_id)
        spec.image = image
        candidates, decision = self.svc.scheduler.select(spec)
        return candidates, decision.to_dict(), image


class Claim(VmTask):
    """Claim the flavor's resources on the first candidate that still has room,
    and make it the instance's host, in one transaction guarded by task_state.

    Revert: release the claim; the instance has no host again.
    """

    default_provides = "host"

    def execute(self, instance_uuid: str, candidates: list[str]) -> str:
        asked = claims.Resources.of_flavor(_flavor_of(self.svc, instance_uuid))
        with self.svc.db.read() as session:
            held = [a.host for a in claims.allocations_of(session, instance_uuid)]
        for host in held[:1] or candidates:  # run again after a crash: its claim stands
            with self.svc.db.write() as session:
                if not claims.claim(session, instance_uuid, host, asked):
                    continue
                if not instances_db.update_if(session, instance_uuid,
                                              {"host": host, "node": host},
                                              expected_task_state=task_states.UNSHELVING):
                    raise exception.InstanceGone(instance_id=instance_uuid)
            if not held:
                self.svc.scheduler.cache.consumed(host, asked)
            LOG.info("claimed %s on %s to unshelve %s", asked, host, instance_uuid)
            return host
        self.svc.scheduler.cache.invalidate()
        raise exception.NoValidHost(
            reason=f"Every candidate ({', '.join(candidates)}) was taken by other requests.")

    def revert(self, result: Any, instance_uuid: str, **_kw: Any) -> None:
        if failed(result) and not outcome_unknown(result):
            return
        asked = claims.Resources.of_flavor(_flavor_of(self.svc, instance_uuid))
        with self.svc.db.write() as session:
            released = claims.release(session, instance_uuid)
            instances_db.update_if(session, instance_uuid, {"host": None, "node": None},
                                   expected_task_state=task_states.UNSHELVING)
        for host in released:
            self.svc.scheduler.cache.consumed(host, asked, -1)


class CreateDisk(HostStep):
    """Create the root disk on the chosen host from the shelved image (its
    contents as shelved), at the flavor's size.

    Revert: delete the instance's disks on that host.
    """

    def execute(self, instance_uuid: str, host: str, image: dict[str, Any]) -> None:
        self.call(host, "create_disk_from_snapshot", instance_uuid=instance_uuid, image=image,
                  root_gb=_flavor_of(self.svc, instance_uuid)["root_gb"])

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(host, "delete_disks", instance_uuid)


class DefineDomain(HostStep):
    """Define the guest on the chosen host (its config drive made there).

    Revert: undefine the guest (stopping it first if it runs).
    """

    def execute(self, instance_uuid: str, host: str) -> None:
        self.call(host, "define", instance=guest_definition(self.svc, instance_uuid))

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(host, "undefine", instance_uuid)


class UnshelveFinish(Finish):
    """ACTIVE (and, from SHELVED_OFFLOADED, in the zone asked for or its new
    host's); the shelved image is deleted and the shelved keys leave the system
    metadata, in the same transaction; clears task_state; notifies end.  The
    image's file is removed from the store once that is committed.

    Revert: nothing to undo; this is the last step.
    """

    def __init__(self, services: Services, offloaded: bool) -> None:
        super().__init__(services, ACTIONS["unshelve"])
        self.offloaded = offloaded

    def execute(self, instance_uuid: str, before: dict[str, Any], host: str,
                availability_zone: str | None = None) -> None:
        values = self.end_state(before)
        if self.offloaded:
            values["availability_zone"] = (availability_zone
                                           or self.svc.scheduler.cache.zone_of(host))
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            meta = dict(instance.system_metadata or {}) if instance else {}
            values["system_metadata"] = {k: v for k, v in meta.items() if k not in SHELVED_KEYS}
            if not instances_db.update_if(session, instance_uuid, values,
                                          expected_task_state=task_states.UNSHELVING):
                if already_ended(session, instance_uuid, self.action.name):
                    return  # done before a crash; the result was not saved
                raise exception.InstanceGone(instance_id=instance_uuid)
            location = drop_shelved_image(session, instance)
            session.refresh(instance)
            message = notify(self.svc, session, instance, self.action.name, "end",
                             before=before)
        publish(self.svc, message)
        remove_image_file(self.svc, location)
        LOG.info("unshelve of %s done on %s", instance_uuid, host)


# -- graphs -----------------------------------------------------------------------------

def get_flow(services: Services, offload: bool = True, graceful: bool = True
             ) -> linear_flow.Flow:
    """Build the shelve graph (inputs: ``instance_uuid``, ``image_id``).
    ``offload``: offload in the same operation (``shelved_offload_time`` 0);
    ``graceful``: the guest runs (or is off), so it is asked to shut down first;
    a paused or suspended one is powered off."""
    stop = (shutdown_steps(services, "shelve") if graceful
            else [PowerOffGuest(services, "shelve.power-off")])
    return linear_flow.Flow("shelve").add(
        SnapshotBegin(services, ACTIONS["shelve"]),
        *stop,
        CopyDisk(services, "shelve.copy-disk"),
        ActivateImage(services, "shelve.activate-image"),
        *(offload_steps(services, "shelve") if offload else ()),
        ShelveFinish(services, offload))


def get_offload_flow(services: Services) -> linear_flow.Flow:
    """Build the shelve-offload graph (inputs: ``instance_uuid``, ``image_id``: the
    shelved image, from which a revert makes the disk again)."""
    action = ACTIONS["shelve_offload"]
    return linear_flow.Flow("shelve_offload").add(
        Begin(services, action), *offload_steps(services, "shelve_offload"),
        OffloadFinish(services, action))


def get_unshelve_flow(services: Services, offloaded: bool = False) -> linear_flow.Flow:
    """Build the unshelve graph (inputs: ``instance_uuid``, ``availability_zone``);
    ``offloaded``: the instance is SHELVED_OFFLOADED, so a host is chosen and the
    guest made there from the shelved image."""
    action = ACTIONS["unshelve"]
    if not offloaded:
        return linear_flow.Flow("unshelve").add(
            Begin(services, action), *boot_steps(services, "unshelve"),
            UnshelveFinish(services, offloaded=False))
    return linear_flow.Flow("unshelve").add(
        OffloadedBegin(services, action),
        SelectDestination(services, "unshelve.select-destination"),
        Claim(services, "unshelve.claim"),
        CacheImage(services, "unshelve.cache-image"),
        CreateDisk(services, "unshelve.create-disk"),
        DefineDomain(services, "unshelve.define-domain"),
        *boot_steps(services, "unshelve"),
        UnshelveFinish(services, offloaded=True))


# -- offload after shelved_offload_time (the conductor's periodic work) ---------------

def due_for_offload(session, older_than: float) -> list[Instance]:
    """Idle SHELVED instances shelved more than ``older_than`` seconds ago."""
    now = utcnow()
    rows = session.scalars(select(Instance).where(
        Instance.deleted.is_(False), Instance.vm_state == vm_states.SHELVED,
        Instance.task_state.is_(None)))
    due = []
    for instance in rows:
        shelved_at = (instance.system_metadata or {}).get("shelved_at")
        if shelved_at and (now - _parse_time(shelved_at)).total_seconds() >= older_than:
            due.append(instance)
    return due


def _parse_time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment.replace(tzinfo=None) if moment.tzinfo else moment


def start_due_offloads(services: Services, store: Any, older_than: float) -> list[str]:
    """Start a shelve-offload of every instance due (Nova's periodic
    ``_poll_shelved_instances``), each with the usual compare-and-swap on
    task_state (an instance taken by another operation is left); returns the
    flow runs recorded, for the caller to hand to a conductor."""
    with services.db.read() as session:
        due = [(i.uuid, i.project_id, i.user_id,
                (i.system_metadata or {}).get("shelved_image_id"))
               for i in due_for_offload(session, older_than)]
    started = []
    for instance_uuid, project_id, user_id, image_id in due:
        with services.db.write() as session:
            if not instances_db.update_if(session, instance_uuid,
                                          {"task_state": task_states.SHELVING_OFFLOADING},
                                          expected_task_state=None,
                                          expected_vm_state=vm_states.SHELVED):
                continue
        LOG.info("instance %s has been shelved for %s s or more; offloading it",
                 instance_uuid, older_than)
        started.append(flow_engine.record(
            store, get_offload_flow(services), operation="shelve_offload",
            request_id=context.new_request_id(), instance_uuid=instance_uuid,
            inputs={"instance_uuid": instance_uuid, "image_id": image_id},
            user_id=user_id, project_id=project_id))
    return started
