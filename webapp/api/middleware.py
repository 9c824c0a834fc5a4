"""Per-request plumbing: request id, who the caller is, access log.

Who the caller is depends on ``auth_strategy``:

* ``keystone`` (the default): every compute (``/v2.1/...``) and image
  (``/image/...``) request carries an ``X-Auth-Token`` issued by the identity
  service (``webapp/identity``); the token names the user, its project and its
  roles.  Without a valid one the answer is 401 with a ``WWW-Authenticate``
  header naming the identity service, as keystonemiddleware answers in front of
  Nova.  Open without a token: the version documents (``GET /``, ``/v2.1``,
  ``/image``, ``/image/versions``), the identity API (which checks its own
  tokens) and the dashboard's pages and assets (the dashboard gates its pages
  itself, webapp/dashboard/login.py).  The dashboard's scripts authenticate
  with the token kept in the dashboard's session cookie, which counts only
  together with the ``X-Vmflow-Dashboard: 1`` header a cross-site form cannot
  send.
* ``noauth`` (tests and benchmarks): the caller belongs to the project named by
  ``X-Auth-Project-Id`` (default ``noauth_project_id``) with the roles named by
  ``X-Roles`` (default admin).
"""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request, session

from vmflow import context
from vmflow.identity import tokens
from webapp.api import common, errors

LOG = logging.getLogger("webapp.access")

REQUEST_ID_HEADER = "X-OpenStack-Request-Id"
DASHBOARD_HEADER = "X-Vmflow-Dashboard"
# The session key under which the dashboard keeps its token (webapp/dashboard/login.py).
SESSION_TOKEN = "token"

# Documents a client reads before it has a token (GET and HEAD only).
_DISCOVERY = frozenset({"/", "/v2", "/v2/", "/v2.1", "/v2.1/", "/image", "/image/",
                        "/image/versions"})


def _noauth_caller() -> context.RequestContext:
    cfg = common.config()
    project = request.headers.get("X-Auth-Project-Id") or cfg.noauth_project_id
    user = request.headers.get("X-Auth-User") or cfg.noauth_user_id
    roles = tuple(r.strip().lower() for r in request.headers.get("X-Roles", "admin").split(",")
                  if r.strip()) or ("admin",)
    return context.RequestContext(request_id=g.request_id, project_id=project, user_id=user,
                                  is_admin="admin" in roles, roles=roles)


def _anonymous() -> context.RequestContext:
    return context.RequestContext(request_id=g.request_id, project_id="", user_id="")


def needs_token(path: str, method: str) -> bool:
    """Whether a request to ``path`` must carry a token in keystone mode."""
    if method in ("GET", "HEAD") and path in _DISCOVERY:
        return False
    if path == "/identity" or path.startswith("/identity/"):
        return False  # the identity API authenticates its own calls
    if path.startswith("/dashboard/") or path == "/dashboard":
        return path.startswith("/dashboard/api/")  # pages and assets are gated by the dashboard
    return True


def presented_token() -> str | None:
    """The token of this request: X-Auth-Token, else the dashboard session's
    (only for the dashboard's own scripts, which send X-Vmflow-Dashboard)."""
    token = request.headers.get("X-Auth-Token")
    if token:
        return token
    if request.headers.get(DASHBOARD_HEADER) == "1":
        value = session.get(SESSION_TOKEN)
        return value if isinstance(value, str) else None
    return None


def _unauthorized(message: str):
    response = errors.fault("unauthorized", 401, message)
    response.headers["WWW-Authenticate"] = f'Keystone uri="{common.base_url()}/identity"'
    return response


def _keystone_caller():
    """The caller from its token, or the 401/403 response that refuses it."""
    if not needs_token(request.path, request.method):
        g.context = _anonymous()
        return None
    value = presented_token()
    if not value:
        g.context = _anonymous()
        return _unauthorized("The request you have made requires authentication: send an "
                             "X-Auth-Token from the identity service.")
    info = tokens.validate(common.db(), value)
    if info is None:
        g.context = _anonymous()
        return _unauthorized("The token is invalid, expired or revoked: authenticate again.")
    if info.project_id is None:
        g.context = _anonymous()
        return errors.fault("forbidden", 403, "This token is not scoped to a project; the "
                                              "compute and image APIs need a project-scoped "
                                              "token.")
    roles = info.role_names
    g.context = context.RequestContext(request_id=g.request_id, project_id=info.project_id,
                                       user_id=info.user_id, is_admin="admin" in roles,
                                       roles=roles)
    g.token = info
    return None


def init_app(app: Flask) -> None:
    @app.before_request
    def _begin():
        g.started = time.perf_counter()
        g.request_id = context.new_request_id()
        g.request_id_token = context.set_request_id(g.request_id)
        if common.config().auth_strategy == "noauth":
            g.context = _noauth_caller()
            return None
        return _keystone_caller()

    @app.after_request
    def _finish(response):
        rid = getattr(g, "request_id", None) or context.new_request_id()
        response.headers[REQUEST_ID_HEADER] = rid
        response.headers["X-Compute-Request-Id"] = rid
        started = getattr(g, "started", None)
        elapsed = (time.perf_counter() - started) * 1000 if started else 0.0
        # The path and query only: tokens travel in headers and passwords in
        # bodies, neither of which is logged (and log.SecretsFilter masks any
        # that a client puts in a query string).
        LOG.info('%s "%s %s" status %s len %s time %.1f ms', request.remote_addr,
                 request.method, request.full_path.rstrip("?"), response.status_code,
                 response.content_length, elapsed)
        return response

    @app.teardown_request
    def _teardown(_exc) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            context.reset_request_id(token)
