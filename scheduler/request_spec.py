"""What a scheduling request asks for, as the filters and weighers see it."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from vmflow.db.claims import Resources


@dataclasses.dataclass
class ServerGroupInfo:
    """The server group a request belongs to (the ``group`` scheduler hint)."""

    uuid: str
    name: str
    policy: str  # "affinity", "anti-affinity", "soft-affinity" or "soft-anti-affinity"
    # Hosts that members of the group (other than this one) are on; for
    # anti-affinity, the hosts that already hold ``max_per_host`` of them.
    hosts: frozenset[str]
    max_per_host: int = 1  # anti-affinity's max_server_per_host rule (2.64)


@dataclasses.dataclass
class RequestSpec:
    instance_uuid: str
    project_id: str
    # flavor: vcpus, memory_mb, root_gb, ephemeral_gb, extra_specs (dict of str)
    flavor: dict[str, Any]
    # image: min_disk, min_ram, properties (hw_architecture, img_hv_type,
    # hypervisor_version_requires, ...)
    image: dict[str, Any]
    availability_zone: str | None = None
    tried_hosts: frozenset[str] = frozenset()
    group: ServerGroupInfo | None = None
    # The one host an admin asked for (compute API 2.74); the filters still apply.
    requested_host: str | None = None

    # Derived once per request: filters ask for them once per host.
    @functools.cached_property
    def resources(self) -> Resources:
        return Resources.of_flavor(self.flavor)

    @functools.cached_property
    def extra_specs(self) -> dict[str, str]:
        return dict(self.flavor.get("extra_specs") or {})

    @functools.cached_property
    def image_properties(self) -> dict[str, Any]:
        return dict(self.image.get("properties") or {})
