"""Host aggregates and availability zones; server groups."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.db.models import Aggregate, AggregateHost, ServerGroup, ServerGroupMember

ZONE_KEY = "availability_zone"


class AggregateNotFound(exception.NotFound):
    message = "Aggregate {aggregate_id} could not be found."


class ServerGroupNotFound(exception.NotFound):
    message = "Instance group {group_id} could not be found."


def get(session: Session, aggregate_id: int | str) -> Aggregate:
    row = None
    if str(aggregate_id).isdigit():
        row = session.get(Aggregate, int(aggregate_id))
    if row is None:
        raise AggregateNotFound(aggregate_id=aggregate_id)
    return row


def list_(session: Session) -> list[Aggregate]:
    return list(session.scalars(select(Aggregate).order_by(Aggregate.id)))


def hosts_of(session: Session) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {}
    for row in session.scalars(select(AggregateHost).order_by(AggregateHost.id)):
        result.setdefault(row.aggregate_id, []).append(row.host)
    return result


def metadata_by_host(session: Session) -> dict[str, list[dict[str, str]]]:
    """For each host, the metadata of every aggregate it is in."""
    meta = {a.id: dict(a.metadata_ or {}) for a in list_(session)}
    result: dict[str, list[dict[str, str]]] = {}
    for agg_id, hosts in hosts_of(session).items():
        for host in hosts:
            result.setdefault(host, []).append(meta[agg_id])
    return result


def zone_of(metadata: list[dict[str, str]]) -> str | None:
    """The zone a host's aggregates put it in (the first by name), if any."""
    named = sorted({m[ZONE_KEY] for m in metadata if m.get(ZONE_KEY)})
    return named[0] if named else None


def zones_of_hosts(session: Session) -> dict[str, str]:
    """Each host that is in a zone-bearing aggregate, mapped to that zone."""
    zones = {host: zone_of(metadata) for host, metadata in metadata_by_host(session).items()}
    return {host: zone for host, zone in zones.items() if zone}


def create(session: Session, name: str, zone: str | None) -> Aggregate:
    if session.scalar(select(Aggregate.id).where(Aggregate.name == name)) is not None:
        raise exception.Conflict(f"Aggregate {name} already exists.")
    row = Aggregate(uuid=str(uuid.uuid4()), name=name,
                    metadata_={ZONE_KEY: zone} if zone else {})
    session.add(row)
    session.flush()
    return row


def set_metadata(session: Session, aggregate: Aggregate, changes: dict[str, Any]) -> None:
    """Apply changes; a key set to None is removed (Nova's semantics)."""
    metadata = dict(aggregate.metadata_ or {})
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = str(value)
    aggregate.metadata_ = metadata


def add_host(session: Session, aggregate: Aggregate, host: str) -> None:
    exists = session.scalar(select(AggregateHost.id).where(
        AggregateHost.aggregate_id == aggregate.id, AggregateHost.host == host))
    if exists is not None:
        raise exception.Conflict(f"Cannot add host to aggregate {aggregate.id}. "
                                 f"Reason: Host {host} is already in it.")
    session.add(AggregateHost(aggregate_id=aggregate.id, host=host))


def remove_host(session: Session, aggregate: Aggregate, host: str) -> None:
    gone = session.execute(delete(AggregateHost).where(
        AggregateHost.aggregate_id == aggregate.id, AggregateHost.host == host)).rowcount
    if not gone:
        raise exception.NotFound(f"Cannot remove host {host} from aggregate {aggregate.id}: "
                                 "it is not in it.")


def destroy(session: Session, aggregate: Aggregate) -> None:
    if session.scalar(select(AggregateHost.id).where(
            AggregateHost.aggregate_id == aggregate.id).limit(1)) is not None:
        raise exception.Invalid(f"Cannot remove aggregate {aggregate.id}: it still has hosts.")
    session.delete(aggregate)


# -- server groups -----------------------------------------------------------------

def get_group(session: Session, group_uuid: str, project_id: str | None) -> ServerGroup:
    row = session.get(ServerGroup, group_uuid)
    if row is None or (project_id is not None and row.project_id != project_id):
        raise ServerGroupNotFound(group_id=group_uuid)
    return row


def group_members(session: Session, group_uuid: str) -> list[str]:
    return list(session.scalars(select(ServerGroupMember.instance_uuid).where(
        ServerGroupMember.group_uuid == group_uuid).order_by(ServerGroupMember.id)))
