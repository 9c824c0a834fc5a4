"""Server-group filters: members together (affinity) or apart (anti-affinity)."""

from __future__ import annotations

from collections.abc import Collection

from scheduler.filters import BaseHostFilter
from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec


class ServerGroupAffinityFilter(BaseHostFilter):
    """In an affinity group that already has members, only their hosts qualify."""

    def named_rejections(self, spec: RequestSpec) -> Collection[str] | None:
        group = spec.group
        if group is None or group.policy != "affinity" or not group.hosts:
            return ()  # rejects nothing
        return None  # rejects every host but a few: ask each

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        group = spec.group
        if group is None or group.policy != "affinity" or not group.hosts:
            return None
        if host.host not in group.hosts:
            return (f"server group '{group.name}' (affinity) has its members on "
                    f"{', '.join(sorted(group.hosts))}")
        return None


class ServerGroupAntiAffinityFilter(BaseHostFilter):
    """In an anti-affinity group, hosts that already run a member are excluded."""

    def named_rejections(self, spec: RequestSpec) -> Collection[str]:
        group = spec.group
        return group.hosts if group is not None and group.policy == "anti-affinity" else ()

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        group = spec.group
        if group is not None and group.policy == "anti-affinity" and host.host in group.hosts:
            if group.max_per_host > 1:
                return (f"server group '{group.name}' (anti-affinity) already has "
                        f"{group.max_per_host} members here")
            return f"server group '{group.name}' (anti-affinity) already has a member here"
        return None
