"""Flow runs persist in vmflow's tables and resume from where they stopped."""

from __future__ import annotations

from taskflow import engines, states, task
from taskflow.patterns import linear_flow

from vmflow.db.flowstore import FlowStore
from vmflow.db.models import FlowEvent, FlowRun, FlowStep

CALLS: list[str] = []


class Step(task.Task):
    def execute(self, x: int) -> int:
        CALLS.append(self.name)
        return x + 1


def _flow():
    return linear_flow.Flow("demo").add(Step("one", provides="y", rebind={"x": "x"}),
                                         Step("two", provides="z", rebind={"x": "y"}),
                                         Step("three", provides="w", rebind={"x": "z"}))


def test_suspended_flow_resumes_without_repeating_steps(db):
    CALLS.clear()
    store = FlowStore(db)
    detail = store.create_run(name="demo", operation="demo", request_id="req-1",
                              instance_uuid=None, params={"a": 1})
    engine = engines.load(_flow(), store={"x": 1}, flow_detail=detail, backend=store,
                          engine="serial")
    engine.atom_notifier.register(
        states.SUCCESS, lambda state, details: details.get("task_name") == "one"
        and engine.suspend())
    engine.run()
    assert CALLS == ["one"]
    assert store.run_row(detail.uuid).state == states.SUSPENDED

    # A new engine (as after a restart) loads the persisted run and finishes it.
    reloaded = store.get_connection().get_flow_details(detail.uuid)
    engine2 = engines.load(_flow(), flow_detail=reloaded, backend=store, engine="serial")
    engine2.run()
    assert CALLS == ["one", "two", "three"]
    assert engine2.storage.fetch("w") == 4
    with db.read() as session:
        run = session.get(FlowRun, detail.uuid)
        steps = {s.name: s for s in session.query(FlowStep).filter_by(flow_id=detail.uuid)}
    assert run.state == states.SUCCESS and run.params == {"a": 1}
    assert run.request_id == "req-1"
    for name in ("one", "two", "three"):
        assert steps[name].state == states.SUCCESS
        assert steps[name].finished_at >= steps[name].started_at
    with db.read() as session:
        events = session.query(FlowEvent).filter_by(flow_id=detail.uuid).order_by(
            FlowEvent.id).all()
    # One event per finished execution, even though TaskFlow saved each step
    # several times (state, intention, progress).
    assert [(e.step, e.phase, e.state, e.results) for e in events] == [
        ("one", "execute", "SUCCESS", 2), ("two", "execute", "SUCCESS", 3),
        ("three", "execute", "SUCCESS", 4)]


def test_destroy_removes_run_and_steps(db):
    store = FlowStore(db)
    detail = store.create_run(name="demo", operation="demo", request_id="r",
                              instance_uuid=None, params={})
    engines.load(_flow(), store={"x": 1}, flow_detail=detail, backend=store).run()
    store.get_connection().destroy_logbook(detail.uuid)
    with db.read() as session:
        assert session.get(FlowRun, detail.uuid) is None
        assert session.query(FlowStep).filter_by(flow_id=detail.uuid).count() == 0
