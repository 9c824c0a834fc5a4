"""ComputeFilter: only hosts whose compute service is enabled and alive."""

from __future__ import annotations

from collections.abc import Hashable

from scheduler.filters import BaseHostFilter
from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec


class ComputeFilter(BaseHostFilter):
    """Reject a host whose compute service is disabled or has stopped reporting."""

    def cache_key(self, spec: RequestSpec) -> Hashable:
        return ()  # up and enabled change only when the host states are reloaded

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        # Disabled is checked first, as Nova does: it is the operator's decision.
        if not host.enabled:
            return "compute service is disabled"
        if not host.up:
            return "compute service is down"
        return None
