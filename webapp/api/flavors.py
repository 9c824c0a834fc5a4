"""/flavors: list, show, create and delete (admin), and their extra specs."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from vmflow import exception
from vmflow.db import catalog
from vmflow.db.models import Flavor
from webapp.api import common, microversion, validation, views

bp = Blueprint("flavors", __name__)


def _listed(session) -> list[Flavor]:
    """The flavors a list asks for: Nova's ``minDisk``/``minRam`` filters, then
    ``marker`` (a flavor id; the page starts after it) and ``limit``."""
    min_disk = common.query_int("minDisk")
    min_ram = common.query_int("minRam")
    limit = common.query_int("limit")
    rows = [f for f in catalog.list_flavors(session)
            if (min_disk is None or f.root_gb >= min_disk)
            and (min_ram is None or f.memory_mb >= min_ram)]
    rows = common.after_marker(rows, request.args.get("marker"), lambda f: f.flavorid)
    return rows if limit is None else rows[:limit]


@bp.get("/flavors")
def index():
    with common.db().read() as session:
        return jsonify({"flavors": [views.flavor_brief(f) for f in _listed(session)]})


@bp.get("/flavors/detail")
def detail():
    with common.db().read() as session:
        specs = _specs_visible()
        return jsonify({"flavors": [views.flavor(f, specs) for f in _listed(session)]})


@bp.get("/flavors/<flavor_id>")
def show(flavor_id: str):
    with common.db().read() as session:
        return jsonify({"flavor": views.flavor(catalog.get_flavor(session, flavor_id),
                                               _specs_visible())})


def _specs_visible() -> bool:
    """Whether flavor bodies show extra specs (2.61): if the caller may list them."""
    return (microversion.at_least("2.61")
            and common.allowed("os_compute_api:os-flavor-extra-specs:index"))


def _description(spec: dict) -> str | None:
    value = spec.get("description")
    if value is not None and (not isinstance(value, str) or len(value) > 65535
                              or any(ord(c) < 32 and c not in "\t\n\r" for c in value)):
        raise exception.Invalid("Invalid input for field 'description' of flavor: a string of "
                                "at most 65535 printable characters is required.")
    return value


@bp.put("/flavors/<flavor_id>")
def update(flavor_id: str):
    """2.55: change a flavor's description (the only field that may change)."""
    microversion.require("2.55")
    common.authorize("os_compute_api:os-flavor-manage:update")
    spec = validation.body_object(common.json_body(), "flavor", {"description"})
    if "description" not in spec:
        raise exception.Invalid("Invalid input for flavor: 'description' is a required "
                                "property.")
    description = _description(spec)
    with common.db().write() as session:
        row = catalog.get_flavor(session, flavor_id)
        row.description = description
        session.flush()
        return jsonify({"flavor": views.flavor(row, _specs_visible())})


_FLAVOR_KEYS = {"name", "ram", "vcpus", "disk", "id", "OS-FLV-EXT-DATA:ephemeral", "swap",
                "rxtx_factor", "os-flavor-access:is_public"}


@bp.post("/flavors")
def create():
    common.authorize("os_compute_api:os-flavor-manage:create")
    spec = validation.body_object(common.json_body(), "flavor", _FLAVOR_KEYS | (
        {"description"} if microversion.at_least("2.55") else set()))
    description = _description(spec)
    name = validation.string(spec, "name", "flavor", required=True, min_len=1)
    for key in ("ram", "vcpus", "disk"):
        if spec.get(key) is None:
            raise exception.Invalid(f"Invalid input for flavor: '{key}' is a required property.")
    ram = validation.integer(spec, "ram", "flavor", minimum=1)
    vcpus = validation.integer(spec, "vcpus", "flavor", minimum=1)
    disk = validation.integer(spec, "disk", "flavor", minimum=0)
    ephemeral = validation.integer(spec, "OS-FLV-EXT-DATA:ephemeral", "flavor", minimum=0) or 0
    swap = validation.integer(spec, "swap", "flavor", minimum=0) or 0
    flavorid = validation.string(spec, "id", "flavor", min_len=1, allow_int=True)
    public = spec.get("os-flavor-access:is_public", True)
    if not isinstance(public, bool):
        raise exception.Invalid("Invalid input for field 'os-flavor-access:is_public': "
                                "it must be a boolean.")
    with common.db().write() as session:
        flavorid = flavorid or str(max([int(f) for f in session.scalars(
            select(Flavor.flavorid)) if f.isdigit()] or [0]) + 1)
        for column, value in (("name", name), ("flavorid", flavorid)):
            if session.scalar(select(Flavor.id).where(getattr(Flavor, column) == value)):
                raise exception.Conflict(f"Flavor with {'ID' if column == 'flavorid' else column}"
                                         f" {value} already exists.")
        row = Flavor(name=name, flavorid=flavorid, vcpus=vcpus, memory_mb=ram, root_gb=disk,
                     ephemeral_gb=ephemeral, swap=swap, is_public=public, disabled=False,
                     extra_specs={}, description=description)
        session.add(row)
        session.flush()
        return jsonify({"flavor": views.flavor(row, _specs_visible())})


@bp.delete("/flavors/<flavor_id>")
def delete(flavor_id: str):
    common.authorize("os_compute_api:os-flavor-manage:delete")
    with common.db().write() as session:
        row = catalog.get_flavor(session, flavor_id)
        # Instances keep their own copy of the flavor; the row is only hidden.
        row.disabled = True
        row.name = f"{row.name}-deleted-{row.id}"
        row.flavorid = f"{row.flavorid}-deleted-{row.id}"
    return "", 202


@bp.get("/flavors/<flavor_id>/os-extra_specs")
def extra_specs(flavor_id: str):
    common.authorize("os_compute_api:os-flavor-extra-specs:index")
    with common.db().read() as session:
        return jsonify({"extra_specs": dict(catalog.get_flavor(session, flavor_id).extra_specs
                                            or {})})


@bp.post("/flavors/<flavor_id>/os-extra_specs")
def set_extra_specs(flavor_id: str):
    common.authorize("os_compute_api:os-flavor-extra-specs:create")
    body = common.json_body()
    validation.only_keys(body, {"extra_specs"}, "the request body")
    specs = body.get("extra_specs")
    if not isinstance(specs, dict) or not all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) and 0 < len(k) <= 255
            for k, v in specs.items()):
        raise exception.Invalid("Invalid input for 'extra_specs': keys must be 1-255 "
                                "characters and values strings or numbers.")
    with common.db().write() as session:
        row = catalog.get_flavor(session, flavor_id)
        row.extra_specs = {**(row.extra_specs or {}), **{k: str(v) for k, v in specs.items()}}
        return jsonify({"extra_specs": dict(row.extra_specs)})


@bp.delete("/flavors/<flavor_id>/os-extra_specs/<key>")
def delete_extra_spec(flavor_id: str, key: str):
    common.authorize("os_compute_api:os-flavor-extra-specs:delete")
    with common.db().write() as session:
        row = catalog.get_flavor(session, flavor_id)
        specs = dict(row.extra_specs or {})
        if key not in specs:
            raise exception.NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
        specs.pop(key)
        row.extra_specs = specs
    return "", 200
