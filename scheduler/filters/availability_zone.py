"""AvailabilityZoneFilter: a request for a zone goes only to hosts in that zone."""

from __future__ import annotations

from collections.abc import Hashable

from scheduler.filters import BaseHostFilter
from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec


class AvailabilityZoneFilter(BaseHostFilter):
    """If the request names a zone, the host's zone must be that zone.

    The host's zone is its aggregates' ``availability_zone`` or, for a host in
    no such aggregate, the default zone (folded into HostState by the cache).
    """

    def cache_key(self, spec: RequestSpec) -> Hashable:
        return spec.availability_zone

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        wanted = spec.availability_zone
        if wanted and host.availability_zone != wanted:
            return f"in availability zone '{host.availability_zone}', '{wanted}' requested"
        return None
