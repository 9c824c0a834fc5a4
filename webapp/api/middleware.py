"""Per-request plumbing: request id, caller context, access log."""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from vmflow import context
from webapp.api import common

LOG = logging.getLogger("webapp.access")

REQUEST_ID_HEADER = "X-OpenStack-Request-Id"


def _caller() -> context.RequestContext:
    """Who is asking.  Only the documented no-auth mode exists until the identity
    issue lands: the caller belongs to the project named by ``X-Auth-Project-Id``
    (default: ``noauth_project_id``) with the roles named by ``X-Roles`` (as
    Keystone's middleware passes them on; default: admin)."""
    cfg = common.config()
    project = request.headers.get("X-Auth-Project-Id") or cfg.noauth_project_id
    user = request.headers.get("X-Auth-User") or cfg.noauth_user_id
    roles = tuple(r.strip().lower() for r in request.headers.get("X-Roles", "admin").split(",")
                  if r.strip()) or ("admin",)
    return context.RequestContext(request_id=g.request_id, project_id=project, user_id=user,
                                  is_admin="admin" in roles, roles=roles)


def init_app(app: Flask) -> None:
    @app.before_request
    def _begin() -> None:
        g.started = time.perf_counter()
        g.request_id = context.new_request_id()
        g.request_id_token = context.set_request_id(g.request_id)
        g.context = _caller()

    @app.after_request
    def _finish(response):
        rid = getattr(g, "request_id", None) or context.new_request_id()
        response.headers[REQUEST_ID_HEADER] = rid
        response.headers["X-Compute-Request-Id"] = rid
        started = getattr(g, "started", None)
        elapsed = (time.perf_counter() - started) * 1000 if started else 0.0
        LOG.info('%s "%s %s" status %s len %s time %.1f ms', request.remote_addr,
                 request.method, request.full_path.rstrip("?"), response.status_code,
                 response.content_length, elapsed)
        return response

    @app.teardown_request
    def _teardown(_exc) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            context.reset_request_id(token)
