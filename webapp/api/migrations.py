"""Migration records as Nova shows them (admin only by default).

* ``GET /os-migrations``: every migration (resize, cold and live migration,
  evacuation), filtered by ``host`` (source or target), ``status``,
  ``instance_uuid``, ``source_compute``, ``migration_type`` (2.23),
  ``user_id``/``project_id`` (2.80); from 2.59 newest first with paging
  (``limit``, ``marker`` = a migration's uuid, ``changes-since``; 2.66
  ``changes-before``).  Fields by version: 2.23 ``migration_type`` and, for a
  live migration in progress, ``links``; 2.59 ``uuid``; 2.80 ``user_id`` and
  ``project_id``.
* ``GET /servers/{id}/migrations`` and ``.../migrations/{id}`` (2.23): as in
  Nova, only the server's live migrations in progress, with their progress in
  bytes; any other migration answers 404 there.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from vmflow import exception
from vmflow.db import instances as instances_db
from vmflow.db import moves
from vmflow.db.models import Migration, utcnow
from webapp.api import common, microversion, usage

bp = Blueprint("migrations", __name__)

# A live migration in one of these is "in progress" for servers/{id}/migrations
# (Nova's list for that resource and for the links of os-migrations).
LIVE_IN_PROGRESS = frozenset({"queued", "preparing", "running"})


def _time(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value else None


def _flavor_id(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def _common_fields(row: Migration) -> dict[str, Any]:
    body = {"id": row.id, "created_at": _time(row.created_at),
            "updated_at": _time(row.updated_at), "status": row.status,
            "source_compute": row.source_compute, "source_node": row.source_node,
            "dest_compute": row.dest_compute, "dest_node": row.dest_node,
            "dest_host": row.dest_host}
    if microversion.at_least("2.59"):
        body["uuid"] = row.uuid
    if microversion.at_least("2.80"):
        body.update(user_id=row.user_id, project_id=row.project_id)
    return body


def _live_in_progress(row: Migration) -> bool:
    return row.migration_type == moves.LIVE_MIGRATION and row.status in LIVE_IN_PROGRESS


def _listed(row: Migration) -> dict[str, Any]:
    body = {**_common_fields(row), "instance_uuid": row.instance_uuid,
            "old_instance_type_id": _flavor_id(row.old_flavor_id),
            "new_instance_type_id": _flavor_id(row.new_flavor_id)}
    if microversion.at_least("2.23"):
        body["migration_type"] = row.migration_type
        if _live_in_progress(row):
            body["links"] = common.links(f"servers/{row.instance_uuid}/migrations",
                                         str(row.id))
    return body


def _filtered(rows: list[Migration]) -> list[Migration]:
    args = request.args
    host = args.get("host")
    exact = {"status": "status", "instance_uuid": "instance_uuid",
             "source_compute": "source_compute"}
    if microversion.at_least("2.23"):
        exact["migration_type"] = "migration_type"
    if microversion.at_least("2.80"):
        exact.update(user_id="user_id", project_id="project_id")
    for key, column in exact.items():
        if args.get(key) is not None:
            rows = [r for r in rows if getattr(r, column) == args[key]]
    if host is not None:
        rows = [r for r in rows if host in (r.source_compute, r.dest_compute)]
    return rows


def _paged(rows: list[Migration]) -> tuple[list[Migration], list[dict[str, str]] | None]:
    """2.59: changes-since, marker and limit; 2.66: changes-before."""
    now = utcnow()
    since = request.args.get("changes-since")
    before = request.args.get("changes-before") if microversion.at_least("2.66") else None
    since = usage.parse_time("changes-since", since, now) if since else None
    before = usage.parse_time("changes-before", before, now) if before else None
    if since and before and before < since:
        raise exception.Invalid("The value of changes-since must be less than or equal to "
                                "changes-before.")
    rows = [r for r in rows if (since is None or r.updated_at >= since)
            and (before is None or r.updated_at <= before)]
    rows = common.after_marker(rows, request.args.get("marker"), lambda r: r.uuid,
                               "Marker {marker} could not be found.")
    limit = common.query_int("limit", minimum=0)
    if limit is None or not limit or len(rows) < limit:
        return (rows[:limit] if limit is not None else rows), None
    rows = rows[:limit]
    query = {k: v for k, v in request.args.items() if k != "marker"}
    query["marker"] = rows[-1].uuid
    href = f"{common.base_url()}/v2.1/os-migrations?{urllib.parse.urlencode(query)}"
    return rows, [{"rel": "next", "href": href}]


@bp.get("/os-migrations")
def index():
    common.authorize("os_compute_api:os-migrations:index")
    with common.db().read() as session:
        query = select(Migration).where(Migration.deleted.is_(False))
        if microversion.at_least("2.59"):
            query = query.order_by(Migration.created_at.desc(), Migration.id.desc())
        else:
            query = query.order_by(Migration.id)
        rows = _filtered(list(session.scalars(query)))
        links = None
        if microversion.at_least("2.59"):
            rows, links = _paged(rows)
        body: dict[str, Any] = {"migrations": [_listed(r) for r in rows]}
        if links:
            body["migrations_links"] = links
        return jsonify(body)


def _server_migration(row: Migration) -> dict[str, Any]:
    body = {**_common_fields(row), "server_uuid": row.instance_uuid}
    for kind in ("memory", "disk"):
        for part in ("total", "processed", "remaining"):
            body[f"{kind}_{part}_bytes"] = getattr(row, f"{kind}_{part}")
    return body


def _server(session, server_id: str, rule: str) -> None:
    microversion.require("2.23")
    ctx = common.context()
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    instance = instances_db.get(session, server_id,
                                project_id=None if ctx.is_admin else ctx.project_id)
    common.authorize(rule, {"project_id": instance.project_id})


@bp.get("/servers/<server_id>/migrations")
def server_index(server_id: str):
    with common.db().read() as session:
        _server(session, server_id, "os_compute_api:servers:migrations:index")
        rows = [r for r in moves.of_instance(session, server_id, in_progress=True)
                if _live_in_progress(r)]
        return jsonify({"migrations": [_server_migration(r) for r in rows]})


@bp.get("/servers/<server_id>/migrations/<migration_id>")
def server_show(server_id: str, migration_id: str):
    with common.db().read() as session:
        _server(session, server_id, "os_compute_api:servers:migrations:show")
        row = session.scalar(select(Migration).where(
            Migration.id == int(migration_id) if migration_id.isdigit() else False,
            Migration.instance_uuid == server_id, Migration.deleted.is_(False)))
        if row is None or not _live_in_progress(row):
            raise exception.NotFound(f"In-progress live migration {migration_id} is not "
                                     f"found for server {server_id}.")
        return jsonify({"migration": _server_migration(row)})
