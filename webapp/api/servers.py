"""/servers: list, show, create, delete."""

from __future__ import annotations

import re
import uuid

from flask import Blueprint, jsonify, request

from vmflow import exception
from vmflow.db import aggregates as aggregates_db
from vmflow.db import instances as instances_db
from vmflow.states import status_of, vm_states
from webapp.api import common, validation, views

bp = Blueprint("servers", __name__)

# Fields the clients send that vmflow accepts.  Networking arrives with a later
# issue: "none"/"auto" (or nothing) is accepted, an explicit network is refused.
_SERVER_KEYS = {"name", "imageRef", "flavorRef", "availability_zone", "metadata", "min_count",
                "max_count", "networks", "block_device_mapping_v2", "OS-DCF:diskConfig",
                "description", "return_reservation_id"}
_HINT_KEYS = frozenset({"os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"})


def _image_from_bdm(server: dict) -> str | None:
    """openstack CLI also sends the image as a boot-from-image block device."""
    bdms = server.get("block_device_mapping_v2")
    if bdms is None:
        return None
    if not isinstance(bdms, list) or not all(isinstance(b, dict) for b in bdms):
        raise exception.Invalid("Invalid input for field 'block_device_mapping_v2': "
                                "it must be a list of objects.")
    for bdm in bdms:
        if bdm.get("source_type") == "image" and bdm.get("destination_type", "local") == "local":
            return bdm.get("uuid")
        raise exception.Invalid("Only a local boot disk from an image is supported in "
                                "block_device_mapping_v2 (volumes are not available).")
    return None


def _parse_create(body: dict) -> dict:
    server = validation.body_object(body, "server", _SERVER_KEYS, also_top=_HINT_KEYS)
    name = validation.string(server, "name", "server", required=True, min_len=1)
    flavor_ref = validation.string(server, "flavorRef", "server", required=True, min_len=1,
                                   allow_int=True)
    bdm_image = _image_from_bdm(server)
    image_ref = validation.string(server, "imageRef", "server", min_len=0) or bdm_image
    if not image_ref:
        raise exception.Invalid("Invalid input for server: 'imageRef' is a required property.")
    image_ref = validation.image_ref(image_ref, "imageRef")
    zone = validation.string(server, "availability_zone", "server", min_len=1)
    meta = validation.metadata(server, "metadata", "server")
    min_count = validation.integer(server, "min_count", "server", minimum=1) or 1
    max_count = validation.integer(server, "max_count", "server", minimum=1) or min_count
    if min_count > max_count:
        raise exception.Invalid("min_count must be <= max_count.")
    if max_count > 1:
        raise exception.Invalid("Creating several servers in one request is not supported "
                                "yet; send one request per server.")
    networks = server.get("networks")
    if networks not in (None, "none", "auto", []):
        raise exception.Invalid("Networking is not available yet: use networks 'none' or "
                                "'auto' (or leave it out).")
    hints = body.get("os:scheduler_hints", body.get("OS-SCH-HNT:scheduler_hints")) or {}
    if not isinstance(hints, dict):
        raise exception.Invalid("Invalid input for 'os:scheduler_hints': it must be an object.")
    group = hints.get("group")
    if group is not None:
        try:
            group = str(uuid.UUID(str(group)))
        except ValueError:
            raise exception.Invalid(f"Invalid input for scheduler hint 'group': {group!r} is "
                                    "not a UUID.") from None
    return {"name": name, "flavor_ref": flavor_ref, "image_ref": image_ref,
            "availability_zone": zone, "metadata": meta, "group": group}


def _check_references(args: dict) -> None:
    """The zone and server group a request names must exist (400 otherwise)."""
    cfg = common.config()
    with common.db().read() as session:
        if args["availability_zone"]:
            zones = set(aggregates_db.zones_of_hosts(session)
                        .values()) | {cfg.default_availability_zone}
            if args["availability_zone"] not in zones:
                raise exception.Invalid(f"The requested availability zone is not available: "
                                        f"{args['availability_zone']}.")
        if args["group"]:
            ctx = common.context()
            try:
                aggregates_db.get_group(session, args["group"],
                                        None if ctx.is_admin else ctx.project_id)
            except exception.NotFound as err:
                raise exception.Invalid(str(err)) from None


@bp.post("/servers")
def create():
    args = _parse_create(common.json_body())
    _check_references(args)
    ctx = common.context()
    instance_uuid = common.compute_api().create(ctx, **args)
    with common.db().read() as session:
        instance = instances_db.get(session, instance_uuid)
        brief = views.server_brief(instance)
    brief["OS-DCF:diskConfig"] = "MANUAL"
    brief["security_groups"] = [{"name": "default"}]
    brief["adminPass"] = ""
    response = jsonify({"server": brief})
    response.status_code = 202
    response.headers["Location"] = brief["links"][0]["href"]
    return response


def _listed(detail: bool):
    ctx = common.context()
    all_tenants = request.args.get("all_tenants", "").lower() in ("1", "true", "yes", "")
    all_tenants = "all_tenants" in request.args and all_tenants and ctx.is_admin
    project = request.args.get("project_id") if all_tenants else ctx.project_id
    limit = common.query_int("limit", minimum=0)
    marker = request.args.get("marker")
    name = request.args.get("name")
    status = request.args.get("status")
    try:
        name_re = re.compile(name) if name else None
    except re.error:
        raise exception.Invalid(f"Invalid regular expression in name filter: {name!r}.") \
            from None
    with common.db().read() as session:
        rows = instances_db.list_(session, project_id=project)
        if name_re is not None:
            rows = [r for r in rows if name_re.search(r.name)]
        if marker:
            ids = [r.uuid for r in rows]
            if marker not in ids:
                raise exception.Invalid(f"marker [{marker}] not found")
            rows = rows[ids.index(marker) + 1:]
        rendered = []
        faults = (instances_db.latest_faults(
            session, [r.uuid for r in rows if r.vm_state == vm_states.ERROR]) if detail else {})
        for row in rows:
            if status and status_of(row.vm_state, row.task_state) != status.upper():
                continue
            rendered.append(views.server(row, faults.get(row.uuid), show_host=ctx.is_admin)
                            if detail else views.server_brief(row))
            if limit is not None and len(rendered) >= limit:
                break
    return jsonify({"servers": rendered})


@bp.get("/servers")
def index():
    return _listed(detail=False)


@bp.get("/servers/detail")
def detail():
    return _listed(detail=True)


def _owned(session, server_id: str):
    ctx = common.context()
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    return instances_db.get(session, server_id,
                            project_id=None if ctx.is_admin else ctx.project_id)


@bp.get("/servers/<server_id>")
def show(server_id: str):
    with common.db().read() as session:
        instance = _owned(session, server_id)
        fault = None
        if instance.vm_state == vm_states.ERROR:
            fault = instances_db.latest_faults(session, [instance.uuid]).get(instance.uuid)
        return jsonify({"server": views.server(instance, fault,
                                               show_host=common.context().is_admin)})


@bp.delete("/servers/<server_id>")
def delete(server_id: str):
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    common.compute_api().delete(common.context(), server_id)
    return "", 204
