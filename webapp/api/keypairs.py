"""/os-keypairs: a user's SSH (or X.509) key pairs, generated or imported.

Shapes by microversion, as Nova: ``type`` from 2.2 (and create answers 201,
delete 204 instead of 200 and 202), ``user_id`` (an admin acting for another
user) from 2.10, paging with ``limit`` and ``marker`` from 2.35.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, jsonify, request

from vmflow import exception, policy
from vmflow.db import keypairs as keypairs_db
from vmflow.db.models import KeyPair
from webapp.api import common, microversion, validation

bp = Blueprint("keypairs", __name__)

_RULE = "os_compute_api:os-keypairs:"
_OWNER_OR_ADMIN = "rule:context_is_admin or user_id:%(user_id)s"
policy.register({_RULE + action: _OWNER_OR_ADMIN
                 for action in ("index", "create", "show", "delete")})


def _user(action: str, requested: str | None) -> str:
    """Whose key pairs: the caller's, or (an admin, from 2.10) the one named."""
    user = requested if requested is not None else common.context().user_id
    common.authorize(_RULE + action, {"user_id": user})
    return user


def _query_user() -> str | None:
    return request.args.get("user_id") if microversion.at_least("2.10") else None


def _view(row: KeyPair, *, detail: bool = False) -> dict:
    body = {"name": row.name, "public_key": row.public_key, "fingerprint": row.fingerprint}
    if microversion.at_least("2.2"):
        body["type"] = row.type
    if detail:
        body.update({"user_id": row.user_id, "created_at": common.isotime(row.created_at),
                     "updated_at": None, "deleted_at": None, "deleted": False, "id": row.id})
    return body


@bp.post("/os-keypairs")
def create():
    allowed = {"name", "public_key"}
    if microversion.at_least("2.2"):
        allowed.add("type")
    if microversion.at_least("2.10"):
        allowed.add("user_id")
    keypair = validation.body_object(common.json_body(), "keypair", allowed)
    name = keypair.get("name")
    if name is None:
        raise exception.Invalid("Invalid input for keypair: 'name' is a required property.")
    kind = keypair.get("type", "ssh")
    if kind not in keypairs_db.TYPES:
        raise exception.Invalid(f"Invalid input for field 'type' of keypair: {kind!r} is not "
                                f"one of {', '.join(keypairs_db.TYPES)}.")
    public_key = keypair.get("public_key")
    if public_key is not None and not isinstance(public_key, str):
        raise exception.Invalid("Invalid input for field 'public_key' of keypair: it must be "
                                "a string.")
    user_id = keypair.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        raise exception.Invalid("Invalid input for field 'user_id' of keypair: it must be a "
                                "string.")
    user = _user("create", user_id)
    created = keypairs_db.create(common.db(), common.config(), user_id=user,
                                 project_id=common.context().project_id, name=name, kind=kind,
                                 public_key=public_key)
    body = {**_view(created.row), "user_id": created.row.user_id}
    if created.private_key is not None:
        body["private_key"] = created.private_key
    response = jsonify({"keypair": body})
    response.status_code = 201 if microversion.at_least("2.2") else 200
    return response


@bp.get("/os-keypairs")
def index():
    user = _user("index", _query_user())
    limit = marker = None
    if microversion.at_least("2.35"):
        limit = common.query_int("limit", minimum=0)
        marker = request.args.get("marker")
    with common.db().read() as session:
        rows = keypairs_db.list_(session, user, limit=limit, marker=marker)
    body: dict = {"keypairs": [{"keypair": _view(row)} for row in rows]}
    if limit and len(rows) == limit:
        query = {"limit": limit, "marker": rows[-1].name}
        if user != common.context().user_id:
            query["user_id"] = user
        body["keypairs_links"] = [{"rel": "next", "href": f"{common.base_url()}/v2.1/"
                                   f"os-keypairs?{urlencode(query)}"}]
    return jsonify(body)


@bp.get("/os-keypairs/<name>")
def show(name: str):
    user = _user("show", _query_user())
    with common.db().read() as session:
        return jsonify({"keypair": _view(keypairs_db.get(session, user, name), detail=True)})


@bp.delete("/os-keypairs/<name>")
def delete(name: str):
    user = _user("delete", _query_user())
    with common.db().write() as session:
        keypairs_db.remove(session, user, name)
    return "", 204 if microversion.at_least("2.2") else 202
