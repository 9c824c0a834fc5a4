"""What a compute host can do to guests; every method is idempotent.

Instances are named by uuid; arguments and results are plain data, so the same
calls travel as JSON between the conductor and a compute worker.
"""

from __future__ import annotations

import abc
from typing import Any


class ComputeDriver(abc.ABC):
    """One hypervisor (one compute host)."""

    @abc.abstractmethod
    def host_report(self) -> dict[str, Any]:
        """Capacity and identity of the hypervisor: vcpus, memory_mb, local_gb,
        cpu_arch, hypervisor_type, hypervisor_version, hypervisor_hostname."""

    @abc.abstractmethod
    def ensure_image_cached(self, image: dict[str, Any]) -> str:
        """Make the image available in this host's image cache; return its path.
        Already cached: nothing is done."""

    @abc.abstractmethod
    def create_disk(self, instance_uuid: str, image: dict[str, Any], root_gb: int) -> str:
        """Create the instance's root disk from the cached image; return its path.
        Already there: nothing is done."""

    @abc.abstractmethod
    def delete_disks(self, instance_uuid: str) -> bool:
        """Remove the instance's disks; False if there were none."""

    @abc.abstractmethod
    def define(self, instance: dict[str, Any]) -> None:
        """Define the guest (domain XML from the instance and flavor) unless a
        guest with this uuid is already defined."""

    @abc.abstractmethod
    def undefine(self, instance_uuid: str) -> bool:
        """Stop the guest if it runs and remove its definition; False if absent."""

    @abc.abstractmethod
    def power_on(self, instance_uuid: str) -> None:
        """Start the guest unless it is already running."""

    @abc.abstractmethod
    def power_off(self, instance_uuid: str) -> bool:
        """Stop the guest at once (pull the plug); False if it was not running."""

    @abc.abstractmethod
    def power_state(self, instance_uuid: str) -> int:
        """The guest's power state (``vmflow.states.power_state``); NOSTATE if absent."""

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Uuids of every guest defined on this hypervisor."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the hypervisor connection."""
