"""In-memory view of every compute host, refreshed from the database.

Reading all compute nodes on every request would cost a query proportional to
the cloud for each boot; instead the view is refreshed at most every
``refresh_interval`` seconds and adjusted at once by this process's own claims.
A view that is stale only makes a claim fail, and a failed claim moves on to the
next candidate.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time

from vmflow.db import aggregates as aggregates_db
from vmflow.db import hosts as hosts_db
from vmflow.db.claims import Resources
from vmflow.db.session import Database


@dataclasses.dataclass(eq=False)  # one object per host and load: identity is equality
class HostState:
    host: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float
    cpu_arch: str
    hypervisor_type: str
    enabled: bool = True
    up: bool = True
    hypervisor_version: int = 0
    # The zone of the host: its aggregates' availability_zone, else the default.
    availability_zone: str = "nova"
    # Metadata of every aggregate the host is in.
    aggregates: list[dict[str, str]] = dataclasses.field(default_factory=list)
    # Free capacity, ``total × ratio − used`` (negative when overcommitted past
    # the ratio): read by the resource filters and weighers for every host of
    # every request, so kept as plain attributes.  Usage changes go through
    # :meth:`consume`, which keeps them true.
    free_ram_mb: float = dataclasses.field(init=False, repr=False, compare=False)
    free_vcpus: float = dataclasses.field(init=False, repr=False, compare=False)
    free_disk_gb: float = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._update_free()

    def _update_free(self) -> None:
        self.free_ram_mb = self.memory_mb * self.ram_allocation_ratio - self.memory_mb_used
        self.free_vcpus = self.vcpus * self.cpu_allocation_ratio - self.vcpus_used
        self.free_disk_gb = self.local_gb * self.disk_allocation_ratio - self.local_gb_used

    @functools.cached_property
    def aggregate_values(self) -> dict[str, frozenset[str]]:
        """Every value of every key over the host's aggregates.

        A value may list several, separated by commas ("ssd, nvme"), as in Nova.
        """
        values: dict[str, set[str]] = {}
        for metadata in self.aggregates:
            for key, value in metadata.items():
                values.setdefault(key, set()).update(v.strip() for v in str(value).split(","))
        return {key: frozenset(vals) for key, vals in values.items()}

    def consume(self, res: Resources, sign: int = 1) -> None:
        self.vcpus_used += sign * res.vcpus
        self.memory_mb_used += sign * res.memory_mb
        self.local_gb_used += sign * res.disk_gb
        self._update_free()


def _static_part(host: HostState) -> tuple:
    """What of a host does not change with usage."""
    return (host.host, host.enabled, host.up, host.availability_zone, host.cpu_arch,
            host.hypervisor_type, host.hypervisor_version, host.vcpus, host.memory_mb,
            host.local_gb, tuple(tuple(sorted(m.items())) for m in host.aggregates))


class HostStateCache:
    def __init__(self, db: Database, *, service_down_time: float = 60.0,
                 refresh_interval: float = 1.0, default_zone: str = "nova") -> None:
        self._db = db
        self._down_after = service_down_time
        self._default_zone = default_zone
        self._interval = refresh_interval
        self._lock = threading.Lock()
        self._hosts: dict[str, HostState] = {}
        self._loaded_at = 0.0
        # Bumped when a reload changes what usage-independent filters look at
        # (zones, aggregates, capabilities, service state): verdicts cached for
        # the previous generation are then stale.  Usage changes do not bump it.
        self.generation = 0
        # Bumped by every reload, whatever changed: the host state objects are
        # new ones then, so anything holding the old ones must let them go.
        self.loads = 0
        self._fingerprint: int | None = None

    def _load(self) -> dict[str, HostState]:
        with self._db.read() as session:
            services = {s.host: s for s in hosts_db.list_services(session)
                        if s.binary == "vmflow-compute"}
            aggregates = aggregates_db.metadata_by_host(session)
            result = {}
            for node in hosts_db.list_nodes(session):
                service = services.get(node.host)
                metadata = aggregates.get(node.host, [])
                result[node.host] = HostState(
                    host=node.host, vcpus=node.vcpus, memory_mb=node.memory_mb,
                    local_gb=node.local_gb, vcpus_used=node.vcpus_used,
                    memory_mb_used=node.memory_mb_used, local_gb_used=node.local_gb_used,
                    cpu_allocation_ratio=node.cpu_allocation_ratio,
                    ram_allocation_ratio=node.ram_allocation_ratio,
                    disk_allocation_ratio=node.disk_allocation_ratio,
                    cpu_arch=node.cpu_arch, hypervisor_type=node.hypervisor_type,
                    enabled=service is not None and not service.disabled,
                    up=service is not None and hosts_db.is_up(service, self._down_after),
                    hypervisor_version=node.hypervisor_version,
                    availability_zone=aggregates_db.zone_of(metadata) or self._default_zone,
                    aggregates=metadata,
                )
        return result

    def snapshot(self) -> list[HostState]:
        """Current host states: the cache's own objects, not copies (copying
        1,000 hosts for every request would cost more than scheduling them).
        Callers read them and never change them; only :meth:`consumed` does."""
        with self._lock:
            if time.monotonic() - self._loaded_at > self._interval:
                self._hosts = self._load()
                self._loaded_at = time.monotonic()
                self.loads += 1
                fingerprint = hash(tuple(_static_part(h) for h in self._hosts.values()))
                if fingerprint != self._fingerprint:
                    self._fingerprint = fingerprint
                    self.generation += 1
            return list(self._hosts.values())

    def zone_of(self, host: str) -> str:
        with self._lock:
            state = self._hosts.get(host)
            return state.availability_zone if state is not None else self._default_zone

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = 0.0

    def consumed(self, host: str, res: Resources, sign: int = 1) -> None:
        """Apply this process's claim (sign 1) or release (sign -1) to the view."""
        with self._lock:
            state = self._hosts.get(host)
            if state is not None:
                state.consume(res, sign)
