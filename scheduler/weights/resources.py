"""RAMWeigher, CPUWeigher, DiskWeigher: prefer the host with the most free room.

Each scores a host by its free capacity (``total × ratio − used``, which is
negative on a host overcommitted past its ratio).  With the default positive
multipliers instances spread out; a negative multiplier stacks them instead.
"""

from __future__ import annotations

from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec
from scheduler.weights import BaseHostWeigher


class RAMWeigher(BaseHostWeigher):
    """Score: free RAM in MB; multiplier ``ram_weight_multiplier``."""

    def multiplier(self) -> float:
        return self.config.ram_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_ram_mb

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        return [h.free_ram_mb for h in hosts]


class CPUWeigher(BaseHostWeigher):
    """Score: free vCPUs; multiplier ``cpu_weight_multiplier``."""

    def multiplier(self) -> float:
        return self.config.cpu_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_vcpus

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        return [h.free_vcpus for h in hosts]


class DiskWeigher(BaseHostWeigher):
    """Score: free local disk in GB; multiplier ``disk_weight_multiplier``."""

    def multiplier(self) -> float:
        return self.config.disk_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_disk_gb

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        return [h.free_disk_gb for h in hosts]
