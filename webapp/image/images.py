"""/image/v2/images: list, show, create, update (JSON patch) and delete records.

Visibility: public images are seen by everyone; private and shared ones (vmflow
has no image members, so shared behaves as private) by their owner project and
admins.  An image the caller cannot see answers 404, as a missing one does.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import jsonify, request

from vmflow import exception
from vmflow.db import images as store
from vmflow.db.models import Image
from webapp.api import common
from webapp.image import view
from webapp.image.blueprint import UnsupportedMediaType, bp, image_dir

LOG = logging.getLogger(__name__)

LIMIT_DEFAULT, LIMIT_MAX = 25, 1000  # Glance's defaults (limit_param_default, api_limit_max)
PATCH_TYPES = ("application/openstack-images-v2.1-json-patch",
               "application/openstack-images-v2.0-json-patch")
MAX_PROPERTY_KEY, MAX_PROPERTY_VALUE = 255, 65535


def _viewer() -> str | None:
    """The project whose images the caller sees (None: an admin sees all)."""
    ctx = common.context()
    return None if ctx.is_admin else ctx.project_id


def visible_image(session, image_id: str) -> Image:
    common.require_uuid(image_id, exception.ImageNotFound, image_id=image_id)
    return store.get(session, image_id, _viewer())


def _own(rule: str, row: Image) -> None:
    """Policy ``rule`` for an action on ``row`` on behalf of its owner project."""
    common.authorize(rule, {"project_id": row.owner or ""})


# -- listing ---------------------------------------------------------------------------

def _values(name: str) -> list[str] | None:
    """A filter's values: ``in:a,b`` (Glance's list operator) or one value."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw.startswith("in:"):
        return [v.strip().strip('"') for v in raw[3:].split(",") if v.strip()]
    return [raw]


def _boolean(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw.lower() not in ("true", "false"):
        raise exception.Invalid(f"Query parameter {name} must be true or false, not {raw!r}.")
    return raw.lower() == "true"


def _sort() -> list[tuple[str, str]]:
    """Sort keys and directions: ``sort=name:asc,created_at`` or repeated
    ``sort_key``/``sort_dir``; created_at descending by default."""
    pairs: list[tuple[str, str]] = []
    if request.args.get("sort"):
        for part in request.args["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        keys = request.args.getlist("sort_key") or ["created_at"]
        dirs = request.args.getlist("sort_dir") or ["desc"]
        if len(dirs) not in (1, len(keys)):
            raise exception.Invalid("Give one sort_dir, or one per sort_key.")
        pairs = [(key, dirs[i] if len(dirs) > 1 else dirs[0]) for i, key in enumerate(keys)]
    for key, direction in pairs:
        if key not in store.SORT_KEYS:
            raise exception.Invalid(f"Unsupported sort key {key!r}; use one of "
                                    f"{', '.join(store.SORT_KEYS)}.")
        if direction not in ("asc", "desc"):
            raise exception.Invalid(f"Sort direction must be asc or desc, not {direction!r}.")
    return pairs


def _filters() -> store.Filters:
    visibility = request.args.get("visibility")
    if visibility not in (None, "all", "community", *store.VISIBILITIES):
        raise exception.Invalid(f"Invalid visibility value: {visibility}")
    return store.Filters(
        ids=_values("id"), names=_values("name"), status=request.args.get("status"),
        visibility=None if visibility in (None, "all") else visibility,
        owner=request.args.get("owner"), disk_format=request.args.get("disk_format"),
        container_format=request.args.get("container_format"), protected=_boolean("protected"),
        size_min=common.query_int("size_min"), size_max=common.query_int("size_max"),
        tags=request.args.getlist("tag"),
        properties={key: value for key, value in request.args.items()
                    if key not in _NOT_PROPERTIES})


# Query parameters of a listing that are not custom-property filters (Glance
# takes any other parameter as one: ``?image_type=backup&instance_uuid=...``).
_NOT_PROPERTIES = frozenset({
    "limit", "marker", "sort", "sort_key", "sort_dir", "id", "name", "status", "visibility",
    "owner", "disk_format", "container_format", "protected", "size_min", "size_max", "tag",
    "os_hidden", "member_status", "created_at", "updated_at", "checksum", "os_hash_value",
    "min_ram", "min_disk"})


@bp.get("/v2/images")
def index():
    common.authorize("image:get_images")
    filters, sort = _filters(), _sort()
    limit = min(common.query_int("limit", minimum=1) or LIMIT_DEFAULT, LIMIT_MAX)
    hidden = _boolean("os_hidden")
    with common.db().read() as session:
        rows, more = ([], False) if hidden else store.listing(
            session, _viewer(), filters, sort, limit, request.args.get("marker"))
        body: dict[str, Any] = {"images": [view.image(row) for row in rows]}
    if more:
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "marker"]
        body["next"] = "/v2/images?" + urlencode([*args, ("marker", rows[-1].id)])
    body.update({"schema": "/v2/schemas/images", "first": "/v2/images"})
    return jsonify(body)


@bp.get("/v2/images/<image_id>")
def show(image_id: str):
    common.authorize("image:get_image")
    with common.db().read() as session:
        return jsonify(view.image(visible_image(session, image_id)))


@bp.get("/v2/images/<image_id>/tasks")
def tasks(image_id: str):
    """The image's import tasks (Glance 2.12): vmflow imports nothing
    asynchronously (uploads and snapshots write the file directly), so none."""
    common.authorize("image:get_image")
    with common.db().read() as session:
        visible_image(session, image_id)
    return jsonify({"tasks": []})


# -- validation of what a request sets ---------------------------------------------------

def _check_property(key: Any, value: Any) -> None:
    if key in view.READ_ONLY:
        raise exception.Forbidden(f"Attribute '{key}' is read-only.")
    if not isinstance(key, str) or not key or len(key) > MAX_PROPERTY_KEY:
        raise exception.Invalid(f"Property names must be 1 to {MAX_PROPERTY_KEY} characters.")
    if not isinstance(value, str) or len(value) > MAX_PROPERTY_VALUE:
        raise exception.Invalid(f"Property {key} must be a string of at most "
                                f"{MAX_PROPERTY_VALUE} characters.")


def _check_core(key: str, value: Any) -> Any:
    """The value of a core attribute, checked (400 with what is wrong)."""
    if key == "name":
        if value is None:
            return ""
        if not isinstance(value, str) or len(value) > 255:
            raise exception.Invalid("name must be a string of at most 255 characters.")
    elif key == "visibility":
        if value not in store.VISIBILITIES:
            raise exception.Invalid(f"Invalid visibility value: {value}; use one of "
                                    f"{', '.join(store.VISIBILITIES)}.")
    elif key in ("protected", "os_hidden"):
        if not isinstance(value, bool):
            raise exception.Invalid(f"{key} must be true or false.")
        if key == "os_hidden" and value:
            raise exception.Invalid("Hidden images are not supported.")
    elif key in ("min_disk", "min_ram"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise exception.Invalid(f"{key} must be an integer of 0 or more.")
    elif key == "tags":
        if not isinstance(value, list) or not all(
                isinstance(t, str) and 0 < len(t) <= 255 for t in value):
            raise exception.Invalid("tags must be a list of strings of 1 to 255 characters.")
        return list(dict.fromkeys(value))
    elif key == "disk_format":
        if value not in store.DISK_FORMATS:
            raise exception.Invalid(f"Invalid disk format {value!r}: use one of "
                                    f"{', '.join(store.DISK_FORMATS)}.")
    elif key == "container_format":
        if value not in store.CONTAINER_FORMATS:
            raise exception.Invalid(f"Invalid container format {value!r}: use one of "
                                    f"{', '.join(store.CONTAINER_FORMATS)}.")
    elif key == "owner":
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise exception.Invalid("owner must be a project id.")
    return value


def _check_visibility_change(row_owner: str | None, visibility: str) -> None:
    if visibility == "public":
        common.authorize("image:publicize_image", {"project_id": row_owner or ""})


# -- create, update, delete ---------------------------------------------------------------

@bp.post("/v2/images")
def create():
    body = common.json_body()
    ctx = common.context()
    owner = body.get("owner", ctx.project_id)
    fields: dict[str, Any] = {"properties": {}}
    for key, value in body.items():
        if key in view.CORE:
            fields[key] = _check_core(key, value)
        else:
            _check_property(key, value)
            fields["properties"][key] = value
    fields.pop("os_hidden", None)
    if "disk_format" not in fields:
        raise exception.Invalid("disk_format is required: one of "
                                f"{', '.join(store.DISK_FORMATS)}.")
    image_id = fields.pop("id", None) or str(uuid.uuid4())
    try:
        uuid.UUID(str(image_id))
    except ValueError:
        raise exception.Invalid(f"Image id {image_id!r} is not a UUID.") from None
    fields.setdefault("visibility", "shared")
    fields["owner"] = owner
    common.authorize("image:add_image", {"project_id": owner or ""})
    _check_visibility_change(owner, fields["visibility"])
    with common.db().write() as session:
        row = store.create(session, id=str(uuid.UUID(str(image_id))), **{
            "name": "", "container_format": "bare", **fields})
        LOG.info("image %s (%s) created for project %s", row.id, row.name, owner)
        response = jsonify(view.image(row))
    response.status_code = 201
    response.headers["Location"] = f"{common.base_url()}/image/v2/images/{row.id}"
    return response


def _patch_ops() -> list[dict[str, Any]]:
    if request.mimetype not in PATCH_TYPES:
        raise UnsupportedMediaType(
            f"Unsupported Content-Type {request.mimetype or '(none)'}: send {PATCH_TYPES[0]}.")
    try:
        ops = json.loads(request.get_data(cache=True) or b"null")
    except ValueError:
        raise exception.Invalid("Malformed request body: it is not valid JSON.") from None
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise exception.Invalid("A JSON patch is a list of operations (objects).")
    return ops


def _apply(row: Image, op: dict[str, Any], changes: dict[str, Any],
           properties: dict[str, Any]) -> None:
    """One JSON-patch operation onto ``changes`` (core attributes) and ``properties``."""
    kind, path = op.get("op"), op.get("path")
    if kind not in ("add", "replace", "remove"):
        raise exception.Invalid(f"Unsupported patch operation {kind!r}: use add, replace "
                                "or remove.")
    if not isinstance(path, str) or not path.startswith("/") or len(path) < 2:
        raise exception.Invalid(f"Invalid patch path {path!r}.")
    key = path[1:].replace("~1", "/").replace("~0", "~")
    if kind != "remove" and "value" not in op:
        raise exception.Invalid(f"Patch operation {kind} on {path} needs a value.")
    if key in view.READ_ONLY or key in ("id", "owner"):
        raise exception.Forbidden(f"Attribute '{key}' is read-only.")
    if key == "tags/-" and kind == "add":  # append one tag
        changes["tags"] = _check_core("tags", [*changes.get("tags", row.tags or []),
                                               op["value"]])
    elif key in view.CORE:
        if kind == "remove":
            raise exception.Forbidden(f"Attribute '{key}' cannot be removed.")
        if key in ("disk_format", "container_format") and row.status != store.QUEUED:
            raise exception.Forbidden(f"Attribute '{key}' can only be changed on a queued "
                                      "image.")
        changes[key] = _check_core(key, op["value"])
    elif kind == "remove":
        if key not in properties:
            raise exception.Conflict(f"Property {key} does not exist.")
        del properties[key]
    else:
        if kind == "replace" and key not in properties:
            raise exception.Conflict(f"Property {key} does not exist.")
        _check_property(key, op["value"])
        properties[key] = op["value"]


@bp.patch("/v2/images/<image_id>")
def update(image_id: str):
    ops = _patch_ops()
    with common.db().write() as session:
        row = visible_image(session, image_id)
        _own("image:modify_image", row)
        changes: dict[str, Any] = {}
        properties = dict(row.properties or {})
        for op in ops:
            _apply(row, op, changes, properties)
        changes.pop("os_hidden", None)
        if changes.get("visibility", row.visibility) != row.visibility:
            _check_visibility_change(row.owner, changes["visibility"])
        for key, value in changes.items():
            setattr(row, key, value)
        row.properties = properties
        session.flush()
        return jsonify(view.image(row))


@bp.delete("/v2/images/<image_id>")
def delete(image_id: str):
    with common.db().write() as session:
        row = visible_image(session, image_id)
        _own("image:delete_image", row)
        if row.protected:
            raise exception.Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        location = store.mark_deleted(session, row)
    path = Path(location) if location else None
    if path is not None and path.parent == image_dir():  # never a file outside the store
        path.unlink(missing_ok=True)
    LOG.info("image %s deleted", image_id)
    return "", 204
