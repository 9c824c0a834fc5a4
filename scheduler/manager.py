"""Select candidate hosts for a request: fit, then spread by free RAM.

This is the foundation's simple fit (vCPU, RAM, disk within allocation ratios,
enabled and up, not already tried); Nova's full filter scheduler replaces it
behind the same ``select`` call.
"""

from __future__ import annotations

import logging

from scheduler.host_state import HostState, HostStateCache
from vmflow import exception
from vmflow.db.claims import Resources

LOG = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, cache: HostStateCache, *, max_candidates: int = 10) -> None:
        self.cache = cache
        self.max_candidates = max_candidates

    @staticmethod
    def _rejection(host: HostState, asked: Resources) -> tuple[str, str] | None:
        """(category, explanation) of why ``host`` cannot take ``asked``, or None."""
        if not host.up:
            return "compute service down", "compute service is down"
        if not host.enabled:
            return "compute service disabled", "compute service is disabled"
        if asked.vcpus > host.free_vcpus:
            return "not enough vCPUs", f"{host.free_vcpus:g} vCPUs free, {asked.vcpus} requested"
        if asked.memory_mb > host.free_ram_mb:
            return "not enough RAM", (f"{host.free_ram_mb:g} MB RAM free, "
                                      f"{asked.memory_mb} MB requested")
        if asked.disk_gb > host.free_disk_gb:
            return "not enough disk", (f"{host.free_disk_gb:g} GB disk free, "
                                       f"{asked.disk_gb} GB requested")
        return None

    def select(self, asked: Resources, *, exclude: set[str] | frozenset[str] = frozenset()
               ) -> list[str]:
        """Hosts that fit, best first; raises NoValidHost naming why none fit."""
        hosts = self.cache.snapshot()
        fitting: list[HostState] = []
        counts: dict[str, int] = {}
        for host in hosts:
            if host.host in exclude:
                rejected = ("already tried", "already tried for this request")
            else:
                rejected = self._rejection(host, asked)
            if rejected is None:
                fitting.append(host)
                continue
            counts[rejected[0]] = counts.get(rejected[0], 0) + 1
            LOG.debug("scheduler rejected %s: %s", host.host, rejected[1])
        if not fitting:
            detail = ", ".join(f"{why}: {n}" for why, n in sorted(counts.items()))
            raise exception.NoValidHost(
                reason=f"0 of {len(hosts)} hosts fit {asked.vcpus} vCPU, "
                       f"{asked.memory_mb} MB RAM, {asked.disk_gb} GB disk"
                       + (f" ({detail})." if detail else "."))
        fitting.sort(key=lambda h: (-h.free_ram_mb, h.host))
        chosen = [h.host for h in fitting[: self.max_candidates]]
        LOG.info("scheduler: %d of %d hosts fit; candidates %s", len(fitting), len(hosts),
                 ", ".join(chosen[:3]) + (" ..." if len(chosen) > 3 else ""))
        return chosen
