"""Launch: admit the request, then schedule, claim and spawn, rescheduling on failure.

Graph::

    validate-request -> check-quota -> create-instance-record        (admission)
        -> build [retry: reschedule, max_attempts]
             select-destinations -> claim-resources -> cache-image -> create-disk
             -> define-domain -> power-on -> wait [retry: poll] (wait-for-running)
        -> mark-active

The API runs the admission steps itself and suspends the flow after
``launch.create-instance-record`` (so it can answer 202 with a server that
exists, or 403 for quota); the conductor resumes the same persisted flow.

A failure on the host reverts the host steps and the claim, remembers the host
as tried and runs ``build`` again elsewhere; after ``max_attempts`` (or for a
failure no other host can fix) everything reverts and
``create-instance-record``'s revert puts the instance in ERROR with a fault.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from typing import Any

from sqlalchemy import delete, select
from taskflow import retry
from taskflow.patterns import graph_flow, linear_flow

from flows.base import (
    Polls,
    Services,
    VmTask,
    already_ended,
    failed,
    first_failure,
    notify,
    outcome_unknown,
    publish,
    record_error,
)
from scheduler.request_spec import RequestSpec, ServerGroupInfo
from vmflow import exception
from vmflow.db import aggregates as aggregates_db
from vmflow.db import catalog, claims, quotas
from vmflow.db import instances as instances_db
from vmflow.db.models import (
    Instance,
    InstanceTag,
    Notification,
    ServerGroup,
    ServerGroupMember,
    utcnow,
)
from vmflow.states import power_state, task_states, vm_states

LOG = logging.getLogger(__name__)

RESCHEDULABLE = (exception.HypervisorError, exception.ComputeUnavailable)


# -- admission (runs in the API) ----------------------------------------------------

class ValidateRequest(VmTask):
    """Resolve the flavor and image of the request; fail if either is unusable.

    Revert: nothing to undo (reads only).
    """

    default_provides = ("flavor", "image")

    def execute(self, request: dict[str, Any]) -> tuple[dict, dict]:
        with self.svc.db.read() as session:
            flavor = catalog.get_flavor(session, request["flavor_ref"])
            image = catalog.get_image(session, request["image_ref"], request["project_id"])
            catalog.check_usable(image, root_gb=flavor.root_gb, memory_mb=flavor.memory_mb)
            return catalog.flavor_dict(flavor), catalog.image_dict(image)


class CheckQuota(VmTask):
    """Refuse the request if it would take the project over its quota (instances,
    cores, RAM, the server group's members) or has too many metadata items.

    Revert: nothing to undo (reads only).
    """

    def execute(self, request: dict[str, Any], flavor: dict[str, Any]) -> None:
        cfg, project = self.svc.config, request["project_id"]
        with self.svc.db.read() as session:
            quotas.check_metadata(session, cfg, project, request.get("metadata"))
            quotas.check_instances(session, cfg, project, flavor)
            if request.get("group"):
                quotas.check_group_members(session, cfg, project, request["group"])


class CreateInstanceRecord(VmTask):
    """Create the instance (BUILD, scheduling); re-check quota once it is counted.

    The re-check runs after the insert is committed, so of concurrent requests
    racing for the last unit of quota none can slip through (at worst both are
    refused).  Execute is idempotent: an existing record is kept.

    Revert: the flow failed after admission, so put the instance in ERROR with
    a fault describing the failure (it stays visible until the user deletes it).
    """

    def execute(self, instance_uuid: str, request: dict[str, Any], flavor: dict[str, Any],
                image: dict[str, Any]) -> None:
        with self.svc.db.write() as session:
            if session.get(Instance, instance_uuid) is not None:
                return
            session.add(Instance(
                uuid=instance_uuid, name=request["name"], project_id=request["project_id"],
                user_id=request["user_id"], flavor_id=flavor["id"], flavor=flavor,
                image_ref=image["id"], vm_state=vm_states.BUILDING,
                task_state=task_states.SCHEDULING, power_state=power_state.NOSTATE,
                availability_zone=request.get("availability_zone"),
                metadata_=request.get("metadata") or {}, tried_hosts=[],
                key_name=request.get("key_name"), key_data=request.get("key_data"),
                # No metadata service: a key reaches the guest on a config drive.
                config_drive=bool(request.get("config_drive") or request.get("key_data")
                                  or self.svc.config.force_config_drive),
                description=request.get("description"), user_data=request.get("user_data"),
                access_ip_v4=request.get("access_ip_v4"),
                access_ip_v6=request.get("access_ip_v6"),
                reservation_id=request.get("reservation_id"),
                launch_index=request.get("launch_index") or 0,
                system_metadata=dict(request.get("system_metadata") or {}),
            ))
            session.add_all(InstanceTag(instance_uuid=instance_uuid, tag=t)
                            for t in request.get("tags") or ())
            if request.get("group"):
                session.add(ServerGroupMember(group_uuid=request["group"],
                                              instance_uuid=instance_uuid))
            session.flush()
            note = notify(self.svc, session, session.get(Instance, instance_uuid), "create",
                          "start")
        problem = None
        with self.svc.db.write() as session:
            cfg, project = self.svc.config, request["project_id"]
            try:
                quotas.check_instances(session, cfg, project, flavor, recheck=True)
                if request.get("group"):
                    quotas.check_group_members(session, cfg, project, request["group"],
                                               recheck=True)
            except exception.QuotaExceeded as err:
                problem = err  # lost the race for the last of the quota: leave no trace
                session.execute(delete(ServerGroupMember).where(
                    ServerGroupMember.instance_uuid == instance_uuid))
                session.execute(delete(InstanceTag).where(
                    InstanceTag.instance_uuid == instance_uuid))
                session.execute(delete(Notification).where(
                    Notification.instance_uuid == instance_uuid))
                session.delete(session.get(Instance, instance_uuid))
        if problem:
            raise problem
        publish(self.svc, note)

    def revert(self, result: Any, instance_uuid: str, flow_failures: dict | None = None,
               **_kw: Any) -> None:
        if failed(result) and not outcome_unknown(result):
            return  # refused at admission: there is no record
        record_error(self.svc, instance_uuid, first_failure(flow_failures), operation="create")


# -- build (runs in the conductor; host steps on the chosen host) ----------------------

class RescheduleRetry(retry.Retry):
    """Run the build again on another host after a host failure, up to max_attempts.

    Only failures of the host (HypervisorError, ComputeUnavailable) are worth
    another host; anything else (no valid host, the instance was deleted) reverts.
    """

    def __init__(self, max_attempts: int, **kwargs: Any) -> None:
        super().__init__(name="launch.reschedule", provides="attempt", **kwargs)
        self.max_attempts = max_attempts

    def on_failure(self, history: retry.History, *args: Any, **kwargs: Any) -> str:
        last = len(history) - 1
        host_failed = any(history.caused_by(cls, index=last) for cls in RESCHEDULABLE)
        if (host_failed and len(history) < self.max_attempts
                and not history.caused_by(exception.InstanceGone, index=last)):
            LOG.info("build attempt %d failed on its host; rescheduling", len(history))
            return retry.RETRY
        # Give up on the whole launch, so that create-instance-record's revert
        # records the fault (REVERT would stop at this subflow's boundary).
        return retry.REVERT_ALL

    def execute(self, history: retry.History, *args: Any, **kwargs: Any) -> int:
        return len(history) + 1

    def revert(self, history: retry.History, *args: Any, **kwargs: Any) -> None:
        """Nothing to undo: each attempt's steps revert themselves."""


class SelectDestinations(VmTask):
    """Ask the scheduler for hosts, best first, excluding hosts already tried.

    Provides the candidates and the scheduler's decision (every filter's
    rejections with reasons, the weights), persisted with this step so an
    operator can read why the instance went where it went.

    Revert: nothing to undo (no side effect).
    """

    default_provides = ("candidates", "scheduling")

    def execute(self, instance_uuid: str, request: dict[str, Any], flavor: dict[str, Any],
                image: dict[str, Any], attempt: int) -> tuple[list[str], dict[str, Any]]:
        with self.svc.db.read() as session:
            spec = request_spec(session, instance_uuid, request, flavor, image)
        LOG.info("scheduling attempt %d for %s (tried: %s)", attempt, instance_uuid,
                 ", ".join(sorted(spec.tried_hosts)) or "none")
        candidates, decision = self.svc.scheduler.select(spec)
        return candidates, decision.to_dict()


def request_spec(session, instance_uuid: str, request: dict[str, Any], flavor: dict[str, Any],
                 image: dict[str, Any]) -> RequestSpec:
    """What the scheduler needs to know of this request, read afresh each attempt."""
    instance = instances_db.get(session, instance_uuid)
    group = None
    if request.get("group"):
        row = aggregates_db.get_group(session, request["group"], None)
        counts = _members_per_host(session, row.uuid, instance_uuid)
        most = _max_per_host(row)
        hosts = (frozenset(h for h, n in counts.items() if n >= most)
                 if row.policy == "anti-affinity" else frozenset(counts))
        group = ServerGroupInfo(uuid=row.uuid, name=row.name, policy=row.policy,
                                hosts=hosts, max_per_host=most)
    return RequestSpec(instance_uuid=instance_uuid, project_id=instance.project_id,
                       flavor=flavor, image=image,
                       availability_zone=request.get("availability_zone"),
                       tried_hosts=frozenset(instance.tried_hosts or []), group=group,
                       requested_host=request.get("host"))


def _members_per_host(session, group_uuid: str, instance_uuid: str) -> Counter[str]:
    """How many of the group's other live members each host holds."""
    members = [m for m in aggregates_db.group_members(session, group_uuid) if m != instance_uuid]
    return Counter(session.scalars(select(Instance.host).where(
        Instance.uuid.in_(members), Instance.deleted.is_(False), Instance.host.is_not(None))))


def _max_per_host(group: ServerGroup) -> int:
    """Members an anti-affinity group allows on one host (its 2.64 rule; default 1)."""
    return int((group.rules or {}).get("max_server_per_host", 1))


def _group_allows(session, request: dict[str, Any], instance_uuid: str, host: str) -> bool:
    """Re-check the server group's policy inside the claim's transaction.

    The group row is locked first, so members of one group are claimed one at a
    time (PostgreSQL; SQLite has one writer anyway): two members racing for the
    same host cannot both get it against an anti-affinity policy.
    """
    if not request.get("group"):
        return True
    group = session.scalar(select(ServerGroup).where(ServerGroup.uuid == request["group"])
                           .with_for_update())
    if group is None:
        return True
    counts = _members_per_host(session, group.uuid, instance_uuid)
    hosts = set(counts)
    if group.policy == "anti-affinity":
        return counts[host] < _max_per_host(group)
    if group.policy == "affinity":
        return not hosts or host in hosts
    return True  # soft-affinity, soft-anti-affinity: preferences, weighed by the scheduler


class ClaimResources(VmTask):
    """Claim the flavor's resources on the first candidate that still has room.

    A candidate whose claim fails (another request took the room first, or a
    member of the instance's server group got there first against its policy)
    is skipped, not fatal.  The claim and the instance's new host are written in
    one transaction, guarded by task_state, so a deleted instance never holds
    a claim.

    Revert: release the claim, remember the host as tried, and clear the
    instance's host (back to scheduling) unless a delete has taken over.
    """

    default_provides = "host"

    def execute(self, instance_uuid: str, request: dict[str, Any], flavor: dict[str, Any],
                candidates: list[str]) -> str:
        asked = claims.Resources.of_flavor(flavor)
        with self.svc.db.read() as session:
            held = [a.host for a in claims.allocations_of(session, instance_uuid)]
        if held:  # run again after a crash: the claim made the first time stands
            candidates = held[:1]
        for host in candidates:
            with self.svc.db.write() as session:
                if not _group_allows(session, request, instance_uuid, host):
                    continue
                if not claims.claim(session, instance_uuid, host, asked):
                    continue
                zone = (request.get("availability_zone")
                        or self.svc.scheduler.cache.zone_of(host))
                if not instances_db.update_if(
                        session, instance_uuid,
                        {"host": host, "node": host, "availability_zone": zone,
                         "task_state": task_states.BLOCK_DEVICE_MAPPING},
                        expected_task_state=[task_states.SCHEDULING,
                                             task_states.BLOCK_DEVICE_MAPPING]):
                    raise exception.InstanceGone(instance_id=instance_uuid)
            self.svc.scheduler.cache.consumed(host, asked)
            LOG.info("claimed %s on %s", asked, host)
            return host
        self.svc.scheduler.cache.invalidate()
        raise exception.NoValidHost(
            reason=f"Every candidate ({', '.join(candidates)}) was taken by other requests "
                   "or no longer satisfies the server group's policy.")

    def revert(self, result: Any, instance_uuid: str, flavor: dict[str, Any],
               **_kw: Any) -> None:
        if outcome_unknown(result):  # cut short: whatever it claimed is released
            with self.svc.db.read() as session:
                held = [a.host for a in claims.allocations_of(session, instance_uuid)]
            for host in held:
                self._release(instance_uuid, host, flavor)
        elif not failed(result) and result is not None:
            self._release(instance_uuid, result, flavor)

    def _release(self, instance_uuid: str, host: str, flavor: dict[str, Any]) -> None:
        with self.svc.db.write() as session:
            released = claims.release(session, instance_uuid, host)
            instance = session.get(Instance, instance_uuid)
            if instance is not None and not instance.deleted:
                tried = list(instance.tried_hosts or [])
                if host not in tried:
                    tried.append(host)
                instances_db.update_if(
                    session, instance_uuid,
                    {"host": None, "node": None, "tried_hosts": tried,
                     "task_state": task_states.SCHEDULING},
                    expected_task_state=[task_states.SCHEDULING, task_states.BLOCK_DEVICE_MAPPING,
                                         task_states.SPAWNING])
        if released:
            self.svc.scheduler.cache.consumed(host, claims.Resources.of_flavor(flavor), -1)
        LOG.info("released claim of %s on %s", instance_uuid, host)


class HostTask(VmTask):
    """A step carried out by the chosen host's compute worker."""

    def call(self, host: str, method: str, **kwargs: Any) -> Any:
        return self.svc.compute.call(host, method, **kwargs)

    def undo(self, host: str, method: str, instance_uuid: str) -> None:
        """Best-effort undo: log, don't raise, when the host cannot do it."""
        try:
            self.call(host, method, instance_uuid=instance_uuid)
        except exception.VmflowError as err:
            LOG.error("could not undo %s for %s on %s: %s", self.name, instance_uuid, host, err)


class CacheImage(HostTask):
    """Make the image available in the host's image cache.

    Revert: nothing to undo; cached images serve every instance of the host and
    are aged out by the cache, not by one failed build.
    """

    def execute(self, host: str, image: dict[str, Any]) -> None:
        self.call(host, "prepare_image", image=image)


class CreateDisk(HostTask):
    """Create the instance's root disk on the host from the cached image.

    Revert: delete the instance's disks on that host (already gone is fine).
    """

    def execute(self, instance_uuid: str, host: str, image: dict[str, Any],
                flavor: dict[str, Any]) -> None:
        self.call(host, "create_disk", instance_uuid=instance_uuid, image=image,
                  root_gb=flavor["root_gb"])

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        self.undo(host, "delete_disks", instance_uuid)


class DefineDomain(HostTask):
    """Mark the instance spawning and define its guest on the host.

    Revert: undefine the guest (stopping it first if it runs); absent is fine.
    """

    def execute(self, instance_uuid: str, host: str, request: dict[str, Any],
                flavor: dict[str, Any]) -> None:
        with self.svc.db.write() as session:
            if not instances_db.update_if(
                    session, instance_uuid, {"task_state": task_states.SPAWNING},
                    expected_task_state=[task_states.BLOCK_DEVICE_MAPPING,
                                         task_states.SPAWNING]):
                raise exception.InstanceGone(instance_id=instance_uuid)
            drive = config_drive_metadata(session.get(Instance, instance_uuid))
        self.call(host, "define", instance={"uuid": instance_uuid, "name": request["name"],
                                            "flavor": flavor, "config_drive": drive})

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        self.undo(host, "undefine", instance_uuid)


def hostname(name: str) -> str:
    """A hostname made of a display name, as Nova makes one: lower case, spaces and
    underscores become hyphens, other characters go, at most 63 characters."""
    text = re.sub(r"[^a-z0-9.-]", "", re.sub(r"[ _]", "-", name.lower()))
    return text.strip(".-")[:63].strip(".-") or "server"


def config_drive_metadata(instance: Instance) -> dict[str, Any] | None:
    """What the guest's config drive says (``openstack/latest/meta_data.json``,
    the keys cloud-init reads), or None when the instance gets none."""
    if not instance.config_drive:
        return None
    keys = {instance.key_name: instance.key_data} if instance.key_data else {}
    return {
        "uuid": instance.uuid, "name": instance.name,
        "hostname": hostname(instance.name),
        "availability_zone": instance.availability_zone, "project_id": instance.project_id,
        "launch_index": instance.launch_index or 0, "meta": dict(instance.metadata_ or {}),
        "devices": [],
        "public_keys": keys,
        "keys": [{"name": name, "type": "ssh", "data": data} for name, data in keys.items()],
    }


class PowerOn(HostTask):
    """Start the guest.

    Revert: power the guest off (the definition is removed by define-domain).
    """

    def execute(self, instance_uuid: str, host: str) -> None:
        self.call(host, "power_on", instance_uuid=instance_uuid)

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        self.undo(host, "power_off", instance_uuid)


class WaitForRunning(HostTask):
    """Check that the guest reports RUNNING; the ``launch.poll`` retry repeats it.

    Each repeat waits a little longer (backoff from the attempt number) before
    asking the host again.

    Revert: nothing to undo (reads only).
    """

    default_provides = "power_state"

    def execute(self, instance_uuid: str, host: str, poll_attempt: int) -> int:
        if poll_attempt > 1:
            time.sleep(min(0.05 * 2 ** (poll_attempt - 2), 2.0))
        state = self.call(host, "power_state", instance_uuid=instance_uuid)
        if state != power_state.RUNNING:
            raise exception.HypervisorError(
                host=host, step="wait-for-running",
                reason=f"guest is {power_state.NAMES.get(state, state)}, not RUNNING")
        return state


class MarkActive(VmTask):
    """The guest runs: the instance becomes ACTIVE (only if still spawning).

    Revert: nothing to undo; this is the last step, so when it has succeeded
    there is nothing after it that could fail.
    """

    def execute(self, instance_uuid: str, host: str) -> None:
        with self.svc.db.write() as session:
            if not instances_db.update_if(
                    session, instance_uuid,
                    {"vm_state": vm_states.ACTIVE, "task_state": None,
                     "power_state": power_state.RUNNING, "launched_at": utcnow(),
                     "progress": 100},
                    expected_task_state=task_states.SPAWNING):
                if already_ended(session, instance_uuid, "create"):
                    return  # done before a crash; the result was not saved
                raise exception.InstanceGone(instance_id=instance_uuid)
            note = notify(self.svc, session, session.get(Instance, instance_uuid), "create",
                          "end")
        publish(self.svc, note)
        LOG.info("instance %s is ACTIVE on %s", instance_uuid, host)


ADMISSION_LAST_STEP = "launch.create-instance-record"


def get_flow(services: Services, max_attempts: int = 3, poll_attempts: int = 30
             ) -> graph_flow.Flow:
    """Build the launch graph (inputs: ``instance_uuid``, ``request``)."""
    validate = ValidateRequest(services, "launch.validate-request")
    quota = CheckQuota(services, "launch.check-quota")
    create = CreateInstanceRecord(services, ADMISSION_LAST_STEP)
    wait = linear_flow.Flow(
        "launch.wait",
        retry=Polls(poll_attempts, name="launch.poll", revert_all=False),
    ).add(WaitForRunning(services, "launch.wait-for-running"))
    build = linear_flow.Flow("launch.build", retry=RescheduleRetry(max_attempts)).add(
        SelectDestinations(services, "launch.select-destinations"),
        ClaimResources(services, "launch.claim-resources"),
        CacheImage(services, "launch.cache-image"),
        CreateDisk(services, "launch.create-disk"),
        DefineDomain(services, "launch.define-domain"),
        PowerOn(services, "launch.power-on"),
        wait,
    )
    active = MarkActive(services, "launch.mark-active")
    flow = graph_flow.Flow("launch").add(validate, quota, create, build, active)
    flow.link(quota, create)
    flow.link(create, build)
    return flow
