"""ImagePropertiesFilter: the image's architecture, hypervisor and version needs."""

from __future__ import annotations

import functools
from collections.abc import Hashable

from scheduler.filters import BaseHostFilter, extra_specs_ops
from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec

# Other spellings of an architecture, as Nova canonicalizes them.
_ARCH_ALIASES = {"i386": "i686", "i486": "i686", "i586": "i686", "x86_32": "i686",
                 "x86_32p": "i686", "amd64": "x86_64"}
# Likewise for hypervisor types ("xapi" is Xen's toolstack).  libvirt's QEMU
# driver reports its type as QEMU whether guests run under KVM or TCG, so an
# image that asks for kvm matches a QEMU host (whether that host has a usable
# /dev/kvm is not part of the host state).
_HV_ALIASES = {"xapi": "xen", "kvm": "qemu"}


@functools.lru_cache(maxsize=256)
def _arch(name: str) -> str:
    name = name.lower()
    return _ARCH_ALIASES.get(name, name)


@functools.lru_cache(maxsize=256)
def _hv_type(name: str) -> str:
    name = name.lower()
    return _HV_ALIASES.get(name, name)


def _version_requirement(props: dict) -> str | None:
    return props.get("hypervisor_version_requires") or props.get("img_hv_requested_version")


class ImagePropertiesFilter(BaseHostFilter):
    """The host must run what the image asks for, when the image asks.

    * ``hw_architecture`` must be the host's CPU architecture (aliases such as
      amd64 = x86_64 are the same architecture; case does not matter);
    * ``img_hv_type`` must be the host's hypervisor type (case does not matter);
    * ``hypervisor_version_requires`` (e.g. ``>= 8000000``; newer Nova calls it
      ``img_hv_requested_version``, also understood) must match the host's
      hypervisor version with the extra-spec operators.  A host that reports no
      version (0) is not held to it, as in Nova.

    An image with none of these properties can go anywhere.
    """

    def cache_key(self, spec: RequestSpec) -> Hashable:
        props = spec.image_properties
        return (str(props.get("hw_architecture")), str(props.get("img_hv_type")),
                str(_version_requirement(props)))

    def rejection(self, host: HostState, spec: RequestSpec) -> str | None:
        props = spec.image_properties
        arch = props.get("hw_architecture")
        if arch and _arch(arch) != _arch(host.cpu_arch):
            return f"image needs architecture {arch}, host is {host.cpu_arch}"
        hv_type = props.get("img_hv_type")
        if hv_type and _hv_type(hv_type) != _hv_type(host.hypervisor_type):
            return f"image needs hypervisor {hv_type}, host runs {host.hypervisor_type}"
        version = _version_requirement(props)
        if (version and host.hypervisor_version
                and not extra_specs_ops.match(str(host.hypervisor_version), version)):
            return (f"image needs hypervisor version '{version}', "
                    f"host has {host.hypervisor_version}")
        return None
