"""The image store's records as the image API (``webapp/image``) sees them:
who may see an image, listing with Glance's filters, sort keys and markers,
and the status changes of an upload, each a compare-and-swap.

Statuses (Glance's): ``queued`` (a record without data), ``saving`` (data
being uploaded or a snapshot being copied), ``active`` (bootable), ``killed``
(data lost), ``deleted`` (the row is kept: instances still name it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.db.models import Image, utcnow

QUEUED, SAVING, ACTIVE, KILLED, DELETED = "queued", "saving", "active", "killed", "deleted"
VISIBILITIES = ("public", "private", "shared")
DISK_FORMATS = ("qcow2", "raw")
CONTAINER_FORMATS = ("bare",)
# Columns a listing may be sorted by (Glance's sort keys that vmflow stores).
SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "virtual_size",
             "id", "created_at", "updated_at", "min_disk", "min_ram", "visibility", "owner")


@dataclasses.dataclass
class Filters:
    """A listing's filters; None means "any"."""

    ids: list[str] | None = None
    names: list[str] | None = None
    status: str | None = None
    visibility: str | None = None   # one of VISIBILITIES, or None for all visible
    owner: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    protected: bool | None = None
    size_min: int | None = None
    size_max: int | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    # Custom properties that must hold these values (Glance's flattened filters).
    properties: dict[str, str] = dataclasses.field(default_factory=dict)


def _visible_to(project_id: str | None):
    """The SQL condition of the images a project sees (None: an admin, every one)."""
    if project_id is None:
        return None
    return or_(Image.visibility == "public", Image.owner == project_id)


def get(session: Session, image_id: str, project_id: str | None) -> Image:
    """A live image the project may see (``project_id`` None: any); 404 otherwise,
    so another project's private image is indistinguishable from a missing one."""
    row = session.get(Image, image_id)
    if row is None or row.status == DELETED or (
            project_id is not None and row.visibility != "public"
            and row.owner != project_id):
        raise exception.ImageNotFound(image_id=image_id)
    return row


def listing(session: Session, project_id: str | None, filters: Filters,
            sort: list[tuple[str, str]], limit: int, marker: str | None
            ) -> tuple[list[Image], bool]:
    """One page of images the project sees, and whether more follow.

    The ordered ids are selected first (an image catalogue is small), the page
    is cut after ``marker`` (which must be an image of the listing's sort, else
    400), then the page's rows are loaded.
    """
    query = select(Image.id, Image.tags, Image.properties).where(Image.status != DELETED)
    visible = _visible_to(project_id)
    if visible is not None:
        query = query.where(visible)
    if filters.ids is not None:
        query = query.where(Image.id.in_(filters.ids))
    if filters.names is not None:
        query = query.where(Image.name.in_(filters.names))
    for column, value in ((Image.status, filters.status), (Image.visibility, filters.visibility),
                          (Image.owner, filters.owner), (Image.disk_format, filters.disk_format),
                          (Image.container_format, filters.container_format),
                          (Image.protected, filters.protected)):
        if value is not None:
            query = query.where(column == value)
    if filters.size_min is not None:
        query = query.where(Image.size >= filters.size_min)
    if filters.size_max is not None:
        query = query.where(Image.size <= filters.size_max)
    order = [getattr(Image, key).asc() if direction == "asc" else getattr(Image, key).desc()
             for key, direction in sort]
    if not any(key == "id" for key, _ in sort):
        order.append(Image.id.desc() if sort[-1][1] == "desc" else Image.id.asc())
    ids = [image_id for image_id, tags, properties in session.execute(query.order_by(*order))
           if all(tag in (tags or []) for tag in filters.tags)
           and all(str((properties or {}).get(key)) == value
                   for key, value in filters.properties.items())]
    start = 0
    if marker is not None:
        try:
            start = ids.index(marker) + 1
        except ValueError:
            raise exception.Invalid(f"Marker {marker} could not be found among the images "
                                    "of this listing.") from None
    page = ids[start:start + limit]
    rows = {row.id: row for row in session.scalars(select(Image).where(Image.id.in_(page)))}
    return [rows[image_id] for image_id in page], start + limit < len(ids)


def create(session: Session, **fields: Any) -> Image:
    """A new image record, queued (it has no data yet)."""
    if session.get(Image, fields["id"]) is not None:
        raise exception.Conflict(f"Image with identifier {fields['id']} already exists.")
    image = Image(status=QUEUED, size=0, location="", **fields)
    session.add(image)
    session.flush()
    return image


def _swap(session: Session, image_id: str, expected: str, **values: Any) -> bool:
    """Set ``values`` if the image's status is still ``expected``; whether it was."""
    done = session.execute(update(Image).where(Image.id == image_id, Image.status == expected)
                           .values(updated_at=utcnow(), **values))
    return done.rowcount == 1


def begin_upload(session: Session, image: Image) -> None:
    """queued → saving, or 409: only an image without data takes an upload, and
    only one upload at a time."""
    if not _swap(session, image.id, QUEUED, status=SAVING):
        raise exception.Conflict(f"Image {image.id} has status {image.status}: data can "
                                 "only be uploaded to a queued image.")


def finish_upload(session: Session, image_id: str, record: dict[str, Any]) -> bool:
    """saving → active with the upload's file, size and hashes; False if the
    image left ``saving`` meanwhile (deleted during the upload)."""
    return _swap(session, image_id, SAVING, status=ACTIVE, **record)


def abort_upload(session: Session, image_id: str) -> None:
    """saving → queued: a failed upload leaves the image as it was before it."""
    _swap(session, image_id, SAVING, status=QUEUED)


def mark_deleted(session: Session, image: Image) -> str:
    """The image is deleted (its row stays, instances name it); its file's path,
    for the caller to remove."""
    location = image.location
    session.execute(update(Image).where(Image.id == image.id)
                    .values(status=DELETED, location="", updated_at=utcnow()))
    return location
