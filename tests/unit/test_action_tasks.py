"""The frame of the operations on an existing instance (flows/actions.py): begin,
finish and host steps, executed and reverted directly against real pieces."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from taskflow.types import failure

from flows import actions, pause
from vmflow import exception
from vmflow.db import instances as instances_db
from vmflow.db.models import Instance, InstanceFault, Notification
from vmflow.notifications import Notifier
from vmflow.states import power_state, task_states, vm_states
from vmflow.states.actions import ACTIONS, allows

PAUSE = ACTIONS["pause"]


@pytest.fixture
def noted(services, cfg):
    services.notifier = Notifier(cfg, None, binary="test")
    return services


def _take(services, uid: str, task_state: str) -> None:
    """What the API does before the flow: the compare-and-swap on task_state."""
    with services.db.write() as session:
        assert instances_db.update_if(session, uid, {"task_state": task_state},
                                      expected_task_state=None)


def _instance(services, uid: str) -> Instance:
    with services.db.read() as session:
        return session.get(Instance, uid)


def _notes(services, uid: str) -> list[str]:
    """The instance's pause notifications, in order."""
    with services.db.read() as session:
        return [n.event_type for n in session.scalars(
            select(Notification).where(Notification.instance_uuid == uid,
                                       Notification.event_type.like("instance.pause.%"))
            .order_by(Notification.id))]


def _fail(message: str = "boom") -> dict:
    try:
        raise exception.HypervisorError(host="compute-1", step="x", reason=message)
    except exception.HypervisorError:
        return {"x": failure.Failure()}


def test_the_state_table_allows_only_what_nova_allows():
    assert allows(ACTIONS["stop"], vm_states.ACTIVE, None)
    assert not allows(ACTIONS["stop"], vm_states.ACTIVE, task_states.PAUSING)
    assert not allows(ACTIONS["start"], vm_states.ACTIVE, None)
    assert allows(ACTIONS["reboot_hard"], vm_states.ERROR, None)
    assert not allows(ACTIONS["reboot"], vm_states.STOPPED, None)
    assert allows(ACTIONS["lock"], vm_states.PAUSED, task_states.PAUSING)  # API-decided


def test_begin_refuses_an_instance_that_is_not_the_operations(noted, running_instance):
    with pytest.raises(exception.InstanceGone):
        actions.Begin(noted, PAUSE).execute(running_instance)  # the API did not swap
    assert _notes(noted, running_instance) == []


def test_pause_frame_executes_and_records(noted, running_instance):
    uid = running_instance
    _take(noted, uid, task_states.PAUSING)
    before, host = actions.Begin(noted, PAUSE).execute(uid)
    assert before["vm_state"] == vm_states.ACTIVE and host == "compute-1"
    pause.PauseGuest(noted, "p").execute(uid, host)
    actions.Finish(noted, PAUSE).execute(uid, before)
    instance = _instance(noted, uid)
    assert (instance.vm_state, instance.task_state, instance.power_state) == (
        vm_states.PAUSED, None, power_state.PAUSED)
    assert noted.compute.managers[host].driver.power_state(uid) == power_state.PAUSED
    assert _notes(noted, uid) == ["instance.pause.start", "instance.pause.end"]


def test_finish_refuses_when_a_delete_took_over(noted, running_instance):
    uid = running_instance
    _take(noted, uid, task_states.PAUSING)
    before, _host = actions.Begin(noted, PAUSE).execute(uid)
    with noted.db.write() as session:
        instances_db.update_if(session, uid, {"task_state": task_states.DELETING})
    with pytest.raises(exception.InstanceGone):
        actions.Finish(noted, PAUSE).execute(uid, before)
    assert _instance(noted, uid).vm_state == vm_states.ACTIVE


def test_reverts_put_the_guest_back_and_begin_records_the_fault(noted, running_instance):
    uid = running_instance
    _take(noted, uid, task_states.PAUSING)
    begin = actions.Begin(noted, PAUSE)
    before, host = begin.execute(uid)
    step = pause.PauseGuest(noted, "p")
    step.execute(uid, host)
    step.revert(None, uid, host)
    begin.revert((before, host), uid, flow_failures=_fail("disk on fire"))
    instance = _instance(noted, uid)
    assert (instance.vm_state, instance.task_state) == (vm_states.ACTIVE, None)
    assert noted.compute.managers[host].driver.power_state(uid) == power_state.RUNNING
    with noted.db.read() as session:
        fault = session.scalar(select(InstanceFault).where(InstanceFault.instance_uuid == uid))
    assert fault.message.startswith("pause failed: ") and "disk on fire" in fault.message
    assert _notes(noted, uid)[-1] == "instance.pause.error"
    begin.revert((before, host), uid, flow_failures=_fail())  # twice: nothing more happens
    with noted.db.read() as session:
        assert len(list(session.scalars(select(InstanceFault).where(
            InstanceFault.instance_uuid == uid)))) == 1


def test_an_undo_the_host_cannot_do_leaves_error(noted, running_instance):
    uid = running_instance
    _take(noted, uid, task_states.PAUSING)
    begin = actions.Begin(noted, PAUSE)
    before, host = begin.execute(uid)
    step = pause.PauseGuest(noted, "p")
    step.execute(uid, host)
    noted.compute.managers[host]._inject = "unpause"  # the host refuses to undo
    step.revert(None, uid, host)  # logs and records, does not raise
    begin.revert((before, host), uid, flow_failures=_fail())
    instance = _instance(noted, uid)
    assert (instance.vm_state, instance.task_state) == (vm_states.ERROR, None)


def test_an_undo_is_skipped_once_a_delete_owns_the_instance(noted, running_instance):
    uid = running_instance
    _take(noted, uid, task_states.PAUSING)
    before, host = actions.Begin(noted, PAUSE).execute(uid)
    step = pause.PauseGuest(noted, "p")
    step.execute(uid, host)
    with noted.db.write() as session:
        instances_db.update_if(session, uid, {"task_state": task_states.DELETING})
    step.revert(None, uid, host)
    assert noted.compute.managers[host].driver.power_state(uid) == power_state.PAUSED


def test_wait_for_shutoff_forces_the_guest_off_at_the_last_attempt(noted, running_instance):
    uid = running_instance
    wait = actions.WaitForShutoff(noted, "w", attempts=2)
    with pytest.raises(exception.HypervisorError, match="not yet off"):
        wait.execute(uid, "compute-1", poll_attempt=1)  # still running: poll again
    assert wait.execute(uid, "compute-1", poll_attempt=2) is True  # forced
    assert noted.compute.managers["compute-1"].driver.power_state(uid) == power_state.SHUTDOWN
    assert wait.execute(uid, "compute-1", poll_attempt=1) is False  # off already


def test_poll_attempts_fit_the_timeout():
    assert actions.attempts_within(0) == 1
    assert actions.attempts_within(0.3) == 3  # waits 0.05 + 0.1 before the third poll
    waited = sum(actions.backoff(n) for n in range(1, actions.attempts_within(60) + 1))
    assert 58 <= waited <= 60
