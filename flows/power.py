"""Stop, start, reboot: the guest's power, each a flow in the frame of
``flows.actions``.

Graphs::

    stop:        begin -> request-shutdown -> wait-for-shutoff [poll; forced at timeout]
                 -> finish (STOPPED)
    start:       begin -> power-on -> wait-for-running [poll] -> finish (ACTIVE)
    reboot:      begin -> request-shutdown -> wait-for-shutoff [poll; forced at timeout]
    (soft)       -> power-on -> wait-for-running [poll] -> finish (ACTIVE)
    reboot_hard: begin -> power-off -> power-on -> wait-for-running [poll] -> finish

A soft reboot asks the guest to shut down (ACPI) and, if it has not within
``shutdown_timeout``, powers it off, then starts it again: Nova's behaviour.
"""

from __future__ import annotations

from taskflow.patterns import linear_flow

from flows.actions import PowerOff, boot_steps, frame, shutdown_steps
from flows.base import Services


def get_stop_flow(services: Services) -> linear_flow.Flow:
    return frame(services, "stop", *shutdown_steps(services, "stop"))


def get_start_flow(services: Services) -> linear_flow.Flow:
    return frame(services, "start", *boot_steps(services, "start"))


def get_reboot_flow(services: Services) -> linear_flow.Flow:
    return frame(services, "reboot", *shutdown_steps(services, "reboot"),
                 *boot_steps(services, "reboot"))


def get_reboot_hard_flow(services: Services) -> linear_flow.Flow:
    return frame(services, "reboot_hard", PowerOff(services, "reboot_hard.power-off"),
                 *boot_steps(services, "reboot_hard"))
