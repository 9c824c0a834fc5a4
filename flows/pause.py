"""Pause / unpause (memory kept in the host's RAM) and suspend / resume (memory
saved to the host's disk by libvirt's managed save), in the frame of
``flows.actions``.  A paused or suspended instance keeps its claim on the host.

Graphs::

    pause:   begin -> pause-guest   -> finish (PAUSED)
    unpause: begin -> unpause-guest -> finish (ACTIVE)
    suspend: begin -> save-guest    -> finish (SUSPENDED)
    resume:  begin -> restore-guest -> wait-for-running [poll] -> finish (ACTIVE)
"""

from __future__ import annotations

from typing import Any

from taskflow.patterns import linear_flow

from flows.actions import HostStep, WaitForRunning, frame, polled
from flows.base import Services, may_have_acted


class PauseGuest(HostStep):
    """Stop the guest's vCPUs.

    Revert: let them run again (unpause).
    """

    method = "pause"

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(host, "unpause", instance_uuid)


class UnpauseGuest(HostStep):
    """Let the guest's vCPUs run again.

    Revert: pause the guest again.
    """

    method = "unpause"

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(host, "pause", instance_uuid)


class SaveGuest(HostStep):
    """Save the guest's memory to the host's disk and stop it (managed save).

    Revert: restore the guest from the saved memory (resume).
    """

    method = "suspend"

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(host, "resume", instance_uuid)


class RestoreGuest(HostStep):
    """Start the guest from its saved memory.

    Revert: save it again (suspend).
    """

    method = "resume"

    def revert(self, result: Any, instance_uuid: str, host: str, **_kw: Any) -> None:
        if may_have_acted(result):
            self.undo(host, "suspend", instance_uuid)


def get_pause_flow(services: Services) -> linear_flow.Flow:
    return frame(services, "pause", PauseGuest(services, "pause.pause-guest"))


def get_unpause_flow(services: Services) -> linear_flow.Flow:
    return frame(services, "unpause", UnpauseGuest(services, "unpause.unpause-guest"))


def get_suspend_flow(services: Services) -> linear_flow.Flow:
    return frame(services, "suspend", SaveGuest(services, "suspend.save-guest"))


def get_resume_flow(services: Services) -> linear_flow.Flow:
    return frame(services, "resume", RestoreGuest(services, "resume.restore-guest"),
                 polled("resume.poll-on", WaitForRunning(services, "resume.wait-for-running"),
                        services.config.spawn_poll_attempts))
