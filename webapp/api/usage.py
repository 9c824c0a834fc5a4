"""/os-simple-tenant-usage: what each project's instances used over a period.

An instance counts from its launch (``launched_at``) to its deletion
(``terminated_at``) or the end of the period, whichever comes first; instances
are soft-deleted, so a deleted instance still counts for the part of the period
it lived.  One that never launched counts nothing.  Usage is its flavor (as it
was at boot) times those hours.

As in Nova: ``start`` and ``end`` each default to the time of the request (so
a request without ``start`` covers an empty period), ``start`` must come before
``end``, and an ``end`` in the future is taken as now.  Listing every project
is for admins; a project's own usage is for its members too.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import and_, or_, select

from vmflow import exception
from vmflow.db.models import Instance, utcnow
from webapp.api import common, microversion

bp = Blueprint("usage", __name__)

# Nova's forms (2024-05-01T12:00:00, with .ffffff, or a space instead of the T),
# and what ISO 8601 clients also send: a Z or a UTC offset.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)?")
# How Nova writes the times of this API (naive UTC, always with microseconds).
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def parse_time(name: str, raw: str | None, now: dt.datetime) -> dt.datetime:
    """A query parameter's time as naive UTC; ``now`` when it is absent or empty."""
    if not raw:
        return now
    if _TIMESTAMP.fullmatch(raw):
        try:
            value = dt.datetime.fromisoformat(raw)
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return value
        except (ValueError, OverflowError):  # no such day, or out of range once in UTC
            pass
    raise exception.Invalid(
        f"Invalid {name} time {raw!r}: expected an ISO 8601 date and time such as "
        "2024-05-01T12:00:00 (microseconds, and a Z or UTC offset, are optional).")


def period() -> tuple[dt.datetime, dt.datetime]:
    """The period asked for: (start, stop), stop no later than now."""
    now = utcnow()
    start = parse_time("start", request.args.get("start"), now)
    end = parse_time("end", request.args.get("end"), now)
    given = bool(request.args.get("start") or request.args.get("end"))
    if given and not start < end:
        raise exception.Invalid(
            f"Invalid period: the start time ({start.strftime(_TIME_FORMAT)}) must come "
            f"before the end time ({end.strftime(_TIME_FORMAT)}).")
    return start, min(end, now)


def _text(value: dt.datetime | None) -> str | None:
    return value.strftime(_TIME_FORMAT) if value else None


def hours(instance: Instance, start: dt.datetime, stop: dt.datetime) -> float:
    """The hours of [start, stop] during which ``instance`` had been launched and
    not yet deleted."""
    if instance.launched_at is None:
        return 0.0
    begin = max(instance.launched_at, start)
    end = min(instance.terminated_at, stop) if instance.terminated_at else stop
    return max(0.0, (end - begin).total_seconds() / 3600.0)


def server_usage(instance: Instance, start: dt.datetime, stop: dt.datetime,
                 now: dt.datetime) -> dict[str, Any]:
    flavor = instance.flavor or {}
    lived = (instance.terminated_at or now) - instance.launched_at
    return {
        "instance_id": instance.uuid,
        "name": instance.name,
        "hours": hours(instance, start, stop),
        "memory_mb": int(flavor.get("memory_mb", 0)),
        "local_gb": int(flavor.get("root_gb", 0)) + int(flavor.get("ephemeral_gb", 0)),
        "vcpus": int(flavor.get("vcpus", 0)),
        "tenant_id": instance.project_id,
        "flavor": flavor.get("name", ""),
        "started_at": _text(instance.launched_at),
        "ended_at": _text(instance.terminated_at),
        "state": "terminated" if instance.terminated_at else instance.vm_state,
        "uptime": max(0, int(lived.total_seconds())),
    }


def usages(start: dt.datetime, stop: dt.datetime, *, tenant_id: str | None = None,
           detailed: bool = True, limit: int | None = None, marker: str | None = None,
           seen: list[str] | None = None) -> list[dict[str, Any]]:
    """One summary per project with instances that lived during the period, in
    project order (each with its servers, in id order, when ``detailed``).

    Paging (2.40) is over instances in that order: at most ``limit`` of them,
    after the instance ``marker``; the ids of those counted are appended to ``seen``.
    """
    query = (select(Instance)
             .where(Instance.launched_at < stop,
                    or_(Instance.terminated_at.is_(None), Instance.terminated_at > start))
             .order_by(Instance.project_id, Instance.uuid))
    if tenant_id is not None:
        query = query.where(Instance.project_id == tenant_id)
    if limit is not None:
        query = query.limit(limit)
    now = utcnow()
    summaries: dict[str, dict[str, Any]] = {}
    with common.db().read() as session:
        if marker is not None:
            after = session.get(Instance, marker)
            if after is None or (tenant_id is not None and after.project_id != tenant_id):
                raise exception.Invalid(f"marker [{marker}] not found")
            query = query.where(or_(Instance.project_id > after.project_id,
                                    and_(Instance.project_id == after.project_id,
                                         Instance.uuid > after.uuid)))
        for instance in session.scalars(query):
            if seen is not None:
                seen.append(instance.uuid)
            server = server_usage(instance, start, stop, now)
            summary = summaries.get(instance.project_id)
            if summary is None:
                summary = summaries[instance.project_id] = {
                    "tenant_id": instance.project_id, "start": _text(start),
                    "stop": _text(stop), "total_hours": 0.0, "total_vcpus_usage": 0.0,
                    "total_memory_mb_usage": 0.0, "total_local_gb_usage": 0.0}
                if detailed:
                    summary["server_usages"] = []
            summary["total_hours"] += server["hours"]
            summary["total_vcpus_usage"] += server["vcpus"] * server["hours"]
            summary["total_memory_mb_usage"] += server["memory_mb"] * server["hours"]
            summary["total_local_gb_usage"] += server["local_gb"] * server["hours"]
            if detailed:
                summary["server_usages"].append(server)
    return list(summaries.values())


@bp.get("/os-simple-tenant-usage")
def index():
    common.authorize("os_compute_api:os-simple-tenant-usage:list")
    start, stop = period()
    detailed = request.args.get("detailed", "0").lower() in ("1", "true")  # sdk sends True
    limit, marker, seen = *_paging(), []
    found = usages(start, stop, detailed=detailed, limit=limit, marker=marker, seen=seen)
    body: dict[str, Any] = {"tenant_usages": found}
    if limit is not None and len(seen) == limit and seen:
        body["tenant_usages_links"] = _next_link("os-simple-tenant-usage", seen[-1])
    return jsonify(body)


@bp.get("/os-simple-tenant-usage/<tenant_id>")
def show(tenant_id: str):
    common.authorize("os_compute_api:os-simple-tenant-usage:show", {"project_id": tenant_id})
    start, stop = period()
    limit, marker, seen = *_paging(), []
    found = usages(start, stop, tenant_id=tenant_id, limit=limit, marker=marker, seen=seen)
    body: dict[str, Any] = {"tenant_usage": found[0] if found else {}}
    if limit is not None and len(seen) == limit and seen:
        body["tenant_usage_links"] = _next_link(f"os-simple-tenant-usage/{tenant_id}", seen[-1])
    return jsonify(body)


def _paging() -> tuple[int | None, str | None]:
    """``limit`` and ``marker`` (an instance id), from 2.40; ignored below."""
    if not microversion.at_least("2.40"):
        return None, None
    return common.query_int("limit", minimum=0), request.args.get("marker")


def _next_link(path: str, last: str) -> list[dict[str, str]]:
    """The link to the next page: the same query, after the last instance counted."""
    query = {k: v for k, v in request.args.items() if k != "marker"}
    query["marker"] = last
    return [{"rel": "next",
             "href": f"{common.base_url()}/v2.1/{path}?{urllib.parse.urlencode(query)}"}]
