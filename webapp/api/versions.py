"""Version discovery at the compute root, at /v2.1 and at /v2.

The root lists v2.0 then v2.1, as Nova does.  v2.1 is CURRENT and advertises
the microversion range (``version`` is the maximum, ``min_version`` 2.1;
openstacksdk turns microversions off when either is empty).  v2.0 is Nova's
legacy API, which has no microversions, so both are empty there as in Nova;
vmflow answers its version document at /v2 but serves the API at /v2.1 only.
Every ``self`` link resolves to the version's own document.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from webapp.api import common
from webapp.api.microversion import MAX_VERSION, MIN_VERSION

bp = Blueprint("versions", __name__)

_JSON = "application/json"


def _v20() -> dict[str, Any]:
    return {
        "id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
        "updated": "2011-01-21T11:33:21Z",
        "links": [{"rel": "self", "href": f"{common.base_url()}/v2/"}],
        "media-types": [{"base": _JSON,
                         "type": "application/vnd.openstack.compute+json;version=2"}],
    }


def _v21() -> dict[str, Any]:
    return {
        "id": "v2.1", "status": "CURRENT", "version": MAX_VERSION, "min_version": MIN_VERSION,
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{common.base_url()}/v2.1/"}],
        "media-types": [{"base": _JSON,
                         "type": "application/vnd.openstack.compute+json;version=2.1"}],
    }


@bp.get("/")
def root():
    return jsonify({"versions": [_v20(), _v21()]})


@bp.get("/v2.1")
@bp.get("/v2.1/")
def v21():
    return jsonify({"version": _v21()})


@bp.get("/v2")
@bp.get("/v2/")
def v20():
    return jsonify({"version": _v20()})
