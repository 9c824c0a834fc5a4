"""/os-services: every service with its heartbeat-derived state."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from vmflow.db import aggregates as aggregates_db
from vmflow.db import hosts as hosts_db
from webapp.api import common, views

bp = Blueprint("services", __name__)


@bp.get("/os-services")
def index():
    cfg = common.config()
    binary, host = request.args.get("binary"), request.args.get("host")
    with common.db().read() as session:
        zones = aggregates_db.zones_of_hosts(session)
        rows = [s for s in hosts_db.list_services(session)
                if (not binary or s.binary == binary) and (not host or s.host == host)]
        return jsonify({"services": [
            views.service(s, hosts_db.is_up(s, cfg.service_down_time),
                          zones.get(s.host, cfg.default_availability_zone)
                          if s.binary == "vmflow-compute"
                          else cfg.internal_service_availability_zone)
            for s in rows]})
