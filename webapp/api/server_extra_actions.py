"""More of Nova's server actions: ``createBackup``, ``forceDelete``, ``restore``.

``server_actions.action`` hands these names here (``HANDLERS``).

* ``createBackup`` (``name``, ``backup_type``, ``rotation``, optional
  ``metadata``): a snapshot whose image is marked ``image_type=backup`` with
  its ``backup_type``; after it is active, the server's older backups of that
  type beyond the ``rotation`` newest are deleted (``flows/snapshot.py``,
  operation ``backup``).  202, with the image's ``Location`` below 2.45 (when
  ``rotation`` is above 0, as Nova) and ``{"image_id"}`` from 2.45.
* ``forceDelete`` and ``restore`` belong to Nova's deferred delete.  vmflow
  deletes at once (as Nova with ``reclaim_instance_interval`` 0, its
  default), so no server is ever SOFT_DELETED: ``forceDelete`` deletes as a
  delete does, and ``restore`` answers 409, as Nova answers for a server that
  is not SOFT_DELETED.  A server the caller cannot see is 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app, jsonify

from vmflow import exception, policy
from vmflow.db import catalog
from vmflow.db.models import Instance
from webapp.api import common, microversion, validation

_DEFERRED = "os_compute_api:os-deferred-delete:"
policy.register({_DEFERRED + "force": policy.PROJECT_MEMBER_OR_ADMIN,
                 _DEFERRED + "restore": policy.PROJECT_MEMBER_OR_ADMIN})


def _no_arguments(name: str, value: Any) -> None:
    if value not in (None, {}):
        raise exception.Invalid(f"Invalid input for action '{name}': it takes no arguments "
                                "(send null).")


def _visible(server_id: str, rule: str) -> Instance:
    """The caller's server (404 otherwise) after policy ``rule``; a locked one
    refuses its owner (409)."""
    ctx = common.context()
    api = common.compute_api()
    with common.db().read() as session:
        instance = api._owned(session, ctx, server_id)
        api._authorize(ctx, rule, instance)
        api._check_unlocked(ctx, instance)
        return instance


def force_delete(server_id: str, value: Any):
    _no_arguments("forceDelete", value)
    _visible(server_id, _DEFERRED + "force")
    common.compute_api().delete(common.context(), server_id)
    return _accepted()


def restore(server_id: str, value: Any):
    _no_arguments("restore", value)
    instance = _visible(server_id, _DEFERRED + "restore")
    raise exception.InstanceInvalidState(action="restore", instance_id=server_id,
                                         vm_state=instance.vm_state,
                                         task_state=instance.task_state)


def create_backup(server_id: str, value: Any):
    if not isinstance(value, dict):
        raise exception.Invalid("Invalid input for action 'createBackup': it must be an "
                                "object.")
    validation.only_keys(value, {"name", "backup_type", "rotation", "metadata"},
                         "createBackup")
    name = validation.string(value, "name", "createBackup", required=True, min_len=1)
    backup_type = validation.string(value, "backup_type", "createBackup", required=True)
    rotation = validation.integer(value, "rotation", "createBackup", minimum=0)
    if rotation is None:
        raise exception.Invalid("Invalid input for createBackup: 'rotation' is a required "
                                "property.")
    meta = validation.metadata(value, "metadata", "createBackup")
    image_id = str(uuid.uuid4())

    def record_image(session, instance: Instance) -> None:
        image = catalog.create_snapshot_image(session, image_id, name, instance, meta)
        image.properties = {**image.properties, "image_type": "backup",
                            "backup_type": backup_type, "user_id": instance.user_id}

    common.compute_api().act(common.context(), server_id, "backup",
                             inputs={"image_id": image_id}, prepare=record_image,
                             params={"backup_type": backup_type, "rotation": rotation})
    if microversion.at_least("2.45"):  # the image id in the body, no Location header
        return _accepted({"image_id": image_id})
    if rotation == 0:  # Nova gives no location: rotation deletes the new image too
        return _accepted()
    return _accepted(headers={"Location": f"{common.base_url()}/v2.1/images/{image_id}"})


def _accepted(body: Any = None, headers: dict[str, str] | None = None):
    response = jsonify(body) if body is not None else current_app.response_class(status=202)
    response.status_code = 202
    response.headers.update(headers or {})
    return response


HANDLERS = {"createBackup": create_backup, "forceDelete": force_delete, "restore": restore}
