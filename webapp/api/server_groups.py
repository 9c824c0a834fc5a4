"""/os-server-groups: affinity and anti-affinity groups (the `group` scheduler hint)."""

from __future__ import annotations

import uuid

from flask import Blueprint, jsonify, request
from sqlalchemy import delete as sa_delete
from sqlalchemy import select

from vmflow import exception
from vmflow.db import aggregates as aggregates_db
from vmflow.db import quotas as quotas_db
from vmflow.db.models import Instance, ServerGroup, ServerGroupMember
from webapp.api import common, microversion, validation

bp = Blueprint("server_groups", __name__)

POLICIES = ("affinity", "anti-affinity")
# From 2.15: preferences the scheduler weighs instead of rules it enforces.
SOFT_POLICIES = ("soft-affinity", "soft-anti-affinity")


def _policies() -> tuple[str, ...]:
    return POLICIES + SOFT_POLICIES if microversion.at_least("2.15") else POLICIES


def _view(session, row: ServerGroup) -> dict:
    members = aggregates_db.group_members(session, row.uuid)
    live = set(session.scalars(select(Instance.uuid).where(
        Instance.uuid.in_(members), Instance.deleted.is_(False)))) if members else set()
    body = {"id": row.uuid, "name": row.name, "policies": [row.policy],
            "members": [m for m in members if m in live], "metadata": {}}
    if microversion.at_least("2.64"):  # one policy and its rules; no policies, metadata
        body = {"id": row.uuid, "name": row.name, "policy": row.policy,
                "rules": dict(row.rules or {}), "members": body["members"]}
    if microversion.at_least("2.13"):
        body.update(project_id=row.project_id, user_id=row.user_id)
    return body


def _scope() -> str | None:
    """The project whose groups are listed; None (all) for an admin who asks.
    A caller who may not see them all sees its own, as Nova answers."""
    ctx = common.context()
    all_projects = request.args.get("all_projects", "").lower() in ("1", "true", "yes")
    if all_projects and common.allowed("os_compute_api:os-server-groups:index:all_projects"):
        return None
    return ctx.project_id


@bp.get("/os-server-groups")
def index():
    common.authorize("os_compute_api:os-server-groups:index")
    project = _scope()
    with common.db().read() as session:
        query = select(ServerGroup).order_by(ServerGroup.created_at, ServerGroup.uuid)
        if project is not None:
            query = query.where(ServerGroup.project_id == project)
        return jsonify({"server_groups": [_view(session, g) for g in session.scalars(query)]})


def _policy_and_rules() -> tuple[str, dict, str]:
    """2.64's body: ``policy`` (one name) and optional ``rules``: only
    ``max_server_per_host`` (a positive integer), only for anti-affinity."""
    group = validation.body_object(common.json_body(), "server_group",
                                   {"name", "policy", "rules"})
    name = validation.string(group, "name", "server_group", required=True, min_len=1)
    policy_name = group.get("policy")
    if policy_name not in _policies():
        raise exception.Invalid("Invalid input for field 'policy': one of "
                                f"{', '.join(_policies())} is required.")
    rules = group.get("rules") or {}
    if not isinstance(rules, dict) or set(rules) - {"max_server_per_host"}:
        raise exception.Invalid("Invalid input for field 'rules': only "
                                "'max_server_per_host' is supported.")
    if rules and policy_name != "anti-affinity":
        raise exception.Invalid("Only the anti-affinity policy supports rules.")
    if "max_server_per_host" in rules:
        most = validation.integer(rules, "max_server_per_host", "rules", minimum=1)
        rules = {"max_server_per_host": most}
    return policy_name, rules, name


@bp.post("/os-server-groups")
def create():
    if microversion.at_least("2.64"):
        policy_name, rules, name = _policy_and_rules()
    else:
        group = validation.body_object(common.json_body(), "server_group", {"name", "policies"})
        name = validation.string(group, "name", "server_group", required=True, min_len=1)
        policies = group.get("policies")
        if (not isinstance(policies, list) or len(policies) != 1
                or policies[0] not in _policies()):
            raise exception.Invalid("Invalid input for field 'policies': exactly one of "
                                    f"{', '.join(_policies())} is required.")
        policy_name, rules = policies[0], {}
    ctx = common.authorize("os_compute_api:os-server-groups:create")

    def insert(session) -> str:
        row = ServerGroup(uuid=str(uuid.uuid4()), name=name, policy=policy_name, rules=rules,
                          project_id=ctx.project_id, user_id=ctx.user_id)
        session.add(row)
        return row.uuid

    group_uuid = quotas_db.guarded_insert(
        common.db(), lambda session, recheck: quotas_db.check_server_groups(
            session, common.config(), ctx.project_id, recheck=recheck),
        insert, lambda session, made: session.execute(
            sa_delete(ServerGroup).where(ServerGroup.uuid == made)))
    with common.db().read() as session:
        return jsonify({"server_group": _view(session, session.get(ServerGroup, group_uuid))})


@bp.get("/os-server-groups/<group_id>")
def show(group_id: str):
    ctx = common.context()
    with common.db().read() as session:
        row = aggregates_db.get_group(session, group_id,
                                      None if ctx.is_admin else ctx.project_id)
        common.authorize("os_compute_api:os-server-groups:show",
                         {"project_id": row.project_id})
        return jsonify({"server_group": _view(session, row)})


@bp.delete("/os-server-groups/<group_id>")
def delete(group_id: str):
    ctx = common.context()
    with common.db().write() as session:
        row = aggregates_db.get_group(session, group_id, None if ctx.is_admin
                                      else ctx.project_id)
        common.authorize("os_compute_api:os-server-groups:delete",
                         {"project_id": row.project_id})
        session.query(ServerGroupMember).filter_by(group_uuid=row.uuid).delete()
        session.delete(row)
    return "", 204
