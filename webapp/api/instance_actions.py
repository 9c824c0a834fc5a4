"""/servers/{id}/os-instance-actions: every operation on a server, step by step.

An instance action is a flow run (the operation, who asked, the request id);
its events are every finished execution and revert of the run's steps, retries
included, with start, finish and result.  The scheduling step's event carries
the scheduler's decision in ``details``, a failed step's event the failure.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select

from scheduler.manager import Decision, FilterStep
from vmflow import exception
from vmflow.db import instances as instances_db
from vmflow.db.models import FlowEvent, FlowRun
from vmflow.states.actions import ACTIONS
from webapp.api import common

bp = Blueprint("instance_actions", __name__)

# Flow operations as Nova names the instance actions.
_ACTIONS = {"launch": "create", "delete": "delete",
            **{a.name: a.instance_action for a in ACTIONS.values()}}


def _instance(session, server_id: str):
    ctx = common.context()
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    return instances_db.get(session, server_id, include_deleted=True,
                            project_id=None if ctx.is_admin else ctx.project_id)


def _action(run: FlowRun) -> dict:
    failed = run.state in ("REVERTING", "REVERTED", "FAILURE")  # a step failed
    return {"action": _ACTIONS.get(run.operation, run.operation),
            "instance_uuid": run.instance_uuid, "request_id": run.request_id,
            "user_id": run.user_id, "project_id": run.project_id,
            "start_time": common.isotime(run.created_at),
            "message": "Error" if failed else None}


def _decision_text(results) -> str | None:
    """The scheduler's decision, readable, from the scheduling step's results."""
    if not (isinstance(results, list) and len(results) == 2 and isinstance(results[1], dict)
            and "steps" in results[1]):
        return None
    raw = dict(results[1])
    raw["steps"] = [FilterStep(**s) for s in raw.get("steps", [])]
    return "\n".join(Decision(**raw).lines(max_reasons=10_000))


def _event(event: FlowEvent, admin: bool) -> dict:
    failure = event.failure or None
    name = event.step if event.phase == "execute" else f"{event.step} (revert)"
    body = {"event": name, "start_time": common.isotime(event.started_at),
            "finish_time": common.isotime(event.finished_at), "host": event.host,
            "result": "Error" if failure or event.state == "REVERT_FAILURE" else "Success"}
    if admin:
        body["traceback"] = failure.get("traceback_str") if failure else None
    details = failure.get("exception_str") if failure else _decision_text(event.results)
    if details:
        body["details"] = details
    return body


@bp.get("/servers/<server_id>/os-instance-actions")
def index(server_id: str):
    with common.db().read() as session:
        _instance(session, server_id)
        runs = session.scalars(select(FlowRun).where(FlowRun.instance_uuid == server_id)
                               .order_by(FlowRun.created_at.desc()))
        return jsonify({"instanceActions": [_action(r) for r in runs]})


@bp.get("/servers/<server_id>/os-instance-actions/<request_id>")
def show(server_id: str, request_id: str):
    admin = common.context().is_admin
    with common.db().read() as session:
        _instance(session, server_id)
        run = session.scalar(select(FlowRun).where(FlowRun.instance_uuid == server_id,
                                                   FlowRun.request_id == request_id))
        if run is None:
            raise exception.NotFound(f"Action for request_id {request_id} on instance "
                                     f"{server_id} not found")
        events = session.scalars(select(FlowEvent).where(FlowEvent.flow_id == run.id)
                                 .order_by(FlowEvent.id))
        body = _action(run)
        body["events"] = [_event(e, admin) for e in events]
        return jsonify({"instanceAction": body})
