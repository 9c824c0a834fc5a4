"""Instance rows: creation, compare-and-swap state changes, faults, soft delete."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.db import leases, moves
from vmflow.db.models import FlowRun, Instance, InstanceFault, Migration, utcnow
from vmflow.states import power_state, vm_states

_ANY = object()
_STOPPED_ON_ITS_OWN = frozenset({power_state.SHUTDOWN, power_state.CRASHED,
                                 power_state.NOSTATE})


def get(session: Session, instance_uuid: str, *, project_id: str | None = None,
        include_deleted: bool = False) -> Instance:
    row = session.get(Instance, instance_uuid)
    if (row is None or (row.deleted and not include_deleted)
            or (project_id is not None and row.project_id != project_id)):
        raise exception.InstanceNotFound(instance_id=instance_uuid)
    return row


def list_(session: Session, *, project_id: str | None = None, name: str | None = None,
          limit: int | None = None) -> list[Instance]:
    query = select(Instance).where(Instance.deleted.is_(False))
    if project_id is not None:
        query = query.where(Instance.project_id == project_id)
    if name:
        query = query.where(Instance.name == name)
    query = query.order_by(Instance.created_at.desc(), Instance.uuid)
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def update_if(session: Session, instance_uuid: str, values: dict[str, Any], *,
              expected_task_state: Any = _ANY, expected_vm_state: Any = _ANY) -> bool:
    """Update the instance only if it is in the expected state; True on success.

    This is the compare-and-swap every state change goes through: one UPDATE
    whose WHERE clause carries the expectation, and its row count the verdict.
    ``expected_*`` accepts a value, None, or an iterable of values.
    """
    query = update(Instance).where(Instance.uuid == instance_uuid,
                                   Instance.deleted.is_(False))
    for column, expected in ((Instance.task_state, expected_task_state),
                             (Instance.vm_state, expected_vm_state)):
        if expected is _ANY:
            continue
        if isinstance(expected, (list, tuple, set, frozenset)):
            options = list(expected)
            clause = column.in_([o for o in options if o is not None])
            if None in options:
                clause = clause | column.is_(None)
            query = query.where(clause)
        elif expected is None:
            query = query.where(column.is_(None))
        else:
            query = query.where(column == expected)
    values = dict(values)
    values.setdefault("updated_at", utcnow())
    result = session.execute(query.values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1


def add_fault(session: Session, instance_uuid: str, *, code: int, message: str,
              details: str = "", host: str | None = None) -> None:
    session.add(InstanceFault(instance_uuid=instance_uuid, code=code, message=message[:255],
                              details=details, host=host))


def latest_faults(session: Session, uuids: Iterable[str]) -> dict[str, InstanceFault]:
    uuids = list(uuids)
    if not uuids:
        return {}
    newest = (select(InstanceFault.instance_uuid, func.max(InstanceFault.id).label("id"))
              .where(InstanceFault.instance_uuid.in_(uuids))
              .group_by(InstanceFault.instance_uuid).subquery())
    rows = session.scalars(select(InstanceFault).join(newest, InstanceFault.id == newest.c.id))
    return {row.instance_uuid: row for row in rows}


def mark_deleted(session: Session, instance_uuid: str) -> bool:
    """Soft-delete: the row stays for usage records but disappears from the API."""
    now = utcnow()
    return update_if(session, instance_uuid, {
        "vm_state": vm_states.DELETED, "task_state": None, "power_state": 0,
        "deleted": True, "deleted_at": now, "terminated_at": now,
    })


def sync_power_states(session: Session, host: str, states: dict[str, int],
                      taken_at: dt.datetime) -> list[tuple[Instance, dict[str, Any]]]:
    """Record what the hypervisor of ``host`` reported at ``taken_at``.

    Only idle instances (no task_state) unchanged since the report was taken
    are touched, so an operation that just ended is never undone by an older
    report.  A guest that stopped on its own (shut down from inside, crashed,
    or vanished) makes an ACTIVE instance STOPPED, as Nova's power-state sync
    does; otherwise only power_state follows the hypervisor.  Returns each
    changed instance with its state before.
    """
    changed = []
    rows = session.scalars(select(Instance).where(
        Instance.host == host, Instance.deleted.is_(False), Instance.task_state.is_(None),
        Instance.updated_at < taken_at))
    for instance in rows:
        actual = int(states.get(instance.uuid, power_state.NOSTATE))
        if actual == instance.power_state:
            continue
        before = {"vm_state": instance.vm_state, "power_state": instance.power_state}
        values: dict[str, Any] = {"power_state": actual}
        if instance.vm_state == vm_states.ACTIVE and actual in _STOPPED_ON_ITS_OWN:
            values["vm_state"] = vm_states.STOPPED
        if update_if(session, instance.uuid, values, expected_task_state=None,
                     expected_vm_state=instance.vm_state):
            changed.append((instance, before))
    return changed


def foreign_guests(session: Session, host: str, guests: Iterable[str],
                   taken_at: dt.datetime) -> tuple[list[str], list[str]]:
    """Guests on ``host`` that should not be there, as reported at ``taken_at``.

    Returns ``(unknown, elsewhere)``: guests of no live instance (never known,
    or deleted), and guests of instances that now live on another host (moved
    or evacuated while this host was away).  Instances with an operation under
    way, or changed since the report was taken, are left to that operation, and
    so are those with a migration from or to this host not yet over (a resize
    waiting for confirm keeps its source guest).
    """
    guests = list(guests)
    if not guests:
        return [], []
    rows = {i.uuid: i for i in session.scalars(select(Instance).where(
        Instance.uuid.in_(guests)))}
    unknown, elsewhere = [], []
    moving = _moving_through(session, host, rows)
    for uuid in guests:
        row = rows.get(uuid)
        if row is None or (row.deleted and row.updated_at < taken_at):
            unknown.append(uuid)
        elif (not row.deleted and row.task_state is None and row.host != host
              and row.updated_at < taken_at and uuid not in moving):
            elsewhere.append(uuid)
    return unknown, elsewhere


def _moving_through(session: Session, host: str, rows: dict[str, Instance]) -> set[str]:
    """Instances with a migration under way from or to ``host``: a resize
    waiting for confirm keeps its source guest (flows/migrate.py)."""
    if not rows:
        return set()
    return set(session.scalars(select(Migration.instance_uuid).where(
        Migration.instance_uuid.in_(list(rows)), Migration.status.not_in(moves.FINISHED),
        (Migration.source_compute == host) | (Migration.dest_compute == host))))


def stranded(session: Session, grace: float, host: str | None = None) -> list[Instance]:
    """Instances held by an operation that nobody will finish: a task_state set
    more than ``grace`` seconds ago, and no unfinished flow run for them (the
    API died between taking the task_state and recording the run)."""
    live = select(FlowRun.id).where(FlowRun.instance_uuid == Instance.uuid,
                                    leases.unfinished())
    query = select(Instance).where(
        Instance.deleted.is_(False), Instance.task_state.is_not(None),
        Instance.updated_at < utcnow() - dt.timedelta(seconds=grace), ~live.exists())
    if host is not None:
        query = query.where(Instance.host == host)
    return list(session.scalars(query))
