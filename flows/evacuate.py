"""Evacuate: rebuild an instance whose host is down on another host, keeping its
identity (uuid, name, flavor, metadata), and clean up after the dead host when
it comes back.

Graph::

    begin -> select-target -> claim-target
          -> (cache-image -> create-disk | adopt-disk)
          -> check-source-down -> define-domain
          -> [power-on -> wait-for-running [poll]] -> finish

The API has checked that the instance's host is down, set task_state
``rebuilding`` and recorded the migration (type ``evacuation``, status
``accepted``).  Nothing is ever sent to the dead host: every host step runs on
the target.  The root disk is a fresh one from the instance's image, or, with
``shared_instance_storage``, the instance's own disk taken from the dead
host's directory on the storage all hosts share (``adopt-disk``).  A stopped
instance is rebuilt and stays stopped, as in Nova; any other ends ACTIVE.

``finish`` moves the instance to the target in one compare-and-swap, and hands
the dead host's claim to the migration (the host may still run the guest and
nobody can ask it).  When that host reports again, :func:`destroy_evacuated`
destroys its stale copy, releases that claim and marks the migration
``completed``, as Nova's ``_destroy_evacuated_instances`` does on a compute
host's start.

A failure at any step reverts the target's claim, disk and guest; the instance
stays on its dead host in the vm_state it had, with a fault, and the migration
ends ``failed`` (``error`` when no host could be found).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from taskflow.patterns import linear_flow

from flows.actions import Begin, Finish, HostStep, WaitForRunning, polled
from flows.base import (
    Services,
    VmTask,
    already_ended,
    failed,
    first_failure,
    may_have_acted,
    notify,
    outcome_unknown,
    publish,
)
from flows.launch import config_drive_metadata
from scheduler.request_spec import RequestSpec
from vmflow import context, exception
from vmflow.config import Config
from vmflow.context import RequestContext
from vmflow.db import catalog, claims, moves
from vmflow.db import hosts as hosts_db
from vmflow.db import instances as instances_db
from vmflow.db.models import Instance, Migration, Service
from vmflow.states import power_state, task_states, vm_states
from vmflow.states.actions import ACTIONS

LOG = logging.getLogger(__name__)

OPERATION = "evacuate"
COMPUTE_BINARY = "vmflow-compute"
# The task_states an evacuation holds the instance in (rebuilding, then
# rebuild_spawning once the target starts building the guest).
HELD = (task_states.REBUILDING, task_states.REBUILD_SPAWNING)


def compute_service(session, host: str | None) -> Service | None:
    """The compute service row of ``host`` (None if the host never reported)."""
    if not host:
        return None
    return session.scalar(select(Service).where(Service.binary == COMPUTE_BINARY,
                                                Service.host == host))


def host_is_up(session, host: str | None, service_down_time: float) -> bool:
    """Whether ``host``'s compute service is up, as os-services says: a heartbeat
    within ``service_down_time`` and not forced down."""
    service = compute_service(session, host)
    return service is not None and hosts_db.is_up(service, service_down_time)


def admit(session, cfg: Config, ctx: RequestContext, instance: Instance,
          migration_uuid: str, *, host: str | None, force: bool,
          on_shared_storage: bool | None) -> dict[str, Any]:
    """The API's checks of an evacuation, in the transaction that took the
    instance's task_state (an exception undoes both): the instance's host must
    be down (409), a named target must exist (404), be another host (400) and
    be up (400); ``onSharedStorage`` (below 2.14) must say what the cloud has
    (400).  Records the migration (``accepted``) and returns the flow's
    parameters."""
    source = instance.host
    if not source:
        raise exception.Conflict(f"Cannot 'evacuate' instance {instance.uuid}: it has no "
                                 "host.")
    if host_is_up(session, source, cfg.service_down_time):
        raise exception.Conflict(f"Compute service of {source} is still in use: evacuate "
                                 "only from a host that is down.")
    if host is not None:
        if compute_service(session, host) is None:
            raise exception.NotFound(f"Compute host {host} not found.")
        if host == source:
            raise exception.Invalid("The target host can't be the same one.")
        if not host_is_up(session, host, cfg.service_down_time):
            raise exception.Invalid(f"Compute host {host} is down: it cannot take the "
                                    "instance.")
    if on_shared_storage is not None and on_shared_storage != cfg.shared_instance_storage:
        raise exception.Invalid("Invalid state of instance files on shared storage: this "
                                "cloud's instance storage is "
                                f"{'' if cfg.shared_instance_storage else 'not '}shared.")
    moves.create(session, instance.uuid, moves.EVACUATION, "accepted", source_compute=source,
                 dest_compute=host, old_flavor_id=instance.flavor_id,
                 new_flavor_id=instance.flavor_id, user_id=ctx.user_id,
                 project_id=ctx.project_id, migration_uuid=migration_uuid)
    LOG.info("evacuation %s of %s from %s accepted (target: %s%s)", migration_uuid,
             instance.uuid, source, host or "scheduler's choice", ", forced" if force else "")
    return {"start": instance.vm_state != vm_states.STOPPED,
            "shared": cfg.shared_instance_storage}


class EvacuateBegin(Begin):
    """Confirm the instance is being evacuated, name this run on its migration,
    note its state; notify start.

    Provides ``before`` and ``host`` (the dead host, the migration's source).

    Revert: clear task_state (from ``rebuilding`` or ``rebuild_spawning``;
    vm_state and host were never changed), record a fault, notify error, and
    mark the migration ``failed`` (``error`` when no valid host was found).
    """

    def execute(self, instance_uuid: str, migration_uuid: str) -> tuple[dict[str, Any], str]:
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            if instance is None or instance.deleted or instance.task_state not in HELD:
                raise exception.InstanceGone(instance_id=instance_uuid)
            running = context.current_flow()
            if running is not None:
                moves.update_fields(session, migration_uuid, flow_id=running[0])
        return super().execute(instance_uuid)

    def revert(self, result: Any, instance_uuid: str, migration_uuid: str,
               flow_failures: dict | None = None, **_kw: Any) -> None:
        fail = first_failure(flow_failures)
        status = "error" if fail is not None and fail.check(exception.NoValidHost) else "failed"
        with self.svc.db.write() as session:
            moves.set_status(session, migration_uuid, status,
                             expected=frozenset({"accepted", "pre-migrating"}))
            # Begin's revert clears only its own task_state: step back from
            # rebuild_spawning first, in the same transaction.
            instances_db.update_if(session, instance_uuid,
                                   {"task_state": task_states.REBUILDING},
                                   expected_task_state=task_states.REBUILD_SPAWNING)
        super().revert(result, instance_uuid, flow_failures=flow_failures)


class SelectTarget(VmTask):
    """Find the host to rebuild on: the scheduler's choice among the hosts other
    than the dead one, or the host the admin named (still checked by the
    filters, unless ``force``).

    Provides the candidates, best first, and the scheduler's decision.

    Revert: nothing to undo (no side effect).
    """

    default_provides = ("candidates", "scheduling")

    def execute(self, instance_uuid: str, host: str, requested_host: str | None,
                force: bool) -> tuple[list[str], dict[str, Any]]:
        if force and requested_host:
            return [requested_host], {"forced": requested_host}
        with self.svc.db.read() as session:
            spec = self._spec(session, instance_uuid, host, requested_host)
        # Evacuations come just when hosts went down: read their states afresh
        # rather than from a view up to a second old.
        self.svc.scheduler.cache.invalidate()
        candidates, decision = self.svc.scheduler.select(spec)
        return candidates, decision.to_dict()

    def _spec(self, session, instance_uuid: str, source: str,
              requested_host: str | None) -> RequestSpec:
        instance = instances_db.get(session, instance_uuid)
        image = catalog.image_dict(catalog.get_image(session, instance.image_ref, None))
        zone = instance.availability_zone
        if zone == self.svc.config.default_availability_zone:
            zone = None  # the default zone holds every host outside a zoned aggregate
        return RequestSpec(instance_uuid=instance_uuid, project_id=instance.project_id,
                           flavor=instance.flavor, image=image, availability_zone=zone,
                           tried_hosts=frozenset({source}), requested_host=requested_host)


class ClaimTarget(VmTask):
    """Claim the instance's flavor on the first candidate that still has room;
    the migration names it as destination and becomes ``pre-migrating``.

    The dead host's claim stays the instance's: the flow may still fail and
    leave the instance there.  Run again after a crash, the claim made the
    first time stands.

    Revert: release the claim on the target.
    """

    default_provides = "target"

    def execute(self, instance_uuid: str, migration_uuid: str, host: str,
                candidates: list[str]) -> str:
        with self.svc.db.read() as session:
            flavor = instances_db.get(session, instance_uuid).flavor
            held = [a.host for a in claims.allocations_of(session, instance_uuid)
                    if a.host != host]
        asked = claims.Resources.of_flavor(flavor)
        for target in held[:1] or candidates:
            with self.svc.db.write() as session:
                instance = session.get(Instance, instance_uuid)
                if instance is None or instance.deleted or instance.task_state not in HELD:
                    raise exception.InstanceGone(instance_id=instance_uuid)
                if not claims.claim(session, instance_uuid, target, asked):
                    continue
                moves.update_fields(session, migration_uuid, dest_compute=target,
                                    status="pre-migrating")
            self.svc.scheduler.cache.consumed(target, asked)
            LOG.info("evacuation of %s from %s: claimed %s on %s", instance_uuid, host, asked,
                     target)
            return target
        self.svc.scheduler.cache.invalidate()
        raise exception.NoValidHost(reason=f"No room left on {', '.join(candidates)}.")

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if outcome_unknown(result):  # cut short: whatever it claimed off the source goes
            with self.svc.db.read() as session:
                targets = [a.host for a in claims.allocations_of(session, instance_uuid)
                           if a.host != host]
        elif not failed(result) and result:
            targets = [result]
        else:
            return
        for target in targets:
            release_claim(self.svc, instance_uuid, target)


def release_claim(services: Services, consumer: str, host: str) -> None:
    """Release ``consumer``'s claim on ``host`` (gone already is fine)."""
    with services.db.write() as session:
        released = claims.release(session, consumer, host)
    if released and services.scheduler is not None:
        services.scheduler.cache.invalidate()
    LOG.info("released claim of %s on %s", consumer, host)


class TargetStep(HostStep):
    """A step on the evacuation's target host (never on the dead one)."""

    def execute(self, instance_uuid: str, target: str) -> Any:
        return self.call(target, self.method, instance_uuid=instance_uuid)


def _spawning(services: Services, instance_uuid: str) -> None:
    """The target starts building the guest: task_state ``rebuild_spawning``."""
    with services.db.write() as session:
        if not instances_db.update_if(session, instance_uuid,
                                      {"task_state": task_states.REBUILD_SPAWNING},
                                      expected_task_state=HELD):
            raise exception.InstanceGone(instance_id=instance_uuid)


class CacheImage(TargetStep):
    """Make the instance's image available in the target's image cache.

    Revert: nothing to undo; cached images serve every instance of the host.
    """

    def execute(self, instance_uuid: str, target: str) -> None:
        self.call(target, "prepare_image", image=_image_of(self.svc, instance_uuid))


def _image_of(services: Services, instance_uuid: str) -> dict[str, Any]:
    with services.db.read() as session:
        instance = instances_db.get(session, instance_uuid)
        return catalog.image_dict(catalog.get_image(session, instance.image_ref, None))


class CreateDisk(TargetStep):
    """Mark the instance ``rebuild_spawning`` and create a fresh root disk on the
    target from the instance's image (its data on the dead host is out of reach).

    Revert: delete the instance's disks on the target.
    """

    def execute(self, instance_uuid: str, target: str) -> None:
        _spawning(self.svc, instance_uuid)
        with self.svc.db.read() as session:
            root_gb = instances_db.get(session, instance_uuid).flavor["root_gb"]
        self.call(target, "create_disk", instance_uuid=instance_uuid,
                  image=_image_of(self.svc, instance_uuid), root_gb=root_gb)

    def revert(self, result: Any, instance_uuid: str, target: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(target, "delete_disks", instance_uuid)


class AdoptDisk(TargetStep):
    """Mark the instance ``rebuild_spawning`` and take its own root disk from the
    dead host's directory on the shared instance storage.

    Revert: give the disk back to the dead host's directory.
    """

    def execute(self, instance_uuid: str, host: str, target: str) -> None:
        _spawning(self.svc, instance_uuid)
        self.call(target, "adopt_disk", instance_uuid=instance_uuid, from_host=host)

    def revert(self, result: Any, instance_uuid: str, host: str, target: str,
               **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(target, "return_disk", instance_uuid, instance_uuid=instance_uuid,
                      to_host=host)


class CheckSourceDown(VmTask):
    """Confirm the dead host is still down before its guest is made again
    elsewhere: if it came back in the meantime, the evacuation is abandoned and
    the instance stays where it runs.

    Revert: nothing to undo (reads only).
    """

    def execute(self, host: str) -> None:
        with self.svc.db.read() as session:
            if host_is_up(session, host, self.svc.config.service_down_time):
                raise exception.Conflict(f"Compute host {host} is up again; the instance "
                                         "stays there.")


class DefineDomain(TargetStep):
    """Define the instance's guest on the target (same uuid, name and flavor).

    Revert: undefine it there (stopping it first if it runs).
    """

    def execute(self, instance_uuid: str, target: str) -> None:
        with self.svc.db.read() as session:
            instance = instances_db.get(session, instance_uuid)
            guest = {"uuid": instance.uuid, "name": instance.name, "flavor": instance.flavor,
                     "config_drive": config_drive_metadata(instance)}
        self.call(target, "define", instance=guest)

    def revert(self, result: Any, instance_uuid: str, target: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(target, "undefine", instance_uuid)


class PowerOn(TargetStep):
    """Start the guest on the target.

    Revert: power it off (define-domain's revert removes it).
    """

    method = "power_on"

    def revert(self, result: Any, instance_uuid: str, target: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(target, "power_off", instance_uuid)


class EvacuateFinish(Finish):
    """The instance now lives on the target: host, node and zone, vm_state ACTIVE
    (STOPPED for a stopped one) and task_state cleared in one compare-and-swap;
    the dead host's claim is handed to the migration (released when that host
    comes back) and the migration is ``done``; notify end.

    Revert: nothing to undo; this is the last step.
    """

    def execute(self, instance_uuid: str, migration_uuid: str, before: dict[str, Any],
                host: str, target: str) -> None:
        stopped = before["vm_state"] == vm_states.STOPPED
        values = {"task_state": None, "host": target, "node": target,
                  "availability_zone": self.svc.scheduler.cache.zone_of(target),
                  "vm_state": vm_states.STOPPED if stopped else vm_states.ACTIVE,
                  "power_state": power_state.SHUTDOWN if stopped else power_state.RUNNING}
        with self.svc.db.write() as session:
            if not instances_db.update_if(session, instance_uuid, values,
                                          expected_task_state=task_states.REBUILD_SPAWNING):
                if already_ended(session, instance_uuid, OPERATION):
                    return  # done before a crash; the result was not saved
                raise exception.InstanceGone(instance_id=instance_uuid)
            claims.move_to(session, instance_uuid, migration_uuid, host)
            moves.set_status(session, migration_uuid, "done")
            instance = session.get(Instance, instance_uuid)
            message = notify(self.svc, session, instance, OPERATION, "end", before=before)
        publish(self.svc, message)
        LOG.info("evacuated %s from %s to %s: %s", instance_uuid, host, target,
                 values["vm_state"])


def get_flow(services: Services, start: bool = True, shared: bool = False
             ) -> linear_flow.Flow:
    """Inputs: ``instance_uuid``, ``migration_uuid``, ``requested_host`` (or None),
    ``force``.  ``start`` is False for a stopped instance (it stays stopped);
    ``shared`` (``shared_instance_storage``) takes the instance's own disk
    instead of making a fresh one from its image."""
    disk = ([AdoptDisk(services, "evacuate.adopt-disk")] if shared else
            [CacheImage(services, "evacuate.cache-image"),
             CreateDisk(services, "evacuate.create-disk")])
    boot = ([PowerOn(services, "evacuate.power-on"),
             polled("evacuate.poll-on",
                    WaitForRunning(services, "evacuate.wait-for-running",
                                   rebind={"host": "target"}),
                    services.config.spawn_poll_attempts)] if start else [])
    action = ACTIONS[OPERATION]
    return linear_flow.Flow(OPERATION).add(
        EvacuateBegin(services, action),
        SelectTarget(services, "evacuate.select-target"),
        ClaimTarget(services, "evacuate.claim-target"),
        *disk,
        CheckSourceDown(services, "evacuate.check-source-down"),
        DefineDomain(services, "evacuate.define-domain"),
        *boot,
        EvacuateFinish(services, action),
    )


# -- the dead host comes back ----------------------------------------------------------

def evacuated_from(session, host: str) -> list[Migration]:
    """Evacuations from ``host`` that are done and whose stale copy there has not
    been destroyed yet."""
    return list(session.scalars(select(Migration).where(
        Migration.migration_type == moves.EVACUATION, Migration.source_compute == host,
        Migration.status == "done", Migration.deleted.is_(False))))


def stale_hosts(session, instance_uuid: str) -> set[str]:
    """Hosts the instance was evacuated from that have not cleaned up yet (a
    delete leaves them be: they are down, and destroy their copy when back)."""
    return set(session.scalars(select(Migration.source_compute).where(
        Migration.instance_uuid == instance_uuid, Migration.migration_type == moves.EVACUATION,
        Migration.status == "done")))


def destroy_evacuated(services: Services, host: str) -> list[str]:
    """``host`` reports again: destroy its copy of every instance evacuated from
    it (guest undefined, disks deleted), release the claim its migration held
    there, and mark the migration ``completed`` (Nova's
    ``_destroy_evacuated_instances``).  A host that cannot do it now is asked
    again at its next report.  Returns the instances cleaned up."""
    with services.db.read() as session:
        found = [(m.uuid, m.instance_uuid) for m in evacuated_from(session, host)]
    cleaned = []
    for migration_uuid, instance_uuid in found:
        try:
            services.compute.call(host, "undefine", instance_uuid=instance_uuid)
            services.compute.call(host, "delete_disks", instance_uuid=instance_uuid)
        except exception.VmflowError as err:
            LOG.error("could not destroy the stale copy of evacuated instance %s on %s: %s",
                      instance_uuid, host, err)
            continue
        release_claim(services, migration_uuid, host)
        with services.db.write() as session:
            moves.set_status(session, migration_uuid, "completed", expected="done")
        LOG.warning("host %s is back: destroyed its stale copy of evacuated instance %s",
                    host, instance_uuid)
        cleaned.append(instance_uuid)
    return cleaned
