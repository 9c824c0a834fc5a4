"""POST /servers/{id}/action: the lifecycle operations, with Nova's action names.

Each body holds exactly one action (``{"os-stop": null}``, ``{"reboot": {"type":
"HARD"}}``, ...).  The body is checked completely before anything happens;
then the compute API refuses (404, 409) or starts the operation's flow and the
answer is 202.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, current_app, jsonify

from vmflow import exception
from vmflow.db import catalog
from vmflow.db import instances as instances_db
from vmflow.db import keypairs as keypairs_db
from vmflow.db.models import Instance
from vmflow.states import vm_states
from webapp.api import (
    common,
    evacuate,
    live_migrations,
    microversion,
    resize,
    server_extra_actions,
    servers,
    shelve,
    validation,
)

bp = Blueprint("server_actions", __name__)

# Actions whose body is null (or an empty object), by Nova's name -> operation.
_PLAIN = {"os-stop": "stop", "os-start": "start", "pause": "pause", "unpause": "unpause",
          "suspend": "suspend", "resume": "resume", "unrescue": "unrescue"}


def _no_arguments(name: str, value: Any) -> None:
    if value not in (None, {}):
        raise exception.Invalid(f"Invalid input for action '{name}': it takes no arguments "
                                "(send null).")


def _arguments(name: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise exception.Invalid(f"Invalid input for action '{name}': it must be an object.")
    validation.only_keys(value, allowed, name)
    return value


def _image_ref(args: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    ref = validation.string(args, key, where, required=required, min_len=1)
    if ref is None:
        return None
    return str(uuid.UUID(validation.image_ref(ref, key)))


def _usable_image(image_ref: str, flavor: dict[str, Any] | None = None) -> dict[str, Any]:
    """The image a rebuild or rescue boots from: it must exist, be visible and
    active, and (rebuild) fit the instance's flavor: 400 otherwise."""
    ctx = common.context()
    with common.db().read() as session:
        try:
            image = catalog.get_image(session, image_ref,
                                      None if ctx.is_admin else ctx.project_id)
        except exception.ImageNotFound as err:
            raise exception.Invalid(str(err)) from None
        if flavor is None:
            catalog.check_usable(image)
        else:
            catalog.check_usable(image, root_gb=flavor.get("root_gb"),
                                 memory_mb=flavor.get("memory_mb", 0))
        return catalog.image_dict(image)


def _instance(server_id: str) -> Instance:
    ctx = common.context()
    with common.db().read() as session:
        return instances_db.get(session, server_id,
                                project_id=None if ctx.is_admin else ctx.project_id)


def _server_body(server_id: str, **extra: Any):
    """The server's body (as update and rebuild answer it), with ``extra`` fields."""
    with common.db().read() as session:
        instance = instances_db.get(session, server_id)
        body = servers.bodies(session, [instance], groups=True, compact=True,
                              show_key_name=microversion.at_least("2.54"))[0]
        if microversion.at_least("2.57"):  # in place of the extended attribute
            body.pop("OS-EXT-SRV-ATTR:user_data", None)
            body["user_data"] = instance.user_data
        return jsonify({"server": {**body, **extra}})


def _accepted(body: Any = None, headers: dict[str, str] | None = None):
    response = jsonify(body) if body is not None else current_app.response_class(status=202)
    response.status_code = 202
    response.headers.update(headers or {})
    return response


@bp.post("/servers/<server_id>/action")
def action(server_id: str):
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    body = common.json_body()
    if len(body) != 1:
        raise exception.Invalid("The request body must hold exactly one action.")
    (name, value), = body.items()
    ctx = common.context()
    api = common.compute_api()
    if name in _PLAIN:
        _no_arguments(name, value)
        api.act(ctx, server_id, _PLAIN[name])
        return _accepted()
    if name == "reboot":
        args = _arguments(name, value, {"type"})
        kind = validation.string(args, "type", name, required=True, min_len=1)
        if kind.upper() not in ("SOFT", "HARD"):
            raise exception.Invalid(f"Invalid input for field 'type' of reboot: {kind!r} is "
                                    "not one of 'SOFT', 'HARD'.")
        api.act(ctx, server_id, "reboot" if kind.upper() == "SOFT" else "reboot_hard")
        return _accepted()
    if name == "lock":
        args = _arguments(name, value, {"locked_reason"})
        reason = validation.string(args, "locked_reason", name)
        if not microversion.at_least("2.73"):
            reason = None  # Nova reads the reason from 2.73 on only
        instance = _instance(server_id)
        locked_by = "owner" if ctx.project_id == instance.project_id else "admin"
        api.act(ctx, server_id, "lock", inputs={"locked_by": locked_by, "reason": reason})
        return _accepted()
    if name == "unlock":
        _no_arguments(name, value)
        api.act(ctx, server_id, "unlock")
        return _accepted()
    if name == "os-getConsoleOutput":
        args = _arguments(name, value, {"length"})
        length = validation.integer(args, "length", name, minimum=-1)
        output = api.console_output(ctx, server_id, None if length in (None, -1) else length)
        return jsonify({"output": output})
    if name == "createImage":
        return _create_image(server_id, value)
    if name == live_migrations.ACTION:
        return live_migrations.migrate_live(server_id, value)
    if name in resize.HANDLERS:  # resize, migrate, confirmResize, revertResize
        return resize.HANDLERS[name](server_id, value)
    if name in server_extra_actions.HANDLERS:  # createBackup, forceDelete, restore
        return server_extra_actions.HANDLERS[name](server_id, value)
    if name == "trigger_crash_dump" and microversion.at_least("2.17"):
        _no_arguments(name, value)
        instance = _instance(server_id)
        common.authorize("os_compute_api:servers:trigger_crash_dump",
                         {"project_id": instance.project_id})
        raise exception.Invalid("Triggering a crash dump is not supported: vmflow's "
                                "hypervisor driver does not inject NMIs into guests.")
    if name == "rebuild":
        return _rebuild(server_id, value)
    if name == "evacuate":
        return evacuate.evacuate(server_id, value)
    if name == "rescue":
        args = _arguments(name, value, {"rescue_image_ref", "adminPass"})
        password = validation.admin_password(args, "rescue")
        ref = _image_ref(args, "rescue_image_ref", name, required=False)
        image = _usable_image(ref or _instance(server_id).image_ref)
        api.act(ctx, server_id, "rescue", inputs={"rescue_image": image})
        return jsonify({"adminPass": password})  # 200, as Nova answers a rescue
    if name in shelve.NAMES:
        return shelve.act(server_id, name, value)
    raise exception.Invalid(f"There is no such action: {name}")


def _create_image(server_id: str, value: Any):
    args = _arguments("createImage", value, {"name", "metadata"})
    name = validation.string(args, "name", "createImage", required=True, min_len=1)
    meta = validation.metadata(args, "metadata", "createImage")
    image_id = str(uuid.uuid4())

    def record_image(session, instance: Instance) -> None:
        catalog.create_snapshot_image(session, image_id, name, instance, meta)

    common.compute_api().act(common.context(), server_id, "snapshot",
                             inputs={"image_id": image_id}, prepare=record_image)
    if microversion.at_least("2.45"):  # the image id in the body, no Location header
        return _accepted({"image_id": image_id})
    return _accepted(headers={"Location": f"{common.base_url()}/v2.1/images/{image_id}"})


def _rebuild(server_id: str, value: Any):
    allowed = {"imageRef", "name", "metadata", "OS-DCF:diskConfig", "adminPass", "accessIPv4",
               "accessIPv6"}
    later = {"description": "2.19", "key_name": "2.54", "user_data": "2.57",
             "trusted_image_certificates": "2.63"}
    allowed |= {key for key, version in later.items() if microversion.at_least(version)}
    args = _arguments("rebuild", value, allowed)
    password = validation.admin_password(args, "rebuild")
    image_ref = _image_ref(args, "imageRef", "rebuild", required=True)
    new_name = validation.string(args, "name", "rebuild", min_len=1)
    meta = validation.metadata(args, "metadata", "rebuild") if "metadata" in args else None
    description = validation.string(args, "description", "rebuild", max_len=255)
    user_data = servers.user_data_of(args, "rebuild")
    access = servers.access_ips(args, "rebuild")
    disk_config = servers.disk_config_of(args, "rebuild")
    servers.trusted_certificates(args, "rebuild")
    key_name = validation.string(args, "key_name", "rebuild", min_len=1)
    key_data = None
    if key_name is not None:  # the caller's own key pair (2.54); null removes the key
        with common.db().read() as session:
            try:
                key_data = keypairs_db.get(session, common.context().user_id,
                                           key_name).public_key
            except exception.NotFound:
                raise exception.Invalid("Invalid key_name provided.") from None
    instance = _instance(server_id)
    if not instance.host:
        raise exception.Conflict(f"Cannot 'rebuild' instance {server_id}: it has no host "
                                 "(it never booted); delete it and create it again.")
    image = _usable_image(image_ref, instance.flavor)

    def prepare(session, row: Instance) -> dict[str, Any]:
        if meta is not None:
            row.metadata_ = meta
        if "description" in args:
            row.description = description
        if "user_data" in args:
            row.user_data = user_data
        for column, address in access.items():
            setattr(row, column, address)
        if "key_name" in args:
            row.key_name, row.key_data = key_name, key_data
        if disk_config:  # a new object: the JSON column sees the change
            row.system_metadata = {**(row.system_metadata or {}), **disk_config}
        return {"start": row.vm_state != vm_states.STOPPED}  # a stopped one stays stopped

    common.compute_api().act(common.context(), server_id, "rebuild",
                             inputs={"image": image, "new_name": new_name}, prepare=prepare)
    # The answer describes the rebuild accepted: the server with the image it is
    # being rebuilt from (Nova's answer; clients check it).  The instance takes
    # that image when the rebuild succeeds; a failed one keeps the old image.
    response = _server_body(server_id, adminPass=password, image={
        "id": image["id"], "links": common.links("images", image["id"])[1:]})
    response.status_code = 202
    return response


@bp.get("/servers/<server_id>/diagnostics")
def diagnostics(server_id: str):
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    found = common.compute_api().diagnostics(common.context(), server_id)
    return jsonify(found if microversion.at_least("2.48") else _legacy_diagnostics(found))


def _legacy_diagnostics(found: dict[str, Any]) -> dict[str, Any]:
    """Below 2.48 diagnostics were the driver's own flat keys; these are the
    libvirt driver's (memory in KiB, one set of counters per disk and CPU)."""
    flat: dict[str, Any] = {}
    for number, cpu in enumerate(found.get("cpu_details") or []):
        flat[f"cpu{number}_time"] = cpu.get("time")
    memory = found.get("memory_details") or {}
    if memory.get("maximum") is not None:
        flat["memory"] = memory["maximum"] * 1024
    if memory.get("used") is not None:
        flat["memory-actual"] = memory["used"] * 1024
    for number, disk in enumerate(found.get("disk_details") or []):
        device = "vd" + chr(ord("a") + number)
        flat.update({f"{device}_read": disk.get("read_bytes"),
                     f"{device}_read_req": disk.get("read_requests"),
                     f"{device}_write": disk.get("write_bytes"),
                     f"{device}_write_req": disk.get("write_requests"),
                     f"{device}_errors": disk.get("errors_count")})
    return flat
