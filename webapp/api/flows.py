"""/os-flows (vmflow's own, admin only): every operation's flow run, its owner
and its steps; resume a run that is stuck (its conductor died, its message was
lost).  Resuming is safe at any time: the run's lease decides who drives it."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from vmflow import exception
from vmflow.db import leases
from vmflow.db.leases import RUN_FINISHED
from vmflow.db.models import FlowRun, FlowStep
from webapp.api import common, validation

bp = Blueprint("flows", __name__)


def _run(run: FlowRun) -> dict:
    return {"id": run.id, "operation": run.operation, "instance_uuid": run.instance_uuid,
            "request_id": run.request_id, "user_id": run.user_id,
            "project_id": run.project_id, "state": run.state, "owner": run.owner,
            "epoch": run.epoch, "lease_expires_at": common.isotime(run.lease_expires_at),
            "created_at": common.isotime(run.created_at),
            "updated_at": common.isotime(run.updated_at)}


def _step(step: FlowStep) -> dict:
    took = None
    if step.started_at and step.finished_at:
        took = round((step.finished_at - step.started_at).total_seconds() * 1000, 1)
    return {"name": step.name, "kind": step.kind, "state": step.state,
            "started_at": common.isotime(step.started_at),
            "finished_at": common.isotime(step.finished_at), "duration_ms": took}


@bp.get("/os-flows")
def index():
    common.require_admin("vmflow:os-flows:list")
    limit = common.query_int("limit", minimum=1) or 100
    query = select(FlowRun).order_by(FlowRun.created_at.desc()).limit(limit)
    for key, column in (("state", FlowRun.state), ("operation", FlowRun.operation),
                        ("instance_uuid", FlowRun.instance_uuid)):
        if request.args.get(key):
            query = query.where(column == request.args[key])
    if request.args.get("unfinished", "").lower() in ("1", "true", "yes"):
        query = query.where(leases.unfinished())
    with common.db().read() as session:
        return jsonify({"flows": [_run(r) for r in session.scalars(query)]})


def _get(session, flow_id: str) -> FlowRun:
    common.require_uuid(flow_id, exception.NotFound)
    run = session.get(FlowRun, flow_id)
    if run is None:
        raise exception.NotFound(f"Flow run {flow_id} could not be found.")
    return run


@bp.get("/os-flows/<flow_id>")
def show(flow_id: str):
    common.require_admin("vmflow:os-flows:show")
    with common.db().read() as session:
        run = _get(session, flow_id)
        steps = session.scalars(select(FlowStep).where(FlowStep.flow_id == flow_id)
                                .order_by(FlowStep.started_at.is_(None), FlowStep.started_at))
        return jsonify({"flow": dict(_run(run), steps=[_step(s) for s in steps])})


@bp.post("/os-flows/<flow_id>/action")
def action(flow_id: str):
    common.require_admin("vmflow:os-flows:resume")
    body = common.json_body()
    validation.only_keys(body, {"resume"}, "the request body")
    if "resume" not in body or body["resume"] not in (None, {}):
        raise exception.Invalid("The only action is {\"resume\": null}.")
    with common.db().read() as session:
        run = _get(session, flow_id)
        if run.state in RUN_FINISHED:
            raise exception.Conflict(f"Flow run {flow_id} has ended ({run.state}).")
    common.compute_api().resume(flow_id)
    return "", 202
