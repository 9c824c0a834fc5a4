"""The filter scheduler over hosts built in the test: order, weights, decisions."""

from __future__ import annotations

import pytest

from scheduler.host_state import HostState
from scheduler.manager import Scheduler
from scheduler.request_spec import RequestSpec
from vmflow import config, exception
from vmflow.db.claims import Resources


class FixedHosts:
    def __init__(self, hosts):
        self.hosts = hosts

    def snapshot(self):
        return list(self.hosts)


def host(name, *, vcpus=4, ram=4096, disk=40, used=(0, 0, 0), up=True, enabled=True,
         ratios=(1.0, 1.0, 1.0), zone="nova"):
    return HostState(host=name, vcpus=vcpus, memory_mb=ram, local_gb=disk, vcpus_used=used[0],
                     memory_mb_used=used[1], local_gb_used=used[2],
                     cpu_allocation_ratio=ratios[0], ram_allocation_ratio=ratios[1],
                     disk_allocation_ratio=ratios[2], cpu_arch="x86_64",
                     hypervisor_type="QEMU", up=up, enabled=enabled, availability_zone=zone)


def spec(**kw):
    values = {"instance_uuid": "i", "project_id": "p",
              "flavor": {"vcpus": 1, "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0,
                         "extra_specs": {}},
              "image": {"properties": {}}}
    values.update(kw)
    return RequestSpec(**values)


def scheduler(hosts, **settings):
    return Scheduler(FixedHosts(hosts), config.load(None, data_dir="/nonexistent", **settings))


def test_spreads_by_free_ram_by_default():
    sched = scheduler([host("a", used=(0, 2048, 0)), host("b"), host("c", used=(0, 1024, 0))])
    candidates, decision = sched.select(spec())
    assert candidates == ["b", "c", "a"]
    assert decision.weights["b"] > decision.weights["c"] > decision.weights["a"]


def test_negative_ram_multiplier_stacks():
    sched = scheduler([host("a", used=(0, 2048, 0)), host("b"), host("c", used=(0, 1024, 0))],
                      ram_weight_multiplier=-1.0)
    assert sched.select(spec())[0] == ["a", "c", "b"]


def test_decision_records_every_rejection_and_names_the_last_filter():
    sched = scheduler([host("down", up=False), host("off", enabled=False), host("tried"),
                       host("full", used=(0, 4000, 0)), host("ok")])
    candidates, decision = sched.select(spec(tried_hosts=frozenset({"tried"})))
    assert candidates == ["ok"]
    by_name = {s.name: s for s in decision.steps}
    assert by_name["RetryFilter"].rejected == {"tried": "already tried for this request"}
    assert set(by_name["ComputeFilter"].rejected) == {"down", "off"}
    assert set(by_name["RamFilter"].rejected) == {"full"}
    assert any("RamFilter" in line and "full" in line for line in decision.lines())

    with pytest.raises(exception.NoValidHost) as err:
        sched.select(spec(tried_hosts=frozenset({"tried", "ok"})))
    assert "RamFilter eliminated the last 1 host(s) (full:" in str(err.value)


def test_enabled_filters_come_from_config():
    sched = scheduler([host("down", up=False)], enabled_filters=["RetryFilter"])
    assert sched.select(spec())[0] == ["down"]
    with pytest.raises(ValueError, match="NoSuchFilter"):
        scheduler([], enabled_filters=["NoSuchFilter"])
    with pytest.raises(ValueError, match="RamFilter"):
        scheduler([], available_filters=["RetryFilter"], enabled_filters=["RamFilter"])


def test_host_subset_size_picks_among_the_best():
    hosts = [host(f"h{i}", used=(0, i * 100, 0)) for i in range(6)]
    sched = scheduler(hosts, host_subset_size=3)
    firsts = {sched.select(spec())[0][0] for _ in range(200)}
    assert firsts == {"h0", "h1", "h2"}


def test_chance_driver_skips_down_and_tried_hosts():
    sched = scheduler([host("down", up=False), host("tried"), host("a"), host("b")],
                      scheduler_driver="chance")
    seen = {sched.select(spec(tried_hosts=frozenset({"tried"})))[0][0] for _ in range(100)}
    assert seen == {"a", "b"}


def test_candidates_are_capped():
    sched = Scheduler(FixedHosts([host(f"h{i:02}") for i in range(30)]),
                      config.load(None, data_dir="/nonexistent"), max_candidates=5)
    assert len(sched.select(spec())[0]) == 5


class ReloadingHosts(FixedHosts):
    """Like HostStateCache: a new generation whenever the hosts are reloaded."""

    generation = 0

    def reload(self, hosts):
        self.hosts = hosts
        self.generation += 1


def test_cached_verdicts_follow_reloads_of_host_state():
    view = ReloadingHosts([host("a", zone="az-1"), host("b", zone="az-2")])
    sched = Scheduler(view, config.load(None, data_dir="/nonexistent"))
    assert sched.select(spec(availability_zone="az-1"))[0] == ["a"]
    view.reload([host("a", zone="az-2"), host("b", zone="az-1")])  # hosts moved zones
    assert sched.select(spec(availability_zone="az-1"))[0] == ["b"]


def test_a_reload_that_changes_only_usage_is_seen_at_once():
    class CountedLoads(FixedHosts):  # like HostStateCache: new objects on every load
        generation = loads = 0

    view = CountedLoads([host("a"), host("b", used=(0, 1024, 0))])
    sched = Scheduler(view, config.load(None, data_dir="/nonexistent"))
    assert sched.select(spec(availability_zone="nova"))[0] == ["a", "b"]
    view.hosts = [host("a", used=(0, 4096, 0)), host("b", used=(0, 1024, 0))]
    view.loads += 1  # same zones and services: the generation stays
    candidates, decision = sched.select(spec(availability_zone="nova"))
    assert candidates == ["b"]
    assert decision.steps[0].name == "AvailabilityZoneFilter"
    assert "a" in next(s for s in decision.steps if s.name == "RamFilter").rejected


def test_usage_dependent_capabilities_are_never_cached():
    hosts = [host("a"), host("b", used=(3, 0, 0))]
    sched = scheduler(hosts)
    busy = spec(flavor={"vcpus": 1, "memory_mb": 512, "root_gb": 1, "ephemeral_gb": 0,
                        "extra_specs": {"capabilities:vcpus_used": "<= 1"}})
    assert sched.select(busy)[0] == ["a"]
    hosts[0].consume(Resources(3, 0, 0))  # usage changed, no reload
    hosts[1].consume(Resources(3, 0, 0), sign=-1)
    assert sched.select(busy)[0] == ["b"]


def test_host_state_generation_moves_only_when_static_attributes_change(db):
    from sqlalchemy import update

    from scheduler.host_state import HostStateCache
    from vmflow.db import aggregates as aggregates_db
    from vmflow.db import hosts as hosts_db
    from vmflow.db.models import ComputeNode

    with db.write() as session:
        hosts_db.report_node(session, "h1", {"hypervisor_hostname": "h1",
                                             "hypervisor_type": "QEMU", "vcpus": 4,
                                             "memory_mb": 4096, "local_gb": 40},
                             {"cpu_allocation_ratio": 1.0, "ram_allocation_ratio": 1.0,
                              "disk_allocation_ratio": 1.0})
        hosts_db.heartbeat(session, "vmflow-compute", "h1")
    cache = HostStateCache(db, refresh_interval=0)
    cache.snapshot()
    first = cache.generation
    with db.write() as session:  # usage changes: same generation
        session.execute(update(ComputeNode).values(vcpus_used=2))
    assert cache.snapshot()[0].vcpus_used == 2 and cache.generation == first
    with db.write() as session:  # a zone appears: new generation
        agg = aggregates_db.create(session, "a", "az-x")
        aggregates_db.add_host(session, agg, "h1")
    assert cache.snapshot()[0].availability_zone == "az-x" and cache.generation == first + 1
