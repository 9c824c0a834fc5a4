"""/flavors: list and show (create and delete arrive with the scheduler issue)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from vmflow.db import catalog
from webapp.api import common, views

bp = Blueprint("flavors", __name__)


@bp.get("/flavors")
def index():
    with common.db().read() as session:
        return jsonify({"flavors": [views.flavor_brief(f) for f in catalog.list_flavors(session)]})


@bp.get("/flavors/detail")
def detail():
    with common.db().read() as session:
        return jsonify({"flavors": [views.flavor(f) for f in catalog.list_flavors(session)]})


@bp.get("/flavors/<flavor_id>")
def show(flavor_id: str):
    with common.db().read() as session:
        return jsonify({"flavor": views.flavor(catalog.get_flavor(session, flavor_id))})
