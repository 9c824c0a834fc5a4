"""Version discovery of the image service and the JSON schemas of its bodies."""

from __future__ import annotations

from typing import Any

from flask import jsonify

from vmflow.db import images as store
from webapp.api import common
from webapp.image.blueprint import bp

# The image API versions served, newest first: 2.0 plus what later minor
# versions changed in the calls vmflow has (os_hidden is 2.7's).
CURRENT = "v2.7"
SUPPORTED = ("v2.6", "v2.5", "v2.4", "v2.3", "v2.2", "v2.1", "v2.0")


def _versions() -> dict[str, Any]:
    href = f"{common.base_url()}/image/v2/"
    return {"versions": [
        {"id": version, "status": "CURRENT" if version == CURRENT else "SUPPORTED",
         "links": [{"rel": "self", "href": href}]}
        for version in (CURRENT, *SUPPORTED)]}


@bp.get("", strict_slashes=False)
def root():
    # Glance answers its root with 300 Multiple Choices; keystoneauth reads the body.
    response = jsonify(_versions())
    response.status_code = 300
    return response


@bp.get("/versions")
@bp.get("/v2", strict_slashes=False)
def versions():
    return jsonify(_versions())


def _image_schema() -> dict[str, Any]:
    string = {"type": ["null", "string"]}
    integer = {"type": ["null", "integer"], "minimum": 0}
    return {
        "name": "image",
        "properties": {
            "id": {"type": "string", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-"
                   "([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
            "name": {**string, "maxLength": 255},
            "status": {"type": "string", "readOnly": True,
                       "enum": ["queued", "saving", "active", "killed", "deleted"]},
            "visibility": {"type": "string", "enum": list(store.VISIBILITIES)},
            "protected": {"type": "boolean"},
            "os_hidden": {"type": "boolean"},
            "owner": {**string, "maxLength": 255},
            "disk_format": {"type": ["null", "string"], "enum": [None, *store.DISK_FORMATS]},
            "container_format": {"type": ["null", "string"],
                                 "enum": [None, *store.CONTAINER_FORMATS]},
            "size": {**integer, "readOnly": True},
            "virtual_size": {**integer, "readOnly": True},
            "checksum": {**string, "readOnly": True, "maxLength": 32},
            "os_hash_algo": {**string, "readOnly": True, "maxLength": 64},
            "os_hash_value": {**string, "readOnly": True, "maxLength": 128},
            "min_disk": {"type": "integer", "minimum": 0},
            "min_ram": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
            "created_at": {"type": "string", "readOnly": True, "format": "date-time"},
            "updated_at": {"type": "string", "readOnly": True, "format": "date-time"},
            "self": {"type": "string", "readOnly": True},
            "file": {"type": "string", "readOnly": True},
            "schema": {"type": "string", "readOnly": True},
        },
        "additionalProperties": {"type": "string"},
        "links": [{"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }


@bp.get("/v2/schemas/image")
def image_schema():
    return jsonify(_image_schema())


@bp.get("/v2/schemas/images")
def images_schema():
    return jsonify({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": _image_schema()},
            "schema": {"type": "string"}, "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    })
