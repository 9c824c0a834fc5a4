"""Server actions that move an instance cold: ``resize``, ``migrate``,
``confirmResize``, ``revertResize`` (flows in ``flows/migrate.py``).

``server_actions.action`` hands these names here (``HANDLERS``).  The body is
checked first (400); then ``ComputeAPI.act`` refuses a server the caller may
not see (404), policy (403), a lock or a state that does not allow the action
(409); the checks that need the instance's flavor or host run in the same
transaction as the task_state compare-and-swap, so a refusal leaves nothing
recorded.

* ``resize`` (``flavorRef``, optional ``OS-DCF:diskConfig``): the flavor must
  exist (400), differ from the current one (400) and not have a smaller root
  disk (400); growing cores or RAM must fit the project's quota (403).  202.
* ``migrate`` (admin): null, or from 2.56 ``{"host": name or null}``; the host
  must be a compute host (400) other than the server's own (400).  202.
* ``confirmResize`` (204) and ``revertResize`` (202): only from VERIFY_RESIZE
  (409 otherwise), and only with a finished resize or migration (400).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.db import catalog, moves, quotas
from vmflow.db.models import ComputeNode, Instance
from vmflow.states import power_state, vm_states
from webapp.api import common, microversion, servers, validation

MIGRATE_HOST_RULE = "os_compute_api:os-migrate-server:migrate:host"
# Statuses of a migration waiting for confirm or revert.
_SETTLING = frozenset({"finished", "confirming", "reverting"})


def _answer(status: int):
    return current_app.response_class(status=status)


def _object(name: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise exception.Invalid(f"Invalid input for action '{name}': it must be an object.")
    validation.only_keys(value, allowed, name)
    return value


def _no_arguments(name: str, value: Any) -> None:
    if value not in (None, {}):
        raise exception.Invalid(f"Invalid input for action '{name}': it takes no arguments "
                                "(send null).")


def _check_quota(session: Session, instance: Instance, new: dict[str, Any]) -> None:
    """A resize that grows cores or RAM must fit the project's quota (403)."""
    cfg = common.config()
    allowed = quotas.limits(session, cfg, instance.project_id)
    used = quotas.instance_usage(session, instance.project_id)
    old = instance.flavor or {}
    for resource, key in (("cores", "vcpus"), ("ram", "memory_mb")):
        grows = int(new[key]) - int(old.get(key, 0))
        if grows > 0:
            quotas.check(resource, grows, used[resource], allowed[resource])


def resize(server_id: str, value: Any):
    args = _object("resize", value, {"flavorRef", "OS-DCF:diskConfig"})
    flavor_ref = validation.string(args, "flavorRef", "resize", required=True, min_len=1,
                                   allow_int=True)
    flavor_ref = flavor_ref.rstrip("/").rsplit("/", 1)[-1]  # a flavor's link names it too
    disk_config = servers.disk_config_of(args, "resize")
    migration_uuid = str(uuid.uuid4())
    found: dict[str, Any] = {}

    def prepare(session: Session, instance: Instance) -> dict[str, Any]:
        try:
            flavor = catalog.flavor_dict(catalog.get_flavor(session, flavor_ref))
        except exception.FlavorNotFound:
            raise exception.Invalid("Unable to locate requested flavor.") from None
        old = instance.flavor or {}
        if flavor["id"] == old.get("id"):
            raise exception.Invalid("Cannot resize an instance to the same flavor.")
        if int(flavor["root_gb"]) < int(old.get("root_gb", 0)):
            raise exception.Invalid(
                f"Resizing to a smaller root disk is not supported: flavor {flavor['name']} "
                f"has {flavor['root_gb']} GB, the server {old.get('root_gb')} GB.")
        _check_quota(session, instance, flavor)
        if disk_config:  # a new object: the JSON column sees the change
            instance.system_metadata = {**(instance.system_metadata or {}), **disk_config}
        found["flavor"] = flavor
        return {"start": instance.vm_state != vm_states.STOPPED}

    _move(server_id, "resize", migration_uuid, prepare, found, requested_host=None)
    return _answer(202)


def migrate(server_id: str, value: Any):
    host = None
    if value not in (None, {}):
        if not microversion.at_least("2.56"):
            raise exception.Invalid("Invalid input for action 'migrate': it takes no "
                                    "arguments before microversion 2.56 (send null).")
        args = _object("migrate", value, {"host"})
        host = validation.string(args, "host", "migrate", min_len=1)
    migration_uuid = str(uuid.uuid4())
    found: dict[str, Any] = {}

    def prepare(session: Session, instance: Instance) -> dict[str, Any]:
        if host is not None:
            common.authorize(MIGRATE_HOST_RULE, {"project_id": instance.project_id})
            if session.scalar(select(ComputeNode.id).where(ComputeNode.host == host)) is None:
                raise exception.Invalid(f"Compute host {host} could not be found.")
            if host == instance.host:
                raise exception.Invalid(f"The target host {host} is the server's own host; "
                                        "a cold migration must change hosts.")
        found["flavor"] = dict(instance.flavor)
        return {"start": instance.vm_state != vm_states.STOPPED}

    _move(server_id, "migrate", migration_uuid, prepare, found, requested_host=host)
    return _answer(202)


def _move(server_id: str, name: str, migration_uuid: str, prepare: Any,
          found: dict[str, Any], requested_host: str | None) -> None:
    """Start a resize or migration; the flavor is decided by ``prepare``, in the
    compare-and-swap's transaction (``act`` reads the inputs after it), where
    the migration is recorded (``pre-migrating``)."""
    inputs: dict[str, Any] = {"migration_uuid": migration_uuid,
                              "requested_host": requested_host}

    def decide(session: Session, instance: Instance) -> dict[str, Any]:
        params = prepare(session, instance)
        inputs["new_flavor"] = flavor = found["flavor"]
        ctx = common.context()
        moves.create(session, instance.uuid,
                     moves.RESIZE if name == "resize" else moves.MIGRATION, "pre-migrating",
                     source_compute=instance.host,
                     old_flavor_id=str((instance.flavor or {}).get("id")),
                     new_flavor_id=str(flavor["id"]), user_id=ctx.user_id,
                     project_id=ctx.project_id, migration_uuid=migration_uuid)
        return params

    common.compute_api().act(common.context(), server_id, name, inputs=inputs,
                             prepare=decide)


def _finished_migration(session: Session, instance: Instance, status: str) -> None:
    """Mark the instance's finished migration ``status`` (400 if there is none).
    One left confirming or reverting counts as finished: the task_state swap
    just won shows that no confirm or revert drives it any more."""
    finished = [m for m in moves.of_instance(session, instance.uuid, in_progress=True)
                if m.status in _SETTLING]
    if not finished:
        raise exception.Invalid("Instance has not been resized.")
    moves.set_status(session, finished[0].uuid, status)


def confirm_resize(server_id: str, value: Any):
    _no_arguments("confirmResize", value)

    def prepare(session: Session, instance: Instance) -> None:
        _finished_migration(session, instance, "confirming")

    common.compute_api().act(common.context(), server_id, "confirm_resize", prepare=prepare)
    return _answer(204)


def revert_resize(server_id: str, value: Any):
    _no_arguments("revertResize", value)

    def prepare(session: Session, instance: Instance) -> dict[str, Any]:
        _finished_migration(session, instance, "reverting")
        return {"start": instance.power_state == power_state.RUNNING}

    common.compute_api().act(common.context(), server_id, "revert_resize", prepare=prepare)
    return _answer(202)


HANDLERS = {"resize": resize, "migrate": migrate, "confirmResize": confirm_resize,
            "revertResize": revert_resize}
