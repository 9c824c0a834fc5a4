"""Host filters: one small class per rule; each says why it rejects a host.

A filter answers :meth:`BaseHostFilter.rejection` with None (the host passes)
or a reason in plain words ("1536 MB usable of 4096 MB × 1.5, 2048 MB
requested"); the scheduler records the reasons so an operator can read why a
host was not chosen.  Filters are chosen by configuration:
``available_filters`` (which classes may be used) and ``enabled_filters`` (which
run, in that order).
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Hashable

from scheduler.host_state import HostState
from scheduler.plugin import Plugin
from scheduler.request_spec import RequestSpec


class BaseHostFilter(Plugin, abc.ABC):
    """Decide whether one host can take one request."""

    @abc.abstractmethod
    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        """None if ``host`` can take ``spec``; otherwise why not, in plain words."""

    def host_passes(self, host: HostState, spec: RequestSpec) -> bool:
        return self.rejection(host, spec) is None

    def passing(self, hosts: list[HostState], spec: RequestSpec) -> list[HostState]:
        """The hosts that pass, in order.  Filters may answer in bulk, faster than
        one call per host; :meth:`rejection` stays the rule and gives the reasons."""
        rejection = self.rejection
        return [h for h in hosts if rejection(h, spec) is None]

    def named_rejections(self, spec: RequestSpec) -> Collection[str] | None:
        """If this filter can reject only hosts named in advance (hosts tried
        already, hosts of a group's members), their names; otherwise None."""
        return None

    def cache_key(self, spec: RequestSpec) -> Hashable | None:
        """What of ``spec`` this filter's verdicts depend on, if they depend on
        nothing else that changes between two loads of the host states (usage
        does; zones, capabilities, aggregates and service state do not).

        Filters returning a key have their verdicts over all hosts computed once
        per key and host-state load; None (the default) means ask every time.
        """
        return None


def all_filters() -> dict[str, type[BaseHostFilter]]:
    """Every filter class vmflow ships, by class name."""
    from scheduler.filters import (
        affinity,
        aggregate,
        availability_zone,
        capabilities,
        compute,
        image_properties,
        resources,
        retry,
    )

    classes = (retry.RetryFilter, availability_zone.AvailabilityZoneFilter,
               compute.ComputeFilter, resources.RamFilter, resources.DiskFilter,
               resources.CoreFilter, capabilities.ComputeCapabilitiesFilter,
               image_properties.ImagePropertiesFilter, affinity.ServerGroupAffinityFilter,
               affinity.ServerGroupAntiAffinityFilter,
               aggregate.AggregateInstanceExtraSpecsFilter)
    return {cls.__name__: cls for cls in classes}
