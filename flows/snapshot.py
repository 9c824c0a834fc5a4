"""Snapshot (Nova's ``createImage``): copy the instance's root disk into a new image.

Graph::

    begin -> quiesce -> copy-disk -> unquiesce -> activate-image -> finish

The API creates the image record (queued) together with the task_state change,
so it can answer with the image's location at once.  A running guest is paused
while its disk is copied (quiesce) and resumed after.  The image keeps the
source image's properties and gains ``image_type=snapshot``,
``instance_uuid`` and ``base_image_ref``; it can boot new servers.  A failure
deletes the partial file and the image, and leaves the instance as it was.
"""

from __future__ import annotations

import logging
from typing import Any

from taskflow.patterns import linear_flow

from flows.actions import Begin, HostStep, frame
from flows.base import Services, VmTask, may_have_acted, outcome_unknown
from vmflow import exception
from vmflow.db import catalog

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
