"""/os-quota-sets (a project's limits, their defaults and usage; admins set them)
and /os-quota-class-sets (the defaults, as the ``default`` quota class).

Which resources a body holds follows the microversion, as in Nova: the network
quotas (``fixed_ips``, ``floating_ips``, ``security_groups``,
``security_group_rules``) go at 2.36, the ``injected_file*`` ones at 2.57; a
quota class shows the server group quotas only from 2.50 (and drops the
network ones there).  An update may name only the resources its version shows.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from vmflow import exception, policy
from vmflow.db import quotas as quotas_db
from webapp.api import common, microversion, validation

bp = Blueprint("quotas", __name__)

_RULE = "os_compute_api:os-quota-sets:"
policy.register({
    _RULE + "show": policy.PROJECT_READER_OR_ADMIN,
    _RULE + "detail": policy.PROJECT_READER_OR_ADMIN,
    _RULE + "defaults": "@",
    _RULE + "update": policy.ADMIN,
    _RULE + "delete": policy.ADMIN,
    # Quota classes are an admin's view of the defaults (members read them with
    # .../defaults, as `openstack quota show --default` does).
    "os_compute_api:os-quota-class-sets:show": policy.ADMIN,
})

_TRUE = ("1", "t", "true", "on", "y", "yes")
_FALSE = ("0", "f", "false", "off", "n", "no")


def shown_resources(*, quota_class: bool = False) -> list[str]:
    """The resources a quota body of this request's microversion holds."""
    hidden: set[str] = set()
    if microversion.at_least("2.36") or (quota_class and microversion.at_least("2.50")):
        hidden |= set(quotas_db.NETWORK)
    if microversion.at_least("2.57"):
        hidden |= set(quotas_db.INJECTED)
    if quota_class and not microversion.at_least("2.50"):
        hidden |= {"server_groups", "server_group_members"}
    return [name for name in quotas_db.RESOURCES if name not in hidden]


def _body(project_id: str | None, values: dict) -> dict:
    body = {name: values[name] for name in shown_resources()}
    if project_id is not None:
        body = {"id": project_id, **body}
    return {"quota_set": body}


@bp.get("/os-quota-sets/<project_id>")
def show(project_id: str):
    common.authorize(_RULE + "show", {"project_id": project_id})
    with common.db().read() as session:
        return jsonify(_body(project_id, quotas_db.limits(session, common.config(),
                                                          project_id)))


@bp.get("/os-quota-sets/<project_id>/defaults")
def defaults(project_id: str):
    common.authorize(_RULE + "defaults", {"project_id": project_id})
    return jsonify(_body(project_id, quotas_db.defaults(common.config())))


@bp.get("/os-quota-sets/<project_id>/detail")
def detail(project_id: str):
    common.authorize(_RULE + "detail", {"project_id": project_id})
    with common.db().read() as session:
        limits = quotas_db.limits(session, common.config(), project_id)
        used = _in_use(session, project_id)
    return jsonify(_body(project_id, {name: {"in_use": used[name], "limit": limits[name],
                                             "reserved": 0} for name in limits}))


def _in_use(session, project_id: str) -> dict[str, int]:
    """Usage, and for server group members the fullest group of the project (what
    a new limit must leave room for)."""
    used = quotas_db.usage(session, project_id)
    used["server_group_members"] = quotas_db.fullest_group(session, project_id)
    return used


def _no_user_quotas() -> None:
    """Nova also keeps quotas per user of a project; vmflow only per project, so
    a change aimed at one user is refused rather than applied to the project."""
    if request.args.get("user_id"):
        raise exception.Invalid("Per-user quotas are not supported: leave out user_id to "
                                "change the project's quotas.")


def _bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise exception.Invalid(f"Invalid input for field '{key}' of quota_set: {value!r} is not "
                            "a boolean.")


@bp.put("/os-quota-sets/<project_id>")
def update(project_id: str):
    common.authorize(_RULE + "update", {"project_id": project_id})
    _no_user_quotas()
    settable = shown_resources()
    quota_set = validation.body_object(common.json_body(), "quota_set",
                                       set(settable) | {"force"})
    force = _bool(quota_set.get("force", False), "force")
    asked = {}
    for name in settable:
        if name in quota_set:
            if quota_set[name] is None:
                raise exception.Invalid(f"Invalid input for field '{name}' of quota_set: "
                                        "None is not an integer.")
            asked[name] = validation.integer(quota_set, name, "quota_set", minimum=-1,
                                             maximum=quotas_db.MAX_LIMIT)
    with common.db().write() as session:
        if not force:
            used = _in_use(session, project_id)
            for name, limit in asked.items():
                if limit != -1 and limit < used[name]:
                    raise exception.Invalid(
                        f"Quota limit {limit} for {name} must be greater than or equal to "
                        f"already used and reserved {used[name]}.")
        quotas_db.set_limits(session, project_id, asked)
        limits = quotas_db.limits(session, common.config(), project_id)
    return jsonify(_body(None, limits))


@bp.delete("/os-quota-sets/<project_id>")
def reset(project_id: str):
    common.authorize(_RULE + "delete", {"project_id": project_id})
    _no_user_quotas()
    with common.db().write() as session:
        quotas_db.reset(session, project_id)
    return "", 202


@bp.get("/os-quota-class-sets/<class_name>")
def show_class(class_name: str):
    """Every project's defaults.  Only the ``default`` class exists; like Nova,
    any other name answers the defaults too."""
    common.authorize("os_compute_api:os-quota-class-sets:show", {"quota_class": class_name})
    values = quotas_db.defaults(common.config())
    return jsonify({"quota_class_set": {
        "id": class_name, **{name: values[name] for name in shown_resources(quota_class=True)}}})
