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

from vmflow.db.models import Allocation, ComputeNode, Migration, utcnow


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


# -- moves (resize, cold migration): Nova's "migration as consumer" ----------------------
# While a move is under way the source's claim is held by the migration's uuid
# and the instance's uuid holds the target's; confirm releases the migration's,
# revert releases the target's and gives the source's back to the instance.

def move_to(session: Session, from_consumer: str, to_consumer: str, host: str) -> bool:
    """Hand ``from_consumer``'s claim on ``host`` to ``to_consumer`` (usage is
    unchanged); False if there was none to hand over (handed over already)."""
    return session.execute(
        update(Allocation).where(Allocation.instance_uuid == from_consumer,
                                 Allocation.host == host)
        .values(instance_uuid=to_consumer)
        .execution_options(synchronize_session=False)).rowcount == 1


def consumers_of(session: Session, instance_uuid: str) -> list[str]:
    """The instance's uuid and those of its migrations that hold claims."""
    moves = select(Migration.uuid).where(Migration.instance_uuid == instance_uuid)
    held = session.scalars(select(Allocation.instance_uuid).where(
        Allocation.instance_uuid.in_(moves)).distinct())
    return [instance_uuid, *held]


def held_for(session: Session, instance_uuid: str) -> list[Allocation]:
    """Every claim held for the instance: its own and its migrations'."""
    return list(session.scalars(select(Allocation).where(
        Allocation.instance_uuid.in_(consumers_of(session, instance_uuid)))))
