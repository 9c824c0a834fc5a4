"""The dashboard's login (keystone mode): a form at /dashboard/login, the token
kept in Flask's signed session cookie, a logout.

The session cookie is HttpOnly (no script reads it) and SameSite=Strict (no
other site's page sends it).  Its token authenticates the dashboard's own API
calls only together with the ``X-Vmflow-Dashboard: 1`` header
(webapp/api/middleware.py), which an HTML form of another origin cannot add.
The key that signs the cookie is generated once, 0600, under the data
directory (``<data_dir>/dashboard-secret-key``), so every API process of a
deployment sharing that directory accepts the same sessions.

Every dashboard page checks the session's token first; a missing, expired or
revoked one sends the browser to the login form, which brings it back after.
In no-auth mode there is no login: the pages open as they are.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from vmflow import exception
from vmflow.context import RequestContext
from vmflow.identity import tokens
from webapp.api import common
from webapp.api.middleware import SESSION_TOKEN

LOG = logging.getLogger(__name__)

bp = Blueprint("dashboard_login", __name__, url_prefix="/dashboard",
               template_folder="templates")

SECRET_KEY_FILE = "dashboard-secret-key"


def secret_key(data_dir: Path) -> bytes:
    """The session signing key of this deployment, created (0600) on first use."""
    path = Path(data_dir) / SECRET_KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it just now
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


def keystone_mode() -> bool:
    return common.config().auth_strategy == "keystone"


def init_app(app: Flask) -> None:
    cfg = app.extensions["vmflow"]["config"]
    if cfg.auth_strategy == "keystone":
        app.secret_key = secret_key(cfg.data_dir)
        app.config.update(SESSION_COOKIE_NAME="vmflow_session", SESSION_COOKIE_HTTPONLY=True,
                          SESSION_COOKIE_SAMESITE="Strict",
                          SESSION_COOKIE_SECURE=cfg.base_url.startswith("https://"))
    app.register_blueprint(bp)
    app.before_request(_gate)
    app.context_processor(_template_values)


def _template_values() -> dict:
    signed_in = keystone_mode() and SESSION_TOKEN in session
    return {"dashboard_user": {"user": session.get("user"), "project": session.get("project"),
                               "csrf": _csrf()} if signed_in else None}


def _csrf() -> str:
    """A per-session value every form of ours posts back."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def _csrf_ok() -> bool:
    sent = request.form.get("csrf", "")
    return bool(sent) and hmac.compare_digest(sent, session.get("csrf", ""))


def _gate():
    """Dashboard pages need a signed-in session in keystone mode."""
    if request.blueprint != "dashboard" or request.endpoint == "dashboard.static":
        return None
    if request.path.startswith("/dashboard/api/") or not keystone_mode():
        return None  # the JSON endpoints: the middleware checked their token
    value = session.get(SESSION_TOKEN)
    info = tokens.validate(common.db(), value) if isinstance(value, str) else None
    if info is None:
        session.pop(SESSION_TOKEN, None)
        return redirect(url_for("dashboard_login.login", next=request.full_path.rstrip("?"),
                                expired=1 if value else None))
    g.context = RequestContext(request_id=g.request_id, project_id=info.project_id,
                               user_id=info.user_id, is_admin="admin" in info.role_names,
                               roles=info.role_names)
    if not g.context.is_admin and request.endpoint in ("dashboard.overview", "dashboard.admin"):
        # Those pages are about the whole cloud: a member's home is its instances.
        return redirect(url_for("dashboard.instances"))
    return None


def _safe_next(target: str | None) -> str:
    """Only back into the dashboard on this site (no open redirect)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/dashboard/") \
                and not parts.path.startswith("/dashboard/login"):
            return target
    return url_for("dashboard.overview")


def _form(status: int = 200, error: str | None = None, notice: str | None = None):
    return render_template("dashboard/login.html", error=error, notice=notice, csrf=_csrf(),
                           user=request.form.get("user", ""),
                           project=request.form.get("project", ""),
                           next=request.values.get("next", "")), status


@bp.get("/login")
def login():
    if not keystone_mode():
        return redirect(url_for("dashboard.overview"))
    notice = None
    if request.args.get("expired"):
        notice = "Your session has expired. Please log in again."
    elif request.args.get("logged_out"):
        notice = "You have logged out."
    return _form(notice=notice)


@bp.post("/login")
def login_submit():
    if not keystone_mode():
        return redirect(url_for("dashboard.overview"))
    if not _csrf_ok():
        return _form(400, "The form had expired. Please try again.")
    user = request.form.get("user", "").strip()
    password = request.form.get("password", "")
    project = request.form.get("project", "").strip()
    if not user or not password or not project:
        return _form(400, "Enter a user name, a password and a project.")
    try:
        value, info = tokens.issue_for(common.db(), user, password, project,
                                       common.config().token_expiration)
    except (exception.Unauthorized, exception.Invalid):
        return _form(401, "The user name, password or project is not right, or the user "
                          "has no role on that project.")
    target = _safe_next(request.form.get("next"))
    session.clear()  # a fresh session (and csrf value) for the signed-in user
    session[SESSION_TOKEN] = value
    session["user"] = info.user_name
    session["project"] = info.project_name
    LOG.info("dashboard login of user %s on project %s (token %s)", info.user_id,
             info.project_id, info.audit_id)
    return redirect(target)


@bp.post("/logout")
def logout():
    if keystone_mode():
        if not _csrf_ok():
            return redirect(url_for("dashboard.overview"))
        value = session.get(SESSION_TOKEN)
        if isinstance(value, str):
            tokens.revoke(common.db(), value)
        session.clear()
        return redirect(url_for("dashboard_login.login", logged_out=1))
    return redirect(url_for("dashboard.overview"))
