"""Helpers shared by the API blueprints."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from flask import current_app, g, request

from vmflow import exception
from vmflow.compute_api import ComputeAPI
from vmflow.config import Config
from vmflow.context import RequestContext
from vmflow.db.session import Database


def config() -> Config:
    return current_app.extensions["vmflow"]["config"]


def db() -> Database:
    return current_app.extensions["vmflow"]["db"]


def compute_api() -> ComputeAPI:
    return current_app.extensions["vmflow"]["compute_api"]


def context() -> RequestContext:
    return g.context


def authorize(rule: str, target: dict | None = None) -> RequestContext:
    """The caller, if it passes policy ``rule`` for ``target`` (default: its own
    project, e.g. ``{"project_id": server.project_id}``); otherwise 403 in Nova's words."""
    ctx = context()
    compute_api().policy.authorize(ctx, rule, target)
    return ctx


def allowed(rule: str, target: dict | None = None) -> bool:
    """Whether the caller passes policy ``rule`` (for what a body shows, not a 403)."""
    return compute_api().policy.check(context(), rule, target)


def shows_host(project_id: str) -> bool:
    """Whether server bodies of ``project_id`` show the caller their host names."""
    return allowed("os_compute_api:os-extended-server-attributes", {"project_id": project_id})


def isotime(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def base_url() -> str:
    return config().public_url.rstrip("/") or request.host_url.rstrip("/")


def links(collection: str, resource_id: str) -> list[dict[str, str]]:
    root = base_url()
    return [
        {"rel": "self", "href": f"{root}/v2.1/{collection}/{resource_id}"},
        {"rel": "bookmark", "href": f"{root}/{collection}/{resource_id}"},
    ]


def require_uuid(value: str, not_found: type[exception.NotFound], **kwargs: Any) -> str:
    """Ids that are not UUIDs name nothing: 404, as Nova answers (clients rely on it)."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise not_found(**kwargs) from None
    return value


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400 saying what is wrong with it."""
    raw = request.get_data(cache=True)
    if not raw:
        raise exception.Invalid("The request body is empty; a JSON object is required.")
    try:
        body = request.get_json(force=True, silent=False)
    except Exception:
        raise exception.Invalid("Malformed request body: it is not valid JSON.") from None
    if not isinstance(body, dict):
        raise exception.Invalid("The request body must be a JSON object.")
    return body


def after_marker(rows: list, marker: str | None, key: Callable[[Any], str],
                 not_found: str = "marker [{marker}] not found") -> list:
    """The rows after the one whose ``key`` is ``marker`` (paging); all of them
    when there is no marker; 400 with ``not_found`` when no row has it."""
    if marker is None:
        return rows
    ids = [key(row) for row in rows]
    if marker not in ids:
        raise exception.Invalid(not_found.format(marker=marker))
    return rows[ids.index(marker) + 1:]


def query_int(name: str, minimum: int = 0) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise exception.Invalid(f"Query parameter {name} must be an integer, not {raw!r}.") \
            from None
    if value < minimum:
        raise exception.Invalid(f"Query parameter {name} must be at least {minimum}.")
    return value
