"""Services and compute nodes: registration, heartbeats, resource reports."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vmflow.db.models import ComputeNode, Service, utcnow


def heartbeat(session: Session, binary: str, host: str, topic: str = "") -> Service:
    """Record that a service is alive (creating its row on first report)."""
    row = session.scalar(select(Service).where(Service.binary == binary, Service.host == host))
    if row is None:
        row = Service(binary=binary, host=host, topic=topic, report_count=0)
        try:
            with session.begin_nested():  # two first heartbeats of a service may race
                session.add(row)
        except IntegrityError:
            row = session.scalar(select(Service).where(Service.binary == binary,
                                                       Service.host == host))
    row.report_count = (row.report_count or 0) + 1
    row.last_seen_up = utcnow()
    return row


def is_up(service: Service, down_after_s: float, now: dt.datetime | None = None) -> bool:
    if service.forced_down or service.last_seen_up is None:
        return False
    now = now or utcnow()
    return (now - service.last_seen_up).total_seconds() <= down_after_s


def list_services(session: Session) -> list[Service]:
    return list(session.scalars(select(Service).order_by(Service.id)))


def report_node(session: Session, host: str, report: dict[str, Any],
                ratios: dict[str, float]) -> ComputeNode:
    """Create or refresh a compute node from the host's own resource report.

    Capacity comes from the hypervisor and allocation ratios from the host's
    configuration (or the cloud's); what is *used* is never taken from the
    report, because claims own those counters.
    """
    node = session.scalar(select(ComputeNode).where(ComputeNode.host == host))
    capacity = {
        "hypervisor_hostname": report["hypervisor_hostname"],
        "hypervisor_type": report["hypervisor_type"],
        "hypervisor_version": int(report.get("hypervisor_version", 0)),
        "cpu_arch": report.get("cpu_arch", "x86_64"),
        "vcpus": int(report["vcpus"]), "memory_mb": int(report["memory_mb"]),
        "local_gb": int(report["local_gb"]),
    }
    if node is None:
        node = ComputeNode(host=host, vcpus_used=0, memory_mb_used=0, local_gb_used=0,
                           running_vms=0, **capacity, **ratios)
        try:
            with session.begin_nested():  # two first reports of a host may race
                session.add(node)
            return node
        except IntegrityError:  # the other one created it: refresh it below
            node = session.scalar(select(ComputeNode).where(ComputeNode.host == host))
    session.execute(update(ComputeNode).where(ComputeNode.host == host)
                    .values(updated_at=utcnow(), **capacity, **ratios)
                    .execution_options(synchronize_session=False))
    return node


def list_nodes(session: Session) -> list[ComputeNode]:
    return list(session.scalars(select(ComputeNode).order_by(ComputeNode.id)))
