"""Migration records: one row per move of an instance (Nova's ``migrations``).

The flows of resize, cold and live migration and evacuation create one when
they are accepted and move its ``status`` along; ``os-migrations`` and
``servers/{id}/migrations`` read them.
"""

from __future__ import annotations

import uuid as uuid_lib
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.db.models import Migration, utcnow

# migration_type values (Nova's).
RESIZE = "resize"
MIGRATION = "migration"
LIVE_MIGRATION = "live-migration"
EVACUATION = "evacuation"
TYPES = frozenset({RESIZE, MIGRATION, LIVE_MIGRATION, EVACUATION})

# Statuses after which a migration is over.
FINISHED = frozenset({"confirmed", "reverted", "error", "failed", "completed", "cancelled",
                      "done"})


def create(session: Session, instance_uuid: str, migration_type: str, status: str, *,
           source_compute: str | None, dest_compute: str | None = None,
           old_flavor_id: str | None = None, new_flavor_id: str | None = None,
           user_id: str | None = None, project_id: str | None = None,
           migration_uuid: str | None = None, **fields: Any) -> Migration:
    """Record a new migration of ``instance_uuid`` (in the caller's transaction)."""
    if migration_type not in TYPES:
        raise ValueError(f"unknown migration type {migration_type!r}")
    row = Migration(uuid=migration_uuid or str(uuid_lib.uuid4()), instance_uuid=instance_uuid,
                    migration_type=migration_type, status=status,
                    source_compute=source_compute, source_node=source_compute,
                    dest_compute=dest_compute, dest_node=dest_compute,
                    old_flavor_id=old_flavor_id, new_flavor_id=new_flavor_id,
                    user_id=user_id, project_id=project_id, **fields)
    session.add(row)
    session.flush()
    return row


def get(session: Session, migration_uuid: str) -> Migration:
    row = session.scalar(select(Migration).where(Migration.uuid == migration_uuid))
    if row is None:
        raise exception.NotFound(f"Migration {migration_uuid} could not be found.")
    return row


def update_fields(session: Session, migration_uuid: str, **fields: Any) -> None:
    """Change a migration's columns (status, dest_compute, progress, ...)."""
    if "dest_compute" in fields and "dest_node" not in fields:
        fields["dest_node"] = fields["dest_compute"]
    session.execute(update(Migration).where(Migration.uuid == migration_uuid)
                    .values(updated_at=utcnow(), **fields)
                    .execution_options(synchronize_session=False))


def set_status(session: Session, migration_uuid: str, status: str,
               expected: str | frozenset[str] | None = None) -> bool:
    """Move a migration to ``status`` (only from ``expected``, when given);
    False if it was not in an expected status."""
    query = update(Migration).where(Migration.uuid == migration_uuid)
    if expected is not None:
        allowed = {expected} if isinstance(expected, str) else set(expected)
        query = query.where(Migration.status.in_(allowed))
    return session.execute(query.values(status=status, updated_at=utcnow())
                           .execution_options(synchronize_session=False)).rowcount == 1


def of_instance(session: Session, instance_uuid: str, *,
                in_progress: bool = False, migration_type: str | None = None
                ) -> list[Migration]:
    """The instance's migrations, newest first (only unfinished ones if asked)."""
    query = select(Migration).where(Migration.instance_uuid == instance_uuid,
                                    Migration.deleted.is_(False))
    if in_progress:
        query = query.where(Migration.status.not_in(FINISHED))
    if migration_type is not None:
        query = query.where(Migration.migration_type == migration_type)
    return list(session.scalars(query.order_by(Migration.id.desc())))


def latest(session: Session, instance_uuid: str, migration_type: str | None = None
           ) -> Migration | None:
    found = of_instance(session, instance_uuid, migration_type=migration_type)
    return found[0] if found else None
