"""Flow-run leases: one driver at a time, fenced saves, orphans found."""

from __future__ import annotations

import time

import pytest
from taskflow.persistence import models

from vmflow.db import leases
from vmflow.db.flowstore import FlowStore
from vmflow.db.models import FlowRun


@pytest.fixture
def run_id(db) -> str:
    detail = FlowStore(db).create_run(name="stop", operation="stop", request_id="req-1",
                                      instance_uuid=None, params={})
    return detail.uuid


def _claim(db, run_id, owner, ttl=30.0):
    """The epoch taken, or None."""
    with db.write() as session:
        taken = leases.claim(session, run_id, owner, ttl)
    return None if taken is None else taken[0]


def test_one_owner_at_a_time_until_the_lease_expires(db, run_id):
    assert _claim(db, run_id, "a") == 1
    assert _claim(db, run_id, "b") is None  # a holds it
    with db.write() as session:
        assert leases.renew(session, "a", {run_id: 1}, ttl=0.05) == set()
    time.sleep(0.1)
    assert _claim(db, run_id, "b") == 2  # a stopped renewing: b takes over
    with db.write() as session:
        assert leases.renew(session, "a", {run_id: 1}, ttl=30) == {run_id}  # a learns it
        leases.release(session, run_id, "a", 1)  # a stale release changes nothing
    assert _claim(db, run_id, "c") is None
    with db.write() as session:
        leases.release(session, run_id, "b", 2)
    assert _claim(db, run_id, "c") == 3


def test_saves_of_a_stale_owner_are_refused(db, run_id):
    store = FlowStore(db)
    assert _claim(db, run_id, "a", ttl=0.01) == 1
    fenced = store.fenced(run_id, 1)
    detail = fenced.get_connection().get_flow_details(run_id)
    fenced.get_connection().update_flow_details(detail)  # a holds it: fine
    time.sleep(0.05)
    assert _claim(db, run_id, "b") == 2
    with pytest.raises(leases.LeaseLost):
        fenced.get_connection().update_flow_details(detail)
    atom = models.TaskDetail("stop.begin", "atom-1")
    with pytest.raises(leases.LeaseLost):
        fenced.get_connection().update_atom_details(atom)
    store.fenced(run_id, 2).get_connection().update_flow_details(detail)  # b's saves work


def test_orphans_are_unfinished_runs_nobody_drives(db, run_id):
    with db.read() as session:
        assert leases.orphans(session, grace=60) == []  # new and unclaimed: its message
        assert leases.orphans(session, grace=0) == [run_id]  # ... unless it is too old
    assert _claim(db, run_id, "a", ttl=30) == 1
    with db.read() as session:
        assert leases.orphans(session, grace=0) == []  # driven
    with db.write() as session:
        leases.renew(session, "a", {run_id: 1}, ttl=-1)  # a's lease ran out
    with db.read() as session:
        assert leases.orphans(session, grace=60) == [run_id]
        assert leases.orphans(session, grace=60, exclude=[run_id]) == []


def _state(db, run_id):
    with db.read() as session:
        run = session.get(FlowRun, run_id)
        return run.state, run.attempts, run.rollback_requested_at


def test_each_claim_counts_as_an_attempt(db, run_id):
    with db.write() as session:
        assert leases.claim(session, run_id, "a", 0.01) == (1, 1)
    time.sleep(0.05)
    with db.write() as session:
        assert leases.claim(session, run_id, "b", 30) == (2, 2)
        assert leases.claim(session, run_id, "c", 30) is None  # refused: not counted
    assert _state(db, run_id)[1] == 2


def test_a_rollback_is_recorded_for_unfinished_and_failed_runs_only(db, run_id):
    with db.write() as session:
        leases.claim(session, run_id, "a", 30)
        assert leases.rollbacks_requested(session, [run_id]) == set()
        assert leases.request_rollback(session, run_id)
        assert leases.rollbacks_requested(session, [run_id]) == {run_id}
        assert leases.rollbacks_requested(session, []) == set()
    state, attempts, asked = _state(db, run_id)
    assert state is None and attempts == 0 and asked is not None  # a fresh budget

    with db.write() as session:
        leases.set_state(session, run_id, "FAILURE")
        assert leases.request_rollback(session, run_id)
    assert _state(db, run_id)[0] == "RUNNING"  # a conductor will take it again
    for ended in ("SUCCESS", "REVERTED"):
        with db.write() as session:
            leases.set_state(session, run_id, ended)
            assert not leases.request_rollback(session, run_id)
        assert _state(db, run_id)[0] == ended
