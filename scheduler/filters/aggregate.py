"""AggregateInstanceExtraSpecsFilter: flavors tied to aggregates by metadata."""

from __future__ import annotations

from collections.abc import Hashable

from scheduler.filters import BaseHostFilter, extra_specs_ops
from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec

PREFIX = "aggregate_instance_extra_specs:"


class AggregateInstanceExtraSpecsFilter(BaseHostFilter):
    """Flavor specs ``aggregate_instance_extra_specs:<key>`` must match aggregate metadata.

    The host passes a spec if any value of ``<key>`` in any of its aggregates
    matches the requirement with the extra-spec operators; a key none of its
    aggregates has fails.  As in Nova, keys without any scope (no colon) are
    also required of the aggregates; keys of other scopes are ignored.
    """

    def cache_key(self, spec: RequestSpec) -> Hashable:
        return tuple(sorted(spec.extra_specs.items()))

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        metadata = host.aggregate_values
        for key, requirement in spec.extra_specs.items():
            if ":" in key and not key.startswith(PREFIX):
                continue
            name = key.removeprefix(PREFIX)
            values = metadata.get(name)
            if not values:
                return f"{key} requires '{requirement}', no aggregate of the host has {name}"
            if not any(extra_specs_ops.match(v, requirement) for v in values):
                return (f"{key} requires '{requirement}', host's aggregates have "
                        f"{name} = {', '.join(sorted(values))}")
        return None
