"""Rebuild: replace the root disk from an image, keeping the instance's id, name
(unless a new one is given), flavor, host and addresses.

Graph::

    begin -> power-off -> replace-disk -> define-domain -> [power-on
          -> wait-for-running [poll]] -> discard-old-disk -> finish

The old disk is set aside, not deleted, until the new one has booted, so a
failure puts it back.  A stopped instance is rebuilt and stays stopped (no
power-on steps), as in Nova; any other ends ACTIVE.
"""

from __future__ import annotations

from typing import Any

from taskflow.patterns import linear_flow

from flows.actions import Finish, HostStep, PowerOff, boot_steps, frame
from flows.base import Services, may_have_acted
from flows.rescue import guest_of
from vmflow.states import power_state, vm_states


class ReplaceDisk(HostStep):
    """Set the root disk aside and create a new one from the image.

    Revert: put the old disk back.
    """

    def execute(self, instance_uuid: str, host: str, image: dict[str, Any]) -> None:
        root_gb = guest_of(self.svc, instance_uuid)["flavor"]["root_gb"]
        self.call(host, "rebuild_disk", instance_uuid=instance_uuid, image=image,
                  root_gb=root_gb)

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(host, "restore_disk", instance_uuid)


class DefineDomain(HostStep):
    """Make sure the guest is defined (an instance in ERROR may have lost it).

    Revert: nothing to undo; the definition does not depend on the disk's content.
    """

    def execute(self, instance_uuid: str, host: str) -> None:
        self.call(host, "define", instance=guest_of(self.svc, instance_uuid))


class DiscardOldDisk(HostStep):
    """The new disk has booted: delete the old one.

    Revert: nothing to undo; only finish comes after.
    """

    method = "discard_old_disk"


class RebuildFinish(Finish):
    """As every operation's finish, and the instance now runs the new image
    (and carries the new name, if one was given).

    Revert: nothing to undo; this is the last step.
    """

    def end_state(self, before: dict[str, Any], **inputs: Any) -> dict[str, Any]:
        stopped = before["vm_state"] == vm_states.STOPPED
        values = {"task_state": None, "image_ref": inputs["image"]["id"],
                  "vm_state": vm_states.STOPPED if stopped else vm_states.ACTIVE,
                  "power_state": power_state.SHUTDOWN if stopped else power_state.RUNNING}
        if inputs.get("new_name"):
            values["name"] = inputs["new_name"]
        return values

    def execute(self, instance_uuid: str, before: dict[str, Any], image: dict[str, Any],
                new_name: str | None) -> None:
        super().execute(instance_uuid, before, image=image, new_name=new_name)


def get_flow(services: Services, start: bool = True) -> linear_flow.Flow:
    """Inputs: ``instance_uuid``, ``image`` (dict), ``new_name``; ``start`` is False
    for an instance that was stopped."""
    return frame(services, "rebuild",
                 PowerOff(services, "rebuild.power-off"),
                 ReplaceDisk(services, "rebuild.replace-disk"),
                 DefineDomain(services, "rebuild.define-domain"),
                 *(boot_steps(services, "rebuild") if start else ()),
                 DiscardOldDisk(services, "rebuild.discard-old-disk"),
                 finish=RebuildFinish)
