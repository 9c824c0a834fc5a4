"""/os-availability-zone: zones from aggregates, the default zone, the internal zone."""

from __future__ import annotations

from flask import Blueprint, jsonify

from vmflow.db import aggregates as aggregates_db
from vmflow.db import hosts as hosts_db
from webapp.api import common

bp = Blueprint("zones", __name__)


def _zones(session) -> dict[str, dict[str, dict]]:
    """zone -> host -> binary -> state, for every service."""
    cfg = common.config()
    zone_of = aggregates_db.zones_of_hosts(session)
    result: dict[str, dict[str, dict]] = {}
    for svc in hosts_db.list_services(session):
        compute = svc.binary == "vmflow-compute"
        zone = (zone_of.get(svc.host, cfg.default_availability_zone) if compute
                else cfg.internal_service_availability_zone)
        result.setdefault(zone, {}).setdefault(svc.host, {})[svc.binary] = {
            "available": not svc.disabled,
            "active": hosts_db.is_up(svc, cfg.service_down_time),
            "updated_at": common.isotime(svc.last_seen_up),
        }
    return result


def _available(hosts: dict[str, dict]) -> bool:
    return any(state["available"] and state["active"]
               for services in hosts.values() for state in services.values())


@bp.get("/os-availability-zone")
def index():
    """Zones users can boot into (compute zones only)."""
    common.authorize("os_compute_api:os-availability-zone:list")
    internal = common.config().internal_service_availability_zone
    with common.db().read() as session:
        zones = _zones(session)
    return jsonify({"availabilityZoneInfo": [
        {"zoneName": name, "zoneState": {"available": _available(hosts)}, "hosts": None}
        for name, hosts in sorted(zones.items()) if name != internal]})


@bp.get("/os-availability-zone/detail")
def detail():
    common.authorize("os_compute_api:os-availability-zone:detail")
    with common.db().read() as session:
        zones = _zones(session)
    return jsonify({"availabilityZoneInfo": [
        {"zoneName": name, "zoneState": {"available": _available(hosts)}, "hosts": hosts}
        for name, hosts in sorted(zones.items())]})
