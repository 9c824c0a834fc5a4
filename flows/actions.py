"""Building blocks of the operations on an existing instance (stop, pause, ...).

Every such flow has the same frame::

    <op>.begin -> host and database steps of the operation -> <op>.finish

The API has already set the operation's task_state with a compare-and-swap
(which is how a second, concurrent action gets 409).  ``begin`` confirms the
instance is still the operation's, notes its state before and emits
``instance.<op>.start``; ``finish`` is the only step that changes vm_state, in
one compare-and-swap that also clears task_state, and emits ``.end``.  So a
failure anywhere before ``finish`` leaves vm_state as it was: the host steps
revert their own effects in reverse order, and ``begin``'s revert clears
task_state, records a fault and emits ``.error``.  If a host step cannot undo
its effect, the instance goes to ERROR with a fault saying so.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from taskflow.patterns import linear_flow

from flows.base import (
    Polls,
    Services,
    VmTask,
    already_ended,
    failed,
    fault_from,
    first_failure,
    may_have_acted,
    notify,
    publish,
)
from vmflow import exception
from vmflow.db import flowstore
from vmflow.db import instances as instances_db
from vmflow.db.models import Instance
from vmflow.notifications import state_of
from vmflow.states import power_state, task_states, vm_states
from vmflow.states.actions import ACTIONS, Action

LOG = logging.getLogger(__name__)


class Begin(VmTask):
    """Confirm the instance is this operation's, note its state, notify start.

    Provides ``before`` (the instance's state) and ``host`` (where its guest is).

    Revert: the operation failed, and every later step has undone its effect:
    clear task_state (vm_state was never changed), record a fault, notify
    error.  A delete that took over in the meantime owns the instance: then
    nothing is changed.
    """

    default_provides = ("before", "host")

    def __init__(self, services: Services, action: Action) -> None:
        super().__init__(services, f"{action.name}.begin")
        self.action = action

    @property
    def held(self) -> str | tuple[str, ...] | None:
        """The task_state(s) the operation may hold when it fails (an operation
        that moves through several, as a resize, names them all)."""
        return self.action.task_state

    def execute(self, instance_uuid: str) -> tuple[dict[str, Any], str | None]:
        with self.svc.db.write() as session:
            instance = session.get(Instance, instance_uuid)
            if instance is None or instance.deleted or (
                    instance.task_state != self.action.task_state):
                raise exception.InstanceGone(instance_id=instance_uuid)
            before = state_of(instance)
            message = notify(self.svc, session, instance, self.action.name, "start")
        publish(self.svc, message)
        return before, instance.host

    def revert(self, result: Any, instance_uuid: str, flow_failures: dict | None = None,
               **_kw: Any) -> None:
        code, message, details = fault_from(first_failure(flow_failures))
        with self.svc.db.write() as session:
            if not instances_db.update_if(session, instance_uuid, {"task_state": None},
                                          expected_task_state=self.held):
                return  # not ours any more (deleted, or never was)
            flowstore.mark_reverting(session, instance_uuid, self.action.name)
            instance = session.get(Instance, instance_uuid)
            instances_db.add_fault(session, instance_uuid, code=code,
                                   message=f"{self.action.instance_action} failed: {message}",
                                   details=details, host=instance.host)
            note = notify(self.svc, session, instance, self.action.name, "error",
                           before=None if failed(result) else result[0], fault=message)
        publish(self.svc, note)
        LOG.warning("%s of %s failed and was rolled back: %s", self.action.name,
                    instance_uuid, message)


class Finish(VmTask):
    """Set the operation's end state and clear task_state, in one compare-and-swap;
    notify end.

    Revert: nothing to undo; this is the last step.
    """

    def __init__(self, services: Services, action: Action) -> None:
        super().__init__(services, f"{action.name}.finish")
        self.action = action

    def end_state(self, before: dict[str, Any], **inputs: Any) -> dict[str, Any]:
        """The instance's columns once the operation is done."""
        values: dict[str, Any] = {"task_state": None}
        if self.action.vm_state is not None:
            values["vm_state"] = self.action.vm_state
        if self.action.power_state is not None:
            values["power_state"] = self.action.power_state
        return values

    def execute(self, instance_uuid: str, before: dict[str, Any], **inputs: Any) -> None:
        values = self.end_state(before, **inputs)
        with self.svc.db.write() as session:
            if not instances_db.update_if(session, instance_uuid, values,
                                          expected_task_state=self.action.task_state):
                if already_ended(session, instance_uuid, self.action.name):
                    return  # done before a crash; the result was not saved
                raise exception.InstanceGone(instance_id=instance_uuid)
            instance = session.get(Instance, instance_uuid)
            message = notify(self.svc, session, instance, self.action.name, "end",
                             before=before)
        publish(self.svc, message)
        LOG.info("%s of %s done: %s", self.action.name, instance_uuid,
                 values.get("vm_state", before["vm_state"]))


class HostStep(VmTask):
    """A step on the instance's host.  Subclasses name the compute step to run
    and, in their docstring, the revert.

    A revert undoes the step's effect when the step succeeded and also when its
    outcome is unknown (the host did not answer in time, or the step was cut
    short by an operator's rollback or its conductor's death): undoing is
    idempotent, leaving an effect in place is not safe (``may_have_acted``).

    ``undo`` is best effort, as every revert: it is skipped when a delete has
    taken the instance over (the guest is being torn down anyway); when the host
    cannot do it, the instance goes to ERROR with a fault, since its guest is
    no longer in the state its vm_state says.
    """

    method: str = ""

    def call(self, host: str, method: str, **kwargs: Any) -> Any:
        if not host:
            raise exception.Invalid("The instance has no host.")
        return self.svc.compute.call(host, method, **kwargs)

    def execute(self, instance_uuid: str, host: str) -> Any:
        return self.call(host, self.method, instance_uuid=instance_uuid)

    def undo(self, host: str, method: str, instance_uuid: str, /, **kwargs: Any) -> None:
        """Run ``method`` on ``host`` with ``kwargs`` (default: the instance's uuid,
        which ``kwargs`` may repeat)."""
        with self.svc.db.read() as session:
            instance = session.get(Instance, instance_uuid)
            if instance is None or instance.task_state == task_states.DELETING:
                return
        try:
            self.call(host, method, **(kwargs or {"instance_uuid": instance_uuid}))
        except exception.VmflowError as err:
            LOG.error("could not undo %s of %s on %s: %s", self.name, instance_uuid, host, err)
            with self.svc.db.write() as session:
                instances_db.update_if(session, instance_uuid, {"vm_state": vm_states.ERROR},
                                       expected_task_state=task_states.TRANSITIONAL - {
                                           task_states.DELETING})
                instances_db.add_fault(session, instance_uuid, code=500,
                                       message=f"Could not undo {self.name}: {err}",
                                       host=host)


class PowerOn(HostStep):
    """Start the guest (from its saved memory if it was suspended).

    Revert: power the guest off again, unless it was running before the
    operation (a reboot that fails later leaves it running).
    """

    method = "power_on"

    def revert(self, result: Any, instance_uuid: str, host: str, before: dict[str, Any],
               **_kw: Any) -> None:
        if may_have_acted(result) and before["power_state"] != "RUNNING":
            self.undo(host, "power_off", instance_uuid)


class PowerOff(HostStep):
    """Pull the plug on the guest (it may already be off).

    Revert: start the guest again if it was running before the operation.
    """

    method = "power_off"

    def revert(self, result: Any, instance_uuid: str, host: str, before: dict[str, Any],
               **_kw: Any) -> None:
        if may_have_acted(result) and before["power_state"] == "RUNNING":
            self.undo(host, "power_on", instance_uuid)


class RequestShutdown(PowerOff):
    """Ask the guest to shut down (ACPI); ``wait-for-shutoff`` waits for it.

    Revert: start the guest again if it was running before the operation.
    """

    method = "shutdown"


def backoff(attempt: int) -> float:
    """Seconds to wait before poll attempt ``attempt`` (1: none)."""
    return 0.0 if attempt <= 1 else min(0.05 * 2 ** (attempt - 2), 2.0)


def attempts_within(timeout: float) -> int:
    """How many polls with :func:`backoff` fit in ``timeout`` seconds (at least 1)."""
    attempts, waited = 1, 0.0
    while waited + backoff(attempts + 1) <= timeout:
        attempts += 1
        waited += backoff(attempts)
    return attempts


class WaitForShutoff(HostStep):
    """Check that the guest is off; the ``<op>.poll-off`` retry repeats the check
    with backoff.  At the last attempt (``shutdown_timeout`` has passed) the
    guest is powered off instead, as Nova does after its graceful timeout.

    Revert: nothing to undo (request-shutdown's revert restarts the guest).
    """

    default_provides = "forced"

    def __init__(self, services: Services, name: str, attempts: int) -> None:
        super().__init__(services, name)
        self.attempts = attempts

    def execute(self, instance_uuid: str, host: str, poll_attempt: int) -> bool:
        time.sleep(backoff(poll_attempt))
        state = self.call(host, "power_state", instance_uuid=instance_uuid)
        if state in (power_state.SHUTDOWN, power_state.NOSTATE, power_state.CRASHED):
            return False
        if poll_attempt < self.attempts:
            raise exception.HypervisorError(
                host=host, step=self.name,
                reason=f"guest is {power_state.NAMES.get(state, state)}, not yet off")
        LOG.warning("guest %s did not shut down within the timeout; powering it off",
                    instance_uuid)
        self.call(host, "power_off", instance_uuid=instance_uuid)
        return True


class WaitForRunning(HostStep):
    """Check that the guest reports RUNNING; the ``<op>.poll-on`` retry repeats it
    with backoff.

    Revert: nothing to undo (reads only).
    """

    def execute(self, instance_uuid: str, host: str, poll_attempt: int) -> None:
        time.sleep(backoff(poll_attempt))
        state = self.call(host, "power_state", instance_uuid=instance_uuid)
        if state != power_state.RUNNING:
            raise exception.HypervisorError(
                host=host, step=self.name,
                reason=f"guest is {power_state.NAMES.get(state, state)}, not RUNNING")


def polled(name: str, check: VmTask, attempts: int) -> linear_flow.Flow:
    """``check`` repeated up to ``attempts`` times by the retry named ``name``; when
    they are used up, the whole operation reverts (not only this loop)."""
    return linear_flow.Flow(f"{name}-loop", retry=Polls(attempts, name=name)).add(check)


def shutdown_steps(services: Services, op: str) -> list[Any]:
    """Graceful shutdown, then forced after ``shutdown_timeout`` (stop, soft reboot)."""
    attempts = attempts_within(services.config.shutdown_timeout)
    return [RequestShutdown(services, f"{op}.request-shutdown"),
            polled(f"{op}.poll-off", WaitForShutoff(services, f"{op}.wait-for-shutoff",
                                                    attempts), attempts)]


def boot_steps(services: Services, op: str) -> list[Any]:
    """Power on and wait until the guest runs."""
    attempts = services.config.spawn_poll_attempts
    return [PowerOn(services, f"{op}.power-on"),
            polled(f"{op}.poll-on", WaitForRunning(services, f"{op}.wait-for-running"),
                   attempts)]


def frame(services: Services, name: str, *steps: Any,
          finish: type[Finish] = Finish, begin: type[Begin] = Begin) -> linear_flow.Flow:
    """``<name>.begin -> steps -> <name>.finish`` for the operation ``name``."""
    action = ACTIONS[name]
    return linear_flow.Flow(name).add(begin(services, action), *steps,
                                      finish(services, action))
