"""/servers/{id}/os-instance-actions: every operation on a server, step by step.

An instance action is a flow run (the operation, who asked, the request id);
its events are the run's persisted steps, with their start, finish and result.
The scheduling step's event carries the scheduler's decision in ``details``.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select

from vmflow import exception
from vmflow.db import instances as instances_db
from vmflow.db.models import FlowRun, FlowStep
from webapp.api import common

bp = Blueprint("instance_actions", __name__)

_RESULTS = {"SUCCESS": "Success", "FAILURE": "Error", "REVERTED": "Error",
            "REVERT_FAILURE": "Error"}
# Flow-run names as Nova calls the actions.
_ACTIONS = {"launch": "create", "delete": "delete"}


def _instance(session, server_id: str):
    ctx = common.context()
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    return instances_db.get(session, server_id, include_deleted=True,
                            project_id=None if ctx.is_admin else ctx.project_id)


def _action(run: FlowRun) -> dict:
    failed = run.state in ("REVERTED", "FAILURE")
    return {"action": _ACTIONS.get(run.operation, run.operation),
            "instance_uuid": run.instance_uuid, "request_id": run.request_id,
            "user_id": run.user_id, "project_id": run.project_id,
            "start_time": common.isotime(run.created_at),
            "message": "Error" if failed else None}


def _details(step: FlowStep) -> str | None:
    """The scheduler's decision, readable, for the scheduling step."""
    results = (step.detail or {}).get("results")
    if step.name.endswith("select-destinations") and isinstance(results, list) \
            and len(results) == 2 and isinstance(results[1], dict):
        from scheduler.manager import Decision, FilterStep

        raw = dict(results[1])
        raw["steps"] = [FilterStep(**s) for s in raw.get("steps", [])]
        return "\n".join(Decision(**raw).lines(max_reasons=10_000))
    failure = (step.detail or {}).get("failure")
    if failure:
        return failure.get("exception_str")
    return None


def _retry_history(step: FlowStep) -> str | None:
    """What went wrong in each earlier attempt of a retried part of the flow."""
    results = (step.detail or {}).get("results")
    if step.kind != "RetryDetail" or not isinstance(results, list):
        return None
    lines = []
    for attempt, (provided, failures) in enumerate(results, start=1):
        for atom, failure in (failures or {}).items():
            lines.append(f"attempt {provided or attempt}: {atom} failed: "
                         f"{(failure or {}).get('exception_str')}")
    return "\n".join(lines) or None


def _event(step: FlowStep, admin: bool) -> dict:
    failure = (step.detail or {}).get("failure")
    event = {"event": step.name, "start_time": common.isotime(step.started_at),
             "finish_time": common.isotime(step.finished_at),
             "result": _RESULTS.get(step.state or "", None)}
    if admin:
        event["traceback"] = failure.get("traceback_str") if failure else None
    details = _details(step) or _retry_history(step)
    if details:
        event["details"] = details
    return event


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
        steps = session.scalars(select(FlowStep).where(
            FlowStep.flow_id == run.id, FlowStep.started_at.is_not(None))
            .order_by(FlowStep.started_at))
        body = _action(run)
        body["events"] = [_event(s, admin) for s in steps]
        return jsonify({"instanceAction": body})
