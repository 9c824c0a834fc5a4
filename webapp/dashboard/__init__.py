"""The web dashboard, under ``/dashboard`` in the API's Flask app.

Pages are server-rendered shells; their scripts are clients of the public
compute API on the same origin (``/v2.1/...``), plus three read-only JSON
endpoints of the dashboard's own for what the API does not show: a flow run's
graph and steps, flow-run lists, and the trace of a request id
(``webapp.dashboard.data``).
"""

from __future__ import annotations

import re

from flask import (
    Blueprint,
    Flask,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from vmflow import exception
from vmflow.config import Config
from vmflow.db.session import Database
from webapp.api import common
from webapp.dashboard import actions, data

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static")

_REQUEST_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def init_app(app: Flask) -> None:
    from webapp.dashboard import login

    app.register_blueprint(bp)
    login.init_app(app)  # keystone mode: the login form, and a session for every page


def _config() -> Config:
    return current_app.extensions["vmflow"]["config"]


def _db() -> Database:
    return current_app.extensions["vmflow"]["db"]


def _page(template: str, nav: str, **context):
    # "admin": whether the pages may ask for what only admins see (all projects'
    # servers, hosts, services, flow runs).
    meta = {**actions.page_meta(), "admin": common.context().is_admin}
    return render_template(f"dashboard/{template}", nav=nav, meta=meta, **context)


# -- pages ----------------------------------------------------------------------------

@bp.get("/")
def overview():
    return _page("overview.html", "overview")


@bp.get("/instances")
def instances():
    return _page("instances.html", "instances")


@bp.get("/instances/<server_id>")
def instance(server_id: str):
    return _page("instance.html", "instances", server_id=server_id)


@bp.get("/flows/<flow_id>")
def flow(flow_id: str):
    return _page("flow.html", "instances", flow_id=flow_id)


@bp.get("/trace")
def trace_search():
    """The navigation bar's "request id" box."""
    request_id = request.args.get("request_id", "").strip()
    if not request_id:
        return _page("trace.html", "trace", request_id="")
    return redirect(url_for("dashboard.trace", request_id=request_id))


@bp.get("/trace/<request_id>")
def trace(request_id: str):
    return _page("trace.html", "trace", request_id=request_id)


@bp.get("/admin")
def admin():
    return _page("admin.html", "admin")


# -- the dashboard's own JSON (admin only, as everything about other projects) --------

@bp.get("/api/flows/<flow_id>")
def flow_data(flow_id: str):
    common.authorize("vmflow:dashboard:flows")
    with _db().read() as session:
        return jsonify(data.flow_view(session, _config(), flow_id))


@bp.get("/api/flows")
def flow_list():
    common.authorize("vmflow:dashboard:flows")
    limit = common.query_int("limit", minimum=1) or 50
    failed = request.args.get("failed", "").lower() in ("1", "true", "yes")
    with _db().read() as session:
        runs = data.flow_runs(session, instance_uuid=request.args.get("instance"),
                              failed=failed, limit=min(limit, 500))
    return jsonify({"flows": runs})


@bp.get("/api/trace/<request_id>")
def trace_data(request_id: str):
    common.authorize("vmflow:dashboard:trace")
    if not _REQUEST_ID.fullmatch(request_id):
        raise exception.Invalid(f"{request_id!r} is not a request id (req-<uuid>).")
    with _db().read() as session:
        return jsonify(data.trace(session, _config().log_dir, request_id))
