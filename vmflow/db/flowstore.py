"""TaskFlow persistence in vmflow's own tables (``flow_runs``, ``flow_steps``).

TaskFlow's bundled SQLAlchemy backend stores logbooks, flow details and atom
details in generic tables, rewrites whole flow details and grows slower as a
shared logbook grows (see docs/benchmarks.md).  This backend stores exactly what
a flow run needs: one row per run (with the operation, instance, request id and
the factory arguments that rebuild the graph) and one row per atom, updated by a
single UPDATE on each state change.  The same rows are what the API and the
dashboard show an operator: one source of truth for "what is this operation
doing".

Each flow run is its own logbook (book uuid == flow uuid).
"""

from __future__ import annotations

import collections
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import or_, select, update
from taskflow import exceptions as tf_exc
from taskflow import states as tf_states
from taskflow.persistence import base, models

from vmflow.db import leases
from vmflow.db.models import FlowEvent, FlowRun, FlowStep, Instance, utcnow
from vmflow.db.session import Database

_REMEMBERED_STATES = 100_000
# TaskFlow's own bookkeeping atoms (the injector of a flow's inputs).
_TASKFLOW_INTERNAL = "_TaskFlow_"
_FINISHED = {tf_states.SUCCESS, tf_states.FAILURE, tf_states.REVERTED, tf_states.REVERT_FAILURE}


def _kind(atom_detail: models.AtomDetail) -> str:
    return models.atom_detail_type(atom_detail)


def _atom_from_row(row: FlowStep) -> models.AtomDetail:
    return models.atom_detail_class(row.kind).from_dict(dict(row.detail))


def _instance_host(flow_id: str):
    """The host of the flow run's instance, now (where its host steps run)."""
    run_instance = select(FlowRun.instance_uuid).where(FlowRun.id == flow_id).scalar_subquery()
    return select(Instance.host).where(Instance.uuid == run_instance)


def mark_reverting(session, instance_uuid: str, operation: str) -> None:
    """Say that the instance's running ``operation`` is rolling back.

    TaskFlow records a flow's state only when the engine stops; a flow whose
    first step puts the instance back (clearing task_state) calls this in the
    same transaction, so nobody sees an idle instance whose last action still
    looks like it is going well.
    """
    session.execute(update(FlowRun).where(
        FlowRun.instance_uuid == instance_uuid, FlowRun.operation == operation,
        leases.unfinished())
        .values(state=tf_states.REVERTING).execution_options(synchronize_session=False))


class FlowStore(base.Backend):
    """A TaskFlow persistence backend over :class:`vmflow.db.session.Database`."""

    def __init__(self, db: Database, fence: tuple[str, int] | None = None) -> None:
        super().__init__({})
        self.db = db
        # (flow run, epoch): every save checks the run is still at that epoch.
        self.fence = fence
        # The state this process last saved for each recent atom, so that most
        # saves know without asking whether the state changed (TaskFlow saves an
        # atom several times per state: intention, progress, results).
        self.last_states: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self._states_lock = threading.Lock()

    def fenced(self, flow_id: str, epoch: int) -> FlowStore:
        """A store for the holder of ``flow_id``'s lease at ``epoch``: its saves
        fail with LeaseLost once another conductor has claimed the run."""
        return FlowStore(self.db, fence=(flow_id, epoch))

    def check_fence(self, session) -> None:
        if self.fence is not None:
            leases.check(session, *self.fence)

    def remember_state(self, atom_uuid: str, state: str | None) -> None:
        with self._states_lock:
            self.last_states[atom_uuid] = state
            self.last_states.move_to_end(atom_uuid)
            while len(self.last_states) > _REMEMBERED_STATES:
                self.last_states.popitem(last=False)

    def known_state(self, atom_uuid: str) -> tuple[bool, str | None]:
        with self._states_lock:
            if atom_uuid in self.last_states:
                return True, self.last_states[atom_uuid]
        return False, None

    def get_connection(self) -> _Connection:
        return _Connection(self)

    def close(self) -> None:
        """Nothing to close: the database's engines belong to the service."""

    # -- vmflow's own entry points ------------------------------------------------

    def create_run(self, *, name: str, operation: str, request_id: str,
                   instance_uuid: str | None, params: dict[str, Any],
                   flow_uuid: str | None = None, user_id: str | None = None,
                   project_id: str | None = None) -> models.FlowDetail:
        """Record a new flow run and return its (empty) TaskFlow flow detail."""
        detail = models.FlowDetail(name, uuid=flow_uuid or str(uuid.uuid4()))
        with self.db.write() as session:
            session.add(FlowRun(id=detail.uuid, name=name, operation=operation,
                                instance_uuid=instance_uuid, request_id=request_id,
                                user_id=user_id, project_id=project_id,
                                state=detail.state, params=dict(params), meta={}))
        return detail

    def run_row(self, flow_uuid: str) -> FlowRun | None:
        with self.db.read() as session:
            return session.get(FlowRun, flow_uuid)

    def executed(self, flow_uuid: str, step: str) -> tuple[bool, Any]:
        """Whether the step's last execution succeeded, and its result (kept in
        the step's events: TaskFlow drops it from the step when a revert fails)."""
        with self.db.read() as session:
            event = session.scalars(
                select(FlowEvent).where(FlowEvent.flow_id == flow_uuid, FlowEvent.step == step,
                                        FlowEvent.phase == "execute")
                .order_by(FlowEvent.id.desc()).limit(1)).first()
        if event is None or event.state != tf_states.SUCCESS:
            return False, None
        return True, event.results


class _Connection(base.Connection):
    def __init__(self, store: FlowStore) -> None:
        self._store = store
        self._db = store.db

    @property
    def backend(self) -> FlowStore:
        return self._store

    def close(self) -> None:
        """Sessions are per call; nothing is held between calls."""

    def upgrade(self) -> None:
        """The schema belongs to vmflow's Alembic migrations (`vmflow db upgrade`)."""

    def validate(self) -> None:
        with self._db.read() as session:
            session.execute(select(1))

    def clear_all(self) -> None:
        raise NotImplementedError("flow runs are deleted one by one (destroy_logbook)")

    # -- writes -------------------------------------------------------------------

    def update_atom_details(self, atom_detail: models.AtomDetail) -> models.AtomDetail:
        """Save the step's state; a finished execution or revert is also kept
        as an event, since a retry resets the step and its row forgets."""
        now = utcnow()
        state = atom_detail.state
        detail = atom_detail.to_dict()
        values: dict[str, Any] = {"state": state, "intention": atom_detail.intention,
                                  "detail": detail, "updated_at": now}
        if state in (tf_states.RUNNING, tf_states.REVERTING):
            values.update(started_at=now, finished_at=None)
        elif state in _FINISHED:
            values["finished_at"] = now
        elif state == tf_states.PENDING:
            values.update(started_at=None, finished_at=None)
        known, previous = self._store.known_state(atom_detail.uuid)
        with self._db.write() as session:
            self._store.check_fence(session)
            if known and previous == state:
                # The same state with new intention, progress or results.
                self._save_same_state(session, atom_detail, detail, now)
            else:
                # A change of state: the row's times move, and a finished
                # execution or revert becomes an event.  (Not knowing the
                # previous state, the guard in the WHERE clause finds out.)
                moved = session.execute(
                    update(FlowStep)
                    .where(FlowStep.id == atom_detail.uuid,
                           or_(FlowStep.state.is_(None), FlowStep.state != state))
                    .values(**values).returning(FlowStep.flow_id, FlowStep.started_at)
                    .execution_options(synchronize_session=False)).first()
                if moved is None:
                    self._save_same_state(session, atom_detail, detail, now)
                elif state in _FINISHED and not atom_detail.name.startswith(_TASKFLOW_INTERNAL):
                    reverted = state in (tf_states.REVERTED, tf_states.REVERT_FAILURE)
                    session.add(FlowEvent(
                        flow_id=moved.flow_id, step=atom_detail.name,
                        host=session.scalar(_instance_host(moved.flow_id)),
                        phase="revert" if reverted else "execute", state=state,
                        results=detail.get("revert_results" if reverted else "results"),
                        failure=detail.get("revert_failure" if reverted else "failure"),
                        started_at=moved.started_at, finished_at=now))
        self._store.remember_state(atom_detail.uuid, state)
        return atom_detail

    @staticmethod
    def _save_same_state(session, atom_detail: models.AtomDetail, detail: dict[str, Any],
                         now) -> None:
        found = session.execute(
            update(FlowStep).where(FlowStep.id == atom_detail.uuid)
            .values(state=atom_detail.state, intention=atom_detail.intention, detail=detail,
                    updated_at=now)
            .execution_options(synchronize_session=False)).rowcount
        if not found:
            raise tf_exc.NotFound(f"no atom detail {atom_detail.uuid}")

    def update_flow_details(self, flow_detail: models.FlowDetail,
                            ignore_missing: bool = False) -> models.FlowDetail:
        with self._db.write() as session:
            self._store.check_fence(session)
            run = session.get(FlowRun, flow_detail.uuid)
            if run is None:
                if ignore_missing:
                    return flow_detail
                raise tf_exc.NotFound(f"no flow detail {flow_detail.uuid}")
            run.state = flow_detail.state
            run.meta = dict(flow_detail.meta or {})
            run.updated_at = utcnow()
            known = set(session.scalars(select(FlowStep.id).where(
                FlowStep.flow_id == flow_detail.uuid)))
            for atom in flow_detail:
                if atom.uuid not in known:
                    session.add(FlowStep(id=atom.uuid, flow_id=flow_detail.uuid, name=atom.name,
                                         kind=_kind(atom), state=atom.state,
                                         intention=atom.intention,
                                         detail=atom.to_dict()))
        return flow_detail

    def save_logbook(self, book: models.LogBook) -> models.LogBook:
        for flow_detail in book:
            self.update_flow_details(flow_detail)
        return book

    def destroy_logbook(self, book_uuid: str) -> None:
        with self._db.write() as session:
            session.query(FlowEvent).filter(FlowEvent.flow_id == book_uuid).delete()
            session.query(FlowStep).filter(FlowStep.flow_id == book_uuid).delete()
            session.query(FlowRun).filter(FlowRun.id == book_uuid).delete()

    # -- reads --------------------------------------------------------------------

    def get_flow_details(self, fd_uuid: str, lazy: bool = False) -> models.FlowDetail:
        with self._db.read() as session:
            run = session.get(FlowRun, fd_uuid)
            if run is None:
                raise tf_exc.NotFound(f"no flow detail {fd_uuid}")
            detail = models.FlowDetail(run.name, uuid=run.id)
            detail.state = run.state
            detail.meta = dict(run.meta or {})
            if not lazy:
                for row in session.scalars(select(FlowStep).where(FlowStep.flow_id == fd_uuid)):
                    detail.add(_atom_from_row(row))
            return detail

    def get_atom_details(self, ad_uuid: str) -> models.AtomDetail:
        with self._db.read() as session:
            row = session.get(FlowStep, ad_uuid)
            if row is None:
                raise tf_exc.NotFound(f"no atom detail {ad_uuid}")
            return _atom_from_row(row)

    def get_atoms_for_flow(self, fd_uuid: str) -> Iterator[models.AtomDetail]:
        yield from self.get_flow_details(fd_uuid)

    def get_logbook(self, book_uuid: str, lazy: bool = False) -> models.LogBook:
        book = models.LogBook(book_uuid, uuid=book_uuid)
        book.add(self.get_flow_details(book_uuid, lazy=lazy))
        return book

    def get_logbooks(self, lazy: bool = False) -> Iterator[models.LogBook]:
        with self._db.read() as session:
            ids = list(session.scalars(select(FlowRun.id)))
        for flow_uuid in ids:
            yield self.get_logbook(flow_uuid, lazy=lazy)

    def get_flows_for_book(self, book_uuid: str) -> Iterator[models.FlowDetail]:
        yield self.get_flow_details(book_uuid)
