"""RetryFilter: a rescheduled request does not go back to a host that failed it."""

from __future__ import annotations

from collections.abc import Collection

from scheduler.filters import BaseHostFilter
from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec


class RetryFilter(BaseHostFilter):
    """Reject the hosts this request has already been tried on."""

    def named_rejections(self, spec: RequestSpec) -> Collection[str]:
        return spec.tried_hosts

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        if host.host in spec.tried_hosts:
            return "already tried for this request"
        return None
