"""Lock / unlock: decided and done in the API (no host is involved), but still a
flow run, so that the instance action, its event and the notifications are
recorded like every other operation's.

Graphs::

    lock:   lock.set-lock
    unlock: unlock.clear-lock

A locked instance refuses its owner's actions with 409 (the API checks);
an admin may act on it and unlock it.  Nova's rule for who may unlock: a lock
set by an admin (for another project) can only be lifted by an admin.
"""

from __future__ import annotations

from typing import Any

from taskflow.patterns import linear_flow

from flows.base import Services, VmTask, notify, publish
from vmflow import exception
from vmflow.db import instances as instances_db
from vmflow.db.models import Instance
from vmflow.notifications import state_of


class _SetLock(VmTask):
    operation = ""

    def _change(self, instance_uuid: str, values: dict[str, Any]) -> None:
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            if instance is None or instance.deleted:
                raise exception.InstanceNotFound(instance_id=instance_uuid)
            before = state_of(instance)
            instances_db.update_if(session, instance_uuid, values)
            session.refresh(instance)
            messages = [notify(self.svc, session, instance, self.operation, phase,
                               before=before, extra={"locked": instance.locked})
                        for phase in ("start", "end")]
        for message in messages:
            publish(self.svc, message)


class SetLock(_SetLock):
    """Lock the instance, noting by whom (owner or admin) and why.

    Revert: nothing to undo; this is the only step.
    """

    operation = "lock"

    def execute(self, instance_uuid: str, locked_by: str, reason: str | None) -> None:
        self._change(instance_uuid, {"locked": True, "locked_by": locked_by,
                                     "locked_reason": reason})


class ClearLock(_SetLock):
    """Unlock the instance.

    Revert: nothing to undo; this is the only step.
    """

    operation = "unlock"

    def execute(self, instance_uuid: str) -> None:
        self._change(instance_uuid, {"locked": False, "locked_by": None,
                                     "locked_reason": None})


def get_lock_flow(services: Services) -> linear_flow.Flow:
    return linear_flow.Flow("lock").add(SetLock(services, "lock.set-lock"))


def get_unlock_flow(services: Services) -> linear_flow.Flow:
    return linear_flow.Flow("unlock").add(ClearLock(services, "unlock.clear-lock"))
