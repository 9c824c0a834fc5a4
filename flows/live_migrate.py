"""Live migration (Nova's ``os-migrateLive``): move a running (or paused) guest to
another host while it keeps running.

Graph::

    begin -> check-destination -> check-storage -> claim-target -> prepare-target
          -> transfer-memory -> switch-over -> finish

The API has already made the cheap checks (state, the requested host exists,
is up, has room, the same CPU architecture and hypervisor type and a version
at least the source's) before it set task_state MIGRATING and recorded the
migration ("queued"), so a refused request leaves nothing behind.  The steps
that need the scheduler or a host (the automatic choice of a destination, the
scheduler's filters for a requested host, shared or block storage) run here;
when they refuse, the flow reverts and the instance stays where it was, with a
fault.

On simulated hosts (libvirt's test driver) the move is modelled faithfully:
the guest is defined on the target, the memory (and, for a block migration,
disk) transfer takes ``live_migration_simulated_seconds`` with its progress
recorded in the migration, then the guest runs on the target *before* it is
removed from the source.  On real hypervisors ``transfer-memory`` asks the
source to migrate the guest with libvirt (live, peer to peer, persisted on the
target, undefined on the source) and records libvirt's job figures.

An administrator may abort the migration while it is queued, preparing or
running (``DELETE /servers/{id}/migrations/{mid}``: a rollback of this flow
run, so every step undoes its effect and the guest keeps running on the
source; the migration ends "cancelled"), or force it to complete (the modelled
transfer ends at once; a real guest is paused so that its copy converges).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from taskflow.patterns import linear_flow

from flows.actions import Begin, Finish, HostStep, frame
from flows.base import (
    Services,
    VmTask,
    already_ended,
    failed,
    fault_from,
    first_failure,
    notify,
    publish,
)
from flows.launch import config_drive_metadata
from scheduler.request_spec import RequestSpec
from vmflow import context, exception
from vmflow.config import Config
from vmflow.db import catalog, claims, flowstore, leases, moves
from vmflow.db import hosts as hosts_db
from vmflow.db import instances as instances_db
from vmflow.db.models import ComputeNode, FlowRun, Instance, Migration
from vmflow.states import power_state, task_states, vm_states

LOG = logging.getLogger(__name__)

OPERATION = "live_migrate"
COMPUTE_BINARY = "vmflow-compute"
# The system_metadata key by which the API asks the transfer to complete now
# (Nova's force-complete); its value is the migration's uuid.
FORCE_COMPLETE_KEY = "live_migration_force_complete"
# How many times the modelled transfer records its progress.
INCREMENTS = 10
# Seconds between looks at a real migration's progress.
REAL_POLL = 0.5
# Migration statuses during which an abort is possible (Nova's; below 2.65 only running).
ABORTABLE = ("queued", "preparing", "running")
CANCELLING = "cancelling"


def transfer_dir(cfg: Config, migration_uuid: str) -> str:
    """The directory a block migration's disk travels through (shared by the hosts)."""
    return str(cfg.data_dir / "transfers" / migration_uuid)


# -- checks (the API runs them before it records anything; the flow again) -----------

def _node(session: Session, host: str) -> ComputeNode | None:
    return session.scalar(select(ComputeNode).where(ComputeNode.host == host))


def host_is_up(session: Session, cfg: Config, host: str) -> bool:
    service = next((s for s in hosts_db.list_services(session)
                    if s.binary == COMPUTE_BINARY and s.host == host), None)
    return service is not None and hosts_db.is_up(service, cfg.service_down_time)


def check_source(session: Session, cfg: Config, instance: Instance) -> None:
    """The instance's own host must be up to send its guest anywhere (400)."""
    if not instance.host or not host_is_up(session, cfg, instance.host):
        raise exception.Invalid(
            f"Compute service of {instance.host} is unavailable at this time.")


def check_destination(session: Session, cfg: Config, instance: Instance, host: str, *,
                      room: bool = True) -> None:
    """Refuse (400, with the reason) a destination that cannot take the guest:
    the instance's own host, an unknown host, one whose compute service is
    down, one with another CPU architecture or hypervisor type or an older
    hypervisor than the source's, or (``room``) one without room for the
    flavor."""
    if host == instance.host:
        raise exception.Invalid(f"Unable to migrate instance ({instance.uuid}) to its "
                                f"current host ({host}).")
    node = _node(session, host)
    if node is None:
        raise exception.Invalid(f"Compute host {host} could not be found.")
    if not host_is_up(session, cfg, host):
        raise exception.Invalid(f"Compute service of {host} is unavailable at this time.")
    problem = compatibility_problem(_node(session, instance.host), node)
    if problem:
        raise exception.MigrationPreCheckError(reason=problem)
    if room:
        problem = room_problem(node, instance)
        if problem:
            raise exception.MigrationPreCheckError(reason=problem)


def compatibility_problem(source: ComputeNode | None, dest: ComputeNode) -> str | None:
    """Why the guest of ``source`` cannot run on ``dest`` (Nova's checks), or None."""
    if source is None:
        return "the instance's host has no compute node record"
    if source.cpu_arch != dest.cpu_arch:
        return (f"{dest.host} has CPU architecture {dest.cpu_arch}, the instance's host "
                f"{source.host} has {source.cpu_arch}")
    if source.hypervisor_type != dest.hypervisor_type:
        return (f"{dest.host}'s hypervisor type is {dest.hypervisor_type}, the instance's "
                f"host {source.host} runs {source.hypervisor_type}")
    if dest.hypervisor_version < source.hypervisor_version:
        return (f"{dest.host}'s hypervisor version {dest.hypervisor_version} is older than "
                f"{source.hypervisor_version} of the instance's host {source.host}")
    return None


def room_problem(node: ComputeNode, instance: Instance) -> str | None:
    """Why ``node`` has no room for the instance's flavor now, or None."""
    asked = claims.Resources.of_flavor(instance.flavor)
    free = {
        "memory": (node.memory_mb * node.ram_allocation_ratio - node.memory_mb_used,
                   asked.memory_mb, "MB"),
        "disk": (node.local_gb * node.disk_allocation_ratio - node.local_gb_used,
                 asked.disk_gb, "GB"),
        "vCPUs": (node.vcpus * node.cpu_allocation_ratio - node.vcpus_used, asked.vcpus, ""),
    }
    for what, (left, need, unit) in free.items():
        if need > left:
            return (f"Unable to migrate {instance.uuid} to {node.host}: not enough {what} "
                    f"(free {left:g}{unit and ' ' + unit}, the flavor needs "
                    f"{need}{unit and ' ' + unit})")
    return None


def run_of(session: Session, instance_uuid: str) -> str | None:
    """The instance's unfinished live-migration flow run (None if there is none)."""
    return session.scalar(select(FlowRun.id).where(
        FlowRun.instance_uuid == instance_uuid, FlowRun.operation == OPERATION,
        leases.unfinished()).order_by(FlowRun.created_at.desc()).limit(1))


def _migration(session: Session, migration_uuid: str) -> Migration:
    return moves.get(session, migration_uuid)


def _cancelling(services: Services, migration_uuid: str) -> bool:
    with services.db.read() as session:
        return _migration(session, migration_uuid).status == CANCELLING


# -- steps ---------------------------------------------------------------------------

class LiveMigrateBegin(Begin):
    """As every operation's begin, and the migration moves from "queued" to
    "preparing" and names this flow run.

    Revert: clear task_state (the guest still runs on the source: every later
    step has undone its effect), the migration ends "cancelled" when an
    administrator aborted it, "error" otherwise with a fault on the instance;
    notify error.
    """

    def execute(self, instance_uuid: str, migration_uuid: str
                ) -> tuple[dict[str, Any], str | None]:
        before, host = super().execute(instance_uuid)
        flow = context.current_flow()
        with self.svc.db.write() as session:
            if not moves.set_status(session, migration_uuid, "preparing",
                                    expected=("queued", "preparing")):
                raise exception.RollbackRequested(step=self.name)  # aborted while queued
            if flow is not None:
                moves.update_fields(session, migration_uuid, flow_id=flow[0])
        return before, host

    def revert(self, result: Any, instance_uuid: str, migration_uuid: str,
               flow_failures: dict | None = None, **_kw: Any) -> None:
        code, message, details = fault_from(first_failure(flow_failures))
        with self.svc.db.write() as session:
            aborted = _migration(session, migration_uuid).status == CANCELLING
            moves.set_status(session, migration_uuid, "cancelled" if aborted else "error",
                             expected=frozenset(ABORTABLE + (CANCELLING,)))
            instance = session.get(Instance, instance_uuid)
            if instance is not None and FORCE_COMPLETE_KEY in (instance.system_metadata or {}):
                instance.system_metadata = {k: v for k, v in instance.system_metadata.items()
                                            if k != FORCE_COMPLETE_KEY}
            if not instances_db.update_if(session, instance_uuid, {"task_state": None},
                                          expected_task_state=self.action.task_state):
                return  # not ours any more (deleted)
            flowstore.mark_reverting(session, instance_uuid, self.action.name)
            if not aborted:
                instances_db.add_fault(session, instance_uuid, code=code,
                                       message=f"{self.action.instance_action} failed: "
                                               f"{message}",
                                       details=details, host=instance.host)
            note = notify(self.svc, session, instance, self.action.name, "error",
                          before=None if failed(result) else result[0],
                          fault="cancelled by an administrator" if aborted else message)
        publish(self.svc, note)
        LOG.warning("live migration of %s %s; the guest stays on %s", instance_uuid,
                    "was aborted" if aborted else f"failed ({message})",
                    instance.host if instance is not None else "its host")


class CheckDestination(VmTask):
    """Choose the destination: the requested host (forced: as given, after the
    API's checks; otherwise it must also pass the scheduler's filters), or the
    scheduler's best host that suits the guest (never the source).  Records it
    in the migration.

    Revert: nothing to undo (the migration's destination is only a record).
    """

    default_provides = "dest"

    def execute(self, instance_uuid: str, migration_uuid: str, host: str,
                requested_host: str | None, force: bool) -> str:
        with self.svc.db.read() as session:
            instance = session.get(Instance, instance_uuid)
            check_source(session, self.svc.config, instance)
            if requested_host:
                check_destination(session, self.svc.config, instance, requested_host,
                                  room=False)  # the claim decides about room
            spec = _request_spec(session, instance, requested_host)
            source = _node(session, host)
            nodes = {n.host: n for n in session.scalars(select(ComputeNode))}
        if requested_host and force:
            dest = requested_host
        else:
            candidates, _decision = self.svc.scheduler.select(spec)
            fitting = [c for c in candidates if c != host and c in nodes
                       and compatibility_problem(source, nodes[c]) is None]
            if not fitting:
                raise exception.NoValidHost(
                    reason=f"None of the hosts the scheduler found ({', '.join(candidates)}) "
                           f"can take a guest from {host} (CPU architecture, hypervisor "
                           "type or version).")
            dest = fitting[0]
        with self.svc.db.write() as session:
            moves.update_fields(session, migration_uuid, dest_compute=dest)
        LOG.info("live migration of %s: %s -> %s", instance_uuid, host, dest)
        return dest


def _request_spec(session: Session, instance: Instance, requested_host: str | None
                  ) -> RequestSpec:
    try:
        image = catalog.image_dict(catalog.get_image(session, instance.image_ref))
    except exception.ImageNotFound:  # deleted since: its properties are gone too
        image = {"id": instance.image_ref, "properties": {}}
    return RequestSpec(instance_uuid=instance.uuid, project_id=instance.project_id,
                       flavor=instance.flavor, image=image,
                       tried_hosts=frozenset({instance.host}),
                       requested_host=requested_host)


class CheckStorage(HostStep):
    """Decide whether the disk travels (a block migration): the target sees the
    instance's disk when the hosts share their instance storage.  Block
    migration asked on shared storage, or none asked without it, is refused;
    "auto" (None) takes what the storage needs.

    Revert: nothing to undo (reads only).
    """

    default_provides = "block"

    def execute(self, instance_uuid: str, host: str, dest: str,
                block_migration: bool | None) -> bool:
        shared = bool(self.call(dest, "disk_exists", instance_uuid=instance_uuid))
        if block_migration is None:
            return not shared
        if block_migration and shared:
            raise exception.MigrationPreCheckError(
                reason=f"{dest} shares its instance storage with {host}: a block migration "
                       "cannot be used with shared storage")
        if not block_migration and not shared:
            raise exception.MigrationPreCheckError(
                reason=f"{dest} does not share its instance storage with {host}: a live "
                       "migration without block migration needs shared storage "
                       "(use block_migration true or auto)")
        return bool(block_migration)


class ClaimTarget(VmTask):
    """Claim the flavor on the destination for the instance, while the source's
    claim is handed to the migration (Nova's migration as consumer), in one
    transaction guarded by task_state.

    Revert: release the destination's claim and give the source's back to the
    instance.
    """

    def execute(self, instance_uuid: str, migration_uuid: str, host: str, dest: str) -> None:
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            asked = claims.Resources.of_flavor(instance.flavor)
            if not instances_db.update_if(session, instance_uuid, {},
                                          expected_task_state=task_states.MIGRATING):
                raise exception.InstanceGone(instance_id=instance_uuid)
            claims.move_to(session, instance_uuid, migration_uuid, host)
            held = any(a.host == dest for a in claims.allocations_of(session, instance_uuid))
            if not held and not claims.claim(session, instance_uuid, dest, asked):
                raise exception.MigrationPreCheckError(
                    reason=f"{dest} no longer has room for the flavor of {instance_uuid}")
        if not held:
            self.svc.scheduler.cache.consumed(dest, asked)
        LOG.info("claimed %s on %s for the live migration of %s", asked, dest, instance_uuid)

    def revert(self, result: Any, instance_uuid: str, migration_uuid: str, host: str,
               dest: str, **_kw: Any) -> None:
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            released = claims.release(session, instance_uuid, dest)
            claims.move_to(session, migration_uuid, instance_uuid, host)
        if released:
            self.svc.scheduler.cache.consumed(dest, claims.Resources.of_flavor(instance.flavor),
                                              -1)


class PrepareTarget(HostStep):
    """Make the destination ready to receive the guest: for a block migration
    the source exports its root disk and the destination imports it; the guest
    is defined there, not running.  The migration is "running" from here.

    Provides the URI a real source migrates to (None for simulated hosts).

    Revert: undefine the guest on the destination and, for a block migration,
    delete its disk there and the exported copy.
    """

    default_provides = "dest_uri"

    def execute(self, instance_uuid: str, migration_uuid: str, host: str, dest: str,
                block: bool) -> str | None:
        with self.svc.db.read() as session:
            instance = session.get(Instance, instance_uuid)
            guest = {"uuid": instance.uuid, "name": instance.name, "flavor": instance.flavor,
                     "config_drive": config_drive_metadata(instance)}
        if block:
            where = transfer_dir(self.svc.config, migration_uuid)
            self.call(host, "export_disk", instance_uuid=instance_uuid, transfer_dir=where)
            self.call(dest, "import_disk", instance_uuid=instance_uuid, transfer_dir=where,
                      root_gb=guest["flavor"]["root_gb"])
        self.call(dest, "define", instance=guest)
        dest_uri = self.call(dest, "live_migration_uri")
        with self.svc.db.write() as session:
            if not moves.set_status(session, migration_uuid, "running",
                                    expected=("preparing", "running")):
                raise exception.RollbackRequested(step=self.name)  # aborted meanwhile
        return dest_uri

    def revert(self, result: Any, instance_uuid: str, migration_uuid: str, dest: str,
               block: bool, **_kw: Any) -> None:
        self.undo(dest, "undefine", instance_uuid)
        if block:
            self.undo(dest, "delete_disks", instance_uuid)
            self.undo(dest, "delete_export", instance_uuid,
                      transfer_dir=transfer_dir(self.svc.config, migration_uuid))


class TransferMemory(HostStep):
    """Move the guest's memory (and disk, for a block migration) while it runs,
    recording progress in the migration.  Simulated hosts: the transfer is
    modelled over ``live_migration_simulated_seconds`` and ends with the guest
    running (or paused, as it was) on the destination while it still runs on
    the source.  Real hosts: libvirt migrates it, and the source's definition
    is gone at the end.  An abort cuts it short; a force-complete ends the
    modelled transfer at once (a real guest is paused so its copy converges).

    Revert: the modelled transfer: power the guest off on the destination (its
    definition goes with prepare-target's revert).  A real migration under way
    is aborted; one that has completed cannot be taken back here, and the
    instance goes to ERROR with a fault saying where its guest is.
    """

    def execute(self, instance_uuid: str, migration_uuid: str, host: str, dest: str,
                dest_uri: str | None, block: bool, before: dict[str, Any]) -> None:
        if dest_uri is None:
            self._modelled(instance_uuid, migration_uuid, dest, block, before)
        else:
            self._real(instance_uuid, migration_uuid, host, dest, dest_uri, block, before)

    # The model (libvirt's test driver: simulated hosts) ------------------------------

    def _modelled(self, instance_uuid: str, migration_uuid: str, dest: str, block: bool,
                  before: dict[str, Any]) -> None:
        flavor = self._flavor(instance_uuid)
        memory = int(flavor["memory_mb"]) * 1024**2
        disk = int(flavor["root_gb"]) * 1024**3 if block else 0
        pause = self.svc.config.live_migration_simulated_seconds / INCREMENTS
        for step in range(INCREMENTS + 1):
            if step and not self._wait(pause, instance_uuid, migration_uuid):
                step = INCREMENTS  # forced to complete: the rest goes at once
            self._progress(migration_uuid, memory, disk, step / INCREMENTS)
            if step == INCREMENTS:
                break
        self.call(dest, "power_on", instance_uuid=instance_uuid)
        if before["vm_state"] == vm_states.PAUSED:
            self.call(dest, "pause", instance_uuid=instance_uuid)

    def _wait(self, seconds: float, instance_uuid: str, migration_uuid: str) -> bool:
        """Sleep ``seconds`` unless interrupted (raises) or forced to complete
        (returns False)."""
        deadline = time.monotonic() + seconds
        while True:
            if context.interrupted():
                raise exception.StepInterrupted(step=self.name)
            left = deadline - time.monotonic()
            if left <= 0:
                return not self._forced(instance_uuid, migration_uuid)
            time.sleep(min(left, 0.05))

    def _forced(self, instance_uuid: str, migration_uuid: str) -> bool:
        with self.svc.db.read() as session:
            instance = session.get(Instance, instance_uuid)
            return (instance.system_metadata or {}).get(FORCE_COMPLETE_KEY) == migration_uuid

    def _flavor(self, instance_uuid: str) -> dict[str, Any]:
        with self.svc.db.read() as session:
            return dict(session.get(Instance, instance_uuid).flavor)

    def _progress(self, migration_uuid: str, memory: int, disk: int, done: float) -> None:
        with self.svc.db.write() as session:
            moves.update_fields(
                session, migration_uuid,
                memory_total=memory, memory_processed=int(memory * done),
                memory_remaining=memory - int(memory * done),
                disk_total=disk, disk_processed=int(disk * done),
                disk_remaining=disk - int(disk * done))

    # Real hypervisors ------------------------------------------------------------------

    def _real(self, instance_uuid: str, migration_uuid: str, host: str, dest: str,
              dest_uri: str, block: bool, before: dict[str, Any]) -> None:
        self.call(host, "live_migration_start", instance_uuid=instance_uuid,
                  dest_uri=dest_uri, block_migration=block)
        forced = False
        while True:
            if context.interrupted():
                self.call(host, "live_migration_abort", instance_uuid=instance_uuid)
                raise exception.StepInterrupted(step=self.name)
            job = self.call(host, "live_migration_progress", instance_uuid=instance_uuid)
            with self.svc.db.write() as session:
                moves.update_fields(session, migration_uuid, **{
                    k: job.get(k) for k in ("memory_total", "memory_processed",
                                            "memory_remaining", "disk_total",
                                            "disk_processed", "disk_remaining")
                    if job.get(k) is not None})
            if job["state"] == "completed":
                break
            if job["state"] != "running":
                raise exception.HypervisorError(host=host, step=self.name,
                                                reason=job.get("error") or job["state"])
            if not forced and self._forced(instance_uuid, migration_uuid):
                forced = self.call(host, "live_migration_force_complete",
                                   instance_uuid=instance_uuid)
            time.sleep(REAL_POLL)
        if forced and before["vm_state"] == vm_states.ACTIVE:
            self.call(dest, "unpause", instance_uuid=instance_uuid)

    def revert(self, result: Any, instance_uuid: str, host: str, dest: str,
               dest_uri: str | None, **_kw: Any) -> None:
        if dest_uri is None:
            self.undo(dest, "power_off", instance_uuid)
            return
        self.undo(host, "live_migration_abort", instance_uuid)
        try:
            gone = self.call(host, "power_state",
                             instance_uuid=instance_uuid) == power_state.NOSTATE
        except exception.VmflowError:
            gone = False  # the source cannot say: leave the instance as it is
        if gone:
            with self.svc.db.write() as session:
                instances_db.update_if(session, instance_uuid, {"vm_state": vm_states.ERROR},
                                       expected_task_state=task_states.MIGRATING)
                instances_db.add_fault(session, instance_uuid, code=500,
                                       message=f"Could not undo {self.name}: the guest has "
                                               f"moved to {dest}", host=dest)


class SwitchOver(HostStep):
    """The guest runs on the destination: the instance now lives there
    (host and node), its guest and (block migration) disk are removed from the
    source, and the source's claim (held by the migration) is released.

    Revert: put things back as they were before this step, whatever part of
    it ran: claim the source again for the migration; if the source's guest
    is gone, bring it back (its disk exported from the destination and
    imported on the source, defined, running or paused as it was) while it
    still runs on the destination; the instance lives on the source again.
    """

    def execute(self, instance_uuid: str, migration_uuid: str, host: str, dest: str,
                block: bool) -> None:
        with self.svc.db.write() as session:
            if not instances_db.update_if(session, instance_uuid, {"host": dest, "node": dest},
                                          expected_task_state=task_states.MIGRATING):
                raise exception.InstanceGone(instance_id=instance_uuid)
        self.call(host, "undefine", instance_uuid=instance_uuid)
        if block:
            self.call(host, "delete_disks", instance_uuid=instance_uuid)
        with self.svc.db.write() as session:
            flavor = session.get(Instance, instance_uuid).flavor
            released = claims.release(session, migration_uuid, host)
        if released:
            self.svc.scheduler.cache.consumed(host, claims.Resources.of_flavor(flavor), -1)
        LOG.info("instance %s now lives on %s; its guest left %s", instance_uuid, dest, host)

    def revert(self, result: Any, instance_uuid: str, migration_uuid: str, host: str,
               dest: str, block: bool, before: dict[str, Any], dest_uri: str | None,
               **_kw: Any) -> None:
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            asked = claims.Resources.of_flavor(instance.flavor)
            held = any(a.host == host for a in claims.allocations_of(session, migration_uuid))
            if not held and not claims.claim(session, migration_uuid, host, asked):
                LOG.error("could not claim %s on %s again for %s", asked, host, instance_uuid)
        if not held:
            self.svc.scheduler.cache.consumed(host, asked)
        if self.call(host, "power_state", instance_uuid=instance_uuid) == power_state.NOSTATE:
            if dest_uri is not None:  # a real guest is not copied back from its disk
                self._stays_on(instance_uuid, dest, "a real guest is moved back only by "
                                                    "another live migration")
                return
            if not self._bring_back(instance_uuid, migration_uuid, host, dest, block, before):
                return
        with self.svc.db.write() as session:
            instances_db.update_if(session, instance_uuid, {"host": host, "node": host},
                                   expected_task_state=task_states.MIGRATING)

    def _bring_back(self, instance_uuid: str, migration_uuid: str, host: str, dest: str,
                    block: bool, before: dict[str, Any]) -> bool:
        """The source's guest is gone: move it back from the destination (modelled
        hosts); False if that failed (the instance is then in ERROR)."""
        with self.svc.db.read() as session:
            instance = session.get(Instance, instance_uuid)
            guest = {"uuid": instance.uuid, "name": instance.name, "flavor": instance.flavor,
                     "config_drive": config_drive_metadata(instance)}
        try:
            if block:
                back = f"{transfer_dir(self.svc.config, migration_uuid)}/back"
                self.call(dest, "export_disk", instance_uuid=instance_uuid, transfer_dir=back)
                self.call(host, "import_disk", instance_uuid=instance_uuid, transfer_dir=back,
                          root_gb=guest["flavor"]["root_gb"])
            self.call(host, "define", instance=guest)
            self.call(host, "power_on", instance_uuid=instance_uuid)
            if before["vm_state"] == vm_states.PAUSED:
                self.call(host, "pause", instance_uuid=instance_uuid)
        except exception.VmflowError as err:
            LOG.error("could not bring the guest of %s back to %s: %s", instance_uuid, host, err)
            self._stays_on(instance_uuid, dest, str(err))
            return False
        return True

    def _stays_on(self, instance_uuid: str, dest: str, why: str) -> None:
        """The guest cannot return to the source: ERROR, with a fault naming where it is."""
        with self.svc.db.write() as session:
            instances_db.update_if(session, instance_uuid, {"vm_state": vm_states.ERROR},
                                   expected_task_state=task_states.MIGRATING)
            instances_db.add_fault(session, instance_uuid, code=500,
                                   message=f"Could not undo {self.name}: the guest runs on "
                                           f"{dest}: {why}", host=dest)


class LiveMigrateFinish(Finish):
    """Clear task_state (vm_state stays ACTIVE or PAUSED) and complete the
    migration, in one transaction; notify end; then remove the transfer
    directory of a block migration.

    Revert: nothing to undo; this is the last step.
    """

    def execute(self, instance_uuid: str, before: dict[str, Any], migration_uuid: str,
                dest: str, block: bool) -> None:
        with self.svc.db.write() as session:
            if not instances_db.update_if(session, instance_uuid, {"task_state": None},
                                          expected_task_state=self.action.task_state):
                if already_ended(session, instance_uuid, self.action.name):
                    return  # done before a crash; the result was not saved
                raise exception.InstanceGone(instance_id=instance_uuid)
            moves.set_status(session, migration_uuid, "completed")
            instance = session.get(Instance, instance_uuid)
            if FORCE_COMPLETE_KEY in (instance.system_metadata or {}):
                instance.system_metadata = {k: v for k, v in instance.system_metadata.items()
                                            if k != FORCE_COMPLETE_KEY}
            message = notify(self.svc, session, instance, self.action.name, "end",
                             before=before)
        publish(self.svc, message)
        if block:
            try:
                self.svc.compute.call(dest, "delete_export", transfer_dir=transfer_dir(
                    self.svc.config, migration_uuid))
            except exception.VmflowError as err:  # only a leftover copy: log it
                LOG.warning("could not remove the transfer directory of %s: %s",
                            migration_uuid, err)
        LOG.info("live migration of %s to %s completed", instance_uuid, dest)


def get_flow(services: Services) -> linear_flow.Flow:
    """Build the live-migration graph (inputs: ``instance_uuid``, ``migration_uuid``,
    ``requested_host`` (None: the scheduler chooses), ``block_migration``
    (True, False, or None for auto) and ``force``)."""
    return frame(services, OPERATION,
                 CheckDestination(services, f"{OPERATION}.check-destination"),
                 CheckStorage(services, f"{OPERATION}.check-storage"),
                 ClaimTarget(services, f"{OPERATION}.claim-target"),
                 PrepareTarget(services, f"{OPERATION}.prepare-target"),
                 TransferMemory(services, f"{OPERATION}.transfer-memory"),
                 SwitchOver(services, f"{OPERATION}.switch-over"),
                 begin=LiveMigrateBegin, finish=LiveMigrateFinish)
