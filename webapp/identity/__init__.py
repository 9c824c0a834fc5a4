"""The identity API at ``/identity``: a Keystone v3 subset (vmflow.identity).

Version discovery, tokens (``/v3/auth/tokens``: issue, validate, revoke), the
caller's projects and catalog, and, for admins, projects, users, roles, role
grants and assignments.  Errors are Keystone's
(``{"error": {"code": N, "title": ..., "message": ...}}``), not Nova's.

Every call but discovery and ``POST /v3/auth/tokens`` needs a valid
``X-Auth-Token``, whatever ``auth_strategy`` says (the no-auth mode is the
compute and image APIs' only).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from vmflow import exception, policy
from vmflow.context import RequestContext
from vmflow.db.models import Project, Role, User
from vmflow.identity import DEFAULT_DOMAIN, DEFAULT_DOMAIN_ID, catalog, passwords, store, tokens
from webapp.api import common

LOG = logging.getLogger(__name__)

bp = Blueprint("identity", __name__, url_prefix="/identity")

VERSION_ID = "v3.14"
UPDATED = "2020-04-07T00:00:00Z"
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 413: "Request Entity Too Large",
           415: "Unsupported Media Type"}

ADMIN = policy.ADMIN
policy.register({
    "identity:validate_token": f"{ADMIN} or user_id:%(user_id)s",
    "identity:revoke_token": f"{ADMIN} or user_id:%(user_id)s",
    "identity:get_project": f"{ADMIN} or project_id:%(project_id)s",
    "identity:list_projects": ADMIN,
    "identity:create_project": ADMIN,
    "identity:update_project": ADMIN,
    "identity:delete_project": ADMIN,
    "identity:get_user": f"{ADMIN} or user_id:%(user_id)s",
    "identity:list_users": ADMIN,
    "identity:create_user": ADMIN,
    "identity:update_user": ADMIN,
    "identity:delete_user": ADMIN,
    "identity:change_password": "user_id:%(user_id)s",
    "identity:list_user_projects": f"{ADMIN} or user_id:%(user_id)s",
    "identity:get_role": ADMIN,
    "identity:list_roles": ADMIN,
    "identity:check_grant": ADMIN,
    "identity:list_grants": ADMIN,
    "identity:create_grant": ADMIN,
    "identity:revoke_grant": ADMIN,
    "identity:list_role_assignments": ADMIN,
    "identity:get_domain": "@",
    "identity:list_domains": "@",
})

# Endpoints that need no token.
_OPEN = {"identity.versions", "identity.v3", "identity.issue_token", "identity.unknown"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


# -- plumbing -------------------------------------------------------------------------

def _error(code: int, message: str):
    response = jsonify({"error": {"code": code, "title": _TITLES.get(code, "Error"),
                                  "message": message}})
    response.status_code = code
    if code == 401:
        response.headers["WWW-Authenticate"] = f'Keystone uri="{common.base_url()}/identity"'
    return response


@bp.errorhandler(exception.VmflowError)
def _vmflow_error(err: exception.VmflowError):
    if err.code >= 500:
        LOG.error("identity request failed: %s", err)
    return _error(err.code, err.text)


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    return _error(err.code or 500, err.description or err.name)


@bp.before_request
def _authenticate():
    """The caller from X-Auth-Token (g.context, g.token), except on open endpoints."""
    if request.endpoint in _OPEN:
        return None
    info = tokens.validate(common.db(), request.headers.get("X-Auth-Token"))
    if info is None:
        return _error(401, "The request you have made requires authentication.")
    g.token = info
    g.context = RequestContext(request_id=g.request_id, project_id=info.project_id,
                               user_id=info.user_id, is_admin="admin" in info.role_names,
                               roles=info.role_names)
    return None


def _url(path: str) -> str:
    return f"{common.base_url()}/identity/v3{path}"


def _collection(key: str, items: list[dict[str, Any]]):
    return jsonify({key: items, "links": {"self": _url(request.path.split("/v3", 1)[1]),
                                          "previous": None, "next": None}})


def _body(key: str) -> dict[str, Any]:
    body = common.json_body()
    value = body.get(key)
    if not isinstance(value, dict):
        raise exception.Invalid(f"Expecting to find {key} in the request body: "
                                f"{{\"{key}\": {{...}}}}.")
    return value


def _flag(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    return raw.lower() not in ("0", "false", "no")  # present without a value: true


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise exception.Invalid(f"{name} must be true or false, not {value!r}.")
    return value


def _text(value: Any, name: str) -> str:
    if value is not None and not isinstance(value, str):
        raise exception.Invalid(f"{name} must be a string.")
    return value or ""


def _only(body: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise exception.Invalid(f"Unknown attribute(s) for a {what}: {', '.join(unknown)} "
                                f"(allowed: {', '.join(sorted(allowed))}).")


# -- views of rows --------------------------------------------------------------------

def project_view(project: Project) -> dict[str, Any]:
    return {"id": project.id, "name": project.name, "domain_id": project.domain_id,
            "description": project.description, "enabled": project.enabled,
            "parent_id": project.domain_id, "is_domain": False, "tags": [], "options": {},
            "links": {"self": _url(f"/projects/{project.id}")}}


def user_view(user: User) -> dict[str, Any]:
    view = {"id": user.id, "name": user.name, "domain_id": user.domain_id,
            "enabled": user.enabled, "password_expires_at": None, "options": {},
            "links": {"self": _url(f"/users/{user.id}")}}
    if user.default_project_id:
        view["default_project_id"] = user.default_project_id
    if user.description:
        view["description"] = user.description
    return view


def role_view(role: Role) -> dict[str, Any]:
    return {"id": role.id, "name": role.name, "domain_id": None, "description": None,
            "options": {}, "links": {"self": _url(f"/roles/{role.id}")}}


def domain_view() -> dict[str, Any]:
    return {**DEFAULT_DOMAIN, "description": "The default domain", "enabled": True,
            "tags": [], "options": {}, "links": {"self": _url(f"/domains/{DEFAULT_DOMAIN_ID}")}}


# -- discovery ------------------------------------------------------------------------

def _version() -> dict[str, Any]:
    return {"id": VERSION_ID, "status": "stable", "updated": UPDATED,
            "links": [{"rel": "self", "href": f"{common.base_url()}/identity/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.identity-v3+json"}]}


@bp.get("")
@bp.get("/")
def versions():
    # 300 Multiple Choices, as Keystone answers at its root.
    return jsonify({"versions": {"values": [_version()]}}), 300


@bp.get("/v3")
@bp.get("/v3/")
def v3():
    return jsonify({"version": _version()})


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str):
    return _error(404, "The resource could not be found.")


# -- tokens ---------------------------------------------------------------------------

@bp.post("/v3/auth/tokens")
def issue_token():
    cfg = common.config()
    value, info = tokens.authenticate(common.db(), common.json_body(), cfg.token_expiration)
    with_catalog = _flag("nocatalog") is not True
    response = jsonify(tokens.body(info, common.base_url(), with_catalog))
    response.status_code = 201
    response.headers["X-Subject-Token"] = value
    return response


def _subject() -> tuple[str, tokens.TokenInfo]:
    value = request.headers.get("X-Subject-Token")
    if not value:
        raise exception.Invalid("The X-Subject-Token header names the token to look at.")
    info = tokens.validate(common.db(), value)
    return value, info


@bp.route("/v3/auth/tokens", methods=["GET", "HEAD"])
def validate_token():
    value, info = _subject()
    if info is None:
        raise exception.NotFound("Could not find token: it is invalid, expired or revoked.")
    common.authorize("identity:validate_token", {"user_id": info.user_id})
    response = jsonify(tokens.body(info, common.base_url(), _flag("nocatalog") is not True))
    response.headers["X-Subject-Token"] = value
    return response


@bp.delete("/v3/auth/tokens")
def revoke_token():
    value, info = _subject()
    if info is None:
        raise exception.NotFound("Could not find token: it is invalid, expired or revoked.")
    common.authorize("identity:revoke_token", {"user_id": info.user_id})
    tokens.revoke(common.db(), value)
    return "", 204


@bp.get("/v3/auth/projects")
def auth_projects():
    with common.db().read() as session:
        projects = store.user_projects(session, g.token.user_id)
    return _collection("projects", [project_view(p) for p in projects if p.enabled])


@bp.get("/v3/auth/catalog")
def auth_catalog():
    if g.token.project_id is None:
        raise exception.Forbidden("An unscoped token has no catalog: scope it to a project.")
    return jsonify({"catalog": catalog.catalog(common.base_url()),
                    "links": {"self": _url("/auth/catalog"), "previous": None, "next": None}})


# -- domains (only "default") ---------------------------------------------------------

@bp.get("/v3/domains")
def list_domains():
    common.authorize("identity:list_domains")
    name, enabled = request.args.get("name"), _flag("enabled")
    keep = (name in (None, DEFAULT_DOMAIN["name"])) and enabled is not False
    return _collection("domains", [domain_view()] if keep else [])


@bp.get("/v3/domains/<domain_id>")
def get_domain(domain_id: str):
    common.authorize("identity:get_domain")
    if domain_id != DEFAULT_DOMAIN_ID:
        raise exception.NotFound(f"Could not find domain: {domain_id}.")
    return jsonify({"domain": domain_view()})


# -- projects -------------------------------------------------------------------------

@bp.get("/v3/projects")
def list_projects():
    common.authorize("identity:list_projects")
    if request.args.get("domain_id", DEFAULT_DOMAIN_ID) != DEFAULT_DOMAIN_ID:
        return _collection("projects", [])
    with common.db().read() as session:
        projects = store.list_projects(session, request.args.get("name"), _flag("enabled"))
    return _collection("projects", [project_view(p) for p in projects])


@bp.post("/v3/projects")
def create_project():
    common.authorize("identity:create_project")
    body = _body("project")
    _only(body, {"name", "description", "enabled", "domain_id", "parent_id", "is_domain",
                 "tags", "options"}, "project")
    domain_id = store.check_domain(body.get("domain_id"))
    if body.get("parent_id") not in (None, domain_id) or body.get("is_domain"):
        raise exception.Invalid("vmflow's projects are flat: no parent project, no "
                                "project acting as a domain.")
    with common.db().write() as session:
        project = store.create_project(
            session, body.get("name"), _text(body.get("description"), "description"),
            _bool(body.get("enabled", True), "enabled"), domain_id)
    LOG.info("created project %s (%s)", project.id, project.name)
    return jsonify({"project": project_view(project)}), 201


@bp.get("/v3/projects/<project_id>")
def get_project(project_id: str):
    common.authorize("identity:get_project", {"project_id": project_id})
    with common.db().read() as session:
        project = store.get_project(session, project_id)
    return jsonify({"project": project_view(project)})


@bp.patch("/v3/projects/<project_id>")
def update_project(project_id: str):
    common.authorize("identity:update_project", {"project_id": project_id})
    body = _body("project")
    _only(body, {"name", "description", "enabled", "tags", "options"}, "project")
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = body["name"]
    if "description" in body:
        changes["description"] = _text(body["description"], "description")
    if "enabled" in body:
        changes["enabled"] = _bool(body["enabled"], "enabled")
    with common.db().write() as session:
        project = store.update_project(session, store.get_project(session, project_id),
                                       changes)
    return jsonify({"project": project_view(project)})


@bp.delete("/v3/projects/<project_id>")
def delete_project(project_id: str):
    common.authorize("identity:delete_project", {"project_id": project_id})
    with common.db().write() as session:
        store.delete_project(session, store.get_project(session, project_id))
    LOG.info("deleted project %s", project_id)
    return "", 204


# -- users ----------------------------------------------------------------------------

def _password(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise exception.Invalid("A password must be a non-empty string.")
    if len(value) > passwords.MAX_PASSWORD_LENGTH:
        raise exception.Invalid(f"A password is at most {passwords.MAX_PASSWORD_LENGTH} "
                                f"characters long.")
    return value


@bp.get("/v3/users")
def list_users():
    common.authorize("identity:list_users")
    if request.args.get("domain_id", DEFAULT_DOMAIN_ID) != DEFAULT_DOMAIN_ID:
        return _collection("users", [])
    with common.db().read() as session:
        users = store.list_users(session, request.args.get("name"), _flag("enabled"))
    return _collection("users", [user_view(u) for u in users])


@bp.post("/v3/users")
def create_user():
    common.authorize("identity:create_user")
    body = _body("user")
    _only(body, {"name", "password", "enabled", "domain_id", "default_project_id",
                 "description", "email", "options"}, "user")
    domain_id = store.check_domain(body.get("domain_id"))
    store.check_name(body.get("name"), "user", store.USER_NAME_MAX)
    hashed = passwords.hash_password(_password(body["password"])) if "password" in body \
        and body["password"] is not None else None
    default_project = body.get("default_project_id")
    with common.db().write() as session:
        if default_project is not None:
            store.get_project(session, default_project)
        user = store.create_user(session, body["name"], hashed, default_project,
                                 _bool(body.get("enabled", True), "enabled"),
                                 _text(body.get("description"), "description"), domain_id)
    LOG.info("created user %s (%s)", user.id, user.name)
    return jsonify({"user": user_view(user)}), 201


@bp.get("/v3/users/<user_id>")
def get_user(user_id: str):
    common.authorize("identity:get_user", {"user_id": user_id})
    with common.db().read() as session:
        user = store.get_user(session, user_id)
    return jsonify({"user": user_view(user)})


@bp.patch("/v3/users/<user_id>")
def update_user(user_id: str):
    common.authorize("identity:update_user", {"user_id": user_id})
    body = _body("user")
    _only(body, {"name", "password", "enabled", "default_project_id", "description",
                 "email", "options"}, "user")
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = body["name"]
    if "password" in body:
        changes["password_hash"] = passwords.hash_password(_password(body["password"]))
    if "enabled" in body:
        changes["enabled"] = _bool(body["enabled"], "enabled")
    if "description" in body:
        changes["description"] = _text(body["description"], "description")
    if "default_project_id" in body:
        changes["default_project_id"] = body["default_project_id"]
    with common.db().write() as session:
        if changes.get("default_project_id") is not None:
            store.get_project(session, changes["default_project_id"])
        user = store.update_user(session, store.get_user(session, user_id), changes)
    if "password_hash" in changes:
        LOG.info("password of user %s changed (its tokens are revoked)", user_id)
    return jsonify({"user": user_view(user)})


@bp.post("/v3/users/<user_id>/password")
def change_password(user_id: str):
    """A user changes its own password, proving it knows the old one."""
    common.authorize("identity:change_password", {"user_id": user_id})
    body = _body("user")
    new = _password(body.get("password"))
    original = body.get("original_password")
    with common.db().read() as session:
        stored = store.get_user(session, user_id).password_hash
    if not isinstance(original, str) or not passwords.verify_password(original, stored):
        raise exception.Unauthorized("The original password is not correct.")
    hashed = passwords.hash_password(new)
    with common.db().write() as session:
        store.update_user(session, store.get_user(session, user_id), {"password_hash": hashed})
    LOG.info("user %s changed its password (its tokens are revoked)", user_id)
    return "", 204


@bp.delete("/v3/users/<user_id>")
def delete_user(user_id: str):
    common.authorize("identity:delete_user", {"user_id": user_id})
    with common.db().write() as session:
        store.delete_user(session, store.get_user(session, user_id))
    LOG.info("deleted user %s", user_id)
    return "", 204


@bp.get("/v3/users/<user_id>/projects")
def user_projects(user_id: str):
    common.authorize("identity:list_user_projects", {"user_id": user_id})
    with common.db().read() as session:
        store.get_user(session, user_id)
        projects = store.user_projects(session, user_id)
    return _collection("projects", [project_view(p) for p in projects])


# -- roles, grants, assignments -------------------------------------------------------

@bp.get("/v3/roles")
def list_roles():
    common.authorize("identity:list_roles")
    with common.db().read() as session:
        roles = store.list_roles(session, request.args.get("name"))
    return _collection("roles", [role_view(r) for r in roles])


@bp.get("/v3/roles/<role_id>")
def get_role(role_id: str):
    common.authorize("identity:get_role")
    with common.db().read() as session:
        role = store.get_role(session, role_id)
    return jsonify({"role": role_view(role)})


def _grant_parts(session, project_id: str, user_id: str, role_id: str | None = None):
    project = store.get_project(session, project_id)
    user = store.get_user(session, user_id)
    role = store.get_role(session, role_id) if role_id is not None else None
    return project, user, role


@bp.get("/v3/projects/<project_id>/users/<user_id>/roles")
def list_grants(project_id: str, user_id: str):
    common.authorize("identity:list_grants", {"project_id": project_id})
    with common.db().read() as session:
        _grant_parts(session, project_id, user_id)
        ids = {role for _, _, role in store.list_assignments(session, user_id, project_id)}
        roles = [r for r in store.list_roles(session) if r.id in ids]
    return _collection("roles", [role_view(r) for r in roles])


@bp.route("/v3/projects/<project_id>/users/<user_id>/roles/<role_id>",
          methods=["GET", "HEAD"])
def check_grant(project_id: str, user_id: str, role_id: str):
    common.authorize("identity:check_grant", {"project_id": project_id})
    with common.db().read() as session:
        _grant_parts(session, project_id, user_id, role_id)
        if not store.has_assignment(session, user_id, project_id, role_id):
            raise exception.NotFound(f"Could not find role assignment with role: {role_id}, "
                                     f"user: {user_id}, project: {project_id}.")
    return "", 204


@bp.put("/v3/projects/<project_id>/users/<user_id>/roles/<role_id>")
def create_grant(project_id: str, user_id: str, role_id: str):
    common.authorize("identity:create_grant", {"project_id": project_id})
    with common.db().write() as session:
        _grant_parts(session, project_id, user_id, role_id)
        if store.assign_role(session, user_id, project_id, role_id):
            LOG.info("granted role %s to user %s on project %s", role_id, user_id, project_id)
    return "", 204


@bp.delete("/v3/projects/<project_id>/users/<user_id>/roles/<role_id>")
def revoke_grant(project_id: str, user_id: str, role_id: str):
    common.authorize("identity:revoke_grant", {"project_id": project_id})
    with common.db().write() as session:
        _grant_parts(session, project_id, user_id, role_id)
        store.unassign_role(session, user_id, project_id, role_id)
    LOG.info("revoked role %s of user %s on project %s", role_id, user_id, project_id)
    return "", 204


@bp.get("/v3/role_assignments")
def role_assignments():
    common.authorize("identity:list_role_assignments")
    args = request.args
    for name in args:
        if name.startswith(("group.", "scope.domain", "scope.system", "scope.OS-INHERIT")):
            return _collection("role_assignments", [])  # vmflow has none of those
    names = _flag("include_names") is True
    with common.db().read() as session:
        rows = store.list_assignments(session, args.get("user.id"),
                                      args.get("scope.project.id"), args.get("role.id"),
                                      effective=_flag("effective") is True)
        lookup: dict[str, Any] = {}
        if names:
            lookup.update({p.id: p for p in store.list_projects(session)})
            lookup.update({u.id: u for u in store.list_users(session)})
            lookup.update({r.id: r for r in store.list_roles(session)})
    items = []
    for user_id, project_id, role_id in rows:
        user, project, role = {"id": user_id}, {"id": project_id}, {"id": role_id}
        if names:
            for ref, key in ((user, user_id), (project, project_id), (role, role_id)):
                if key in lookup:
                    ref["name"] = lookup[key].name
                    if not isinstance(lookup[key], Role):
                        ref["domain"] = dict(DEFAULT_DOMAIN)
        items.append({"user": user, "scope": {"project": project}, "role": role, "links": {
            "assignment": _url(f"/projects/{project_id}/users/{user_id}/roles/{role_id}")}})
    return _collection("role_assignments", items)
