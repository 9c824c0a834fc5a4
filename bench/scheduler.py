"""Time one scheduling decision with every filter enabled, at 100 to 10,000 hosts.

Hosts are built in memory with varied usage, zones, aggregates and
capabilities, so every filter has work to do; each iteration schedules a
request with a zone, a server group (anti-affinity), flavor extra specs and
image properties, like a busy cloud would.

    python bench/scheduler.py [--hosts 100 1000 10000] [--iterations 300]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

# This file is named like the package it measures: keep its own folder off the
# import path so that `import scheduler` finds the package, not this script.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

from scheduler.filters import all_filters  # noqa: E402 (after the path fix above)
from scheduler.host_state import HostState  # noqa: E402
from scheduler.manager import Scheduler  # noqa: E402
from scheduler.request_spec import RequestSpec, ServerGroupInfo  # noqa: E402
from vmflow import config  # noqa: E402


class FixedHosts:
    """The scheduler's host view, already in memory (as between refreshes).

    ``loads`` counts reloads as HostStateCache does; bumping it makes the next
    decision pay what the first one after a real reload pays."""

    def __init__(self, hosts: list[HostState]) -> None:
        self.hosts = hosts
        self.generation = 0
        self.loads = 0

    def snapshot(self) -> list[HostState]:
        return self.hosts


def make_hosts(count: int, rng: random.Random) -> list[HostState]:
    hosts = []
    for i in range(count):
        hosts.append(HostState(
            host=f"compute-{i}", vcpus=32, memory_mb=131072, local_gb=2000,
            vcpus_used=rng.randrange(0, 400), memory_mb_used=rng.randrange(0, 190000),
            local_gb_used=rng.randrange(0, 1990), cpu_allocation_ratio=16.0,
            ram_allocation_ratio=1.5, disk_allocation_ratio=1.0,
            cpu_arch="x86_64" if i % 10 else "aarch64", hypervisor_type="QEMU",
            hypervisor_version=8002000, enabled=i % 50 != 0, up=i % 97 != 0,
            availability_zone="az-1" if i % 2 else "az-2",
            aggregates=[{"availability_zone": "az-1" if i % 2 else "az-2",
                         "ssd": "true" if i % 3 else "false"}]))
    return hosts


def make_spec(count: int, rng: random.Random) -> RequestSpec:
    members = frozenset(f"compute-{rng.randrange(count)}" for _ in range(5))
    return RequestSpec(
        instance_uuid="bench", project_id="p",
        flavor={"vcpus": 2, "memory_mb": 4096, "root_gb": 20, "ephemeral_gb": 0,
                "extra_specs": {"capabilities:cpu_arch": "s== x86_64",
                                "aggregate_instance_extra_specs:ssd": "true"}},
        image={"properties": {"hw_architecture": "x86_64", "img_hv_type": "qemu",
                              "hypervisor_version_requires": ">= 8000000"}},
        availability_zone="az-1",
        tried_hosts=frozenset({f"compute-{rng.randrange(count)}"}),
        group=ServerGroupInfo(uuid="g", name="g", policy="anti-affinity", hosts=members))


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[max(0, int(len(ordered) * q) - 1)]


def measure(count: int, iterations: int) -> tuple[float, float, float]:
    """p50 and p99 of a decision between reloads, and p50 of the first decision
    after a reload (once a second in a running cloud: the host view's refresh)."""
    rng = random.Random(count)
    # All of them: the defaults, with the aggregate filter among the cached ones.
    filters = list(config.DEFAULT_FILTERS)
    filters.insert(filters.index("RetryFilter"), "AggregateInstanceExtraSpecsFilter")
    cfg = config.load(None, data_dir="/nonexistent", enabled_filters=filters)
    view = FixedHosts(make_hosts(count, rng))
    sched = Scheduler(view, cfg)
    specs = [make_spec(count, rng) for _ in range(iterations)]
    for spec in specs[:20]:  # warm up
        sched.select(spec)
    warm = []
    for spec in specs:
        t0 = time.perf_counter()
        sched.select(spec)
        warm.append(time.perf_counter() - t0)
    cold = []
    for spec in specs[: max(20, iterations // 10)]:
        view.loads += 1
        t0 = time.perf_counter()
        sched.select(spec)
        cold.append(time.perf_counter() - t0)
    return statistics.median(warm), percentile(warm, 0.99), statistics.median(cold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    print(f"{'hosts':>7} {'p50 ms':>9} {'p99 ms':>9} {'after reload p50 ms':>20}  "
          f"(all {len(all_filters())} filters, 3 weighers, {args.iterations} decisions)")
    for count in args.hosts:
        p50, p99, cold = measure(count, args.iterations)
        print(f"{count:7d} {p50 * 1000:9.3f} {p99 * 1000:9.3f} {cold * 1000:20.3f}")


if __name__ == "__main__":
    main()
