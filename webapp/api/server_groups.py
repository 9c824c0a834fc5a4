"""/os-server-groups: affinity and anti-affinity groups (the `group` scheduler hint)."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from vmflow import exception
from vmflow.db import aggregates as aggregates_db
from vmflow.db.models import Instance, ServerGroup, ServerGroupMember
from webapp.api import common, validation

bp = Blueprint("server_groups", __name__)

POLICIES = ("affinity", "anti-affinity")


def _view(session, row: ServerGroup) -> dict:
    members = aggregates_db.group_members(session, row.uuid)
    live = set(session.scalars(select(Instance.uuid).where(
        Instance.uuid.in_(members), Instance.deleted.is_(False)))) if members else set()
    return {"id": row.uuid, "name": row.name, "policies": [row.policy],
            "members": [m for m in members if m in live], "metadata": {},
            "project_id": row.project_id, "user_id": row.user_id}


def _scope() -> str | None:
    ctx = common.context()
    all_projects = request.args.get("all_projects", "").lower() in ("1", "true", "yes")
    return None if (ctx.is_admin and all_projects) else ctx.project_id


@bp.get("/os-server-groups")
def index():
    project = _scope()
    with common.db().read() as session:
        query = select(ServerGroup).order_by(ServerGroup.created_at, ServerGroup.uuid)
        if project is not None:
            query = query.where(ServerGroup.project_id == project)
        return jsonify({"server_groups": [_view(session, g) for g in session.scalars(query)]})


@bp.post("/os-server-groups")
def create():
    group = validation.body_object(common.json_body(), "server_group", {"name", "policies"})
    name = validation.string(group, "name", "server_group", required=True, min_len=1)
    policies = group.get("policies")
    if (not isinstance(policies, list) or len(policies) != 1 or policies[0] not in POLICIES):
        raise exception.Invalid("Invalid input for field 'policies': exactly one of "
                                f"{', '.join(POLICIES)} is required.")
    ctx = common.context()
    with common.db().write() as session:
        row = ServerGroup(uuid=str(uuid.uuid4()), name=name, policy=policies[0],
                          project_id=ctx.project_id, user_id=ctx.user_id)
        session.add(row)
        session.flush()
        return jsonify({"server_group": _view(session, row)})


@bp.get("/os-server-groups/<group_id>")
def show(group_id: str):
    with common.db().read() as session:
        return jsonify({"server_group": _view(session, aggregates_db.get_group(
            session, group_id, _scope() if not common.context().is_admin else None))})


@bp.delete("/os-server-groups/<group_id>")
def delete(group_id: str):
    ctx = common.context()
    with common.db().write() as session:
        row = aggregates_db.get_group(session, group_id, None if ctx.is_admin
                                      else ctx.project_id)
        session.query(ServerGroupMember).filter_by(group_uuid=row.uuid).delete()
        session.delete(row)
    return "", 204
