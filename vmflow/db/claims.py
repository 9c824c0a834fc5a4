"""Resource claims on compute nodes: atomic, idempotent, released exactly once.

A claim is an ``allocations`` row plus the node's ``*_used`` counters raised by
one guarded UPDATE (``... WHERE used + asked <= total * ratio``).  The guard is
evaluated by the database on the row it updates, so two schedulers racing for a
host's last slot cannot both win, on SQLite (one writer) or PostgreSQL (row lock
taken by the UPDATE).  Releasing deletes the allocation row first and lowers the
counters only if a row was deleted, so a release that runs twice is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vmflow.db.models import Allocation, ComputeNode, utcnow


@dataclass(frozen=True)
class Resources:
    vcpus: int
    memory_mb: int
    disk_gb: int

    @classmethod
    def of_flavor(cls, flavor: dict) -> Resources:
        return cls(vcpus=int(flavor["vcpus"]), memory_mb=int(flavor["memory_mb"]),
                   disk_gb=int(flavor["root_gb"]) + int(flavor.get("ephemeral_gb", 0)))


def claim(session: Session, instance_uuid: str, host: str, asked: Resources) -> bool:
    """Claim ``asked`` on ``host`` for the instance; False if it does not fit.

    Idempotent: claiming again what is already claimed on that host succeeds
    without counting twice.
    """
    existing = session.scalar(select(Allocation.id).where(
        Allocation.instance_uuid == instance_uuid, Allocation.host == host))
    if existing is not None:
        return True
    node = ComputeNode
    fits = session.execute(
        update(node)
        .where(node.host == host,
               node.vcpus_used + asked.vcpus <= node.vcpus * node.cpu_allocation_ratio,
               node.memory_mb_used + asked.memory_mb <= node.memory_mb * node.ram_allocation_ratio,
               node.local_gb_used + asked.disk_gb <= node.local_gb * node.disk_allocation_ratio)
        .values(vcpus_used=node.vcpus_used + asked.vcpus,
                memory_mb_used=node.memory_mb_used + asked.memory_mb,
                local_gb_used=node.local_gb_used + asked.disk_gb,
                running_vms=node.running_vms + 1,
                updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not fits:
        return False
    try:
        with session.begin_nested():
            session.add(Allocation(instance_uuid=instance_uuid, host=host, vcpus=asked.vcpus,
                                   memory_mb=asked.memory_mb, disk_gb=asked.disk_gb))
    except IntegrityError:
        # Another transaction claimed the same (instance, host) first: undo ours.
        _lower(session, host, asked)
    return True


def _lower(session: Session, host: str, res: Resources) -> None:
    node = ComputeNode
    session.execute(
        update(node).where(node.host == host)
        .values(vcpus_used=node.vcpus_used - res.vcpus,
                memory_mb_used=node.memory_mb_used - res.memory_mb,
                local_gb_used=node.local_gb_used - res.disk_gb,
                running_vms=node.running_vms - 1,
                updated_at=utcnow())
        .execution_options(synchronize_session=False))


def release(session: Session, instance_uuid: str, host: str | None = None) -> list[str]:
    """Release the instance's claims (on ``host`` only, if given); hosts released."""
    query = select(Allocation).where(Allocation.instance_uuid == instance_uuid)
    if host is not None:
        query = query.where(Allocation.host == host)
    released = []
    for alloc in session.scalars(query).all():
        gone = session.execute(delete(Allocation).where(Allocation.id == alloc.id)
                               .execution_options(synchronize_session=False)).rowcount
        if gone:
            _lower(session, alloc.host, Resources(alloc.vcpus, alloc.memory_mb, alloc.disk_gb))
            released.append(alloc.host)
    return released


def allocations_of(session: Session, instance_uuid: str) -> list[Allocation]:
    return list(session.scalars(select(Allocation).where(
        Allocation.instance_uuid == instance_uuid)))
