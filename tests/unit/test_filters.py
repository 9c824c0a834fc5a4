"""Each host filter on its own, on hosts built in the test (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.filters import BaseHostFilter, all_filters
from scheduler.filters.affinity import ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter
from scheduler.filters.aggregate import AggregateInstanceExtraSpecsFilter
from scheduler.filters.availability_zone import AvailabilityZoneFilter
from scheduler.filters.capabilities import ComputeCapabilitiesFilter
from scheduler.filters.compute import ComputeFilter
from scheduler.filters.extra_specs_ops import match
from scheduler.filters.image_properties import ImagePropertiesFilter
from scheduler.filters.resources import CoreFilter, DiskFilter, RamFilter
from scheduler.filters.retry import RetryFilter
from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec, ServerGroupInfo
from vmflow.config import DEFAULT_FILTERS, Config


def host(name: str = "h1", **fields: Any) -> HostState:
    """An empty, healthy x86_64 QEMU host: 4 vCPUs, 4096 MB, 40 GB, ratios 1."""
    values: dict[str, Any] = dict(
        host=name, vcpus=4, memory_mb=4096, local_gb=40, vcpus_used=0, memory_mb_used=0,
        local_gb_used=0, cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0,
        disk_allocation_ratio=1.0, cpu_arch="x86_64", hypervisor_type="QEMU",
        hypervisor_version=8002000)
    values.update(fields)
    return HostState(**values)


def spec(*, vcpus: int = 1, memory_mb: int = 512, root_gb: int = 1, ephemeral_gb: int = 0,
         extra_specs: dict[str, str] | None = None, properties: dict[str, Any] | None = None,
         **fields: Any) -> RequestSpec:
    flavor = {"vcpus": vcpus, "memory_mb": memory_mb, "root_gb": root_gb,
              "ephemeral_gb": ephemeral_gb, "extra_specs": extra_specs or {}}
    image = {"min_disk": 0, "min_ram": 0, "properties": properties or {}}
    return RequestSpec(instance_uuid="u-1", project_id="p-1", flavor=flavor, image=image,
                       **fields)


def check(cls: type[BaseHostFilter], h: HostState, s: RequestSpec) -> str | None:
    return cls(Config()).rejection(h, s)


def test_all_filters_are_the_eleven_shipped_classes():
    names = {"RetryFilter", "AvailabilityZoneFilter", "ComputeFilter", "RamFilter",
             "DiskFilter", "CoreFilter", "ComputeCapabilitiesFilter", "ImagePropertiesFilter",
             "ServerGroupAntiAffinityFilter", "ServerGroupAffinityFilter",
             "AggregateInstanceExtraSpecsFilter"}
    found = all_filters()
    assert set(found) == names
    assert set(DEFAULT_FILTERS) <= names
    for name, cls in found.items():
        assert cls.__name__ == name and cls.__doc__


def test_host_passes_is_rejection_is_none():
    f = RetryFilter(Config())
    assert f.host_passes(host(), spec())
    assert not f.host_passes(host(), spec(tried_hosts=frozenset({"h1"})))


# -- RetryFilter, AvailabilityZoneFilter, ComputeFilter ------------------------------


def test_retry_rejects_only_hosts_already_tried():
    s = spec(tried_hosts=frozenset({"h1", "h3"}))
    assert check(RetryFilter, host("h1"), s) == "already tried for this request"
    assert check(RetryFilter, host("h2"), s) is None
    assert check(RetryFilter, host("h1"), spec()) is None


def test_availability_zone():
    assert check(AvailabilityZoneFilter, host(availability_zone="az1"), spec()) is None
    asked = spec(availability_zone="az1")
    assert check(AvailabilityZoneFilter, host(availability_zone="az1"), asked) is None
    assert (check(AvailabilityZoneFilter, host(), asked)
            == "in availability zone 'nova', 'az1' requested")


@pytest.mark.parametrize(("up", "enabled", "reason"), [
    (True, True, None),
    (False, True, "compute service is down"),
    (True, False, "compute service is disabled"),
    (False, False, "compute service is disabled"),
])
def test_compute_filter(up, enabled, reason):
    assert check(ComputeFilter, host(up=up, enabled=enabled), spec()) == reason


# -- RamFilter, DiskFilter, CoreFilter ----------------------------------------------


def test_ram_reason_states_the_arithmetic():
    h = host(ram_allocation_ratio=1.5, memory_mb_used=4608)
    assert (check(RamFilter, h, spec(memory_mb=2048))
            == "1536 MB usable of 4096 MB × 1.5, 2048 MB requested")


def test_ram_overcommit_admits_up_to_the_ratio_and_no_more():
    h = host(ram_allocation_ratio=1.5, memory_mb_used=4096)  # 6144 - 4096 = 2048 usable
    assert check(RamFilter, h, spec(memory_mb=2048)) is None
    assert (check(RamFilter, h, spec(memory_mb=2049))
            == "2048 MB usable of 4096 MB × 1.5, 2049 MB requested")
    assert check(RamFilter, host(memory_mb_used=4096), spec(memory_mb=1)) is not None


def test_no_request_overcommits_against_itself():
    h = host(ram_allocation_ratio=1.5, cpu_allocation_ratio=16.0, disk_allocation_ratio=2.0)
    assert check(RamFilter, h, spec(memory_mb=4096)) is None
    assert (check(RamFilter, h, spec(memory_mb=4097))
            == "4097 MB requested, more than the host's 4096 MB")
    assert (check(CoreFilter, h, spec(vcpus=5))
            == "5 vCPUs requested, more than the host's 4 vCPUs")
    assert (check(DiskFilter, h, spec(root_gb=41))
            == "41 GB requested, more than the host's 40 GB")


def test_disk_counts_root_and_ephemeral():
    h = host(local_gb_used=30)
    assert check(DiskFilter, h, spec(root_gb=5, ephemeral_gb=5)) is None
    assert (check(DiskFilter, h, spec(root_gb=5, ephemeral_gb=6))
            == "10 GB usable of 40 GB × 1, 11 GB requested")


def test_core_filter_with_cpu_overcommit():
    h = host(cpu_allocation_ratio=16.0, vcpus_used=63)
    assert check(CoreFilter, h, spec(vcpus=1)) is None
    assert (check(CoreFilter, h, spec(vcpus=2))
            == "1 vCPUs usable of 4 vCPUs × 16, 2 vCPUs requested")


def test_usage_past_the_ratio_shows_negative_room():
    h = host(ram_allocation_ratio=0.5, memory_mb_used=2560)
    assert (check(RamFilter, h, spec(memory_mb=512))
            == "-512 MB usable of 4096 MB × 0.5, 512 MB requested")


# -- extra_specs_ops ----------------------------------------------------------------


@pytest.mark.parametrize(("value", "requirement", "expected"), [
    # plain strings: exact equality of the whole requirement
    ("gold", "gold", True),
    ("gold", "silver", False),
    ("12", "1", False),
    ("", "", True),
    ("7", "> 3", False),  # no numeric ">": a plain string
    # "=" means at least, numerically
    ("4", "= 4", True),
    ("8", "= 4", True),
    ("3", "= 4", False),
    ("4.0", "= 4", True),
    ("4", "=", False),
    # numeric comparisons
    ("16", "== 16.0", True),
    ("16", "== 17", False),
    ("16", "!= 17", True),
    ("16", "!= 16", False),
    ("16", ">= 8", True),
    ("4", ">= 8", False),
    ("4", "<= 8", True),
    ("9", "<= 8", False),
    # unparseable numbers do not match (and do not raise)
    ("x86_64", "= 4", False),
    ("4", ">= lots", False),
    ("abc", "!= 1", False),
    # string comparisons
    ("kvm", "s== kvm", True),
    ("kvm2", "s== kvm", False),
    ("kvm2", "s!= kvm", True),
    ("kvm", "s!= kvm", False),
    ("10", "s< 9", True),  # strings: "10" sorts before "9"
    ("9", "s< 10", False),
    ("abc", "s<= abc", True),
    ("b", "s> a", True),
    ("a", "s> b", False),
    ("b", "s>= b", True),
    ("s==", "s==", False),  # operator without operand
    # <in>: substring of the value (only the first word counts)
    ("sse2 avx", "<in> avx", True),
    ("sse2 avx", "<in> sse", True),
    ("sse2 avx", "<in> avx2", False),
    ("sse2 avx", "<in> avx nope", True),
    ("sse2", "<in>", False),
    # <all-in>: every word is a substring of the value
    ("['aes', 'avx', 'sse4']", "<all-in> aes sse4", True),
    ("['aes', 'avx', 'sse4']", "<all-in> aes rdrand", False),
    ("aes", "<all-in>", False),
    # <or>: the value is one of the words
    ("ssd", "<or> hdd <or> ssd", True),
    ("ssd", "<or> ssd", True),
    ("nvme", "<or> hdd <or> ssd", False),
    ("ssd", "<or> hdd <or> ssd <or>", True),
    ("<or>", "<or> hdd <or> ssd", False),  # "<or>" separators are not values
    ("ssd", "<or>", False),
])
def test_extra_specs_ops(value, requirement, expected):
    assert match(value, requirement) is expected


# -- ComputeCapabilitiesFilter ------------------------------------------------------


def test_capabilities_reason_names_spec_requirement_and_host_value():
    s = spec(extra_specs={"capabilities:cpu_arch": "s== aarch64"})
    assert (check(ComputeCapabilitiesFilter, host(), s)
            == "capabilities:cpu_arch requires 's== aarch64', host has x86_64")
    assert check(ComputeCapabilitiesFilter, host(cpu_arch="aarch64"), s) is None


@pytest.mark.parametrize(("extra_specs", "passes"), [
    ({}, True),
    ({"capabilities:hypervisor_type": "QEMU"}, True),
    ({"capabilities:hypervisor_type": "<or> xen <or> kvm"}, False),
    ({"capabilities:hypervisor_version": ">= 8000000"}, True),
    ({"capabilities:hypervisor_version": ">= 9000000"}, False),
    ({"capabilities:vcpus": "= 4"}, True),
    ({"capabilities:vcpus": "= 8"}, False),
    ({"capabilities:memory_mb": ">= 2048"}, True),
    ({"capabilities:free_ram_mb": ">= 4096"}, True),  # properties count too
    ({"capabilities:free_ram_mb": ">= 4097"}, False),
    ({"capabilities:cpu_arch": "x86_64", "capabilities:vcpus": "= 8"}, False),
    # unscoped keys: checked when the host has the attribute, ignored otherwise
    ({"cpu_arch": "x86_64"}, True),
    ({"cpu_arch": "aarch64"}, False),
    ({"gpu": "true"}, True),
    # other scopes belong to other filters
    ({"hw:cpu_policy": "dedicated"}, True),
    ({"aggregate_instance_extra_specs:ssd": "true"}, True),
    # a scoped attribute the host does not have fails it
    ({"capabilities:gpu": "true"}, False),
    ({"capabilities:cpu_info:arch": "x86_64"}, False),
    ({"capabilities:consume": "<in> bound"}, False),  # methods are not capabilities
])
def test_capabilities(extra_specs, passes):
    result = check(ComputeCapabilitiesFilter, host(), spec(extra_specs=extra_specs))
    assert (result is None) is passes


def test_capabilities_missing_attribute_reason():
    s = spec(extra_specs={"capabilities:gpu": "true"})
    assert (check(ComputeCapabilitiesFilter, host(), s)
            == "capabilities:gpu requires 'true', host has no gpu")


# -- ImagePropertiesFilter ----------------------------------------------------------


def test_image_without_properties_passes_every_host():
    for h in (host(), host(cpu_arch="aarch64", hypervisor_type="xen", hypervisor_version=1)):
        assert check(ImagePropertiesFilter, h, spec()) is None
        assert check(ImagePropertiesFilter, h, spec(properties={"os_distro": "fedora"})) is None


@pytest.mark.parametrize(("properties", "host_fields", "reason"), [
    ({"hw_architecture": "x86_64"}, {}, None),
    ({"hw_architecture": "amd64"}, {}, None),
    ({"hw_architecture": "X86_64"}, {}, None),
    ({"hw_architecture": "i386"}, {"cpu_arch": "i686"}, None),
    ({"hw_architecture": "aarch64"}, {}, "image needs architecture aarch64, host is x86_64"),
    ({"img_hv_type": "qemu"}, {}, None),
    ({"img_hv_type": "kvm"}, {}, None),  # libvirt reports QEMU for KVM guests too
    ({"img_hv_type": "kvm"}, {"hypervisor_type": "test"},
     "image needs hypervisor kvm, host runs test"),
    ({"img_hv_type": "xapi"}, {"hypervisor_type": "Xen"}, None),
    ({"img_hv_type": "xen"}, {}, "image needs hypervisor xen, host runs QEMU"),
    ({"hypervisor_version_requires": ">= 8000000"}, {}, None),
    ({"hypervisor_version_requires": ">= 9000000"}, {},
     "image needs hypervisor version '>= 9000000', host has 8002000"),
    ({"hypervisor_version_requires": ">= 9000000"}, {"hypervisor_version": 0}, None),
    ({"img_hv_requested_version": ">= 9000000"}, {},
     "image needs hypervisor version '>= 9000000', host has 8002000"),
    ({"hypervisor_version_requires": ">= eight"}, {},
     "image needs hypervisor version '>= eight', host has 8002000"),
    ({"hw_architecture": "x86_64", "img_hv_type": "QEMU",
      "hypervisor_version_requires": "<= 8002000"}, {}, None),
])
def test_image_properties(properties, host_fields, reason):
    assert check(ImagePropertiesFilter, host(**host_fields), spec(properties=properties)) == reason


# -- ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter -----------------------


def group(policy: str, *hosts: str) -> ServerGroupInfo:
    return ServerGroupInfo(uuid="g-1", name="web", policy=policy, hosts=frozenset(hosts))


def test_affinity_keeps_members_together():
    s = spec(group=group("affinity", "h2", "h1"))
    assert check(ServerGroupAffinityFilter, host("h1"), s) is None
    assert (check(ServerGroupAffinityFilter, host("h3"), s)
            == "server group 'web' (affinity) has its members on h1, h2")


def test_affinity_first_member_goes_anywhere():
    assert check(ServerGroupAffinityFilter, host("h3"), spec(group=group("affinity"))) is None


def test_anti_affinity_keeps_members_apart():
    s = spec(group=group("anti-affinity", "h1"))
    assert (check(ServerGroupAntiAffinityFilter, host("h1"), s)
            == "server group 'web' (anti-affinity) already has a member here")
    assert check(ServerGroupAntiAffinityFilter, host("h2"), s) is None


@pytest.mark.parametrize("cls", [ServerGroupAffinityFilter, ServerGroupAntiAffinityFilter])
def test_group_filters_ignore_other_policies_and_no_group(cls):
    other = "anti-affinity" if cls is ServerGroupAffinityFilter else "affinity"
    for s in (spec(), spec(group=group(other, "h1", "h2"))):
        assert check(cls, host("h1"), s) is None
        assert check(cls, host("h3"), s) is None


# -- AggregateInstanceExtraSpecsFilter ----------------------------------------------

SSD = {"aggregate_instance_extra_specs:ssd": "true"}


def test_aggregate_specs_without_aggregates():
    assert check(AggregateInstanceExtraSpecsFilter, host(), spec()) is None
    assert check(AggregateInstanceExtraSpecsFilter, host(),
                 spec(extra_specs={"hw:cpu_policy": "dedicated"})) is None
    assert (check(AggregateInstanceExtraSpecsFilter, host(), spec(extra_specs=SSD))
            == "aggregate_instance_extra_specs:ssd requires 'true', "
               "no aggregate of the host has ssd")


def test_aggregate_value_must_match():
    h = host(aggregates=[{"ssd": "true"}])
    assert check(AggregateInstanceExtraSpecsFilter, h, spec(extra_specs=SSD)) is None
    h = host(aggregates=[{"ssd": "false"}])
    assert (check(AggregateInstanceExtraSpecsFilter, h, spec(extra_specs=SSD))
            == "aggregate_instance_extra_specs:ssd requires 'true', "
               "host's aggregates have ssd = false")


def test_aggregate_values_are_unioned_over_aggregates_and_commas():
    h = host(aggregates=[{"tier": "bronze", "availability_zone": "az1"},
                         {"tier": "silver, gold"}])
    for tier in ("bronze", "silver", "gold", "<or> platinum <or> gold"):
        s = spec(extra_specs={"aggregate_instance_extra_specs:tier": tier})
        assert check(AggregateInstanceExtraSpecsFilter, h, s) is None
    s = spec(extra_specs={"aggregate_instance_extra_specs:tier": "platinum"})
    assert (check(AggregateInstanceExtraSpecsFilter, h, s)
            == "aggregate_instance_extra_specs:tier requires 'platinum', "
               "host's aggregates have tier = bronze, gold, silver")


def test_aggregate_operators_and_unscoped_keys():
    h = host(aggregates=[{"cores": "32", "ssd": "true"}])
    assert check(AggregateInstanceExtraSpecsFilter, h,
                 spec(extra_specs={"aggregate_instance_extra_specs:cores": "= 16"})) is None
    assert check(AggregateInstanceExtraSpecsFilter, h,
                 spec(extra_specs={"aggregate_instance_extra_specs:cores": "= 64"})) is not None
    # As in Nova, a key without a scope must be in the aggregates too.
    assert check(AggregateInstanceExtraSpecsFilter, h, spec(extra_specs={"ssd": "true"})) is None
    assert (check(AggregateInstanceExtraSpecsFilter, h, spec(extra_specs={"gpu": "true"}))
            == "gpu requires 'true', no aggregate of the host has gpu")
