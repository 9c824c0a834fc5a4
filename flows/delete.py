"""Delete: tear the guest down wherever it may be, release claims, soft-delete.

Graph::

    begin -> find-hosts -> destroy-guests -> delete-disks -> release-claims
          -> mark-deleted

Works from any state, including while a launch is still running: the launch's
own compare-and-swap steps see ``deleting`` and revert what they did, and every
step here tolerates "already gone".  Hosts are looked up when the step runs
(the instance's host and every host holding a claim for it), not when the
delete was asked for, so a host chosen in the meantime is not missed.

A step that fails leaves the instance in ERROR with a fault; the user may
delete again, and every step is safe to repeat.
"""

from __future__ import annotations

import logging
from typing import Any

from taskflow.patterns import graph_flow

from flows import evacuate, shelve
from flows.base import (
    Services,
    VmTask,
    failed,
    fault_from,
    first_failure,
    notify,
    outcome_unknown,
    publish,
)
from vmflow.db import claims
from vmflow.db import instances as instances_db
from vmflow.db.models import Instance
from vmflow.states import task_states, vm_states

LOG = logging.getLogger(__name__)


class BeginDelete(VmTask):
    """Make sure the instance is marked deleting (the API normally did it).

    Revert: a later step failed, so the instance goes to ERROR (task_state
    cleared) with a fault, from where it can be deleted again.
    """

    def execute(self, instance_uuid: str) -> None:
        with self.svc.db.write() as session:
            instances_db.update_if(session, instance_uuid,
                                   {"task_state": task_states.DELETING})
            instance = session.get(Instance, instance_uuid)
            note = notify(self.svc, session, instance, "delete", "start") if instance else None
        publish(self.svc, note)

    def revert(self, result: Any, instance_uuid: str, flow_failures: dict | None = None,
               **_kw: Any) -> None:
        if failed(result) and not outcome_unknown(result):
            return
        code, message, details = fault_from(first_failure(flow_failures))
        note = None
        with self.svc.db.write() as session:
            if instances_db.update_if(session, instance_uuid,
                                      {"vm_state": vm_states.ERROR, "task_state": None},
                                      expected_task_state=task_states.DELETING):
                instance = session.get(Instance, instance_uuid)
                instances_db.add_fault(session, instance_uuid, code=code,
                                       message=f"Delete failed: {message}", details=details,
                                       host=instance.host if instance else None)
                note = notify(self.svc, session, instance, "delete", "error", fault=message)
        publish(self.svc, note)


class FindHosts(VmTask):
    """Every host that may hold something of the instance: its host and its
    claims (its migrations' included: a resize's source keeps a guest).

    Revert: nothing to undo (reads only).
    """

    default_provides = "hosts"

    def execute(self, instance_uuid: str) -> list[str]:
        with self.svc.db.read() as session:
            instance = session.get(Instance, instance_uuid)
            hosts = {a.host for a in claims.held_for(session, instance_uuid)}
            # The dead host an instance was evacuated from is not asked (it is
            # down); it destroys its copy when it is back (flows/evacuate.py).
            hosts -= evacuate.stale_hosts(session, instance_uuid)
            if instance is not None and instance.host:
                hosts.add(instance.host)
        return sorted(hosts)


class DestroyGuests(VmTask):
    """Stop and undefine the guest on each host (absent is fine).

    Revert: nothing to undo; a guest torn down for deletion is not brought
    back: the instance goes to ERROR and the delete can be repeated.
    """

    def execute(self, instance_uuid: str, hosts: list[str]) -> None:
        for host in hosts:
            self.svc.compute.call(host, "undefine", instance_uuid=instance_uuid)


class DeleteDisks(VmTask):
    """Remove the instance's disks on each host (absent is fine).

    Revert: nothing to undo (see destroy-guests).
    """

    def execute(self, instance_uuid: str, hosts: list[str]) -> None:
        for host in hosts:
            self.svc.compute.call(host, "delete_disks", instance_uuid=instance_uuid)


class ReleaseClaims(VmTask):
    """Release every claim the instance holds, and those its migrations hold
    (the source of a resize waiting for confirm).

    Revert: nothing to undo; the guest and disks are gone, so the resources
    really are free.
    """

    def execute(self, instance_uuid: str) -> None:
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            flavor = instance.flavor if instance is not None else None
            released = [host for consumer in claims.consumers_of(session, instance_uuid)
                        for host in claims.release(session, consumer)]
        if flavor and self.svc.scheduler is not None:
            for host in released:
                self.svc.scheduler.cache.consumed(host, claims.Resources.of_flavor(flavor), -1)


class MarkDeleted(VmTask):
    """Soft-delete the instance: it disappears from the API, its row stays.  A
    shelved instance's image goes with it (Nova deletes it too).

    Revert: nothing to undo; this is the last step.
    """

    def execute(self, instance_uuid: str) -> None:
        with self.svc.db.write() as session:
            note = None
            location = None
            if instances_db.mark_deleted(session, instance_uuid):
                instance = session.get(Instance, instance_uuid)
                session.refresh(instance)
                location = shelve.drop_shelved_image(session, instance)
                note = notify(self.svc, session, instance, "delete", "end")
        publish(self.svc, note)
        shelve.remove_image_file(self.svc, location)
        LOG.info("instance %s deleted", instance_uuid)


def get_flow(services: Services) -> graph_flow.Flow:
    """Build the delete graph (input: ``instance_uuid``)."""
    begin = BeginDelete(services, "delete.begin")
    find = FindHosts(services, "delete.find-hosts")
    destroy = DestroyGuests(services, "delete.destroy-guests")
    disks = DeleteDisks(services, "delete.delete-disks")
    release = ReleaseClaims(services, "delete.release-claims")
    mark = MarkDeleted(services, "delete.mark-deleted")
    flow = graph_flow.Flow("delete").add(begin, find, destroy, disks, release, mark)
    flow.link(begin, find)
    flow.link(destroy, disks)
    flow.link(disks, release)
    flow.link(release, mark)
    return flow
