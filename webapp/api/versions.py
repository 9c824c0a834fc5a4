"""Version discovery at the compute root and at /v2.1."""

from __future__ import annotations

from flask import Blueprint, jsonify

from webapp.api import common

bp = Blueprint("versions", __name__)

MIN_VERSION = "2.1"
MAX_VERSION = "2.1"  # microversions beyond 2.1 arrive with the identity/clients issue
UPDATED = "2013-07-23T11:33:21Z"


def _v21() -> dict:
    return {
        "id": "v2.1", "status": "CURRENT", "version": MAX_VERSION, "min_version": MIN_VERSION,
        "updated": UPDATED,
        "links": [{"rel": "self", "href": f"{common.base_url()}/v2.1/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.compute+json;version=2.1"}],
    }


@bp.get("/")
def root():
    return jsonify({"versions": [_v21()]})


@bp.get("/v2.1")
@bp.get("/v2.1/")
def v21():
    return jsonify({"version": _v21()})
