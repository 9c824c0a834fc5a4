"""Live migration: the ``os-migrateLive`` server action (admin), and aborting or
forcing to complete a live migration under way (Nova's server-migrations
DELETE (2.24) and ``force_complete`` (2.22)).  The GET listings of a server's
migrations live in ``webapp/api/migrations.py``.

The body of ``os-migrateLive`` follows Nova's microversions: below 2.25
``block_migration`` is a boolean and ``disk_over_commit`` is required (and
ignored: claims never overcommit past the allocation ratios); from 2.25
``block_migration`` may be ``"auto"`` and ``disk_over_commit`` is refused;
from 2.30 to 2.67 ``force`` (a boolean, only with a host) skips the
scheduler's filters for the host; from 2.68 ``force`` is refused.  Every
check that needs no host runs before anything is recorded (see
``ComputeAPI.live_migrate``); the flow makes the rest.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app

from vmflow import exception
from webapp.api import common, microversion, validation

bp = Blueprint("live_migrations", __name__)

ACTION = "os-migrateLive"
# Nova's boolean strings (its parameter_types.boolean).
_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})
_HOST = re.compile(r"^[a-zA-Z0-9._-]+$")


def _boolean(args: dict[str, Any], key: str, *, auto: bool = False) -> bool | None:
    """A boolean as Nova's schema takes it (true/false, or their strings; ``auto``:
    also "auto", which is None)."""
    value = args[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if auto and value == "auto":
            return None
        if value.lower() in _TRUE and value in (value.lower(), value.upper(), value.title()):
            return True
        if value.lower() in _FALSE and value in (value.lower(), value.upper(), value.title()):
            return False
    allowed = "a boolean or 'auto'" if auto else "a boolean"
    raise exception.Invalid(f"Invalid input for field '{key}' of {ACTION}: {value!r} is not "
                            f"{allowed}.")


def parse(value: Any) -> dict[str, Any]:
    """The action's arguments, checked against the requested microversion:
    ``host`` (None: the scheduler chooses), ``block_migration`` (None: auto) and
    ``force``."""
    if not isinstance(value, dict):
        raise exception.Invalid(f"Invalid input for action '{ACTION}': it must be an object.")
    allowed, required = {"block_migration", "host"}, ["block_migration", "host"]
    if not microversion.at_least("2.25"):
        allowed.add("disk_over_commit")
        required.append("disk_over_commit")
    if microversion.at_least("2.30") and not microversion.at_least("2.68"):
        allowed.add("force")
    validation.only_keys(value, allowed, ACTION)
    for key in required:
        if key not in value:
            raise exception.Invalid(f"Invalid input for {ACTION}: '{key}' is a required "
                                    "property.")
    host = validation.string(value, "host", ACTION, min_len=1)
    if host is not None and not _HOST.match(host):
        raise exception.Invalid(f"Invalid input for field 'host' of {ACTION}: {host!r} is not "
                                "a host name.")
    block = _boolean(value, "block_migration", auto=microversion.at_least("2.25"))
    if "disk_over_commit" in value:
        _boolean(value, "disk_over_commit")
    force = _boolean(value, "force") if "force" in value else False
    if force and not host:
        raise exception.Invalid("A live migration can be forced only to a given host "
                                "('force' needs 'host').")
    return {"host": host, "block_migration": block, "force": force}


def migrate_live(server_id: str, value: Any):
    """``POST /servers/{id}/action {"os-migrateLive": {...}}``: 202 with no body."""
    args = parse(value)
    common.compute_api().live_migrate(common.context(), server_id, **args)
    return current_app.response_class(status=202)


def _migration_id(migration_id: str) -> int:
    """Migration ids are integers; anything else names no migration (404)."""
    if not migration_id.isdigit():
        raise exception.NotFound(f"Migration {migration_id} could not be found.")
    return int(migration_id)


@bp.delete("/servers/<server_id>/migrations/<migration_id>")
def abort(server_id: str, migration_id: str):
    """Abort a live migration in progress (2.24; queued or preparing ones from 2.65)."""
    microversion.require("2.24")
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    common.compute_api().abort_live_migration(
        common.context(), server_id, _migration_id(migration_id),
        queued_too=microversion.at_least("2.65"))
    return current_app.response_class(status=202)


@bp.post("/servers/<server_id>/migrations/<migration_id>/action")
def action(server_id: str, migration_id: str):
    """``{"force_complete": null}`` (2.22): the running live migration completes now."""
    microversion.require("2.22")
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    body = common.json_body()
    validation.only_keys(body, {"force_complete"}, "the request body")
    if "force_complete" not in body or body["force_complete"] not in (None, {}):
        raise exception.Invalid('The action is {"force_complete": null}.')
    common.compute_api().force_complete_live_migration(common.context(), server_id,
                                                       _migration_id(migration_id))
    return current_app.response_class(status=202)
