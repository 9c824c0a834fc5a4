"""Soft server-group policies (compute API 2.15): preferences, not rules.

A ``soft-affinity`` group prefers the hosts its other members are on, a
``soft-anti-affinity`` group the hosts they are not on; when no such host
passes the filters the instance still lands elsewhere (the hard policies'
filters would refuse it).  Both score 1 for a preferred host and 0 otherwise,
so the preference counts as much as its multiplier against the resource
weighers.
"""

from __future__ import annotations

from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec
from scheduler.weights import BaseHostWeigher


class ServerGroupSoftAffinityWeigher(BaseHostWeigher):
    """Score: 1 on a host of another member of a soft-affinity group; multiplier
    ``soft_affinity_weight_multiplier``."""

    def multiplier(self) -> float:
        return self.config.soft_affinity_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        group = spec.group
        if group is None or group.policy != "soft-affinity":
            return 0.0
        return 1.0 if host.host in group.hosts else 0.0


class ServerGroupSoftAntiAffinityWeigher(BaseHostWeigher):
    """Score: 1 on a host without another member of a soft-anti-affinity group;
    multiplier ``soft_anti_affinity_weight_multiplier``."""

    def multiplier(self) -> float:
        return self.config.soft_anti_affinity_weight_multiplier

    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        group = spec.group
        if group is None or group.policy != "soft-anti-affinity":
            return 0.0
        return 0.0 if host.host in group.hosts else 1.0
