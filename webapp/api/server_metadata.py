"""Per-server extras of Nova's API: metadata, addresses, the server password.

* ``/servers/{id}/metadata`` and ``/servers/{id}/metadata/{key}``: a
  server's user metadata.  PUT on the collection replaces it all, POST merges
  into it, PUT on a key sets that one item (the body's one key must be the
  URL's), DELETE removes one.  Keys are 1–255 characters, values strings of
  at most 255; the result may hold at most the project's ``metadata_items``
  (403 beyond).  Changes are refused (409) while the server is locked (for
  its owner) or not in ACTIVE, PAUSED, SUSPENDED or STOPPED with no task,
  as Nova's compute API refuses them.  The server's host is not told: vmflow
  has no metadata service, and a config drive is written once, at boot.
* ``/servers/{id}/ips[/{network}]``: the server's addresses by network.
  vmflow has no networking yet, so every server has none.
* ``/servers/{id}/os-server-password``: the encrypted password a guest
  posted to the metadata service, kept in the instance's system metadata in
  chunks as Nova keeps it.  No guest can post one (no metadata service), so
  it is empty unless set otherwise; DELETE clears it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from vmflow import exception, policy
from vmflow.db import quotas
from vmflow.db.models import Instance
from vmflow.states import vm_states
from webapp.api import common, servers, validation

bp = Blueprint("server_metadata", __name__)

_META = "os_compute_api:server-metadata:"
_PASSWORD = "os_compute_api:os-server-password:"
policy.register({_PASSWORD + "show": policy.PROJECT_READER_OR_ADMIN,
                 _PASSWORD + "clear": policy.PROJECT_MEMBER_OR_ADMIN})

# vm_states in which metadata may change (and then only with no task running).
_CHANGEABLE = frozenset({vm_states.ACTIVE, vm_states.PAUSED, vm_states.SUSPENDED,
                         vm_states.STOPPED})


def _server(session, server_id: str, rule: str, *, change: bool = False) -> Instance:
    """The caller's server (404 otherwise), after policy ``rule``; for a change
    also unlocked (for a non-admin) and settled (409 otherwise)."""
    instance = servers._owned(session, server_id)
    common.authorize(rule, {"project_id": instance.project_id, "user_id": instance.user_id})
    if not change:
        return instance
    if instance.locked and not common.allowed("context_is_admin"):
        raise exception.InstanceLocked(instance_id=instance.uuid)
    if instance.vm_state not in _CHANGEABLE or instance.task_state is not None:
        raise exception.Conflict(
            f"Cannot 'update metadata' instance {instance.uuid} while it is in vm_state "
            f"{instance.vm_state} and task_state {instance.task_state}.")
    return instance


def _items(key: str) -> dict[str, str]:
    """The ``{"<key>": {...}}`` body's items, checked as a create's metadata."""
    body = common.json_body()
    validation.only_keys(body, {key}, "the request body")
    if not isinstance(body.get(key), dict):
        raise exception.Invalid(f"Invalid input for the request body: '{key}' is a required "
                                "property and must be an object.")
    return validation.metadata(body, key, key)


def _store(session, instance: Instance, metadata: dict[str, str]) -> dict[str, str]:
    """Check ``metadata`` against the project's ``metadata_items`` quota (403)
    and make it the server's."""
    quotas.check_metadata(session, common.config(), instance.project_id, metadata)
    instance.metadata_ = dict(metadata)  # a new object: the JSON column sees the change
    session.flush()
    return dict(metadata)


@bp.get("/servers/<server_id>/metadata")
def index(server_id: str):
    with common.db().read() as session:
        instance = _server(session, server_id, _META + "index")
        return jsonify({"metadata": dict(instance.metadata_ or {})})


@bp.put("/servers/<server_id>/metadata")
def update_all(server_id: str):
    """Replace the server's metadata with the body's."""
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    items = _items("metadata")
    with common.db().write() as session:
        instance = _server(session, server_id, _META + "update_all", change=True)
        return jsonify({"metadata": _store(session, instance, items)})


@bp.post("/servers/<server_id>/metadata")
def create(server_id: str):
    """Merge the body's items into the server's metadata; answer all of it."""
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    items = _items("metadata")
    with common.db().write() as session:
        instance = _server(session, server_id, _META + "create", change=True)
        merged = {**(instance.metadata_ or {}), **items}
        return jsonify({"metadata": _store(session, instance, merged)})


def _not_found() -> exception.NotFound:
    return exception.NotFound("Metadata item was not found")


@bp.get("/servers/<server_id>/metadata/<key>")
def show(server_id: str, key: str):
    with common.db().read() as session:
        instance = _server(session, server_id, _META + "show")
        metadata = instance.metadata_ or {}
        if key not in metadata:
            raise _not_found()
        return jsonify({"meta": {key: metadata[key]}})


@bp.put("/servers/<server_id>/metadata/<key>")
def update(server_id: str, key: str):
    """Set one item: the body holds exactly that key."""
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    item = _items("meta")
    if key not in item:
        raise exception.Invalid("Request body and URI mismatch")
    if len(item) > 1:
        raise exception.Invalid("Request body contains too many items")
    with common.db().write() as session:
        instance = _server(session, server_id, _META + "update", change=True)
        _store(session, instance, {**(instance.metadata_ or {}), **item})
        return jsonify({"meta": item})


@bp.delete("/servers/<server_id>/metadata/<key>")
def delete(server_id: str, key: str):
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    with common.db().write() as session:
        instance = _server(session, server_id, _META + "delete", change=True)
        metadata = dict(instance.metadata_ or {})
        if key not in metadata:
            raise _not_found()
        del metadata[key]
        instance.metadata_ = metadata
    return "", 204


# -- addresses ---------------------------------------------------------------------------

@bp.get("/servers/<server_id>/ips")
def ips(server_id: str):
    """The server's addresses by network: none (vmflow has no networking yet)."""
    with common.db().read() as session:
        _server(session, server_id, "os_compute_api:ips:index")
    return jsonify({"addresses": {}})


@bp.get("/servers/<server_id>/ips/<network>")
def ips_of_network(server_id: str, network: str):
    """The server's addresses on ``network``: it is on none, so 404."""
    with common.db().read() as session:
        _server(session, server_id, "os_compute_api:ips:show")
    raise exception.NotFound("Instance is not a member of specified network")


# -- the server password -------------------------------------------------------------------

# Nova keeps the password in system metadata as four chunks of 255 characters.
PASSWORD_KEYS = tuple(f"password_{n}" for n in range(4))


def password_of(system_metadata: dict[str, Any]) -> str:
    return "".join(system_metadata.get(key) or "" for key in PASSWORD_KEYS)


@bp.get("/servers/<server_id>/os-server-password")
def password_show(server_id: str):
    with common.db().read() as session:
        instance = _server(session, server_id, _PASSWORD + "show")
        return jsonify({"password": password_of(instance.system_metadata or {})})


@bp.delete("/servers/<server_id>/os-server-password")
def password_clear(server_id: str):
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    with common.db().write() as session:
        instance = _server(session, server_id, _PASSWORD + "clear")
        system = dict(instance.system_metadata or {})
        for key in PASSWORD_KEYS:
            system[key] = ""
        instance.system_metadata = system
    return "", 204
