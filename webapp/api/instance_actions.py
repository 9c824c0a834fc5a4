"""/servers/{id}/os-instance-actions: every operation on a server, step by step.

An instance action is a flow run (the operation, who asked, the request id);
its events are every finished execution and revert of the run's steps, retries
included, with start, finish and result.  The scheduling step's event carries
the scheduler's decision in ``details``, a failed step's event the failure.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from scheduler.manager import Decision, FilterStep
from vmflow import exception
from vmflow.db import instances as instances_db
from vmflow.db.models import FlowEvent, FlowRun, utcnow
from vmflow.states.actions import ACTIONS
from webapp.api import common, microversion, usage, views

bp = Blueprint("instance_actions", __name__)

# Flow operations as Nova names the instance actions.
_ACTIONS = {"launch": "create", "delete": "delete",
            **{a.name: a.instance_action for a in ACTIONS.values()}}


def _instance(session, server_id: str, rule: str):
    """The server (404 if the caller's project does not hold it), if policy
    ``rule`` lets the caller see its actions (403 otherwise)."""
    ctx = common.context()
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    instance = instances_db.get(session, server_id,
                                include_deleted=microversion.at_least("2.21"),
                                project_id=None if ctx.is_admin else ctx.project_id)
    common.authorize(rule, {"project_id": instance.project_id})
    return instance


def _action(run: FlowRun) -> dict:
    failed = run.state in ("REVERTING", "REVERTED", "FAILURE")  # a step failed
    body = {"action": _ACTIONS.get(run.operation, run.operation),
            "instance_uuid": run.instance_uuid, "request_id": run.request_id,
            "user_id": run.user_id, "project_id": run.project_id,
            "start_time": common.isotime(run.created_at),
            "message": "Error" if failed else None}
    if microversion.at_least("2.58"):
        body["updated_at"] = common.isotime(run.updated_at)
    return body


def _decision_text(results) -> str | None:
    """The scheduler's decision, readable, from the scheduling step's results."""
    if not (isinstance(results, list) and len(results) == 2 and isinstance(results[1], dict)
            and "steps" in results[1]):
        return None
    raw = dict(results[1])
    raw["steps"] = [FilterStep(**s) for s in raw.get("steps", [])]
    return "\n".join(Decision(**raw).lines(max_reasons=10_000))


def _event(event: FlowEvent, admin: bool, project_id: str, show_details: bool) -> dict:
    """An event as the version shows it: ``traceback`` for those the events rule
    allows (admins); from 2.62 ``hostId`` for all and ``host`` for them; from
    2.84 ``details`` (the failure, or the scheduler's decision) for those the
    events:details rule allows."""
    failure = event.failure or None
    name = event.step if event.phase == "execute" else f"{event.step} (revert)"
    body = {"event": name, "start_time": common.isotime(event.started_at),
            "finish_time": common.isotime(event.finished_at),
            "result": "Error" if failure or event.state == "REVERT_FAILURE" else "Success"}
    if admin:
        body["traceback"] = failure.get("traceback_str") if failure else None
    if microversion.at_least("2.62"):
        body["hostId"] = views.host_id(project_id, event.host)
        if admin:
            body["host"] = event.host or ""
    if show_details:
        details = failure.get("exception_str") if failure else _decision_text(event.results)
        body["details"] = details or None
    return body


def _after(value: str | None, name: str) -> dt.datetime | None:
    """A ``changes-since``/``changes-before`` time (naive UTC), or None."""
    if value is None:
        return None
    return usage.parse_time(name, value, utcnow())


def _page(runs: list[FlowRun], server_id: str) -> tuple[list[FlowRun], list[dict] | None]:
    """2.58: ``changes-since``, ``limit`` and ``marker`` (a request id); 2.66:
    ``changes-before``.  Returns the runs and the next link (when a page is full)."""
    if not microversion.at_least("2.58"):
        return runs, None
    since = _after(request.args.get("changes-since"), "changes-since")
    before = (_after(request.args.get("changes-before"), "changes-before")
              if microversion.at_least("2.66") else None)
    if since and before and before < since:
        raise exception.Invalid("The value of changes-since must be less than or equal to "
                                "changes-before.")
    runs = [r for r in runs if (since is None or r.updated_at >= since)
            and (before is None or r.updated_at <= before)]
    runs = common.after_marker(runs, request.args.get("marker"), lambda r: r.request_id,
                               "Marker {marker} could not be found.")
    limit = common.query_int("limit", minimum=0)
    if limit is None or len(runs) < limit or not limit:
        return runs[:limit] if limit is not None else runs, None
    runs = runs[:limit]
    query = {k: v for k, v in request.args.items() if k != "marker"}
    query["marker"] = runs[-1].request_id
    href = (f"{common.base_url()}/v2.1/servers/{server_id}/os-instance-actions?"
            f"{urllib.parse.urlencode(query)}")
    return runs, [{"rel": "next", "href": href}]


@bp.get("/servers/<server_id>/os-instance-actions")
def index(server_id: str):
    with common.db().read() as session:
        _instance(session, server_id, "os_compute_api:os-instance-actions:list")
        runs = list(session.scalars(select(FlowRun).where(FlowRun.instance_uuid == server_id)
                                    .order_by(FlowRun.created_at.desc(), FlowRun.id)))
        runs, links = _page(runs, server_id)
        body: dict = {"instanceActions": [_action(r) for r in runs]}
        if links:
            body["links"] = links
        return jsonify(body)


@bp.get("/servers/<server_id>/os-instance-actions/<request_id>")
def show(server_id: str, request_id: str):
    with common.db().read() as session:
        instance = _instance(session, server_id, "os_compute_api:os-instance-actions:show")
        # Tracebacks and host names only for those the events rule allows (admins).
        admin = common.allowed("os_compute_api:os-instance-actions:events",
                               {"project_id": instance.project_id})
        run = session.scalar(select(FlowRun).where(FlowRun.instance_uuid == server_id,
                                                   FlowRun.request_id == request_id))
        if run is None:
            raise exception.NotFound(f"Action for request_id {request_id} on instance "
                                     f"{server_id} not found")
        body = _action(run)
        if admin or microversion.at_least("2.51"):  # before 2.51 only for the events rule
            target = {"project_id": instance.project_id}
            details = microversion.at_least("2.84") and common.allowed(
                "os_compute_api:os-instance-actions:events:details", target)
            events = session.scalars(select(FlowEvent).where(FlowEvent.flow_id == run.id)
                                     .order_by(FlowEvent.id))
            body["events"] = [_event(e, admin, run.project_id or instance.project_id, details)
                              for e in events]
        return jsonify({"instanceAction": body})
