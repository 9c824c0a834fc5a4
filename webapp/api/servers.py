"""/servers: list, show, create, delete."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
import urllib.parse
import uuid

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from vmflow import exception, policy
from vmflow.db import aggregates as aggregates_db
from vmflow.db import catalog, quotas
from vmflow.db import hosts as hosts_db
from vmflow.db import instances as instances_db
from vmflow.db import keypairs as keypairs_db
from vmflow.db import tags as tags_db
from vmflow.db.models import Instance, ServerGroupMember
from vmflow.states import vm_states
from webapp.api import common, microversion, server_filters, validation, views

bp = Blueprint("servers", __name__)

# Fields the clients send that vmflow accepts.  Networking arrives with a later
# issue: "none"/"auto" (or nothing) is accepted, an explicit network is refused.
_SERVER_KEYS = {"name", "imageRef", "flavorRef", "availability_zone", "metadata", "min_count",
                "max_count", "networks", "block_device_mapping_v2", "OS-DCF:diskConfig",
                "return_reservation_id", "key_name", "config_drive", "user_data",
                "accessIPv4", "accessIPv6", "adminPass"}
# Fields of later microversions, from the version that brought them.
_LATER_SERVER_KEYS = {"description": "2.19", "tags": "2.52", "trusted_image_certificates": "2.63",
                      "host": "2.74", "hypervisor_hostname": "2.74"}
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


def _versioned_keys(base: set[str], later: dict[str, str]) -> set[str]:
    return base | {k for k, v in later.items() if microversion.at_least(v)}


def _networks(server: dict) -> None:
    """Below 2.37 ``networks`` is an optional list; from 2.37 it is required and may
    also be "auto" or "none".  Networking arrives with a later issue: only "none",
    "auto" and an empty list (no network) are accepted."""
    networks = server.get("networks")
    if microversion.at_least("2.37"):
        if "networks" not in server:
            raise exception.Invalid("Invalid input for server: 'networks' is a required "
                                    "property (from microversion 2.37 on: a list, 'auto' or "
                                    "'none').")
        if networks not in ("none", "auto") and not isinstance(networks, list):
            raise exception.Invalid(f"Invalid input for field 'networks': {networks!r} is not "
                                    "a list, 'auto' or 'none'.")
    elif networks is not None and not isinstance(networks, list):
        raise exception.Invalid(f"Invalid input for field 'networks': {networks!r} is not a "
                                "list ('auto' and 'none' need microversion 2.37).")
    if networks not in (None, "none", "auto", []):
        raise exception.Invalid("Networking is not available yet: use networks 'none' or "
                                "'auto' (or an empty list).")


def _parse_create(body: dict) -> dict:
    server = validation.body_object(body, "server",
                                    _versioned_keys(_SERVER_KEYS, _LATER_SERVER_KEYS),
                                    also_top=_HINT_KEYS)
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
    _networks(server)
    description = validation.string(server, "description", "server", max_len=255)
    user_data = user_data_of(server, "server")
    access = access_ips(server, "server")
    trusted_certificates(server, "server")
    host = validation.string(server, "host", "server", min_len=1)
    node = validation.string(server, "hypervisor_hostname", "server", min_len=1)
    tags = tags_db.check_list(server["tags"]) if server.get("tags") is not None else []
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
    key_name = validation.string(server, "key_name", "server", min_len=1)
    config_drive = server.get("config_drive", False)
    if isinstance(config_drive, str):  # Nova also takes "true", "False", "1", "" ...
        config_drive = {"true": True, "1": True, "yes": True, "on": True, "false": False,
                        "0": False, "no": False, "off": False, "": False}.get(
                            config_drive.strip().lower(), config_drive)
    if not isinstance(config_drive, bool) and config_drive is not None:
        raise exception.Invalid(f"Invalid input for field 'config_drive' of server: "
                                f"{config_drive!r} is not a boolean.")
    return {"key_name": key_name, "config_drive": config_drive,
            "name": name, "flavor_ref": flavor_ref, "image_ref": image_ref,
            "availability_zone": zone, "metadata": meta, "group": group,
            "description": description, "tags": tags, "user_data": user_data, **access,
            "host": host, "hypervisor_hostname": node,
            "system_metadata": disk_config_of(server, "server"),
            "min_count": min_count, "max_count": max_count}


_DISK_CONFIGS = ("AUTO", "MANUAL")


def disk_config_of(obj: dict, where: str) -> dict[str, str]:
    """``OS-DCF:diskConfig``: AUTO or MANUAL (400 otherwise), as system metadata."""
    if "OS-DCF:diskConfig" not in obj:
        return {}
    value = obj["OS-DCF:diskConfig"]
    if value not in _DISK_CONFIGS:
        raise exception.Invalid(f"Invalid input for field 'OS-DCF:diskConfig' of {where}: "
                                f"{value!r} is not one of 'AUTO', 'MANUAL'.")
    return {"disk_config": value}


def user_data_of(obj: dict, where: str) -> str | None:
    """User data: base64 text of at most 65535 characters (400 otherwise)."""
    value = obj.get("user_data")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 65535:
        raise exception.Invalid(f"Invalid input for field 'user_data' of {where}: it must be "
                                "base64 text of at most 65535 characters.")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise exception.Invalid(f"Invalid input for field 'user_data' of {where}: it is not "
                                "valid base64.") from None
    return value


def access_ips(obj: dict, where: str) -> dict[str, str | None]:
    """accessIPv4/accessIPv6: an address of that family, or empty (400 otherwise)."""
    found = {}
    for key, column, version in (("accessIPv4", "access_ip_v4", 4),
                                 ("accessIPv6", "access_ip_v6", 6)):
        if key not in obj:
            continue
        value = obj[key]
        if value in (None, ""):
            found[column] = None
            continue
        try:
            address = ipaddress.ip_address(value) if isinstance(value, str) else None
        except ValueError:
            address = None
        if address is None or address.version != version:
            raise exception.Invalid(f"Invalid input for field '{key}' of {where}: {value!r} "
                                    f"is not an IPv{version} address.")
        found[column] = str(address)
    return found


def trusted_certificates(obj: dict, where: str) -> None:
    """2.63: certificate ids to verify the image with.  No vmflow host verifies
    image signatures, so a request that asks for it is refused rather than
    left to fail on every host."""
    if obj.get("trusted_image_certificates"):
        raise exception.Invalid(f"Invalid input for field 'trusted_image_certificates' of "
                                f"{where}: image certificate validation is not supported.")


def _destination(session, args: dict) -> None:
    """2.74: the host and/or node an admin asks for must exist (400 otherwise);
    the scheduler then considers that host only."""
    host, node = args.pop("host"), args.pop("hypervisor_hostname")
    if host is None and node is None:
        return
    common.authorize("compute:servers:create:requested_destination")
    if host is not None and not any(s.host == host and s.binary == "vmflow-compute"
                                    for s in hosts_db.list_services(session)):
        raise exception.Invalid(f"Compute host {host} could not be found.")
    if node is not None:
        owner = next((n.host for n in hosts_db.list_nodes(session)
                      if n.hypervisor_hostname == node), None)
        if owner is None or (host is not None and owner != host):
            raise exception.Invalid(f"Compute node {node} could not be found"
                                    + (f" on host {host}." if host else "."))
        host = owner
    args["host"] = host


def _check_references(args: dict) -> None:
    """The zone and server group a request names must exist (400 otherwise)."""
    cfg = common.config()
    with common.db().read() as session:
        _destination(session, args)
        if args["availability_zone"]:
            zones = set(aggregates_db.zones_of_hosts(session)
                        .values()) | {cfg.default_availability_zone}
            if args["availability_zone"] not in zones:
                raise exception.Invalid(f"The requested availability zone is not available: "
                                        f"{args['availability_zone']}.")
        if args["key_name"]:  # the caller's own key pair; its public key goes along
            try:
                args["key_data"] = keypairs_db.get(session, common.context().user_id,
                                                   args["key_name"]).public_key
            except exception.NotFound:
                raise exception.Invalid("Invalid key_name provided.") from None
        if args["group"]:
            ctx = common.context()
            try:
                aggregates_db.get_group(session, args["group"],
                                        None if ctx.is_admin else ctx.project_id)
            except exception.NotFound as err:
                raise exception.Invalid(str(err)) from None


def _count_that_fits(ctx, flavor_ref: str, min_count: int, max_count: int) -> int:
    """How many of ``max_count`` servers the project's quota (instances, cores,
    RAM) has room for, checked for the whole count as Nova does: all of them,
    else as many as fit if that is at least ``min_count``, else 403 naming the
    quota.  Each server's admission checks its own quota again."""
    if max_count == 1:
        return 1
    cfg = common.config()
    with common.db().read() as session:
        try:
            flavor = catalog.flavor_dict(catalog.get_flavor(session, flavor_ref))
        except exception.FlavorNotFound as err:
            raise exception.Invalid(str(err)) from None
        try:
            quotas.check_instances(session, cfg, ctx.project_id, flavor, max_count)
            return max_count
        except exception.QuotaExceeded as over:
            refusal = over
        allowed = quotas.limits(session, cfg, ctx.project_id)
        used = quotas.instance_usage(session, ctx.project_id)
        room = max_count
        for resource, each in (("instances", 1), ("cores", int(flavor["vcpus"])),
                               ("ram", int(flavor["memory_mb"]))):
            if allowed[resource] >= 0 and each > 0:
                room = min(room, max(0, allowed[resource] - used[resource]) // each)
    if room < min_count:
        raise refusal
    return room


def _launch_all(ctx, args: dict) -> list[str]:
    """Launch the ``min_count``..``max_count`` servers of one request: named
    ``<name>-<n>`` (Nova's default ``multi_instance_display_name_template``)
    when more than one, sharing a reservation id, each with its launch index.
    If one is refused at admission (the quota, raced away), the ones already
    accepted are deleted and the refusal answered."""
    min_count, max_count = args.pop("min_count"), args.pop("max_count")
    count = _count_that_fits(ctx, args["flavor_ref"], min_count, max_count)
    reservation = "r-" + secrets.token_hex(4)
    launched: list[str] = []
    try:
        for index in range(count):
            name = args["name"] if count == 1 else f"{args['name']}-{index + 1}"
            launched.append(common.compute_api().create(
                ctx, **{**args, "name": name}, reservation_id=reservation,
                launch_index=index))
    except Exception:
        for instance_uuid in launched:
            common.compute_api().delete(ctx, instance_uuid)
        raise
    return launched


@bp.post("/servers")
def create():
    args = _parse_create(common.json_body())
    password = validation.admin_password(common.json_body()["server"], "server")
    ctx = common.authorize("os_compute_api:servers:create")
    _check_references(args)
    disk_config = args["system_metadata"].get("disk_config", "MANUAL")
    instance_uuid = _launch_all(ctx, args)[0]  # several: Nova answers with the first
    reservation = common.json_body()["server"].get("return_reservation_id")
    if reservation is True or str(reservation).lower() in ("true", "1", "yes", "on"):
        with common.db().read() as session:
            reservation_id = views.reservation_of(instances_db.get(session, instance_uuid))
        response = jsonify({"reservation_id": reservation_id})
        response.status_code = 202
        return response
    with common.db().read() as session:
        instance = instances_db.get(session, instance_uuid)
        brief = views.server_brief(instance)
    # Nova's create answer: no name (Tempest's schema refuses one).
    brief = {"id": brief["id"], "links": brief["links"], "OS-DCF:diskConfig": disk_config,
             "security_groups": [{"name": "default"}], "adminPass": password}
    response = jsonify({"server": brief})
    response.status_code = 202
    response.headers["Location"] = brief["links"][0]["href"]
    return response


# The statuses a server list may be filtered by (Nova's; others: 400 from 2.38).
_STATUSES = frozenset({
    "ACTIVE", "BUILD", "DELETED", "ERROR", "HARD_REBOOT", "MIGRATING", "PASSWORD", "PAUSED",
    "REBOOT", "REBUILD", "RESCUE", "RESIZE", "REVERT_RESIZE", "SHELVED", "SHELVED_OFFLOADED",
    "SHUTOFF", "SOFT_DELETED", "SUSPENDED", "UNKNOWN", "VERIFY_RESIZE"})


def _host_statuses(session) -> dict[str, str]:
    """host_status (2.16) of each compute host: UP, DOWN (no heartbeat, or forced
    down), MAINTENANCE (disabled)."""
    down_after = common.config().service_down_time
    statuses = {}
    for svc in hosts_db.list_services(session):
        if svc.binary == "vmflow-compute":
            statuses[svc.host] = ("DOWN" if not hosts_db.is_up(svc, down_after)
                                  else "MAINTENANCE" if svc.disabled else "UP")
    return statuses


def bodies(session, rows, faults: dict | None = None, *, groups: bool = False,
           compact: bool = False, show_key_name: bool = False) -> list[dict]:
    """Server bodies at the request's microversion, for the caller.

    ``groups``: with each server's server groups (2.71: show, update and
    rebuild, not lists); ``compact``: update's and rebuild's reduced body
    (below 2.75).
    """
    faults = faults or {}
    compact = compact and not microversion.at_least("2.75")
    tags = tags_db.of(session, [r.uuid for r in rows]) if microversion.at_least("2.26") else {}
    hosts: dict[str, str] | None = None
    shows_host: dict[str, tuple[bool, bool, bool]] = {}
    rendered = []
    for row in rows:
        if row.project_id not in shows_host:
            target = {"project_id": row.project_id}
            shows_host[row.project_id] = (
                common.shows_host(row.project_id),
                microversion.at_least("2.16")
                and common.allowed("os_compute_api:servers:show:host_status", target),
                microversion.at_least("2.47")
                and common.allowed("os_compute_api:servers:show:flavor-extra-specs", target))
        show_host, show_status, show_specs = shows_host[row.project_id]
        status = None
        if show_status:
            if hosts is None:
                hosts = _host_statuses(session)
            status = hosts.get(row.host, "UNKNOWN") if row.host else ""
        member_of = None
        if groups and microversion.at_least("2.71"):
            member_of = list(session.scalars(select(ServerGroupMember.group_uuid).where(
                ServerGroupMember.instance_uuid == row.uuid)))
        rendered.append(views.server(row, faults.get(row.uuid), show_host=show_host,
                                     tags=tags.get(row.uuid, []), host_status=status,
                                     server_groups=member_of, compact=compact,
                                     show_key_name=show_key_name,
                                     flavor_extra_specs=show_specs))
    return rendered


def _listed(detail: bool):
    kind = "detail" if detail else "index"
    ctx = common.authorize(f"os_compute_api:servers:{kind}")
    all_tenants = request.args.get("all_tenants", "").lower() in ("1", "true", "yes", "")
    all_tenants = "all_tenants" in request.args and all_tenants
    if all_tenants:  # other projects' servers: refused (403), not silently narrowed
        common.authorize(f"os_compute_api:servers:{kind}:get_all_tenants")
    project = request.args.get("project_id") if all_tenants else ctx.project_id
    filters = server_filters.parse()
    limit = common.query_int("limit", minimum=0)
    marker = request.args.get("marker")
    for status in filters.get("status", []):
        if status.upper() not in _STATUSES and microversion.at_least("2.38"):
            raise exception.Invalid(f"Invalid status value: {status!r}.")
    with common.db().read() as session:
        query = select(Instance)
        if not server_filters.wants_deleted(filters):
            query = query.where(Instance.deleted.is_(False))
        if project is not None:
            query = query.where(Instance.project_id == project)
        rows = list(session.scalars(query))
        rows = server_filters.sort(server_filters.apply(
            rows, filters, lambda uuids: tags_db.of(session, uuids)), filters)
        rows = common.after_marker(rows, marker or None, lambda r: r.uuid)
        links = None
        if limit is not None:
            if rows[limit:] and limit:
                links = _next_link("servers/detail" if detail else "servers",
                                   rows[limit - 1].uuid)
            rows = rows[:limit]
        if not detail:
            body = {"servers": [views.server_brief(r) for r in rows]}
        else:
            faults = instances_db.latest_faults(
                session, [r.uuid for r in rows if r.vm_state == vm_states.ERROR])
            body = {"servers": bodies(session, rows, faults)}
        if links:
            body["servers_links"] = links
        return jsonify(body)


def _next_link(path: str, last: str) -> list[dict[str, str]]:
    query = {k: v for k, v in request.args.items(multi=True) if k != "marker"}
    query["marker"] = last
    return [{"rel": "next",
             "href": f"{common.base_url()}/v2.1/{path}?{urllib.parse.urlencode(query)}"}]


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
        common.authorize("os_compute_api:servers:show", {"project_id": instance.project_id})
        faults = {}
        if instance.vm_state == vm_states.ERROR:
            faults = instances_db.latest_faults(session, [instance.uuid])
        return jsonify({"server": bodies(session, [instance], faults, groups=True)[0]})


_UPDATE_KEYS = {"name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"}
_LATER_UPDATE_KEYS = {"description": "2.19"}


@bp.put("/servers/<server_id>")
def update(server_id: str):
    """Rename a server, change its access addresses and ``OS-DCF:diskConfig``
    (and, from 2.19, its description)."""
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    changes = validation.body_object(common.json_body(), "server",
                                     _versioned_keys(_UPDATE_KEYS, _LATER_UPDATE_KEYS))
    name = validation.string(changes, "name", "server", min_len=1)
    description = validation.string(changes, "description", "server", max_len=255)
    access = access_ips(changes, "server")
    disk_config = disk_config_of(changes, "server")
    with common.db().write() as session:
        instance = _owned(session, server_id)
        common.authorize("os_compute_api:servers:update", {"project_id": instance.project_id})
        if name is not None:
            instance.name = name
        if disk_config:  # a new object: the JSON column sees the change
            instance.system_metadata = {**(instance.system_metadata or {}), **disk_config}
        if "description" in changes:
            instance.description = description
        for column, value in access.items():
            setattr(instance, column, value)
        session.flush()
        return jsonify({"server": bodies(session, [instance], groups=True, compact=True)[0]})


_TAGS = "os_compute_api:os-server-tags:"
policy.register({_TAGS + "index": policy.PROJECT_READER_OR_ADMIN,
                 _TAGS + "show": policy.PROJECT_READER_OR_ADMIN,
                 _TAGS + "update": policy.PROJECT_MEMBER_OR_ADMIN,
                 _TAGS + "update_all": policy.PROJECT_MEMBER_OR_ADMIN,
                 _TAGS + "delete": policy.PROJECT_MEMBER_OR_ADMIN,
                 _TAGS + "delete_all": policy.PROJECT_MEMBER_OR_ADMIN})


def _tagged(session, server_id: str, rule: str):
    """The server whose tags are read or changed (2.26), after policy ``rule``;
    tags change only in settled states (409 otherwise), as in Nova."""
    microversion.require("2.26")
    instance = _owned(session, server_id)
    common.authorize(_TAGS + rule, {"project_id": instance.project_id})
    change = rule not in ("index", "show")
    if change and (instance.vm_state not in _TAGGABLE or instance.task_state is not None):
        raise exception.Conflict(f"Cannot change the tags of server {server_id} while it is in "
                                 f"vm_state {instance.vm_state} and task_state "
                                 f"{instance.task_state}.")
    return instance


_TAGGABLE = frozenset({vm_states.ACTIVE, vm_states.PAUSED, vm_states.RESCUED, vm_states.RESIZED,
                       vm_states.STOPPED, vm_states.SUSPENDED, vm_states.SHELVED,
                       vm_states.SHELVED_OFFLOADED})


@bp.get("/servers/<server_id>/tags")
def tags_index(server_id: str):
    with common.db().read() as session:
        _tagged(session, server_id, "index")
        return jsonify({"tags": tags_db.of(session, [server_id]).get(server_id, [])})


@bp.put("/servers/<server_id>/tags")
def tags_replace(server_id: str):
    body = common.json_body()
    validation.only_keys(body, {"tags"}, "the request body")
    if "tags" not in body:
        raise exception.Invalid("Invalid input for the request body: 'tags' is a required "
                                "property.")
    tags = tags_db.check_list(body["tags"])
    with common.db().write() as session:
        _tagged(session, server_id, "update_all")
        tags_db.replace(session, server_id, tags)
        return jsonify({"tags": sorted(tags)})


@bp.delete("/servers/<server_id>/tags")
def tags_clear(server_id: str):
    with common.db().write() as session:
        _tagged(session, server_id, "delete_all")
        tags_db.replace(session, server_id, [])
    return "", 204


@bp.get("/servers/<server_id>/tags/<tag>")
def tag_show(server_id: str, tag: str):
    with common.db().read() as session:
        _tagged(session, server_id, "show")
        if tag not in tags_db.of(session, [server_id]).get(server_id, []):
            raise exception.NotFound(f"Tag {tag} could not be found for server {server_id}.")
    return "", 204


@bp.put("/servers/<server_id>/tags/<tag>")
def tag_add(server_id: str, tag: str):
    tags_db.check(tag)
    with common.db().write() as session:
        _tagged(session, server_id, "update")
        created = tags_db.add(session, server_id, tag)
    if not created:
        return "", 204
    response = current_app.response_class(status=201)
    response.headers["Location"] = f"{common.base_url()}/v2.1/servers/{server_id}/tags/{tag}"
    return response


@bp.delete("/servers/<server_id>/tags/<tag>")
def tag_delete(server_id: str, tag: str):
    with common.db().write() as session:
        _tagged(session, server_id, "delete")
        tags_db.remove(session, server_id, tag)
    return "", 204


@bp.delete("/servers/<server_id>")
def delete(server_id: str):
    common.require_uuid(server_id, exception.InstanceNotFound, instance_id=server_id)
    common.compute_api().delete(common.context(), server_id)
    return "", 204


policy.register({"compute:server:topology:index": policy.PROJECT_READER_OR_ADMIN,
                 "compute:server:topology:host:index": policy.ADMIN})


@bp.get("/servers/<server_id>/topology")
def topology(server_id: str):
    """2.78: the server's NUMA topology.  vmflow places no guest on NUMA cells
    (flavors cannot ask for it yet), so every server has none: no nodes."""
    microversion.require("2.78")
    with common.db().read() as session:
        instance = _owned(session, server_id)
        common.authorize("compute:server:topology:index", {"project_id": instance.project_id})
    return jsonify({"nodes": [], "pagesize_kb": None})
