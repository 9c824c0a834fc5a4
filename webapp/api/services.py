"""/os-services: every service with its heartbeat-derived state; admins enable,
disable (with a reason) and force down services.  A disabled or down compute
service gets no new instances (the scheduler's ComputeFilter)."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from vmflow import exception
from vmflow.db import aggregates as aggregates_db
from vmflow.db import hosts as hosts_db
from vmflow.db.models import Service
from webapp.api import common, microversion, validation, views

bp = Blueprint("services", __name__)
LOG = logging.getLogger(__name__)


@bp.get("/os-services")
def index():
    common.authorize("os_compute_api:os-services:list")
    cfg = common.config()
    binary, host = request.args.get("binary"), request.args.get("host")
    with common.db().read() as session:
        zones = aggregates_db.zones_of_hosts(session)
        rows = [s for s in hosts_db.list_services(session)
                if (not binary or s.binary == binary) and (not host or s.host == host)]
        return jsonify({"services": [
            views.service(s, hosts_db.is_up(s, cfg.service_down_time), _zone(cfg, zones, s))
            for s in rows]})


def _zone(cfg, zones: dict[str, str], row) -> str:
    if row.binary == "vmflow-compute":
        return zones.get(row.host, cfg.default_availability_zone)
    return cfg.internal_service_availability_zone


def _view(session, row) -> dict:
    cfg = common.config()
    return views.service(row, hosts_db.is_up(row, cfg.service_down_time),
                         _zone(cfg, aggregates_db.zones_of_hosts(session), row))


def _change(row, body: dict, *, status_key: str | None) -> None:
    """Apply enable/disable (with reason) and forced_down from a checked body."""
    if status_key is not None:
        status = body[status_key]
        row.disabled = status == "disabled"
        row.disabled_reason = body.get("disabled_reason") if row.disabled else None
    if "forced_down" in body:
        row.forced_down = body["forced_down"]


def _check(body: dict, allowed: set[str]) -> None:
    validation.only_keys(body, allowed, "the request body")
    if "status" in body and body["status"] not in ("enabled", "disabled"):
        raise exception.Invalid("Invalid input for field 'status': it must be 'enabled' or "
                                "'disabled'.")
    if "forced_down" in body and not isinstance(body["forced_down"], bool):
        raise exception.Invalid("Invalid input for field 'forced_down': it must be a boolean.")
    validation.string(body, "disabled_reason", "the request body", min_len=1)
    if body.get("disabled_reason") and body.get("status") == "enabled":
        raise exception.Invalid("Specifying 'disabled_reason' with status 'enabled' is "
                                "invalid.")


# Nova 2.1's forms: PUT /os-services/<verb> with {"host", "binary", ...}.
_VERBS = {"enable": {"status": "enabled"}, "disable": {"status": "disabled"},
          "disable-log-reason": {"status": "disabled"}, "force-down": {}}


@bp.put("/os-services/<verb_or_id>")
def update(verb_or_id: str):
    ctx = common.authorize("os_compute_api:os-services:update")
    body = common.json_body()
    if verb_or_id == "force-down":
        microversion.require("2.11")
    if verb_or_id in _VERBS:
        if microversion.at_least("2.53"):  # the verbs gave way to PUT /os-services/<uuid>
            raise exception.NotFound("The resource could not be found.")
        return _update_by_host(verb_or_id, body)
    # The form of later microversions: PUT /os-services/<id> {"status", "forced_down"}.
    _check(body, {"status", "disabled_reason", "forced_down"})
    if not body:
        raise exception.Invalid("Nothing to update: give 'status' and/or 'forced_down'.")
    with common.db().write() as session:
        if microversion.at_least("2.53"):  # services are named by their UUIDs
            common.require_uuid(verb_or_id, exception.NotFound,
                                message=f"Service {verb_or_id} could not be found.")
            row = next((s for s in hosts_db.list_services(session)
                        if views.service_uuid(s) == verb_or_id), None)
        else:
            row = session.get(Service, int(verb_or_id)) if verb_or_id.isdigit() else None
        if row is None:
            raise exception.NotFound(f"Service {verb_or_id} could not be found.")
        _change(row, body, status_key="status" if "status" in body else None)
        session.flush()
        LOG.info("service %s on %s changed by %s: %s", row.binary, row.host, ctx.user_id, body)
        return jsonify({"service": _view(session, row)})


def _update_by_host(verb: str, body: dict):
    extra = {"disabled_reason"} if verb == "disable-log-reason" else (
        {"forced_down"} if verb == "force-down" else set())
    _check(body, {"host", "binary"} | extra)
    host = validation.string(body, "host", "the request body", required=True, min_len=1)
    binary = validation.string(body, "binary", "the request body", required=True, min_len=1)
    if verb == "disable-log-reason":
        validation.string(body, "disabled_reason", "the request body", required=True, min_len=1)
    if verb == "force-down" and "forced_down" not in body:
        raise exception.Invalid("Invalid input: 'forced_down' is a required property.")
    with common.db().write() as session:
        row = session.scalar(select(Service).where(Service.host == host,
                                                   Service.binary == binary))
        if row is None:
            raise exception.NotFound(f"Host {host} could not be found (binary {binary}).")
        changes = dict(body, **_VERBS[verb])
        _change(row, changes, status_key="status" if "status" in changes else None)
        LOG.info("service %s on %s: %s", binary, host, verb)
        answer = {"host": host, "binary": binary}
        if verb == "force-down":
            answer["forced_down"] = row.forced_down
        else:
            answer["status"] = "disabled" if row.disabled else "enabled"
            if verb == "disable-log-reason":
                answer["disabled_reason"] = row.disabled_reason
        return jsonify({"service": answer})
