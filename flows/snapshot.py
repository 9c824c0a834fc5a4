"""Snapshot (Nova's ``createImage``): copy the instance's root disk into a new image.

Graph::

    begin -> quiesce -> copy-disk -> unquiesce -> activate-image -> finish

The API creates the image record (queued) together with the task_state change,
so it can answer with the image's location at once.  A running guest is paused
while its disk is copied (quiesce) and resumed after.  The image keeps the
source image's properties and gains ``image_type=snapshot``,
``instance_uuid`` and ``base_image_ref``; it can boot new servers.  A failure
deletes the partial file and the image, and leaves the instance as it was.

Backup (Nova's ``createBackup``) is the same graph under the operation name
``backup``, its image marked ``image_type=backup`` with a ``backup_type``,
plus a last step that deletes the instance's older backups of that type
beyond ``rotation``::

    begin -> quiesce -> copy-disk -> unquiesce -> activate-image -> rotate -> finish
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select
from taskflow.patterns import linear_flow

from flows.actions import Begin, HostStep, frame
from flows.base import Services, VmTask, may_have_acted, outcome_unknown
from vmflow import exception
from vmflow.db import catalog
from vmflow.db import images as images_db
from vmflow.db.models import Image

LOG = logging.getLogger(__name__)


def image_dir(services: Services) -> str:
    return str(services.config.data_dir / "images")


class SnapshotBegin(Begin):
    """As every operation's begin.

    Revert: as every operation's begin, and the image (queued) is discarded.
    """

    def revert(self, result: Any, instance_uuid: str, image_id: str, **kw: Any) -> None:
        super().revert(result, instance_uuid, **kw)
        with self.svc.db.write() as session:
            catalog.discard_image(session, image_id)


class Quiesce(HostStep):
    """Pause a running guest so its disk holds still while it is copied.

    Revert: unpause it, if this step paused it.
    """

    default_provides = "quiesced"

    def execute(self, instance_uuid: str, host: str, before: dict[str, Any]) -> bool:
        if before["power_state"] != "RUNNING":
            return False
        self.call(host, "pause", instance_uuid=instance_uuid)
        return True

    def revert(self, result: Any, instance_uuid: str, host: str, before: dict[str, Any],
               **_kw: Any) -> None:
        if result is True or (outcome_unknown(result) and before["power_state"] == "RUNNING"):
            self.undo(host, "unpause", instance_uuid)


class CopyDisk(HostStep):
    """Copy the root disk into the image store as the new image's file.

    Revert: delete the file (partial or whole).
    """

    default_provides = "upload"

    def execute(self, instance_uuid: str, host: str, image_id: str) -> dict[str, Any]:
        return self.call(host, "snapshot_disk", instance_uuid=instance_uuid,
                         image_id=image_id, image_dir=image_dir(self.svc))

    def revert(self, result: Any, instance_uuid: str, host: str, image_id: str,
               **_kw: Any) -> None:
        try:
            self.call(host, "delete_snapshot", image_id=image_id, image_dir=image_dir(self.svc))
        except exception.VmflowError as err:  # the image is discarded: the file is garbage
            LOG.error("could not delete the snapshot file of %s on %s: %s", instance_uuid,
                      host, err)


class Unquiesce(HostStep):
    """Let a guest paused by quiesce run again.

    Revert: nothing to undo; the guest runs as before the snapshot.
    """

    def execute(self, instance_uuid: str, host: str, quiesced: bool) -> None:
        if quiesced:
            self.call(host, "unpause", instance_uuid=instance_uuid)


class ActivateImage(VmTask):
    """Record the file in the image and make it active (usable to boot).

    Revert: discard the image (the instance went away before the snapshot ended).
    """

    def execute(self, image_id: str, upload: dict[str, Any]) -> None:
        with self.svc.db.write() as session:
            catalog.activate_image(session, image_id, upload)

    def revert(self, result: Any, image_id: str, **_kw: Any) -> None:
        if not may_have_acted(result):
            return
        with self.svc.db.write() as session:
            catalog.discard_image(session, image_id)


def get_flow(services: Services) -> linear_flow.Flow:
    """Build the snapshot graph (inputs: ``instance_uuid``, ``image_id``)."""
    return frame(services, "snapshot",
                 Quiesce(services, "snapshot.quiesce"),
                 CopyDisk(services, "snapshot.copy-disk"),
                 Unquiesce(services, "snapshot.unquiesce"),
                 ActivateImage(services, "snapshot.activate-image"),
                 begin=SnapshotBegin)


# -- backup (Nova's ``createBackup``): a snapshot, then rotation ------------------------

def backups_of(session, instance_uuid: str, backup_type: str) -> list[Image]:
    """The instance's active backups of ``backup_type``."""
    rows = session.scalars(select(Image).where(Image.status == images_db.ACTIVE))
    return [row for row in rows if (row.properties or {}).get("image_type") == "backup"
            and row.properties.get("instance_uuid") == instance_uuid
            and row.properties.get("backup_type") == backup_type]


class RotateBackups(VmTask):
    """Keep only the ``rotation`` newest backups of this type of the instance
    (active images with ``image_type=backup``, this ``backup_type`` and
    ``instance_uuid``); delete the older ones, records and files, as Nova's
    rotation deletes them from Glance.  The new backup counts among the kept
    ones unless ``rotation`` is 0, which keeps none.

    Revert: nothing to undo: deleted backups cannot come back, and this step
    runs after the new backup is active, so only the finish step follows it.
    """

    def execute(self, instance_uuid: str, image_id: str, backup_type: str,
                rotation: int) -> list[str]:
        store = image_dir(self.svc)
        with self.svc.db.write() as session:
            backups = backups_of(session, instance_uuid, backup_type)
            # Newest first; the backup just made is the newest whatever the clock says.
            backups.sort(key=lambda image: (image.id == image_id, image.created_at),
                         reverse=True)
            doomed = backups[rotation:]
            locations = [images_db.mark_deleted(session, image) for image in doomed]
        for location in locations:
            path = Path(location) if location else None
            if path is not None and str(path.parent) == store:  # never outside the store
                path.unlink(missing_ok=True)
        if doomed:
            LOG.info("backup rotation of %s (%s, keep %d) deleted %s", instance_uuid,
                     backup_type, rotation, ", ".join(image.id for image in doomed))
        return [image.id for image in doomed]


def get_backup_flow(services: Services, backup_type: str = "", rotation: int = 0
                    ) -> linear_flow.Flow:
    """Build the backup graph (inputs: ``instance_uuid``, ``image_id``): the
    snapshot's steps, then ``backup.rotate``.  ``backup_type`` and
    ``rotation`` are the flow's parameters (stored with the run)."""
    return frame(services, "backup",
                 Quiesce(services, "backup.quiesce"),
                 CopyDisk(services, "backup.copy-disk"),
                 Unquiesce(services, "backup.unquiesce"),
                 ActivateImage(services, "backup.activate-image"),
                 RotateBackups(services, "backup.rotate",
                               inject={"backup_type": backup_type, "rotation": rotation}),
                 begin=SnapshotBegin)
