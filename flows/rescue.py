"""Rescue / unrescue: boot from a fresh rescue disk with the instance's own root
disk attached second, and back.

Graphs::

    rescue:   begin -> create-rescue-disk -> define-rescue -> power-on
              -> wait-for-running [poll] -> finish (RESCUED)
    unrescue: begin -> define-normal -> power-on -> wait-for-running [poll]
              -> delete-rescue-disk -> finish (ACTIVE)

The original root disk is never written by either flow: the rescue guest sees
it as its second disk, and unrescue boots from it again unchanged.
"""

from __future__ import annotations

from typing import Any

from taskflow.patterns import linear_flow

from flows.actions import HostStep, boot_steps, frame
from flows.base import Services, may_have_acted
from vmflow.db.models import Instance


def guest_of(services: Services, instance_uuid: str) -> dict[str, Any]:
    """What a host needs to define the instance's guest."""
    with services.db.read() as session:
        instance = session.get(Instance, instance_uuid)
        return {"uuid": instance.uuid, "name": instance.name, "flavor": instance.flavor}


class CreateRescueDisk(HostStep):
    """Create the rescue disk from the rescue image.

    Revert: delete the rescue disk.
    """

    def execute(self, instance_uuid: str, host: str, rescue_image: dict[str, Any]) -> None:
        self.call(host, "create_rescue_disk", instance_uuid=instance_uuid, image=rescue_image)

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(host, "delete_rescue_disk", instance_uuid)


class _Redefine(HostStep):
    """Replace the guest's definition (the host powers it off first); the revert
    defines it the ``opposite`` way again and starts it if it was running."""

    opposite = ""

    def execute(self, instance_uuid: str, host: str) -> None:
        self.call(host, self.method, instance=guest_of(self.svc, instance_uuid))

    def revert(self, result: Any, instance_uuid: str, host: str, before: dict[str, Any],
               **_kw: Any) -> None:
        if not may_have_acted(result):
            return
        self.undo(host, self.opposite, instance_uuid, instance=guest_of(self.svc, instance_uuid))
        if before["power_state"] == "RUNNING":
            self.undo(host, "power_on", instance_uuid)


class DefineRescue(_Redefine):
    """Define the guest to boot from the rescue disk, its own disk second.

    Revert: define the guest normally again, and start it if it was running.
    """

    method, opposite = "define_rescue", "define_normal"


class DefineNormal(_Redefine):
    """Define the guest to boot from its own disk again.

    Revert: define the rescue guest again, and start it if it was running.
    """

    method, opposite = "define_normal", "define_rescue"


class DeleteRescueDisk(HostStep):
    """Remove the rescue disk.

    Revert: nothing to undo; the guest no longer uses it.
    """

    method = "delete_rescue_disk"


def get_rescue_flow(services: Services) -> linear_flow.Flow:
    """Inputs: ``instance_uuid``, ``rescue_image`` (the image dict to boot from)."""
    return frame(services, "rescue",
                 CreateRescueDisk(services, "rescue.create-rescue-disk"),
                 DefineRescue(services, "rescue.define-rescue"),
                 *boot_steps(services, "rescue"))


def get_unrescue_flow(services: Services) -> linear_flow.Flow:
    return frame(services, "unrescue",
                 DefineNormal(services, "unrescue.define-normal"),
                 *boot_steps(services, "unrescue"),
                 DeleteRescueDisk(services, "unrescue.delete-rescue-disk"))
