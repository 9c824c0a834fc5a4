"""Server tags (compute API microversion 2.26): short strings on an instance.

As in Nova a tag is 1-60 characters without ``/`` or ``,`` (they would break
the URL and the list filters), and an instance holds at most 50.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.db.models import InstanceTag

MAX_TAGS = 50
MAX_LENGTH = 60


def check(tag: object, where: str = "tag") -> str:
    """A valid tag, or a 400 saying what is wrong with it."""
    if not isinstance(tag, str) or not 1 <= len(tag) <= MAX_LENGTH:
        raise exception.Invalid(f"Invalid {where} {tag!r}: a tag is a string of 1 to "
                                f"{MAX_LENGTH} characters.")
    if "/" in tag or "," in tag:
        raise exception.Invalid(f"Invalid {where} {tag!r}: a tag may not contain '/' or ','.")
    return tag


def check_list(tags: object, where: str = "tags") -> list[str]:
    """A list of valid tags without duplicates (order kept), at most MAX_TAGS."""
    if not isinstance(tags, list):
        raise exception.Invalid(f"Invalid input for field '{where}': it must be a list of "
                                "strings.")
    unique = list(dict.fromkeys(check(t) for t in tags))
    if len(unique) > MAX_TAGS:
        raise exception.Invalid(f"Invalid input for field '{where}': at most {MAX_TAGS} tags "
                                f"per server ({len(unique)} given).")
    return unique


def of(session: Session, uuids: Iterable[str]) -> dict[str, list[str]]:
    """The tags of each instance (sorted); instances without tags are absent."""
    uuids = list(uuids)
    found: dict[str, list[str]] = {}
    if not uuids:
        return found
    rows = session.execute(select(InstanceTag.instance_uuid, InstanceTag.tag)
                           .where(InstanceTag.instance_uuid.in_(uuids))
                           .order_by(InstanceTag.instance_uuid, InstanceTag.tag))
    for instance_uuid, tag in rows:
        found.setdefault(instance_uuid, []).append(tag)
    return found


def replace(session: Session, instance_uuid: str, tags: list[str]) -> None:
    session.execute(delete(InstanceTag).where(InstanceTag.instance_uuid == instance_uuid))
    session.add_all(InstanceTag(instance_uuid=instance_uuid, tag=t) for t in tags)
    session.flush()


def add(session: Session, instance_uuid: str, tag: str) -> bool:
    """Add one tag; False if the instance had it already.  400 past MAX_TAGS."""
    current = of(session, [instance_uuid]).get(instance_uuid, [])
    if tag in current:
        return False
    if len(current) >= MAX_TAGS:
        raise exception.Invalid(f"Server {instance_uuid} already has the maximum of "
                                f"{MAX_TAGS} tags.")
    session.add(InstanceTag(instance_uuid=instance_uuid, tag=tag))
    session.flush()
    return True


def remove(session: Session, instance_uuid: str, tag: str) -> None:
    """Remove one tag; 404 if the instance does not have it."""
    gone = session.execute(delete(InstanceTag).where(InstanceTag.instance_uuid == instance_uuid,
                                                     InstanceTag.tag == tag)).rowcount
    if not gone:
        raise exception.NotFound(f"Tag {tag} could not be found for server {instance_uuid}.")
