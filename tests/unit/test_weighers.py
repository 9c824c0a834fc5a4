"""The resource weighers on hosts built in the test (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.host_state import HostState
from scheduler.request_spec import RequestSpec, ServerGroupInfo
from scheduler.weights import BaseHostWeigher, all_weighers, normalize
from scheduler.weights.affinity import (
    ServerGroupSoftAffinityWeigher,
    ServerGroupSoftAntiAffinityWeigher,
)
from scheduler.weights.resources import CPUWeigher, DiskWeigher, RAMWeigher
from vmflow.config import Config


def host(name: str, **fields: Any) -> HostState:
    """An empty x86_64 host: 4 vCPUs, 4096 MB, 40 GB, allocation ratios 1."""
    values: dict[str, Any] = dict(
        host=name, vcpus=4, memory_mb=4096, local_gb=40, vcpus_used=0, memory_mb_used=0,
        local_gb_used=0, cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0,
        disk_allocation_ratio=1.0, cpu_arch="x86_64", hypervisor_type="QEMU")
    values.update(fields)
    return HostState(**values)


SPEC = RequestSpec(instance_uuid="u-1", project_id="p-1",
                   flavor={"vcpus": 1, "memory_mb": 512, "root_gb": 1}, image={})


def best(weighers: list[BaseHostWeigher], hosts: list[HostState]) -> str:
    """The winning host as the scheduler picks it: normalised, multiplied, summed."""
    totals = [0.0] * len(hosts)
    for w in weighers:
        for i, score in enumerate(normalize([w.weigh(h, SPEC) for h in hosts])):
            totals[i] += w.multiplier() * score
    return hosts[totals.index(max(totals))].host


def test_all_weighers_are_the_resource_and_soft_group_weighers():
    assert all_weighers() == {"RAMWeigher": RAMWeigher, "CPUWeigher": CPUWeigher,
                              "DiskWeigher": DiskWeigher,
                              "ServerGroupSoftAffinityWeigher": ServerGroupSoftAffinityWeigher,
                              "ServerGroupSoftAntiAffinityWeigher":
                                  ServerGroupSoftAntiAffinityWeigher}


@pytest.mark.parametrize(("policy", "winner"), [
    ("soft-affinity", "with-member"), ("soft-anti-affinity", "empty")])
def test_soft_group_policies_prefer_hosts_but_refuse_none(policy, winner):
    """The member's host has a little less room; the soft preference outweighs it
    (or, anti, adds to it), and no host scores below zero: none is refused."""
    group = ServerGroupInfo(uuid="g", name="g", policy=policy, hosts=frozenset({"with-member"}))
    spec = RequestSpec(instance_uuid="u-2", project_id="p-1", flavor=SPEC.flavor, image={},
                       group=group)
    hosts = [host("with-member", memory_mb_used=512), host("empty")]
    weighers = [cls(Config()) for cls in (ServerGroupSoftAffinityWeigher,
                                          ServerGroupSoftAntiAffinityWeigher, RAMWeigher)]
    totals = [0.0, 0.0]
    for w in weighers:
        for i, score in enumerate(normalize([w.weigh(h, spec) for h in hosts])):
            totals[i] += w.multiplier() * score
    assert hosts[totals.index(max(totals))].host == winner
    unrelated = weighers[1] if policy == "soft-affinity" else weighers[0]
    assert [unrelated.weigh(h, spec) for h in hosts] == [0.0, 0.0]


@pytest.mark.parametrize(("cls", "fields", "score"), [
    (RAMWeigher, {"memory_mb_used": 1024}, 3072),
    (RAMWeigher, {"ram_allocation_ratio": 1.5, "memory_mb_used": 1024}, 5120),
    (RAMWeigher, {"ram_allocation_ratio": 1.0, "memory_mb_used": 5120}, -1024),
    (CPUWeigher, {"vcpus_used": 3}, 1),
    (CPUWeigher, {"cpu_allocation_ratio": 16.0, "vcpus_used": 10}, 54),
    (CPUWeigher, {"vcpus_used": 6}, -2),
    (DiskWeigher, {"local_gb_used": 15}, 25),
    (DiskWeigher, {"disk_allocation_ratio": 2.0, "local_gb_used": 15}, 65),
])
def test_score_is_free_capacity_even_when_negative(cls, fields, score):
    assert cls(Config()).weigh(host("h", **fields), SPEC) == score


@pytest.mark.parametrize(("cls", "option"), [
    (RAMWeigher, "ram_weight_multiplier"),
    (CPUWeigher, "cpu_weight_multiplier"),
    (DiskWeigher, "disk_weight_multiplier"),
])
def test_multiplier_comes_from_configuration(cls, option):
    assert cls(Config()).multiplier() == 1.0
    assert cls(Config(**{option: -2.5})).multiplier() == -2.5


def test_positive_multiplier_spreads_negative_stacks():
    hosts = [host("busy", memory_mb_used=3072), host("idle"), host("half", memory_mb_used=2048)]
    assert best([RAMWeigher(Config())], hosts) == "idle"
    assert best([RAMWeigher(Config(ram_weight_multiplier=-1.0))], hosts) == "busy"


def test_weighers_combine_by_multiplier():
    # "ram" has the most free RAM, "cpu" the most free vCPUs and disk.
    hosts = [host("ram", vcpus_used=3, local_gb_used=30),
             host("cpu", memory_mb_used=2048)]
    weighers = [cls(Config()) for cls in (RAMWeigher, CPUWeigher, DiskWeigher)]
    assert best(weighers, hosts) == "cpu"
    config = Config(ram_weight_multiplier=3.0)
    assert best([cls(config) for cls in (RAMWeigher, CPUWeigher, DiskWeigher)], hosts) == "ram"
