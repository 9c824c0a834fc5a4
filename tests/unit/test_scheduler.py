"""The foundation's fit scheduler on hosts built in the test."""

from __future__ import annotations

import pytest

from scheduler.host_state import HostState
from scheduler.manager import Scheduler
from vmflow import exception
from vmflow.db.claims import Resources


class FixedHosts:
    def __init__(self, hosts):
        self.hosts = hosts

    def snapshot(self):
        return list(self.hosts)


def host(name, *, vcpus=4, ram=4096, disk=40, used=(0, 0, 0), up=True, enabled=True,
         ratios=(1.0, 1.0, 1.0)):
    return HostState(host=name, vcpus=vcpus, memory_mb=ram, local_gb=disk, vcpus_used=used[0],
                     memory_mb_used=used[1], local_gb_used=used[2],
                     cpu_allocation_ratio=ratios[0], ram_allocation_ratio=ratios[1],
                     disk_allocation_ratio=ratios[2], cpu_arch="x86_64",
                     hypervisor_type="QEMU", up=up, enabled=enabled)


TINY = Resources(1, 512, 1)


def test_spreads_by_free_ram():
    sched = Scheduler(FixedHosts([host("a", used=(0, 2048, 0)), host("b"),
                                  host("c", used=(0, 1024, 0))]))
    assert sched.select(TINY) == ["b", "c", "a"]


def test_rejects_down_disabled_tried_and_full_hosts_and_says_why():
    sched = Scheduler(FixedHosts([host("down", up=False), host("off", enabled=False),
                                  host("tried"), host("full", used=(4, 0, 0)),
                                  host("ok")]))
    assert sched.select(TINY, exclude={"tried"}) == ["ok"]
    with pytest.raises(exception.NoValidHost) as err:
        sched.select(TINY, exclude={"tried", "ok"})
    message = str(err.value)
    assert "0 of 5 hosts fit 1 vCPU, 512 MB RAM, 1 GB disk" in message
    for reason in ("compute service down: 1", "compute service disabled: 1",
                   "already tried: 2", "not enough vCPUs: 1"):
        assert reason in message


def test_allocation_ratio_admits_overcommit_and_no_more():
    sched = Scheduler(FixedHosts([host("a", ram=1024, used=(0, 1024, 0),
                                       ratios=(1.0, 1.5, 1.0))]))
    assert sched.select(Resources(1, 512, 1)) == ["a"]
    with pytest.raises(exception.NoValidHost, match="not enough RAM"):
        sched.select(Resources(1, 1024, 1))


def test_candidates_are_capped():
    sched = Scheduler(FixedHosts([host(f"h{i:02}") for i in range(30)]), max_candidates=5)
    assert len(sched.select(TINY)) == 5
