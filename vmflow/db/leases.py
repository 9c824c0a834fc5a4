"""Who drives a flow run: a lease with an epoch.

A conductor drives a run only while it holds the run's lease.  Claiming bumps
the run's epoch, and every save of the run's state by the holder checks the
epoch in the same transaction (:meth:`FlowStore.fenced`), so a conductor that
stalled past its lease and woke up again cannot write over the new owner's
progress: its next save fails and it stops.  A crashed holder stops renewing;
once the lease has expired any conductor may claim the run and resume it from
its persisted state.  Runs nobody holds that should be running (a message lost
by the broker, a conductor that died) are found by :func:`orphans`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import Session
from taskflow import states as tf_states

from vmflow.db.models import FlowRun, utcnow

# A flow run that has ended.
RUN_FINISHED = frozenset({tf_states.SUCCESS, tf_states.REVERTED, tf_states.FAILURE})


class LeaseLost(Exception):
    """Another conductor holds the flow run now; this one must stop driving it."""


def unfinished():
    """The condition on flow runs that have not ended (never run, or running)."""
    return or_(FlowRun.state.is_(None), FlowRun.state.not_in(list(RUN_FINISHED)))


def claim(session: Session, flow_id: str, owner: str, ttl: float) -> tuple[int, int] | None:
    """Take the run's lease if nobody holds it (or the holder's has expired):
    the new epoch and how many times the run has been taken (this time
    included); None if someone else holds it or the run has ended."""
    now = utcnow()
    row = session.execute(
        update(FlowRun)
        .where(FlowRun.id == flow_id, unfinished(),
               or_(FlowRun.owner.is_(None), FlowRun.lease_expires_at.is_(None),
                   FlowRun.lease_expires_at < now))
        .values(owner=owner, epoch=FlowRun.epoch + 1, attempts=FlowRun.attempts + 1,
                lease_expires_at=now + dt.timedelta(seconds=ttl))
        .returning(FlowRun.epoch, FlowRun.attempts)
        .execution_options(synchronize_session=False)).first()
    return None if row is None else (row.epoch, row.attempts)


def renew(session: Session, owner: str, held: dict[str, int], ttl: float) -> set[str]:
    """Extend the leases this owner holds; the ids of those it has lost."""
    until = utcnow() + dt.timedelta(seconds=ttl)
    lost = set()
    for flow_id, epoch in held.items():
        kept = session.execute(
            update(FlowRun).where(FlowRun.id == flow_id, FlowRun.owner == owner,
                                  FlowRun.epoch == epoch)
            .values(lease_expires_at=until)
            .execution_options(synchronize_session=False)).rowcount
        if not kept:
            lost.add(flow_id)
    return lost


def release(session: Session, flow_id: str, owner: str, epoch: int) -> None:
    """Give the lease up (the run has ended, or stopped here)."""
    session.execute(
        update(FlowRun).where(FlowRun.id == flow_id, FlowRun.owner == owner,
                              FlowRun.epoch == epoch)
        .values(owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False))


def check(session: Session, flow_id: str, epoch: int) -> None:
    """Raise LeaseLost unless the run is still at ``epoch``.

    An UPDATE, not a SELECT: on PostgreSQL it takes the run's row lock, so a
    claim by another conductor cannot slip in before this transaction commits.
    """
    held = session.execute(
        update(FlowRun).where(FlowRun.id == flow_id, FlowRun.epoch == epoch)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
    if not held:
        raise LeaseLost(f"flow run {flow_id} is no longer at epoch {epoch}")


def set_state(session: Session, flow_id: str, state: str) -> None:
    """Set the run's state without driving it (a run given up, or made
    resumable again)."""
    session.execute(update(FlowRun).where(FlowRun.id == flow_id).values(state=state)
                    .execution_options(synchronize_session=False))


def request_rollback(session: Session, flow_id: str) -> bool:
    """Record an operator's request to roll the run back; False if it has ended
    in a way that leaves nothing to roll back (SUCCESS, REVERTED).

    A run that FAILED (a revert failed) becomes RUNNING again, so that a
    conductor takes it (as any interrupted run) and runs the failed reverts
    again.  The request also gives the run a fresh budget of attempts.
    """
    return bool(session.execute(
        update(FlowRun)
        .where(FlowRun.id == flow_id,
               or_(unfinished(), FlowRun.state == tf_states.FAILURE))
        .values(rollback_requested_at=utcnow(), attempts=0,
                state=case((FlowRun.state == tf_states.FAILURE, tf_states.RUNNING),
                           else_=FlowRun.state))
        .execution_options(synchronize_session=False)).rowcount)


def rollbacks_requested(session: Session, flow_ids: Iterable[str]) -> set[str]:
    """Which of these runs an operator has asked to roll back."""
    ids = list(flow_ids)
    if not ids:
        return set()
    return set(session.scalars(select(FlowRun.id).where(
        FlowRun.id.in_(ids), FlowRun.rollback_requested_at.is_not(None))))


def orphans(session: Session, grace: float, exclude: Iterable[str] = ()) -> list[str]:
    """Unfinished runs nobody drives: their holder's lease has expired, or nobody
    ever claimed them and they are older than ``grace`` seconds (their message
    was lost, or every conductor was down)."""
    now = utcnow()
    stale = now - dt.timedelta(seconds=grace)
    query = select(FlowRun.id).where(
        unfinished(),
        or_(and_(FlowRun.owner.is_not(None), FlowRun.lease_expires_at < now),
            and_(FlowRun.owner.is_(None), FlowRun.updated_at < stale)))
    skip = set(exclude)
    return [flow_id for flow_id in session.scalars(query) if flow_id not in skip]
