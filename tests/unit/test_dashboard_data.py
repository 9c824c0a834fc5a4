"""The dashboard's data: a flow's graph (steps, groups, ordering edges) and where it
is drawn, each step's state from the flow tables, the actions offered per state,
and the trace of a request merged from log files and the database."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import uuid

import pytest
from taskflow import retry, task
from taskflow.patterns import graph_flow, linear_flow

import flows
from flows.base import Services
from vmflow import config, exception, log
from vmflow.db.models import FlowEvent, FlowRun, FlowStep, Notification
from vmflow.states import vm_states
from vmflow.states.actions import ACTIONS, allows
from webapp.dashboard import actions, data, layout


def _services() -> Services:
    return Services(config=config.Config(data_dir="/nonexistent"), db=None)


def _edges(graph: data.Graph) -> list[tuple[str, str]]:
    return [(e.source, e.target) for e in graph.edges]


# -- the graph of a flow --------------------------------------------------------------

def test_launch_graph_is_its_chain_of_steps_with_two_retried_groups():
    graph = data.flow_graph(flows.build("launch", _services(), {"max_attempts": 3}))
    names = [n.name for n in graph.nodes]
    assert names == [
        "launch.validate-request", "launch.check-quota", "launch.create-instance-record",
        "launch.reschedule", "launch.select-destinations", "launch.claim-resources",
        "launch.cache-image", "launch.create-disk", "launch.define-domain", "launch.power-on",
        "launch.poll", "launch.wait-for-running", "launch.mark-active"]
    assert [n.rank for n in graph.nodes] == list(range(13))
    # The graph flow also links validate-request to everything that needs the flavor;
    # only the links that order something are kept, so it reads as the chain it is.
    assert _edges(graph) == list(zip(names, names[1:], strict=False))
    via = {(e.source, e.target): e.via for e in graph.edges}
    assert via[("launch.validate-request", "launch.check-quota")] == ("flavor",)
    assert via[("launch.wait-for-running", "launch.mark-active")] == ("host",)
    assert via[("launch.check-quota", "launch.create-instance-record")] == ()
    kinds = {n.name: n.kind for n in graph.nodes}
    assert kinds["launch.reschedule"] == kinds["launch.poll"] == "retry"
    assert [(g.name, g.parent, g.retry) for g in graph.groups] == [
        ("launch.build", None, "launch.reschedule"),
        ("launch.wait", "launch.build", "launch.poll")]
    group = {n.name: n.group for n in graph.nodes}
    assert group["launch.create-instance-record"] is None
    assert group["launch.reschedule"] == group["launch.power-on"] == "launch.build"
    assert group["launch.poll"] == group["launch.wait-for-running"] == "launch.wait"
    assert group["launch.mark-active"] is None


def test_stop_graph_is_a_chain_with_its_polling_loop():
    graph = data.flow_graph(flows.build("stop", _services(), {}))
    names = [n.name for n in graph.nodes]
    assert names == ["stop.begin", "stop.request-shutdown", "stop.poll-off",
                     "stop.wait-for-shutoff", "stop.finish"]
    assert _edges(graph) == list(zip(names, names[1:], strict=False))
    assert [(g.name, g.retry) for g in graph.groups] == [("stop.poll-off-loop", "stop.poll-off")]
    assert {n.name for n in graph.nodes if n.group} == {"stop.poll-off", "stop.wait-for-shutoff"}


def test_every_operation_has_a_drawable_graph():
    for operation in flows.FACTORIES:
        graph = data.flow_graph(flows.build(operation, _services(), {}))
        geometry = layout.lay_out(graph)
        assert set(geometry["nodes"]) == {n.name for n in graph.nodes}, operation
        assert all(e.source != e.target for e in graph.edges)


class _Step(task.Task):
    def execute(self) -> None:
        """Nothing.  Revert: nothing."""


def _fork():
    """a -> (b, c) -> d, with c and a retried nested flow (e) in parallel branches."""
    a, b, c, d = (_Step(name=n) for n in "abcd")
    inner = linear_flow.Flow("loop", retry=retry.Times(2, name="again")).add(_Step(name="e"))
    flow = graph_flow.Flow("fork").add(a, b, c, d, inner)
    flow.link(a, b)
    flow.link(a, c)
    flow.link(b, d)
    flow.link(c, d)
    flow.link(a, inner)
    flow.link(inner, d)
    return flow


def test_branches_share_a_rank_and_are_drawn_side_by_side():
    graph = data.flow_graph(_fork())
    rank = {n.name: n.rank for n in graph.nodes}
    assert rank == {"a": 0, "b": 1, "c": 1, "again": 1, "e": 2, "d": 3}
    assert set(_edges(graph)) == {("a", "b"), ("a", "c"), ("a", "again"), ("again", "e"),
                                  ("b", "d"), ("c", "d"), ("e", "d")}
    geometry = layout.lay_out(graph, tall={"c"})
    boxes = geometry["nodes"]
    assert boxes["b"]["y"] == boxes["c"]["y"] and boxes["b"]["x"] != boxes["c"]["x"]
    assert boxes["c"]["h"] > boxes["b"]["h"]
    _assert_no_overlap(boxes)
    _assert_inside(boxes["again"], geometry["groups"]["loop"])
    _assert_inside(boxes["e"], geometry["groups"]["loop"])
    assert geometry["width"] >= max(b["x"] + b["w"] for b in boxes.values())
    assert geometry["height"] >= max(b["y"] + b["h"] for b in boxes.values())


def _assert_no_overlap(boxes):
    items = list(boxes.items())
    for i, (a, p) in enumerate(items):
        for b, q in items[i + 1:]:
            apart = (p["x"] + p["w"] <= q["x"] or q["x"] + q["w"] <= p["x"]
                     or p["y"] + p["h"] <= q["y"] or q["y"] + q["h"] <= p["y"])
            assert apart, (a, b)


def _assert_inside(box, outer):
    assert outer["x"] < box["x"] and box["x"] + box["w"] < outer["x"] + outer["w"]
    assert outer["y"] < box["y"] and box["y"] + box["h"] < outer["y"] + outer["h"]


def test_launch_layout_nests_its_groups_and_leaves_room_for_their_labels():
    graph = data.flow_graph(flows.build("launch", _services(), {}))
    geometry = layout.lay_out(graph)
    boxes, groups = geometry["nodes"], geometry["groups"]
    _assert_no_overlap(boxes)
    _assert_inside(groups["launch.wait"], groups["launch.build"])
    for node in graph.nodes:
        if node.group:
            _assert_inside(boxes[node.name], groups[node.group])
    # The first step of a group sits below the group's label band.
    assert boxes["launch.reschedule"]["y"] - groups["launch.build"]["y"] >= layout.GROUP_TOP
    assert boxes["launch.mark-active"]["y"] > groups["launch.build"]["y"] + \
        groups["launch.build"]["h"]


# -- step states from the flow tables -------------------------------------------------

T0 = dt.datetime(2026, 1, 2, 3, 4, 5)


def _at(ms: int) -> dt.datetime:
    return T0 + dt.timedelta(milliseconds=ms)


def _failure(message: str) -> dict:
    return {"exception_str": message, "traceback_str": "  File ...\n",
            "exc_type_names": ["vmflow.exception.HypervisorError", "Exception"], "version": 1}


def _run(session, operation: str = "launch", state: str = "REVERTED", **kw) -> FlowRun:
    run = FlowRun(id=str(uuid.uuid4()), name=operation, operation=operation,
                  request_id=kw.pop("request_id", "req-1"), state=state,
                  params=kw.pop("params", {"max_attempts": 3}), meta={}, created_at=T0,
                  updated_at=_at(900), **kw)
    session.add(run)
    session.flush()
    return run


def _step(session, run: FlowRun, name: str, state: str, kind: str = "TASK_DETAIL",
          **detail) -> None:
    session.add(FlowStep(id=str(uuid.uuid4()), flow_id=run.id, name=name, kind=kind,
                         state=state, detail={"name": name, "state": state, **detail},
                         started_at=_at(500), finished_at=_at(510)))


def _event(session, run: FlowRun, step: str, phase: str, state: str, start: int, end: int,
           host: str | None = None, failure: dict | None = None) -> None:
    session.add(FlowEvent(flow_id=run.id, step=step, phase=phase, state=state, host=host,
                          failure=failure, started_at=_at(start), finished_at=_at(end)))


def test_a_failed_launch_shows_the_failed_step_its_error_and_every_attempt(db):
    cfg = config.Config(data_dir="/nonexistent")
    with db.write() as session:
        run = _run(session)
        _step(session, run, "launch.validate-request", "REVERTED")
        _step(session, run, "launch.reschedule", "REVERTED", kind="RETRY_DETAIL", results=[])
        _step(session, run, "launch.power-on", "REVERTED",
              failure=_failure("power_on failed on compute-2"))
        _step(session, run, "launch.claim-resources", "REVERTED")
        _event(session, run, "launch.validate-request", "execute", "SUCCESS", 0, 10)
        for attempt, host in enumerate(("compute-1", "compute-2")):
            base = 100 * (attempt + 1)
            _event(session, run, "launch.reschedule", "execute", "SUCCESS", base, base + 2)
            _event(session, run, "launch.claim-resources", "execute", "SUCCESS", base + 5,
                   base + 20, host)
            _event(session, run, "launch.power-on", "execute", "FAILURE", base + 30, base + 37,
                   host, _failure(f"power_on failed on {host}"))
            _event(session, run, "launch.power-on", "revert", "REVERTED", base + 40, base + 45,
                   host)
            _event(session, run, "launch.claim-resources", "revert", "REVERTED", base + 50,
                   base + 55)
        _event(session, run, "launch.reschedule", "revert", "REVERTED", 300, 301)
        _event(session, run, "launch.validate-request", "revert", "REVERTED", 310, 312)
    with db.read() as session:
        view = data.flow_view(session, cfg, run.id)
    steps = {n["name"]: n for n in view["graph"]["nodes"]}
    power = steps["launch.power-on"]
    assert power["status"] == "failed" and power["reverted"] and power["state"] == "REVERTED"
    assert power["error"] == "power_on failed on compute-2"
    assert power["error_type"] == "HypervisorError"
    assert power["host"] == "compute-2" and power["duration_ms"] == 7
    assert power["revert_ms"] == 5 and power["runs"] == 2
    assert [(e["phase"], e["host"], e["error"]) for e in power["history"]] == [
        ("execute", "compute-1", "power_on failed on compute-1"),
        ("revert", "compute-1", None),
        ("execute", "compute-2", "power_on failed on compute-2"),
        ("revert", "compute-2", None)]
    assert power["h"] == layout.NODE_H_TALL  # room for the error
    assert steps["launch.claim-resources"]["status"] == "reverted"
    assert steps["launch.claim-resources"]["host"] == "compute-2"  # where it ran, not reverted
    assert steps["launch.claim-resources"]["h"] == layout.NODE_H
    assert steps["launch.reschedule"]["attempts"] == 2
    assert steps["launch.mark-active"]["status"] == "pending"  # never reached: no row
    assert steps["launch.mark-active"]["duration_ms"] is None
    assert view["run"]["status"] == "reverted" and view["run"]["finished"]
    assert view["run"]["failed_step"] == "launch.power-on"
    assert view["run"]["error"] == "power_on failed on compute-1"  # the first failure
    assert [e["step"] for e in view["events"]][:2] == ["launch.validate-request",
                                                        "launch.reschedule"]
    assert view["note"] is None


def test_a_running_step_shows_how_long_it_has_run(db):
    with db.write() as session:
        run = _run(session, operation="stop", state="RUNNING", params={})
        _step(session, run, "stop.begin", "SUCCESS")
        _step(session, run, "stop.request-shutdown", "RUNNING")
        _event(session, run, "stop.begin", "execute", "SUCCESS", 0, 4, "compute-1")
    with db.read() as session:
        view = data.flow_view(session, config.Config(data_dir="/x"), run.id)
    steps = {n["name"]: n for n in view["graph"]["nodes"]}
    assert steps["stop.begin"]["status"] == "done" and steps["stop.begin"]["duration_ms"] == 4
    assert steps["stop.request-shutdown"]["status"] == "running"
    assert steps["stop.request-shutdown"]["duration_ms"] > 0  # since it started, until now
    assert steps["stop.finish"]["status"] == "pending"
    assert not view["run"]["finished"] and view["run"]["status"] == "running"
    assert [n["label"] for n in view["graph"]["nodes"]][0] == "begin"


def test_a_run_whose_graph_cannot_be_rebuilt_is_shown_as_its_recorded_steps(db):
    with db.write() as session:
        run = _run(session, operation="shelve", state="SUCCESS")
        _step(session, run, "shelve.begin", "SUCCESS")
    with db.read() as session:
        view = data.flow_view(session, config.Config(data_dir="/x"), run.id)
        with pytest.raises(exception.NotFound):
            data.flow_view(session, config.Config(data_dir="/x"), "no-such-run")
    assert [n["name"] for n in view["graph"]["nodes"]] == ["shelve.begin"]
    assert "could not be rebuilt" in view["note"]


def test_flow_runs_lists_an_instances_runs_and_recent_failures(db):
    with db.write() as session:
        ok = _run(session, state="SUCCESS", instance_uuid="i-1")
        bad = _run(session, operation="stop", state="REVERTED", instance_uuid="i-1",
                   request_id="req-2", params={})
        _event(session, bad, "stop.finish", "execute", "FAILURE", 0, 1,
               failure=_failure("boom"))
        _run(session, state="SUCCESS", instance_uuid="i-2")
    with db.read() as session:
        mine = data.flow_runs(session, instance_uuid="i-1")
        failed = data.flow_runs(session, failed=True)
    assert {r["id"] for r in mine} == {ok.id, bad.id}
    assert [(r["id"], r["failed_step"], r["error"]) for r in failed] == [
        (bad.id, "stop.finish", "boom")]


def test_operators_are_offered_resume_and_rollback_only_where_the_api_takes_them(db):
    offered = {}
    with db.write() as session:
        for state in (None, "PENDING", "SUSPENDED", "RUNNING", "REVERTING", "SUCCESS",
                      "REVERTED", "FAILURE"):
            run = _run(session, operation="stop", state=state, params={},
                       owner="conductor-1" if state == "RUNNING" else None)
            offered[state] = run.id
    with db.read() as session:
        views = {state: data.flow_view(session, config.Config(data_dir="/x"), run_id)
                 for state, run_id in offered.items()}
    for state in (None, "PENDING", "SUSPENDED", "RUNNING", "REVERTING"):
        assert views[state]["actions"] == ["resume", "rollback"], state
    assert views["FAILURE"]["actions"] == ["rollback"]  # a revert failed: try again
    assert views["SUCCESS"]["actions"] == views["REVERTED"]["actions"] == []
    # Who drives it, so that an operator can tell a stuck run from a running one.
    assert views["RUNNING"]["run"]["owner"] == "conductor-1"
    assert views["SUSPENDED"]["run"]["owner"] is None
    assert views["SUSPENDED"]["run"]["lease_expires_at"] is None


# -- actions offered per state --------------------------------------------------------

def test_the_actions_offered_are_those_the_state_machine_allows():
    offered = actions.allowed()
    for state in vm_states.ALL - {vm_states.DELETED}:
        for busy, task_state in (("idle", None), ("busy", "powering-off")):
            expected = [n for n, a in ACTIONS.items() if allows(a, state, task_state)]
            assert offered[state][busy] == [*expected, "delete"], (state, busy)
    assert offered[vm_states.ACTIVE]["busy"] == ["lock", "unlock", "delete"]
    assert "start" in offered[vm_states.STOPPED]["idle"]
    assert "start" not in offered[vm_states.ACTIVE]["idle"]


def test_every_action_has_its_look_and_a_request_body():
    controls = {c["name"]: c for c in actions.controls()}
    assert set(controls) == set(ACTIONS) | {"delete"}
    assert set(ACTIONS) <= set(actions.LOOKS)  # a new operation says how it looks
    for name, action in ACTIONS.items():
        assert controls[name]["api"] == action.api and controls[name]["label"]
    assert controls["reboot_hard"]["args"] == {"type": "HARD"}
    assert controls["stop"]["confirm"] and controls["reboot_hard"]["confirm"]
    assert controls["rebuild"]["confirm"] and controls["delete"]["confirm"]
    assert controls["rebuild"]["danger"] and controls["delete"]["danger"]
    assert [f["name"] for f in controls["rebuild"]["fields"]] == ["imageRef"]
    assert [f["name"] for f in controls["snapshot"]["fields"]] == ["name"]


# -- the trace of a request -----------------------------------------------------------

@pytest.fixture
def paris():
    """Log files are written in local time: run in a zone that is not UTC."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def _line(when: dt.datetime, module: str, request_id: str, message: str,
          level: int = logging.INFO) -> str:
    """A log line exactly as vmflow's formatter writes it, at UTC time ``when``."""
    record = logging.LogRecord(module, level, __file__, 1, message, None, None)
    record.created = when.replace(tzinfo=dt.UTC).timestamp()
    record.msecs = when.microsecond // 1000
    record.request_id = request_id
    return log.formatter().format(record)


def test_a_log_line_is_parsed_and_its_local_time_made_utc(paris):
    line = _line(_at(123), "workers.conductor", "req-1", "running flow [x] of y")
    assert line.startswith("2026-01-02 04:04:05.123 ")  # Paris is UTC+1 in January
    assert data.parse_log_line(line) == {
        "time": "2026-01-02T03:04:05.123Z", "pid": os.getpid(), "level": "INFO",
        "module": "workers.conductor", "request_id": "req-1",
        "message": "running flow [x] of y"}
    assert data.parse_log_line("Traceback (most recent call last):") is None


def test_the_trace_merges_logs_flow_events_and_notifications_in_time_order(db, tmp_path,
                                                                           paris):
    rid = "req-6a0c9e0e-1111-2222-3333-444455556666"
    api = [_line(_at(0), "webapp.access", rid, '"POST /v2.1/servers" status 202'),
           _line(_at(5), "webapp.access", "req-other", "not this one"),
           _line(_at(40), "flows.engine", rid, "step launch.power-on FAILURE",
                 logging.WARNING),
           "Traceback (most recent call last):",
           '  File "x.py", line 1, in <module>',
           _line(_at(41), "webapp.access", "-", "unrelated")]
    compute = [_line(_at(30), "workers.compute", rid, "compute step power_on on compute-1")]
    (tmp_path / "vmflow-api.log").write_text("\n".join(api) + "\n")
    (tmp_path / "vmflow-compute-compute-1.log").write_text("\n".join(compute) + "\n")
    (tmp_path / "notes.txt").write_text(_line(_at(1), "x", rid, "not a log file") + "\n")
    with db.write() as session:
        run = _run(session, request_id=rid, instance_uuid="i-1")
        _event(session, run, "launch.power-on", "execute", "FAILURE", 25, 35, "compute-1",
               _failure("power_on failed"))
        session.add(Notification(event_type="instance.create.error", priority="ERROR",
                                 publisher_id="vmflow-conductor:h", instance_uuid="i-1",
                                 request_id=rid, created_at=_at(50),
                                 payload={"display_name": "vm",
                                          "state": {"status": "ERROR"},
                                          "fault": {"message": "power_on failed"}}))
        other = _run(session, request_id="req-other")
        _event(session, other, "launch.power-on", "execute", "SUCCESS", 1, 2)
    with db.read() as session:
        trace = data.trace(session, str(tmp_path), rid)
        quiet = data.trace(session, "", rid)

    assert trace["log_files"] == ["vmflow-api.log", "vmflow-compute-compute-1.log"]
    entries = trace["entries"]
    assert [(e["source"], e["module"]) for e in entries] == [
        ("log", "webapp.access"), ("log", "workers.compute"), ("flow", "launch.power-on"),
        ("log", "flows.engine"), ("notification", "instance.create.error")]
    assert [e["time"] for e in entries] == sorted(e["time"] for e in entries)
    assert entries[0]["time"] == "2026-01-02T03:04:05.000Z"
    assert entries[1]["service"] == "vmflow-compute-compute-1"
    assert entries[2]["level"] == "ERROR" and "power_on failed" in entries[2]["message"]
    assert entries[2]["flow_id"] == run.id
    # A traceback belongs to the line before it.
    assert entries[3]["level"] == "WARNING"
    assert entries[3]["message"].splitlines() == [
        "step launch.power-on FAILURE", "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>']
    assert entries[4]["message"] == "vm (- -> ERROR): power_on failed"
    assert [r["id"] for r in trace["runs"]] == [run.id]

    # Without a log directory the trace still has the database's side.
    assert quiet["log_dir"] is None and quiet["log_files"] == []
    assert [e["source"] for e in quiet["entries"]] == ["flow", "notification"]


def test_merge_keeps_each_sources_order_at_equal_times():
    same = "2026-01-02T03:04:05.000Z"
    merged = data.merge([{"time": same, "source": "notification", "n": 1}],
                        [{"time": same, "source": "log", "n": 2},
                         {"time": same, "source": "log", "n": 3}],
                        [{"time": "2026-01-02T03:04:04.999Z", "source": "flow", "n": 4}])
    assert [e["n"] for e in merged] == [4, 2, 3, 1]
