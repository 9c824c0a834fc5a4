"""What the dashboard reads from the database and the log files.

* The task graph of a flow run: the graph is rebuilt from the run's operation
  and factory arguments (factories are deterministic, so this is the graph the
  conductor runs), walked into steps (tasks and retries), groups (nested
  flows) and ordering edges, and joined with each step's state from
  ``flow_steps`` and its history from ``flow_events``.
* Flow-run summaries (an instance's operations, recent failures), and which
  operator actions (resume, roll back) a run's state allows.
* The trace of one request id: its log lines from every service's log file,
  its flow events and its notifications, merged in time order.

Times are UTC, as ISO 8601 strings with milliseconds and a ``Z``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from taskflow import states as tf_states
from taskflow.flow import Flow

import flows
from flows.base import Services
from vmflow import exception
from vmflow.config import Config
from vmflow.db.models import FlowEvent, FlowRun, FlowStep, Instance, Notification, utcnow
from webapp.dashboard import layout

# TaskFlow's states of a step, as the dashboard names them.
STEP_STATES = {
    tf_states.PENDING: "pending", tf_states.RUNNING: "running", tf_states.SUCCESS: "done",
    tf_states.FAILURE: "failed", tf_states.REVERTING: "reverting",
    tf_states.REVERTED: "reverted", tf_states.REVERT_FAILURE: "failed",
    tf_states.RETRYING: "running", tf_states.IGNORE: "skipped",
}
# ... and of a flow run.
RUN_STATES = {
    tf_states.PENDING: "pending", tf_states.RUNNING: "running", tf_states.RESUMING: "running",
    tf_states.SUSPENDING: "waiting", tf_states.SUSPENDED: "waiting",
    tf_states.SUCCESS: "done", tf_states.FAILURE: "failed", tf_states.REVERTING: "reverting",
    tf_states.REVERTED: "reverted",
}
RUN_FINISHED = frozenset({tf_states.SUCCESS, tf_states.FAILURE, tf_states.REVERTED})
RUN_FAILED = frozenset({tf_states.FAILURE, tf_states.REVERTED, tf_states.REVERTING})
# TaskFlow's own bookkeeping atom (the injector of a flow's inputs).
_INTERNAL_PREFIX = "_TaskFlow_"


def isotime(value: dt.datetime | None) -> str | None:
    """A naive UTC time (as the database keeps them) in ISO 8601 with a ``Z``."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _millis(start: dt.datetime | None, end: dt.datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


# -- the structure of a flow ----------------------------------------------------------

@dataclasses.dataclass
class Node:
    """One step: a task, or the retry that controls a nested flow."""

    name: str
    kind: str  # "task" or "retry"
    group: str | None  # the innermost nested flow holding it (None: the top flow)
    rank: int = 0  # its row: the longest chain of steps before it


@dataclasses.dataclass
class Group:
    """A nested flow, drawn as a box around its steps."""

    name: str
    parent: str | None
    retry: str | None  # the retry that runs the nested flow again


@dataclasses.dataclass(frozen=True)
class Edge:
    """``source`` must finish before ``target`` starts; ``via`` names the values
    ``target`` takes from ``source`` (empty for an ordering link)."""

    source: str
    target: str
    via: tuple[str, ...] = ()


@dataclasses.dataclass
class Graph:
    nodes: list[Node]  # in an order in which they can run
    edges: list[Edge]
    groups: list[Group]


class _Walker:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.groups: list[Group] = []
        self.edges: dict[tuple[str, str], tuple[str, ...]] = {}

    def link(self, source: str, target: str, via: tuple[str, ...] = ()) -> None:
        known = self.edges.get((source, target), ())
        self.edges[(source, target)] = tuple(sorted(set(known) | set(via)))

    def walk(self, flow: Flow, group: str | None) -> tuple[list[str], list[str]]:
        """Add ``flow``'s steps; return the steps it starts with and ends with."""
        retry = flow.retry.name if flow.retry is not None else None
        if retry is not None:
            self.nodes[retry] = Node(retry, "retry", group)
        ends: dict[Any, tuple[list[str], list[str]]] = {}
        for child, _ in flow.iter_nodes():
            if isinstance(child, Flow):
                self.groups.append(Group(child.name, group,
                                         child.retry.name if child.retry else None))
                ends[child] = self.walk(child, child.name)
            else:
                self.nodes[child.name] = Node(child.name, "task", group)
                ends[child] = ([child.name], [child.name])
        has_in, has_out = set(), set()
        for source, target, meta in flow.iter_links():
            has_out.add(source)
            has_in.add(target)
            for a in ends[source][1]:
                for b in ends[target][0]:
                    self.link(a, b, tuple(meta.get("reasons", ())))
        entries = [n for child, (first, _) in ends.items() if child not in has_in for n in first]
        exits = [n for child, (_, last) in ends.items() if child not in has_out for n in last]
        if retry is not None:
            for entry in entries:
                self.link(retry, entry)
            entries = [retry]
            exits = exits or [retry]
        return entries, exits


def _reachable(adjacent: dict[str, list[str]], start: str, skip: str) -> set[str]:
    """Every step reachable from ``start`` without the direct edge to ``skip``."""
    seen: set[str] = set()
    stack = [n for n in adjacent[start] if n != skip]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(adjacent[node])
    return seen


def flow_graph(flow: Flow) -> Graph:
    """The steps of ``flow`` (nested flows and retries included), the groups the
    nested flows form, and the edges that order the steps.

    Edges are reduced to those not implied by others (a graph flow also links
    steps that a chain already orders), which is the same order, drawn plainly.
    """
    walker = _Walker()
    walker.walk(flow, None)
    names = list(walker.nodes)
    adjacent: dict[str, list[str]] = {n: [] for n in names}
    for source, target in walker.edges:
        adjacent[source].append(target)
    kept = [Edge(s, t, via) for (s, t), via in walker.edges.items()
            if t not in _reachable(adjacent, s, t)]
    # Topological order (Kahn), ties broken by the order the flow lists its steps.
    incoming = {n: 0 for n in names}
    for edge in kept:
        incoming[edge.target] += 1
    order: list[str] = []
    ready = [n for n in names if incoming[n] == 0]
    successors: dict[str, list[str]] = {n: [] for n in names}
    for edge in kept:
        successors[edge.source].append(edge.target)
    while ready:
        node = ready.pop(0)
        order.append(node)
        for target in successors[node]:
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
                ready.sort(key=names.index)
    rank = dict.fromkeys(names, 0)
    for node in order:
        for target in successors[node]:
            rank[target] = max(rank[target], rank[node] + 1)
    nodes = [dataclasses.replace(walker.nodes[n], rank=rank[n]) for n in order]
    position = {n: i for i, n in enumerate(order)}
    kept.sort(key=lambda e: (position[e.source], position[e.target]))
    return Graph(nodes=nodes, edges=kept, groups=walker.groups)


def run_graph(cfg: Config, run: FlowRun) -> Graph:
    """The graph ``run`` executes, rebuilt from its operation and arguments."""
    return flow_graph(flows.build(run.operation, Services(config=cfg, db=None),
                                  dict(run.params or {})))


def _graph_from_rows(rows: list[FlowStep]) -> Graph:
    """A chain of the recorded steps, for a run whose graph cannot be rebuilt."""
    ordered = sorted(rows, key=lambda r: (r.started_at is None, r.started_at or dt.datetime.min))
    nodes = [Node(r.name, "retry" if r.kind == "RETRY_DETAIL" else "task", None, i)
             for i, r in enumerate(ordered)]
    edges = [Edge(a.name, b.name) for a, b in zip(nodes, nodes[1:], strict=False)]
    return Graph(nodes=nodes, edges=edges, groups=[])


# -- the state of each step -----------------------------------------------------------

def _failure_text(failure: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(exception type, message) of a TaskFlow failure as persisted."""
    if not failure:
        return None, None
    types = failure.get("exc_type_names") or []
    kind = types[0].rsplit(".", 1)[-1] if types else None
    return kind, failure.get("exception_str") or kind


def _event_view(event: FlowEvent) -> dict[str, Any]:
    kind, message = _failure_text(event.failure)
    return {"step": event.step, "phase": event.phase, "state": event.state,
            "status": STEP_STATES.get(event.state, event.state.lower()),
            "host": event.host, "started_at": isotime(event.started_at),
            "finished_at": isotime(event.finished_at),
            "duration_ms": _millis(event.started_at, event.finished_at),
            "error_type": kind, "error": message}


def _attempts(history: list[FlowEvent]) -> int | None:
    """How many times a retry ran its flow in its latest round (a round ends when
    the retry itself is reverted, e.g. by an enclosing retry starting over)."""
    rounds: list[int] = [0]
    for event in history:
        if event.phase == "execute":
            rounds[-1] += 1
        else:
            rounds.append(0)
    return next((n for n in reversed(rounds) if n), None)


def _step_view(node: Node, row: FlowStep | None, history: list[FlowEvent],
               now: dt.datetime) -> dict[str, Any]:
    """A step's state as shown.  A step whose execution failed shows as failed
    even once reverted: it is the step that made the operation fail.  Host and
    duration are those of its latest execution (a retry may have run it before,
    elsewhere: ``history`` has every run)."""
    raw = (row.state if row else None) or tf_states.PENDING
    detail = dict(row.detail or {}) if row else {}
    failure = None
    if raw in (tf_states.FAILURE, tf_states.REVERTING, tf_states.REVERTED):
        failure = detail.get("failure")
    elif raw == tf_states.REVERT_FAILURE:
        failure = detail.get("revert_failure") or detail.get("failure")
    status = "failed" if failure else STEP_STATES.get(raw, raw.lower())
    error_type, error = _failure_text(failure)
    executed = [e for e in history if e.phase == "execute"]
    reverted = [e for e in history if e.phase == "revert"]
    finished = raw not in (tf_states.PENDING, tf_states.RUNNING, tf_states.RETRYING)
    last = executed[-1] if executed and finished else None
    duration = _millis(last.started_at, last.finished_at) if last else None
    revert_ms = None
    if row is not None and raw in (tf_states.RUNNING, tf_states.RETRYING):
        duration = _millis(row.started_at, now)
    elif row is not None and raw == tf_states.REVERTING:
        revert_ms = _millis(row.started_at, now)
    elif reverted and raw in (tf_states.REVERTED, tf_states.REVERT_FAILURE):
        revert_ms = _millis(reverted[-1].started_at, reverted[-1].finished_at)
    attempts = _attempts(history) if node.kind == "retry" else None
    return {
        "state": raw, "status": status, "reverted": raw == tf_states.REVERTED,
        # Of its latest execution (the row's times are its revert's once reverted).
        "started_at": isotime(last.started_at if last else row.started_at if row else None),
        "finished_at": isotime(last.finished_at if last else row.finished_at if row else None),
        "duration_ms": duration, "revert_ms": revert_ms,
        "host": last.host if last else None,
        "error_type": error_type, "error": error,
        "traceback": (failure or {}).get("traceback_str"),
        "attempts": attempts, "runs": len(executed),
        "history": [_event_view(e) for e in history],
    }


def _failed_step(events: Iterable[FlowEvent]) -> FlowEvent | None:
    """The event that made a run fail: its first failed execution (or revert)."""
    failed = [e for e in events if e.failure or e.state == tf_states.REVERT_FAILURE]
    execute = [e for e in failed if e.phase == "execute"]
    return (execute or failed or [None])[0]


def run_summary(run: FlowRun, events: list[FlowEvent] | None = None,
                instance_name: str | None = None) -> dict[str, Any]:
    """One flow run as a line of a list (operation, state, its failure if any)."""
    failed = _failed_step(events or []) if run.state in RUN_FAILED else None
    _, error = _failure_text(failed.failure if failed else None)
    return {"id": run.id, "operation": run.operation, "state": run.state,
            "status": RUN_STATES.get(run.state, "pending"),
            "finished": run.state in RUN_FINISHED, "request_id": run.request_id,
            "instance_uuid": run.instance_uuid, "instance_name": instance_name,
            "user_id": run.user_id, "project_id": run.project_id,
            "created_at": isotime(run.created_at), "updated_at": isotime(run.updated_at),
            "failed_step": failed.step if failed else None, "error": error}


def run_actions(run: FlowRun) -> list[str]:
    """What an operator may ask of a run through os-flows: resume one that has
    not ended (stuck, or still running: the lease decides who drives it); roll
    back one that has not ended or that ended in FAILURE (a revert failed).  A
    run that ended SUCCESS or REVERTED has nothing left to do."""
    if run.state not in RUN_FINISHED:
        return ["resume", "rollback"]
    if run.state == tf_states.FAILURE:
        return ["rollback"]
    return []


def _events_by_run(session: Session, run_ids: list[str]) -> dict[str, list[FlowEvent]]:
    result: dict[str, list[FlowEvent]] = {i: [] for i in run_ids}
    if run_ids:
        for event in session.scalars(select(FlowEvent).where(FlowEvent.flow_id.in_(run_ids))
                                     .order_by(FlowEvent.id)):
            result[event.flow_id].append(event)
    return result


def _instance_names(session: Session, uuids: Iterable[str | None]) -> dict[str, str]:
    wanted = {u for u in uuids if u}
    if not wanted:
        return {}
    return dict(session.execute(select(Instance.uuid, Instance.name)
                                .where(Instance.uuid.in_(wanted))).all())


def flow_view(session: Session, cfg: Config, flow_id: str) -> dict[str, Any]:
    """Everything the flow page shows: the run, its laid-out graph with each
    step's state, and the history of every execution and revert."""
    run = session.get(FlowRun, flow_id)
    if run is None:
        raise exception.NotFound(f"Flow run {flow_id} could not be found.")
    now = utcnow()
    rows = {r.name: r for r in session.scalars(select(FlowStep).where(FlowStep.flow_id == run.id))
            if not r.name.startswith(_INTERNAL_PREFIX)}
    events = _events_by_run(session, [run.id])[run.id]
    note = None
    try:
        graph = run_graph(cfg, run)
    except Exception as err:  # an operation this version cannot build any more
        graph = _graph_from_rows(list(rows.values()))
        note = (f"The graph of this run could not be rebuilt ({err}); its steps are shown "
                "in the order they started.")
    history: dict[str, list[FlowEvent]] = {}
    for event in events:
        history.setdefault(event.step, []).append(event)
    steps = {n.name: _step_view(n, rows.get(n.name), history.get(n.name, []), now)
             for n in graph.nodes}
    tall = {name for name, step in steps.items() if step["error"]}
    geometry = layout.lay_out(graph, tall=tall)
    prefix = f"{run.operation}."
    nodes = []
    for node in graph.nodes:
        short = node.name[len(prefix):] if node.name.startswith(prefix) else node.name
        nodes.append({"name": node.name, "label": short, "kind": node.kind,
                      "group": node.group, "rank": node.rank, **geometry["nodes"][node.name],
                      **steps[node.name]})
    groups = [{"name": g.name, "parent": g.parent, "retry": g.retry,
               "label": g.name[len(prefix):] if g.name.startswith(prefix) else g.name,
               **geometry["groups"][g.name]} for g in graph.groups]
    edges = [{"source": e.source, "target": e.target, "via": list(e.via),
              **geometry["edges"][(e.source, e.target)]} for e in graph.edges]
    name = _instance_names(session, [run.instance_uuid]).get(run.instance_uuid or "")
    summary = run_summary(run, events, name)
    summary["params"] = dict(run.params or {})
    summary["owner"] = run.owner
    summary["lease_expires_at"] = isotime(run.lease_expires_at)
    return {"run": summary, "now": isotime(now), "note": note, "actions": run_actions(run),
            "graph": {"width": geometry["width"], "height": geometry["height"],
                      "nodes": nodes, "edges": edges, "groups": groups},
            "events": [_event_view(e) for e in events]}


def flow_runs(session: Session, *, instance_uuid: str | None = None, failed: bool = False,
              limit: int = 50) -> list[dict[str, Any]]:
    """Flow runs, newest first: of one instance, or (``failed``) those that failed."""
    query = select(FlowRun)
    if instance_uuid is not None:
        query = query.where(FlowRun.instance_uuid == instance_uuid)
    if failed:
        query = query.where(FlowRun.state.in_(sorted(RUN_FAILED)))
    runs = list(session.scalars(query.order_by(FlowRun.updated_at.desc(), FlowRun.id)
                                .limit(limit)))
    events = _events_by_run(session, [r.id for r in runs])
    names = _instance_names(session, [r.instance_uuid for r in runs])
    return [run_summary(r, events[r.id], names.get(r.instance_uuid or "")) for r in runs]


# -- the trace of a request -----------------------------------------------------------

# vmflow/log.py's format: <date> <time>.<ms> <pid> <LEVEL> <module> [<request-id>] <message>
LOG_LINE = re.compile(r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (?P<pid>\d+) "
                      r"(?P<level>[A-Z]+) (?P<module>\S+) \[(?P<request_id>[^\]]*)\] "
                      r"(?P<message>.*)")
_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ ")
# Sources in the order they are listed when their times are equal.
_SOURCE_ORDER = {"log": 0, "flow": 1, "notification": 2}


def _log_time(text: str) -> str:
    """A log line's local time (as ``logging`` writes it) as UTC ISO 8601."""
    local = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
    return isotime(local.astimezone(dt.UTC).replace(tzinfo=None))


def parse_log_line(line: str) -> dict[str, Any] | None:
    """One line in vmflow's log format, or None for anything else (such as a
    traceback's continuation lines)."""
    match = LOG_LINE.fullmatch(line.rstrip("\r\n"))
    if match is None:
        return None
    return {"time": _log_time(match["time"]), "pid": int(match["pid"]),
            "level": match["level"], "module": match["module"],
            "request_id": match["request_id"], "message": match["message"]}


def _log_entries(path: Path, request_id: str) -> Iterator[dict[str, Any]]:
    """The lines of one log file that carry ``request_id``, each with the lines
    that continue it (a traceback)."""
    marker = f"[{request_id}]"
    current: dict[str, Any] | None = None
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if marker in line and (parsed := parse_log_line(line)) is not None \
                    and parsed["request_id"] == request_id:
                if current is not None:
                    yield current
                parsed.pop("request_id")
                current = {"source": "log", "service": path.stem, **parsed}
            elif _STAMP.match(line):
                if current is not None:
                    yield current
                current = None
            elif current is not None:
                current["message"] += "\n" + line.rstrip("\r\n")
    if current is not None:
        yield current


def log_files(log_dir: str) -> list[Path]:
    """Every service's log file in ``log_dir`` (``<service>.log``)."""
    return sorted(Path(log_dir).glob("*.log")) if log_dir else []


def _describe_event(event: FlowEvent) -> dict[str, Any]:
    view = _event_view(event)
    where = f" on {event.host}" if event.host else ""
    took = f" in {view['duration_ms']} ms" if view["duration_ms"] is not None else ""
    message = f"{event.phase} {event.state}{where}{took}"
    if view["error"]:
        message += f": {view['error_type']}: {view['error']}"
    return {"time": view["finished_at"], "source": "flow", "service": "flow",
            "level": "ERROR" if view["error"] or event.state == tf_states.REVERT_FAILURE
            else "INFO", "module": event.step, "message": message, "flow_id": event.flow_id}


def _describe_notification(row: Notification) -> dict[str, Any]:
    payload = row.payload or {}
    before = (payload.get("state_before") or {}).get("status")
    after = (payload.get("state") or {}).get("status")
    message = payload.get("display_name") or row.instance_uuid or ""
    if before or after:
        message += f" ({before or '-'} -> {after or '-'})"
    fault = payload.get("fault")
    if isinstance(fault, dict) and fault.get("message"):
        message += f": {fault['message']}"
    return {"time": isotime(row.created_at), "source": "notification",
            "service": row.publisher_id, "level": row.priority, "module": row.event_type,
            "message": message, "instance_uuid": row.instance_uuid}


def merge(*sources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of every source in time order (log lines first at equal times,
    each source keeping its own order)."""
    entries = [(e["time"] or "", _SOURCE_ORDER.get(e["source"], 9), i, e)
               for i, e in enumerate(e for source in sources for e in source)]
    return [e for *_, e in sorted(entries, key=lambda t: t[:3])]


def trace(session: Session, log_dir: str, request_id: str, limit: int = 5000
          ) -> dict[str, Any]:
    """Every log line, flow event and notification of one request, in time order."""
    runs = list(session.scalars(select(FlowRun).where(FlowRun.request_id == request_id)
                                .order_by(FlowRun.created_at)))
    events = _events_by_run(session, [r.id for r in runs])
    notes = session.scalars(select(Notification).where(Notification.request_id == request_id)
                            .order_by(Notification.id))
    files = log_files(log_dir)
    lines: list[dict[str, Any]] = []
    for path in files:
        lines.extend(_log_entries(path, request_id))
    entries = merge(lines, (_describe_event(e) for r in runs for e in events[r.id]),
                    (_describe_notification(n) for n in notes))
    names = _instance_names(session, [r.instance_uuid for r in runs])
    return {"request_id": request_id, "log_dir": log_dir or None,
            "log_files": [p.name for p in files],
            "runs": [run_summary(r, events[r.id], names.get(r.instance_uuid or ""))
                     for r in runs],
            "truncated": len(entries) > limit, "entries": entries[:limit]}
