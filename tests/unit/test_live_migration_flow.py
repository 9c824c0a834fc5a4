"""Live migration's graph, its destination checks, the body of os-migrateLive per
microversion, and the driver's split between modelled and real migrations."""

from __future__ import annotations

import pytest
from flask import Flask, g
from taskflow import engines

import flows
from flows import live_migrate
from flows.base import Services
from virt.libvirt_driver import LibvirtDriver, simulated_host_uri
from vmflow import config, exception
from vmflow.db.models import ComputeNode, Instance
from webapp.api import live_migrations

STEPS = ["live_migrate.begin", "live_migrate.check-destination", "live_migrate.check-storage",
         "live_migrate.claim-target", "live_migrate.prepare-target",
         "live_migrate.transfer-memory", "live_migrate.switch-over", "live_migrate.finish"]
INPUTS = {"instance_uuid": "u", "migration_uuid": "m", "requested_host": None,
          "block_migration": None, "force": False}


def _flow():
    return live_migrate.get_flow(Services(config=config.Config(data_dir="/nonexistent"),
                                          db=None))


def test_graph_steps_in_order_and_wired():
    flow = _flow()
    assert flows.task_names(flow) == STEPS
    assert flows.FACTORIES["live_migrate"] is live_migrate.get_flow
    assert flow.requires == set(INPUTS)
    by_name = {t.name: t for t in flows.tasks(flow)}
    assert by_name["live_migrate.check-destination"].provides == {"dest"}
    assert by_name["live_migrate.check-storage"].provides == {"block"}
    assert by_name["live_migrate.prepare-target"].provides == {"dest_uri"}
    assert {"host", "dest", "dest_uri", "block", "before"} <= set(
        by_name["live_migrate.switch-over"].requires)
    engine = engines.load(flow, store=INPUTS, engine="serial")
    engine.compile()
    engine.prepare()
    engine.validate()


def _node(host: str, **kw) -> ComputeNode:
    values = dict(host=host, cpu_arch="x86_64", hypervisor_type="QEMU",
                  hypervisor_version=8002000, vcpus=4, memory_mb=2048, local_gb=10,
                  vcpus_used=0, memory_mb_used=0, local_gb_used=0, cpu_allocation_ratio=1.0,
                  ram_allocation_ratio=1.0, disk_allocation_ratio=1.0)
    values.update(kw)
    return ComputeNode(**values)


@pytest.mark.parametrize("dest, words", [
    (_node("b"), None),
    (_node("b", hypervisor_version=9000000), None),
    (_node("b", cpu_arch="aarch64"), "CPU architecture aarch64"),
    (_node("b", hypervisor_type="Xen"), "hypervisor type is Xen"),
    (_node("b", hypervisor_version=7000000), "7000000 is older than 8002000"),
])
def test_compatibility_with_the_source(dest, words):
    problem = live_migrate.compatibility_problem(_node("a"), dest)
    assert problem is None if words is None else words in problem


@pytest.mark.parametrize("used, words", [
    ({}, None),
    ({"memory_mb_used": 1800}, "not enough memory (free 248 MB, the flavor needs 512 MB)"),
    ({"local_gb_used": 10}, "not enough disk"),
    ({"vcpus_used": 4}, "not enough vCPUs"),
])
def test_room_for_the_flavor(used, words):
    instance = Instance(uuid="u", flavor={"vcpus": 1, "memory_mb": 512, "root_gb": 1})
    problem = live_migrate.room_problem(_node("b", **used), instance)
    assert problem is None if words is None else words in problem


@pytest.fixture
def at():
    app = Flask(__name__)

    def version(text: str):
        context = app.test_request_context()
        context.push()
        major, minor = text.split(".")
        g.api_version = (int(major), int(minor))
        return context

    contexts = []
    yield lambda text: contexts.append(version(text))
    for context in reversed(contexts):
        context.pop()


@pytest.mark.parametrize("version, body, parsed", [
    ("2.1", {"host": "h", "block_migration": "True", "disk_over_commit": "no"},
     {"host": "h", "block_migration": True, "force": False}),
    ("2.25", {"host": None, "block_migration": "auto"},
     {"host": None, "block_migration": None, "force": False}),
    ("2.30", {"host": "h", "block_migration": False, "force": "yes"},
     {"host": "h", "block_migration": False, "force": True}),
    ("2.68", {"host": "h", "block_migration": "auto"},
     {"host": "h", "block_migration": None, "force": False}),
])
def test_bodies_taken(at, version, body, parsed):
    at(version)
    assert live_migrations.parse(body) == parsed


@pytest.mark.parametrize("version, body", [
    ("2.1", {"host": "h", "block_migration": "auto", "disk_over_commit": False}),
    ("2.1", {"host": "h", "block_migration": "tRUe", "disk_over_commit": False}),
    ("2.25", {"host": "h", "block_migration": True, "disk_over_commit": False}),
    ("2.29", {"host": "h", "block_migration": True, "force": False}),
    ("2.30", {"host": "", "block_migration": True}),
    ("2.67", {"block_migration": True, "force": True, "host": None}),
    ("2.68", {"host": "h", "block_migration": True, "force": False}),
    ("2.25", ["h"]),
])
def test_bodies_refused(at, version, body):
    at(version)
    with pytest.raises(exception.Invalid):
        live_migrations.parse(body)


def test_simulated_hosts_are_moved_by_the_model(tmp_path):
    uri = simulated_host_uri(tmp_path / "h", vcpus=2, memory_mb=2048, arch="x86_64")
    driver = LibvirtDriver(host="h", uri=uri, state_dir=tmp_path / "h", disk_gb=10)
    try:
        assert driver.live_migration_uri() is None
        with pytest.raises(NotImplementedError):
            driver.live_migration_start("u", "qemu+tcp://elsewhere/system", True)
        assert driver.live_migration_progress("u")["state"] == "none"
        assert driver.disk_exists("u") is False
    finally:
        driver.close()
