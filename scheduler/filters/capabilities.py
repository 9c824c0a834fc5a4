"""ComputeCapabilitiesFilter: flavor extra specs that constrain host attributes."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from scheduler.filters import BaseHostFilter, extra_specs_ops
from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec

PREFIX = "capabilities:"


def _attribute(host: HostState, name: str) -> Any:
    """The host's attribute ``name``; None if it has none (methods do not count)."""
    value = getattr(host, name, None)
    return None if callable(value) else value


class ComputeCapabilitiesFilter(BaseHostFilter):
    """Every ``capabilities:<attribute>`` extra spec must match that host attribute.

    ``capabilities:cpu_arch`` = ``s== aarch64`` checks ``host.cpu_arch`` with the
    extra-spec operators; an attribute the host lacks fails the spec.  As in
    Nova, a key without any scope (no colon) is checked the same way when the
    host has that attribute, and ignored when it has not; keys of other scopes
    belong to other filters.
    """

    def cache_key(self, spec: RequestSpec) -> Hashable | None:
        # Specs on usage ("capabilities:vcpus_used") change with every claim.
        keys = [k.removeprefix(PREFIX) for k in spec.extra_specs]
        if any(k.endswith("_used") or k.startswith("free_") for k in keys):
            return None
        return tuple(sorted(spec.extra_specs.items()))

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        for key, requirement in spec.extra_specs.items():
            scoped = key.startswith(PREFIX)
            if ":" in key and not scoped:
                continue
            name = key.removeprefix(PREFIX)
            value = _attribute(host, name)
            if value is None:
                if scoped:
                    return f"{key} requires '{requirement}', host has no {name}"
                continue
            if not extra_specs_ops.match(str(value), requirement):
                return f"{key} requires '{requirement}', host has {value}"
        return None
