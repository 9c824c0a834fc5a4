"""/images: the compute API's read-only view of the image store."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from vmflow import exception
from vmflow.db import catalog
from webapp.api import common, microversion, views

bp = Blueprint("images", __name__)


@bp.before_request
def _gone_from_2_36() -> None:
    """Nova removed its proxy to the image service at 2.36: use the image API."""
    if microversion.at_least("2.36"):
        raise exception.NotFound("The resource could not be found.")


def _project() -> str | None:
    ctx = common.context()
    return None if ctx.is_admin else ctx.project_id


@bp.get("/images")
def index():
    with common.db().read() as session:
        rows = catalog.list_images(session, _project(), name=request.args.get("name"))
        return jsonify({"images": [views.image_brief(i) for i in rows]})


@bp.get("/images/detail")
def detail():
    with common.db().read() as session:
        rows = catalog.list_images(session, _project(), name=request.args.get("name"))
        return jsonify({"images": [views.image(i) for i in rows]})


@bp.get("/images/<image_id>")
def show(image_id: str):
    common.require_uuid(image_id, exception.ImageNotFound, image_id=image_id)
    with common.db().read() as session:
        return jsonify({"image": views.image(catalog.get_image(session, image_id, _project()))})
