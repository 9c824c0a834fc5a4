"""/os-hypervisors: compute nodes, their capacity and what is claimed on them."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from vmflow import exception
from vmflow.db import hosts as hosts_db
from vmflow.db.models import Instance
from webapp.api import common, microversion, views

bp = Blueprint("hypervisors", __name__)


def _nodes(session):
    down_after = common.config().service_down_time
    services = {s.host: s for s in hosts_db.list_services(session)
                if s.binary == "vmflow-compute"}
    for node in hosts_db.list_nodes(session):
        svc = services.get(node.host)
        yield node, svc, svc is not None and hosts_db.is_up(svc, down_after)


def _id(node) -> str:
    """The hypervisor's id as the version names it: the row id, a UUID from 2.53."""
    return views.node_uuid(node) if microversion.at_least("2.53") else str(node.id)


def _page(nodes: list) -> list:
    """From 2.33: ``limit`` and ``marker`` (the id of the last hypervisor seen);
    from 2.53 also ``hypervisor_hostname_pattern`` (a part of the name, not with
    paging)."""
    if not microversion.at_least("2.33"):
        return nodes
    limit = common.query_int("limit", minimum=0)
    marker = request.args.get("marker")
    pattern = request.args.get("hypervisor_hostname_pattern")
    if pattern is not None and microversion.at_least("2.53"):
        if limit is not None or marker is not None:
            raise exception.Invalid("Paging over hypervisors is not supported with "
                                    "hypervisor_hostname_pattern.")
        nodes = [n for n in nodes if pattern in n[0].hypervisor_hostname]
        if not nodes:
            raise exception.NotFound(f"No hypervisor matching '{pattern}' could be found.")
    nodes = common.after_marker(nodes, marker, lambda found: _id(found[0]))
    return nodes if limit is None else nodes[:limit]


@bp.get("/os-hypervisors")
def index():
    common.authorize("os_compute_api:os-hypervisors:list")
    with common.db().read() as session:
        nodes = _page(list(_nodes(session)))
        return jsonify({"hypervisors": _with_servers(
            session, nodes, [views.hypervisor_brief(*n) for n in nodes])})


@bp.get("/os-hypervisors/detail")
def detail():
    common.authorize("os_compute_api:os-hypervisors:list-detail")
    with common.db().read() as session:
        nodes = _page(list(_nodes(session)))
        return jsonify({"hypervisors": _with_servers(
            session, nodes, [views.hypervisor(*n) for n in nodes])})


def _with_servers(session, nodes: list, bodies: list[dict]) -> list[dict]:
    """2.53 ``with_servers=true``: each hypervisor's servers (uuid and instance
    name); from 2.75 the list is there even when empty."""
    wanted = request.args.get("with_servers", "").lower() in ("1", "true", "yes", "on")
    if not (wanted and microversion.at_least("2.53")):
        return bodies
    rows = session.scalars(select(Instance).where(Instance.deleted.is_(False),
                                                  Instance.host.is_not(None)))
    on_host: dict[str, list[dict]] = {}
    for row in rows:
        on_host.setdefault(row.host, []).append({"uuid": row.uuid,
                                                 "name": f"instance-{row.uuid}"})
    for (node, _svc, _up), body in zip(nodes, bodies, strict=True):
        servers = on_host.get(node.host, [])
        if servers or microversion.at_least("2.75"):
            body["servers"] = servers
    return bodies


@bp.get("/os-hypervisors/statistics")
def statistics():
    keys = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
            "free_ram_mb", "free_disk_gb", "current_workload", "running_vms",
            "disk_available_least")
    common.authorize("os_compute_api:os-hypervisors:statistics")
    totals = dict.fromkeys(keys, 0)
    count = 0
    with common.db().read() as session:
        for node, svc, up in _nodes(session):
            body = views.hypervisor(node, svc, up)
            count += 1
            for key in keys:
                totals[key] += body[key]
    return jsonify({"hypervisor_statistics": {"count": count, **totals}})


def _one(session, hypervisor_id: str):
    for node, svc, up in _nodes(session):
        if _id(node) == hypervisor_id:
            return node, svc, up
    raise exception.NotFound(f"Hypervisor with ID {hypervisor_id} could not be found.")


@bp.get("/os-hypervisors/<hypervisor_id>")
def show(hypervisor_id: str):
    common.authorize("os_compute_api:os-hypervisors:show")
    with common.db().read() as session:
        found = _one(session, hypervisor_id)
        body = _with_servers(session, [found], [views.hypervisor(*found)])[0]
        return jsonify({"hypervisor": body})


@bp.get("/os-hypervisors/<hypervisor_id>/uptime")
def uptime(hypervisor_id: str):
    """A host's uptime (below 2.88): vmflow's driver has none to give (libvirt
    does not report the host's), so the answer is Nova's for such drivers, 501.
    (2.88 drops the route; vmflow's microversions stop below it.)"""
    common.authorize("os_compute_api:os-hypervisors:uptime")
    with common.db().read() as session:
        _one(session, hypervisor_id)
    raise exception.NotImplementedByDriver(what="uptime")
