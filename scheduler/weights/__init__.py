"""Host weighers: each scores hosts; scores are normalised, multiplied, summed.

For each weigher the raw scores of the surviving hosts are scaled to 0..1
(minimum to maximum; all equal gives 0), multiplied by the weigher's multiplier
from configuration, and the products of all weighers are added: the host with
the highest total wins.  A negative multiplier reverses a weigher (for RAM:
stack instead of spread).
"""

from __future__ import annotations

import abc

from scheduler.host_state import HostState
from scheduler.plugin import Plugin
from scheduler.request_spec import RequestSpec


class BaseHostWeigher(Plugin, abc.ABC):
    @abc.abstractmethod
    def multiplier(self) -> float:
        """How much this weigher counts (from configuration)."""

    @abc.abstractmethod
    def weigh(self, host: HostState, spec: RequestSpec) -> float:
        """The host's raw score for this request (higher is better)."""

    def weigh_all(self, hosts: list[HostState], spec: RequestSpec) -> list[float]:
        """Raw scores of many hosts; weighers may compute them in bulk."""
        weigh = self.weigh
        return [weigh(h, spec) for h in hosts]


def scaling(values: list[float]) -> tuple[float, float]:
    """``(factor, offset)`` with ``factor × v − offset`` scaling ``values`` to 0..1
    (minimum to maximum; all equal: factor and offset 0, so every score is 0)."""
    if not values:
        return 0.0, 0.0
    low, high = min(values), max(values)
    if high == low:
        return 0.0, 0.0
    factor = 1.0 / (high - low)
    return factor, factor * low


def normalize(values: list[float]) -> list[float]:
    """Scale values to 0..1 (all equal: all 0)."""
    factor, offset = scaling(values)
    return [factor * v - offset for v in values]


def all_weighers() -> dict[str, type[BaseHostWeigher]]:
    from scheduler.weights import affinity, resources

    classes = (resources.RAMWeigher, resources.CPUWeigher, resources.DiskWeigher,
               affinity.ServerGroupSoftAffinityWeigher,
               affinity.ServerGroupSoftAntiAffinityWeigher)
    return {cls.__name__: cls for cls in classes}
