"""/os-hypervisors: compute nodes, their capacity and what is claimed on them."""

from __future__ import annotations

from flask import Blueprint, jsonify

from vmflow import exception
from vmflow.db import hosts as hosts_db
from webapp.api import common, views

bp = Blueprint("hypervisors", __name__)


def _nodes(session):
    down_after = common.config().service_down_time
    services = {s.host: s for s in hosts_db.list_services(session)
                if s.binary == "vmflow-compute"}
    for node in hosts_db.list_nodes(session):
        svc = services.get(node.host)
        yield node, svc, svc is not None and hosts_db.is_up(svc, down_after)


@bp.get("/os-hypervisors")
def index():
    with common.db().read() as session:
        return jsonify({"hypervisors": [views.hypervisor_brief(*n) for n in _nodes(session)]})


@bp.get("/os-hypervisors/detail")
def detail():
    with common.db().read() as session:
        return jsonify({"hypervisors": [views.hypervisor(*n) for n in _nodes(session)]})


@bp.get("/os-hypervisors/statistics")
def statistics():
    keys = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
            "free_ram_mb", "free_disk_gb", "current_workload", "running_vms",
            "disk_available_least")
    totals = dict.fromkeys(keys, 0)
    count = 0
    with common.db().read() as session:
        for node, svc, up in _nodes(session):
            body = views.hypervisor(node, svc, up)
            count += 1
            for key in keys:
                totals[key] += body[key]
    return jsonify({"hypervisor_statistics": {"count": count, **totals}})


@bp.get("/os-hypervisors/<hypervisor_id>")
def show(hypervisor_id: str):
    with common.db().read() as session:
        for node, svc, up in _nodes(session):
            if str(node.id) == hypervisor_id:
                return jsonify({"hypervisor": views.hypervisor(node, svc, up)})
    raise exception.NotFound(f"Hypervisor with ID {hypervisor_id} could not be found.")
