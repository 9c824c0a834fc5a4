"""/os-flows (vmflow's own, admin only): every operation's flow run, its owner
and its steps; resume a run that is stuck (its conductor died, its message was
lost), or roll back one that is stuck or failed.  Both are safe at any time:
the run's lease decides who drives it, and a rollback is a request that the
run's driver (or the next conductor to take it) carries out."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from vmflow import exception
from vmflow.db import leases
from vmflow.db.leases import RUN_FINISHED
from vmflow.db.models import FlowRun, FlowStep
from webapp.api import common

bp = Blueprint("flows", __name__)


def _run(run: FlowRun) -> dict:
    return {"id": run.id, "operation": run.operation, "instance_uuid": run.instance_uuid,
            "request_id": run.request_id, "user_id": run.user_id,
            "project_id": run.project_id, "state": run.state, "owner": run.owner,
            "epoch": run.epoch, "lease_expires_at": common.isotime(run.lease_expires_at),
            "attempts": run.attempts,
            "rollback_requested_at": common.isotime(run.rollback_requested_at),
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
    common.authorize("vmflow:os-flows:list")
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
    common.authorize("vmflow:os-flows:show")
    with common.db().read() as session:
        run = _get(session, flow_id)
        steps = session.scalars(select(FlowStep).where(FlowStep.flow_id == flow_id)
                                .order_by(FlowStep.started_at.is_(None), FlowStep.started_at))
        return jsonify({"flow": dict(_run(run), steps=[_step(s) for s in steps])})


@bp.post("/os-flows/<flow_id>/action")
def action(flow_id: str):
    common.authorize("vmflow:os-flows:action")
    body = common.json_body()
    if len(body) != 1 or next(iter(body)) not in ("resume", "rollback") or \
            next(iter(body.values())) not in (None, {}):
        raise exception.Invalid('The action is {"resume": null} or {"rollback": null}.')
    name = next(iter(body))
    if name == "resume":
        with common.db().read() as session:
            run = _get(session, flow_id)
            if run.state in RUN_FINISHED:
                raise exception.Conflict(f"Flow run {flow_id} has ended ({run.state}).")
    else:
        with common.db().write() as session:
            run = _get(session, flow_id)
            if not leases.request_rollback(session, flow_id):
                raise exception.Conflict(f"Flow run {flow_id} has ended ({run.state}); "
                                         "there is nothing to roll back.")
    common.compute_api().resume(flow_id)
    return "", 202
