"""What every flow's tasks share: their services and a few helpers."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from sqlalchemy import select
from taskflow import retry, task
from taskflow.types import failure as tf_failure

from scheduler.manager import Scheduler
from vmflow import context, exception
from vmflow.config import Config
from vmflow.db import instances as instances_db
from vmflow.db.models import Instance, Notification
from vmflow.db.session import Database
from vmflow.faults import crash
from vmflow.notifications import Notifier
from vmflow.states import task_states, vm_states

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Services:
    """Handles a task needs; never persisted (the factory is given them again)."""

    config: Config
    db: Database
    compute: Any = None  # workers.rpc.ComputeClient (conductor only)
    scheduler: Scheduler | None = None  # conductor only
    notifier: Notifier | None = None


class VmTask(task.Task):
    """A task with access to the services; names are passed explicitly (stable)."""

    def __init__(self, services: Services, name: str, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.svc = services

    def pre_execute(self) -> None:
        """Refuse to start when an operator has asked for the run to be rolled back;
        fail here when configuration asks (tests and demos of every revert path)."""
        context.set_executing(True)
        context.set_step(self.name)
        if context.rollback_requested():
            raise exception.RollbackRequested(step=self.name)
        if self.name in self.svc.config.inject_step_failures:
            raise exception.InjectedFailure(step=self.name)

    def post_execute(self) -> None:
        """Die here, after the step's effect and before its result is saved, when
        configuration asks (crash tests: ``inject_crash = "<step>:before-save"``)."""
        context.set_executing(False)
        context.set_step(None)
        if self.svc.config.inject_crash == f"{self.name}:before-save":
            crash(self.name)

    def pre_revert(self) -> None:
        context.set_step(f"{self.name} (revert)")

    def post_revert(self) -> None:
        """Die here, after the step's revert and before it is saved, when
        configuration asks (``inject_crash = "<step>:revert-before-save"``)."""
        context.set_step(None)
        if self.svc.config.inject_crash == f"{self.name}:revert-before-save":
            crash(f"{self.name} (revert)")



def notify(services: Services, session, instance: Instance, operation: str, phase: str,
           **kwargs: Any) -> dict[str, Any] | None:
    """Record ``instance.<operation>.<phase>`` in ``session``'s transaction; pass
    the result to :func:`publish` once that transaction has committed."""
    if services.notifier is None:
        return None
    return services.notifier.add(session, instance, operation, phase, **kwargs)


def publish(services: Services, message: dict[str, Any] | None) -> None:
    if services.notifier is not None:
        services.notifier.publish(message)


def already_ended(session, instance_uuid: str, operation: str) -> bool:
    """Whether this request's ``instance.<operation>.end`` is recorded.

    A last step that committed and then died before its result was saved runs
    again on resume; its compare-and-swap then fails, and this tells "already
    done" from "taken over by someone else".
    """
    return session.scalar(select(Notification.id).where(
        Notification.instance_uuid == instance_uuid,
        Notification.event_type == f"instance.{operation}.end",
        Notification.request_id == context.get_request_id()).limit(1)) is not None


def failed(result: Any) -> bool:
    """True when a revert receives the task's own failure instead of its result."""
    return isinstance(result, tf_failure.Failure)


# Failures after which nobody knows whether the step's effect happened: the host
# did not answer in time (it may have acted later), or the step was cut short.
OUTCOME_UNKNOWN = (exception.ComputeUnavailable, exception.StepInterrupted)


def outcome_unknown(result: Any) -> bool:
    """True when the step failed without knowing whether it acted."""
    return failed(result) and result.check(*OUTCOME_UNKNOWN) is not None


def may_have_acted(result: Any) -> bool:
    """Whether a revert must undo the step's effect: the step succeeded, or it
    failed in a way that leaves its effect unknown (undoing is idempotent)."""
    return not failed(result) or outcome_unknown(result)


class Polls(retry.Times):
    """Repeat a check up to ``attempts`` times, then revert the whole operation
    (or only the loop: ``revert_all=False``).  An operator's rollback is not
    worth another poll: it reverts the whole operation at once."""

    def __init__(self, attempts: int, name: str, revert_all: bool = True) -> None:
        super().__init__(attempts, name=name, provides="poll_attempt", revert_all=revert_all)

    def on_failure(self, history: retry.History, *args: Any, **kwargs: Any) -> str:
        last = len(history) - 1
        if any(history.caused_by(cls, index=last) for cls in ROLLBACK):
            return retry.REVERT_ALL
        return super().on_failure(history, *args, **kwargs)


# An operator's rollback (os-flows): never retried, never rescheduled.
ROLLBACK = (exception.RollbackRequested, exception.StepInterrupted)


def first_failure(flow_failures: dict[str, tf_failure.Failure] | None
                  ) -> tf_failure.Failure | None:
    if not flow_failures:
        return None
    return next(iter(flow_failures.values()))


def fault_from(fail: tf_failure.Failure | None) -> tuple[int, str, str]:
    """(code, message, details) of a failure, for an instance fault."""
    if fail is None:
        return 500, "Unknown failure", ""
    code = 500
    exc = fail.exception
    if isinstance(exc, exception.VmflowError):
        code = exc.code
    message = fail.exception_str or fail.exception_type_names[0]
    return code, message, fail.pformat(traceback=True)


def record_error(services: Services, instance_uuid: str, fail: tf_failure.Failure | None,
                 *, operation: str, host: str | None = None) -> None:
    """Put the instance in ERROR with a fault (unless it is being deleted)."""
    code, message, details = fault_from(fail)
    with services.db.write() as session:
        instance = session.get(Instance, instance_uuid)
        if instance is None or instance.deleted or instance.task_state == task_states.DELETING:
            return  # a delete owns the instance now; it must not come back as ERROR
        if not instances_db.update_if(session, instance_uuid,
                                      {"vm_state": vm_states.ERROR, "task_state": None},
                                      expected_task_state=instance.task_state):
            return
        instances_db.add_fault(session, instance_uuid, code=code, message=message,
                               details=details, host=host or instance.host)
        session.refresh(instance)
        note = notify(services, session, instance, operation, "error", fault=message)
    publish(services, note)
    LOG.warning("instance %s is in ERROR: %s", instance_uuid, message)
