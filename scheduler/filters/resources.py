"""RamFilter, DiskFilter, CoreFilter: the request must fit the host's free capacity.

Free capacity is ``total × allocation ratio − used`` with the host's own ratio.
As in Nova, overcommit is allowed against other instances only: a request
larger than the host's physical total never fits, whatever the ratio.
"""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec


def _num(x: float) -> str:
    """A number as people write it: 1536, 1.5, 0.33."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _shortfall(total: int, ratio: float, used: int, requested: int, unit: str) -> str | None:
    """Why ``requested`` does not fit, or None if it does."""
    if requested > total:
        return f"{requested} {unit} requested, more than the host's {total} {unit}"
    usable = total * ratio - used
    if requested > usable:
        return (f"{_num(usable)} {unit} usable of {total} {unit} × {_num(ratio)}, "
                f"{requested} {unit} requested")
    return None


class RamFilter(BaseHostFilter):
    """Reject a host without enough RAM (MB) for the flavor."""

    def passing(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        need = spec.resources.memory_mb
        return [h for h in hosts if need <= h.memory_mb
                and need <= h.free_ram_mb]

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        return _shortfall(host.memory_mb, host.ram_allocation_ratio, host.memory_mb_used,
                          spec.resources.memory_mb, "MB")


class DiskFilter(BaseHostFilter):
    """Reject a host without enough local disk (GB) for root plus ephemeral disk."""

    def passing(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        need = spec.resources.disk_gb
        return [h for h in hosts if need <= h.local_gb
                and need <= h.free_disk_gb]

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        return _shortfall(host.local_gb, host.disk_allocation_ratio, host.local_gb_used,
                          spec.resources.disk_gb, "GB")


class CoreFilter(BaseHostFilter):
    """Reject a host without enough vCPUs for the flavor."""

    def passing(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        need = spec.resources.vcpus
        return [h for h in hosts if need <= h.vcpus
                and need <= h.free_vcpus]

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        return _shortfall(host.vcpus, host.cpu_allocation_ratio, host.vcpus_used,
                          spec.resources.vcpus, "vCPUs")
