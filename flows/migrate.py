"""Resize and cold migration, with confirm and revert (Nova's ``resize``,
``migrate``, ``confirmResize``, ``revertResize``).

A cold migration is a resize to the flavor the instance already has, on
another host, asked for by an admin.  Graph of both (``<op>`` is ``resize``
or ``migrate``)::

    <op>.begin -> select-target -> claim-target -> power-off-source
        -> export-disk -> import-disk -> define-target
        -> [power-on -> wait-for-running [poll]] -> delete-export -> finish

* **Claims.**  ``claim-target`` hands the instance's claim on the source to
  the migration (its uuid becomes the consumer, as Nova does with Placement)
  and claims the new flavor on the target for the instance, in one
  transaction.  So while the instance waits in VERIFY_RESIZE both hosts hold
  its resources; confirm releases the migration's, revert the instance's.
* **Disk.**  The source exports its root disk (flattened) into the shared
  transfer directory ``<data_dir>/transfers/<migration uuid>``; the target
  imports it grown to the new flavor's root disk (never shrunk).  On the same
  host (``allow_resize_to_same_host``) the root disk is first set aside
  (``disk.pre-rebuild``, as a rebuild does) and the grown copy takes its place.
* **Source guest.**  Kept defined and powered off with its disk until the
  resize is confirmed (revert only has to start it again); on the same host
  there is one guest, redefined with the new flavor.
* **State.**  task_state goes RESIZE_PREP (the API's compare-and-swap) ->
  RESIZE_MIGRATING -> RESIZE_MIGRATED -> RESIZE_FINISH; ``finish`` makes the
  instance RESIZED (VERIFY_RESIZE) on the target with the new flavor, the old
  one kept in ``old_flavor``, and the migration ``finished``.  A stopped
  instance is moved and stays stopped.

Every step's revert undoes its own effect; ``begin``'s revert clears
task_state, records a fault and marks the migration ``error``.  A failure
anywhere leaves the instance on its source with its old flavor, running (or
stopped) as before, with nothing left on the target.

Confirm and revert (``confirm_resize``, ``revert_resize``) are flows of the
same frame; see their factories.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select
from taskflow.patterns import linear_flow

from flows import engine as flow_engine
from flows.actions import Begin, Finish, HostStep, WaitForRunning, polled
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
from flows.launch import config_drive_metadata
from scheduler.request_spec import RequestSpec
from vmflow import context, exception
from vmflow.db import catalog, claims, moves
from vmflow.db import instances as instances_db
from vmflow.db.models import Instance, Migration, utcnow
from vmflow.notifications import state_of
from vmflow.states import power_state, task_states, vm_states
from vmflow.states.actions import ACTIONS

LOG = logging.getLogger(__name__)

# The task_states a resize or cold migration holds, in order.
MOVING = (task_states.RESIZE_PREP, task_states.RESIZE_MIGRATING,
          task_states.RESIZE_MIGRATED, task_states.RESIZE_FINISH)
# The statuses of a migration whose resize or migration flow has not finished.
UNDER_WAY = frozenset({"pre-migrating", "migrating", "post-migrating"})


def transfer_dir(services: Services, migration_uuid: str) -> str:
    """Where the root disk waits between the hosts (shared by hosts and controller)."""
    return str(services.config.data_dir / "transfers" / migration_uuid)


def guest(instance: Instance, flavor: dict[str, Any]) -> dict[str, Any]:
    """What a host needs to define the instance's guest with ``flavor``."""
    return {"uuid": instance.uuid, "name": instance.name, "flavor": flavor,
            "config_drive": config_drive_metadata(instance)}


def _guest_of(services: Services, instance_uuid: str, flavor: dict[str, Any]
              ) -> dict[str, Any]:
    with services.db.read() as session:
        return guest(session.get(Instance, instance_uuid), flavor)


def _advance(services: Services, instance_uuid: str, migration_uuid: str, task_state: str,
             status: str) -> None:
    """Move the instance to the next task_state (from the one before or itself,
    so a step run again after a crash passes) and the migration to ``status``."""
    index = MOVING.index(task_state)
    with services.db.write() as session:
        if not instances_db.update_if(session, instance_uuid, {"task_state": task_state},
                                      expected_task_state=list(MOVING[index - 1:index + 1])):
            raise exception.InstanceGone(instance_id=instance_uuid)
        moves.set_status(session, migration_uuid, status)


# -- resize and cold migration ---------------------------------------------------------

class MoveBegin(Begin):
    """Confirm the instance is this move's (RESIZE_PREP), name this flow run on
    the migration (recorded ``pre-migrating`` by the API), notify start.

    Provides ``before``, ``source`` (the instance's host) and ``old_flavor``.

    Revert: every later step has undone its effect; clear task_state (vm_state
    was never changed), record a fault, mark the migration ``error``, notify
    error.  A delete that took over owns the instance: only the migration is
    marked.
    """

    default_provides = ("before", "source", "old_flavor")

    def execute(self, instance_uuid: str, migration_uuid: str
                ) -> tuple[dict[str, Any], str, dict[str, Any]]:
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            if instance is None or instance.deleted or (
                    instance.task_state != task_states.RESIZE_PREP) or not instance.host:
                raise exception.InstanceGone(instance_id=instance_uuid)
            flow = context.current_flow()
            if flow is not None:  # the API recorded the migration; this run drives it
                moves.update_fields(session, migration_uuid, flow_id=flow[0])
            before = state_of(instance)
            message = notify(self.svc, session, instance, self.action.name, "start")
        publish(self.svc, message)
        return before, instance.host, dict(instance.flavor)

    held = MOVING

    def revert(self, result: Any, instance_uuid: str, migration_uuid: str,
               flow_failures: dict | None = None, **_kw: Any) -> None:
        with self.svc.db.write() as session:
            moves.set_status(session, migration_uuid, "error")
        super().revert(result, instance_uuid, flow_failures=flow_failures)


class SelectTarget(VmTask):
    """Ask the scheduler for hosts for the new flavor, best first.  The source is
    excluded, unless this is a resize and ``allow_resize_to_same_host`` is set;
    a cold migration never stays.  An admin's host (2.56) is the only candidate
    (the filters still apply).

    Provides the candidates and the scheduler's decision.

    Revert: nothing to undo (reads only).
    """

    default_provides = ("candidates", "scheduling")

    def __init__(self, services: Services, name: str, may_stay: bool) -> None:
        super().__init__(services, name)
        self.may_stay = may_stay

    def execute(self, instance_uuid: str, source: str, new_flavor: dict[str, Any],
                requested_host: str | None) -> tuple[list[str], dict[str, Any]]:
        with self.svc.db.read() as session:
            instance = session.get(Instance, instance_uuid)
            try:
                image = catalog.image_dict(catalog.get_image(session, instance.image_ref))
            except exception.NotFound:  # deleted since: its properties no longer apply
                image = {"id": instance.image_ref, "min_disk": 0, "min_ram": 0,
                         "properties": {}}
            stay = self.may_stay and self.svc.config.allow_resize_to_same_host
            spec = RequestSpec(instance_uuid=instance_uuid, project_id=instance.project_id,
                               flavor=new_flavor, image=image,
                               availability_zone=instance.availability_zone,
                               tried_hosts=frozenset() if stay else frozenset({source}),
                               requested_host=requested_host)
        candidates, decision = self.svc.scheduler.select(spec)
        return candidates, decision.to_dict()


class ClaimTarget(VmTask):
    """Hand the instance's claim on the source to the migration and claim the
    new flavor on the first candidate with room, for the instance, in one
    transaction guarded by task_state (a candidate taken meanwhile is
    skipped).  Records the target on the migration.

    Revert: release the instance's claim on the target and give the source's
    back to the instance (nothing if the hand-over never happened; a delete
    that took over releases every claim itself).
    """

    default_provides = "target"

    def execute(self, instance_uuid: str, migration_uuid: str, source: str,
                new_flavor: dict[str, Any], candidates: list[str]) -> str:
        asked = claims.Resources.of_flavor(new_flavor)
        with self.svc.db.read() as session:
            if claims.allocations_of(session, migration_uuid):  # run again after a crash
                held = [a.host for a in claims.allocations_of(session, instance_uuid)]
                if held:
                    return held[0]
        for host in candidates:
            with self.svc.db.write() as session:
                if not instances_db.update_if(session, instance_uuid,
                                              {"task_state": task_states.RESIZE_PREP},
                                              expected_task_state=task_states.RESIZE_PREP):
                    raise exception.InstanceGone(instance_id=instance_uuid)
                claims.move_to(session, instance_uuid, migration_uuid, source)
                if not claims.claim(session, instance_uuid, host, asked):
                    claims.move_to(session, migration_uuid, instance_uuid, source)
                    continue
                moves.update_fields(session, migration_uuid, dest_compute=host,
                                    dest_host=host)
            self.svc.scheduler.cache.consumed(host, asked)
            LOG.info("claimed %s on %s for the move of %s from %s", asked, host,
                     instance_uuid, source)
            return host
        self.svc.scheduler.cache.invalidate()
        raise exception.NoValidHost(
            reason=f"Every candidate ({', '.join(candidates)}) was taken by other requests.")

    def revert(self, result: Any, instance_uuid: str, migration_uuid: str, source: str,
               new_flavor: dict[str, Any], **_kw: Any) -> None:
        if failed(result) and not outcome_unknown(result):
            return  # each candidate's transaction was undone as a whole
        released = give_back(self.svc, instance_uuid, migration_uuid, source)
        for host in released:
            self.svc.scheduler.cache.consumed(host, claims.Resources.of_flavor(new_flavor), -1)


def give_back(services: Services, instance_uuid: str, migration_uuid: str, source: str
              ) -> list[str]:
    """Release the instance's claims and give the migration's claim on the
    source back to it (revert of a move); returns the hosts released."""
    with services.db.write() as session:
        instance = session.get(Instance, instance_uuid)
        if instance is None or instance.deleted or (
                instance.task_state == task_states.DELETING):
            return []  # the delete releases every claim, the migration's too
        if not claims.allocations_of(session, migration_uuid):
            return []  # never handed over, or given back already
        released = claims.release(session, instance_uuid)
        claims.move_to(session, migration_uuid, instance_uuid, source)
    LOG.info("released the claims of %s on %s; its claim on %s is its own again",
             instance_uuid, ", ".join(released) or "no host", source)
    return released


class PowerOffSource(HostStep):
    """Mark the instance RESIZE_MIGRATING (migration ``migrating``) and power its
    guest off on the source (it may be off already).

    Revert: start the source guest again if it was running.
    """

    def execute(self, instance_uuid: str, migration_uuid: str, source: str) -> None:
        _advance(self.svc, instance_uuid, migration_uuid, task_states.RESIZE_MIGRATING,
                 "migrating")
        self.call(source, "power_off", instance_uuid=instance_uuid)

    def revert(self, result: Any, instance_uuid: str, source: str, before: dict[str, Any],
               **_kw: Any) -> None:
        if may_have_acted(result) and before["power_state"] == "RUNNING":
            self.undo(source, "power_on", instance_uuid)


class ExportDisk(HostStep):
    """Copy the source's root disk into the migration's transfer directory.

    Revert: remove the transfer directory (best effort: it is garbage, not a
    guest's state).
    """

    default_provides = "export"

    def execute(self, instance_uuid: str, migration_uuid: str, source: str) -> dict[str, Any]:
        return self.call(source, "export_disk", instance_uuid=instance_uuid,
                         transfer_dir=transfer_dir(self.svc, migration_uuid))

    def revert(self, result: Any, instance_uuid: str, migration_uuid: str, source: str,
               **_kw: Any) -> None:
        try:
            self.call(source, "delete_export",
                      transfer_dir=transfer_dir(self.svc, migration_uuid))
        except exception.VmflowError as err:
            LOG.error("could not remove the transfer directory of %s: %s", instance_uuid, err)


class ImportDisk(HostStep):
    """Mark the instance RESIZE_MIGRATED (migration ``post-migrating``) and make the
    exported disk the instance's root disk on the target, grown to the new
    flavor's root disk.  On the same host the old root disk is set aside first.

    Revert: on another host, delete the instance's disks there; on the same
    host, put the old root disk back.  Done whatever the step's outcome (a
    failed import may have left a partial file; both are idempotent).
    """

    def execute(self, instance_uuid: str, migration_uuid: str, source: str, target: str,
                new_flavor: dict[str, Any]) -> None:
        _advance(self.svc, instance_uuid, migration_uuid, task_states.RESIZE_MIGRATED,
                 "post-migrating")
        if target == source:
            self.call(target, "set_disk_aside", instance_uuid=instance_uuid)
        self.call(target, "import_disk", instance_uuid=instance_uuid,
                  transfer_dir=transfer_dir(self.svc, migration_uuid),
                  root_gb=int(new_flavor["root_gb"]))

    def revert(self, result: Any, instance_uuid: str, source: str, target: str,
               **_kw: Any) -> None:
        self.undo(target, "restore_disk" if target == source else "delete_disks",
                  instance_uuid)


class DefineTarget(HostStep):
    """Mark the instance RESIZE_FINISH and define its guest with the new flavor
    on the target (on the same host: redefine the one guest).

    Revert: undefine the target's guest; on the same host, define the guest
    with the old flavor again.
    """

    def execute(self, instance_uuid: str, migration_uuid: str, source: str, target: str,
                new_flavor: dict[str, Any]) -> None:
        _advance(self.svc, instance_uuid, migration_uuid, task_states.RESIZE_FINISH,
                 "post-migrating")
        definition = _guest_of(self.svc, instance_uuid, new_flavor)
        self.call(target, "define_normal" if target == source else "define",
                  instance=definition)

    def revert(self, result: Any, instance_uuid: str, source: str, target: str,
               old_flavor: dict[str, Any], **_kw: Any) -> None:
        if target == source:
            self.undo(target, "define_normal", instance_uuid,
                      instance=_guest_of(self.svc, instance_uuid, old_flavor))
        else:
            self.undo(target, "undefine", instance_uuid)


class PowerOnTarget(HostStep):
    """Start the guest on the target (only for an instance that was running).

    Revert: power it off (define-target's revert then removes it).
    """

    def execute(self, instance_uuid: str, target: str) -> None:
        self.call(target, "power_on", instance_uuid=instance_uuid)

    def revert(self, result: Any, instance_uuid: str, target: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(target, "power_off", instance_uuid)


class DeleteExport(HostStep):
    """The disk is in place: remove the transfer directory.

    Revert: nothing to undo (import-disk's revert does not need it).
    """

    def execute(self, migration_uuid: str, target: str) -> None:
        self.call(target, "delete_export", transfer_dir=transfer_dir(self.svc, migration_uuid))


class MoveFinish(Finish):
    """One compare-and-swap from RESIZE_FINISH: the instance is RESIZED
    (VERIFY_RESIZE) on the target with the new flavor, the old one kept;
    the migration is ``finished``; notify end.

    Revert: nothing to undo; this is the last step.
    """

    def __init__(self, services: Services, action: Any, start: bool) -> None:
        super().__init__(services, action)
        self.start = start

    def execute(self, instance_uuid: str, migration_uuid: str, before: dict[str, Any],
                target: str, old_flavor: dict[str, Any], new_flavor: dict[str, Any]) -> None:
        values = {"vm_state": vm_states.RESIZED, "task_state": None, "host": target,
                  "node": target, "flavor": new_flavor, "flavor_id": new_flavor["id"],
                  "old_flavor": old_flavor, "new_flavor": new_flavor,
                  "power_state": power_state.RUNNING if self.start else power_state.SHUTDOWN}
        with self.svc.db.write() as session:
            if not instances_db.update_if(session, instance_uuid, values,
                                          expected_task_state=task_states.RESIZE_FINISH):
                if already_ended(session, instance_uuid, self.action.name):
                    return  # done before a crash; the result was not saved
                raise exception.InstanceGone(instance_id=instance_uuid)
            moves.set_status(session, migration_uuid, "finished")
            instance = session.get(Instance, instance_uuid)
            message = notify(self.svc, session, instance, self.action.name, "end",
                             before=before)
        publish(self.svc, message)
        LOG.info("%s of %s done: on %s, waiting for confirm or revert", self.action.name,
                 instance_uuid, target)


def _move_flow(services: Services, name: str, start: bool) -> linear_flow.Flow:
    action = ACTIONS[name]
    attempts = services.config.spawn_poll_attempts
    boot = [PowerOnTarget(services, f"{name}.power-on"),
            polled(f"{name}.poll-on",
                   WaitForRunning(services, f"{name}.wait-for-running",
                                  rebind={"host": "target"}), attempts)] if start else []
    return linear_flow.Flow(name).add(
        MoveBegin(services, action),
        SelectTarget(services, f"{name}.select-target", may_stay=name == "resize"),
        ClaimTarget(services, f"{name}.claim-target"),
        PowerOffSource(services, f"{name}.power-off-source"),
        ExportDisk(services, f"{name}.export-disk"),
        ImportDisk(services, f"{name}.import-disk"),
        DefineTarget(services, f"{name}.define-target"),
        *boot,
        DeleteExport(services, f"{name}.delete-export"),
        MoveFinish(services, action, start))


def get_resize_flow(services: Services, start: bool = True) -> linear_flow.Flow:
    """Inputs: ``instance_uuid``, ``migration_uuid``, ``new_flavor`` (flavor dict),
    ``requested_host`` (None); ``start`` is False for a stopped instance."""
    return _move_flow(services, "resize", start)


def get_migrate_flow(services: Services, start: bool = True) -> linear_flow.Flow:
    """As resize, with the instance's own flavor; ``requested_host``: the admin's
    target host (2.56) or None."""
    return _move_flow(services, "migrate", start)


# -- confirm and revert ---------------------------------------------------------------

def _migration_dict(row: Any) -> dict[str, Any]:
    return {"uuid": row.uuid, "source": row.source_compute, "target": row.dest_compute,
            "same_host": row.source_compute == row.dest_compute}


class SettleBegin(Begin):
    """As every operation's begin, and find the migration the API marked
    (``confirming`` or ``reverting``).  Provides ``before``, ``host`` (the
    target, where the instance lives) and ``migration``.

    Revert: as every operation's begin (the instance stays RESIZED), and the
    migration is ``finished`` again, so it can be confirmed or reverted anew.
    """

    default_provides = ("before", "host", "migration")

    def __init__(self, services: Services, action: Any, status: str) -> None:
        super().__init__(services, action)
        self.status = status

    def execute(self, instance_uuid: str) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
        before, host = super().execute(instance_uuid)
        with self.svc.db.read() as session:
            found = [m for m in moves.of_instance(session, instance_uuid, in_progress=True)
                     if m.status == self.status]
            if not found:
                raise exception.Invalid(f"Instance {instance_uuid} has no migration "
                                        f"{self.status}.")
            return before, host, _migration_dict(found[0])

    def revert(self, result: Any, instance_uuid: str, **kw: Any) -> None:
        super().revert(result, instance_uuid, **kw)
        with self.svc.db.write() as session:
            for row in moves.of_instance(session, instance_uuid, in_progress=True):
                if row.status == self.status:
                    moves.set_status(session, row.uuid, "finished", expected=self.status)


class DestroySource(HostStep):
    """Undefine the guest left on the source (nothing on the same host: the one
    guest is the resized one).

    Revert: define the source guest again with the old flavor (powered off;
    its disk is still there).
    """

    def execute(self, instance_uuid: str, migration: dict[str, Any]) -> None:
        if not migration["same_host"]:
            self.call(migration["source"], "undefine", instance_uuid=instance_uuid)

    def revert(self, result: Any, instance_uuid: str, migration: dict[str, Any],
               **_kw: Any) -> None:
        if migration["same_host"] or not may_have_acted(result):
            return
        with self.svc.db.read() as session:
            instance = session.get(Instance, instance_uuid)
            definition = guest(instance, instance.old_flavor or instance.flavor)
        self.undo(migration["source"], "define", instance_uuid, instance=definition)


def _clean_up(services: Services, host: str, instance_uuid: str, methods: list[str]) -> None:
    """After a confirm or revert has committed: remove what the host keeps of
    the side left behind.  Best effort, logged: the instance's state no longer
    depends on it, and a guest left there is destroyed by the host's next
    report (its instance lives elsewhere and its migration is over)."""
    for method in methods:
        try:
            services.compute.call(host, method, instance_uuid=instance_uuid)
        except exception.VmflowError as err:
            LOG.error("could not %s %s on %s after the move: %s", method, instance_uuid,
                      host, err)


def _settled(before_power: str) -> dict[str, Any]:
    running = before_power == "RUNNING"
    return {"vm_state": vm_states.ACTIVE if running else vm_states.STOPPED,
            "power_state": power_state.RUNNING if running else power_state.SHUTDOWN,
            "task_state": None, "old_flavor": None, "new_flavor": None}


class ConfirmFinish(Finish):
    """In one transaction: release the migration's claim on the source, mark the
    migration ``confirmed``, and end the instance ACTIVE (or STOPPED) with its
    old flavor forgotten; notify end.  Then delete the source's disks (on the
    same host: the root disk set aside): that cannot be undone, so it waits
    until the confirm is committed.

    Revert: nothing to undo; this is the last step.
    """

    def execute(self, instance_uuid: str, before: dict[str, Any],
                migration: dict[str, Any]) -> None:
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            flavor = instance.old_flavor if instance is not None else None
            committed = instances_db.update_if(session, instance_uuid,
                                               _settled(before["power_state"]),
                                               expected_task_state=self.action.task_state)
            if not committed and not already_ended(session, instance_uuid, self.action.name):
                raise exception.InstanceGone(instance_id=instance_uuid)
            message, released = None, []
            if committed:  # (else: done before a crash; only the clean-up may be left)
                released = claims.release(session, migration["uuid"])
                moves.set_status(session, migration["uuid"], "confirmed")
                session.refresh(instance)
                message = notify(self.svc, session, instance, self.action.name, "end",
                                 before=before)
        publish(self.svc, message)
        if flavor and self.svc.scheduler is not None:
            for host in released:
                self.svc.scheduler.cache.consumed(host, claims.Resources.of_flavor(flavor), -1)
        _clean_up(self.svc, migration["source"], instance_uuid,
                  ["discard_old_disk" if migration["same_host"] else "delete_disks"])
        LOG.info("resize of %s confirmed; %s freed", instance_uuid, migration["source"])


def get_confirm_flow(services: Services) -> linear_flow.Flow:
    """Confirm a resize or cold migration (input: ``instance_uuid``)::

        begin -> destroy-source -> finish (then the source's disks go)
    """
    action = ACTIONS["confirm_resize"]
    return linear_flow.Flow("confirm_resize").add(
        SettleBegin(services, action, "confirming"),
        DestroySource(services, "confirm_resize.destroy-source"),
        ConfirmFinish(services, action))


class PowerOffTarget(HostStep):
    """Power the resized guest off (it may be off already).

    Revert: start it again if it was running.
    """

    def execute(self, instance_uuid: str, host: str) -> None:
        self.call(host, "power_off", instance_uuid=instance_uuid)

    def revert(self, result: Any, instance_uuid: str, host: str, before: dict[str, Any],
               **_kw: Any) -> None:
        if may_have_acted(result) and before["power_state"] == "RUNNING":
            self.undo(host, "power_on", instance_uuid)


def _flavors(services: Services, instance_uuid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with services.db.read() as session:
        instance = session.get(Instance, instance_uuid)
        return instance.old_flavor or instance.flavor, instance.flavor


class DefineSource(HostStep):
    """Make sure the source's guest is defined with the old flavor (it was kept;
    on the same host: redefine the one guest with the old flavor and put the
    old root disk back, which cannot be undone).

    Revert: on the same host, define the guest with the new flavor again
    (another host: nothing; the source guest stays defined and off).
    """

    def execute(self, instance_uuid: str, migration: dict[str, Any]) -> None:
        old, _new = _flavors(self.svc, instance_uuid)
        definition = _guest_of(self.svc, instance_uuid, old)
        if migration["same_host"]:
            self.call(migration["source"], "define_normal", instance=definition)
            self.call(migration["source"], "restore_disk", instance_uuid=instance_uuid)
        else:
            self.call(migration["source"], "define", instance=definition)

    def revert(self, result: Any, instance_uuid: str, migration: dict[str, Any],
               **_kw: Any) -> None:
        if migration["same_host"] and may_have_acted(result):
            _old, new = _flavors(self.svc, instance_uuid)
            self.undo(migration["source"], "define_normal", instance_uuid,
                      instance=_guest_of(self.svc, instance_uuid, new))


class PowerOnSource(HostStep):
    """Start the source's guest (only for an instance that was running).

    Revert: power it off again.
    """

    def execute(self, instance_uuid: str, migration: dict[str, Any]) -> None:
        self.call(migration["source"], "power_on", instance_uuid=instance_uuid)

    def revert(self, result: Any, instance_uuid: str, migration: dict[str, Any],
               **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(migration["source"], "power_off", instance_uuid)


class WaitForSource(WaitForRunning):
    """Check that the source's guest reports RUNNING; the poll retry repeats it.

    Revert: nothing to undo (reads only).
    """

    def execute(self, instance_uuid: str, migration: dict[str, Any],
                poll_attempt: int) -> None:
        super().execute(instance_uuid, migration["source"], poll_attempt)


class RevertFinish(Finish):
    """In one transaction: release the instance's claim on the target, give it
    the source's back, put it on the source with its old flavor, ACTIVE (or
    STOPPED), and mark the migration ``reverted``; notify end.  Then undefine
    the target's guest and delete its disks (another host only): that cannot
    be undone, so it waits until the revert is committed.

    Revert: nothing to undo; this is the last step.
    """

    def execute(self, instance_uuid: str, before: dict[str, Any],
                migration: dict[str, Any]) -> None:
        old, new = _flavors(self.svc, instance_uuid)
        source = migration["source"]
        values = {**_settled(before["power_state"]), "host": source, "node": source,
                  "flavor": old, "flavor_id": old["id"]}
        with self.svc.db.write() as session:
            committed = instances_db.update_if(session, instance_uuid, values,
                                               expected_task_state=self.action.task_state)
            if not committed and not already_ended(session, instance_uuid, self.action.name):
                raise exception.InstanceGone(instance_id=instance_uuid)
            message, released = None, []
            if committed:  # (else: done before a crash; only the clean-up may be left)
                released = claims.release(session, instance_uuid)
                claims.move_to(session, migration["uuid"], instance_uuid, source)
                moves.set_status(session, migration["uuid"], "reverted")
                message = notify(self.svc, session, session.get(Instance, instance_uuid),
                                 self.action.name, "end", before=before)
        publish(self.svc, message)
        if self.svc.scheduler is not None:
            for host in released:
                self.svc.scheduler.cache.consumed(host, claims.Resources.of_flavor(new), -1)
        if not migration["same_host"]:
            _clean_up(self.svc, migration["target"], instance_uuid,
                      ["undefine", "delete_disks"])
        LOG.info("resize of %s reverted: back on %s", instance_uuid, source)


def get_revert_flow(services: Services, start: bool = True) -> linear_flow.Flow:
    """Revert a resize or cold migration (input: ``instance_uuid``; ``start``:
    the instance was running)::

        begin -> power-off-target -> define-source -> [power-on
              -> wait-for-running [poll]] -> finish (then the target's guest goes)

    The source's guest runs again only once the target's is off.
    """
    action = ACTIONS["revert_resize"]
    attempts = services.config.spawn_poll_attempts
    boot = [PowerOnSource(services, "revert_resize.power-on"),
            polled("revert_resize.poll-on",
                   WaitForSource(services, "revert_resize.wait-for-running"),
                   attempts)] if start else []
    return linear_flow.Flow("revert_resize").add(
        SettleBegin(services, action, "reverting"),
        PowerOffTarget(services, "revert_resize.power-off-target"),
        DefineSource(services, "revert_resize.define-source"),
        *boot,
        RevertFinish(services, action))


# -- automatic confirm (Nova's resize_confirm_window) ---------------------------------

def start_due_confirms(services: Services, store: Any, older_than: float) -> list[str]:
    """Start a confirm of every resize or migration that has waited in
    VERIFY_RESIZE for ``older_than`` seconds or more (Nova's periodic
    ``_poll_unconfirmed_resizes``), each with the API's compare-and-swap on
    task_state (an instance taken by another operation is left); returns the
    flow runs recorded, for the caller to hand to a conductor."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than)
    with services.db.read() as session:
        due = [(m.uuid, m.instance_uuid) for m in session.scalars(
            select(Migration).join(Instance, Instance.uuid == Migration.instance_uuid).where(
                Migration.status == "finished", Migration.updated_at < cutoff,
                Instance.vm_state == vm_states.RESIZED, Instance.task_state.is_(None),
                Instance.deleted.is_(False)))]
    started = []
    for migration_uuid, instance_uuid in due:
        with services.db.write() as session:
            if not instances_db.update_if(session, instance_uuid,
                                          {"task_state": task_states.RESIZE_CONFIRMING},
                                          expected_task_state=None,
                                          expected_vm_state=vm_states.RESIZED):
                continue
            moves.set_status(session, migration_uuid, "confirming", expected="finished")
            instance = session.get(Instance, instance_uuid)
            owner = (instance.user_id, instance.project_id)
        LOG.info("the resize of %s has waited %s s or more; confirming it", instance_uuid,
                 older_than)
        started.append(flow_engine.record(
            store, get_confirm_flow(services), operation="confirm_resize",
            request_id=context.new_request_id(), instance_uuid=instance_uuid,
            inputs={"instance_uuid": instance_uuid}, user_id=owner[0], project_id=owner[1]))
    return started


def let_go(session: Any, instance_uuid: str, task_state: str) -> None:
    """A resize, migration, confirm or revert whose task_state is let go with no
    run driving it (the conductor's ``resolve_stranded``): its migration that
    had not finished ends ``error``; one marked for confirm or revert is
    ``finished`` again, waiting as before.  Other operations: nothing."""
    settling = {task_states.RESIZE_CONFIRMING: "confirming",
                task_states.RESIZE_REVERTING: "reverting"}
    if task_state not in MOVING and task_state not in settling:
        return
    for row in moves.of_instance(session, instance_uuid, in_progress=True):
        if row.migration_type not in (moves.RESIZE, moves.MIGRATION):
            continue
        if row.status == settling.get(task_state):
            moves.set_status(session, row.uuid, "finished", expected=row.status)
        elif task_state in MOVING and row.status in UNDER_WAY:
            moves.set_status(session, row.uuid, "error", expected=row.status)
