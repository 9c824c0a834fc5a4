"""Real pieces for task-level tests: a database (SQLite and PostgreSQL), libvirt
test-driver hosts, and a compute client that calls the hosts' managers directly
(the same ComputeManager the Celery task calls, minus the broker)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from flows import launch
from flows.base import Services
from scheduler.host_state import HostStateCache
from scheduler.manager import Scheduler
from vmflow import config as config_mod
from vmflow import exception
from vmflow.db import catalog
from vmflow.db import hosts as hosts_db
from workers.compute import ComputeManager, make_driver


class DirectCompute:
    """``ComputeClient.call`` without Celery: same manager, same error mapping."""

    def __init__(self, managers: dict[str, ComputeManager]) -> None:
        self.managers = managers

    def call(self, host: str, method: str, **kwargs: Any) -> Any:
        try:
            return self.managers[host].dispatch(method, kwargs)
        except Exception as err:
            raise exception.HypervisorError(host=host, step=method,
                                            reason=f"{type(err).__name__}: {err}") from err


@pytest.fixture
def cfg(tmp_path: Path) -> config_mod.Config:
    return config_mod.load(None, data_dir=tmp_path / "data", host_count=2, host_vcpus=4,
                           host_memory_mb=4096, host_disk_gb=40, cpu_allocation_ratio=1.0,
                           ram_allocation_ratio=1.0)


@pytest.fixture
def managers(cfg) -> dict[str, ComputeManager]:
    result = {h.name: ComputeManager(h.name, make_driver(cfg, h)) for h in cfg.compute_hosts()}
    yield result
    for manager in result.values():
        manager.driver.close()


@pytest.fixture
def services(cfg, db, managers) -> Services:
    ratios = {"cpu_allocation_ratio": 1.0, "ram_allocation_ratio": 1.0,
              "disk_allocation_ratio": 1.0}
    with db.write() as session:
        for host, manager in managers.items():
            hosts_db.report_node(session, host, manager.driver.host_report(), ratios)
            hosts_db.heartbeat(session, "vmflow-compute", host)
    return Services(config=cfg, db=db, compute=DirectCompute(managers),
                    scheduler=Scheduler(HostStateCache(db), cfg))


@pytest.fixture
def image(db) -> dict[str, Any]:
    with db.read() as session:
        return catalog.image_dict(catalog.list_images(session)[0])


@pytest.fixture
def flavor(db) -> dict[str, Any]:
    with db.read() as session:
        return catalog.flavor_dict(catalog.get_flavor(session, "1"))


@pytest.fixture
def running_instance(services, flavor, image) -> str:
    """An instance launched on compute-1 by the launch tasks themselves."""
    uid = str(uuid.uuid4())
    req = {"name": "vm", "flavor_ref": "1", "image_ref": image["id"], "project_id": "p",
           "user_id": "u"}
    launch.CreateInstanceRecord(services, "c").execute(uid, req, flavor, image)
    host = launch.ClaimResources(services, "claim").execute(uid, req, flavor, ["compute-1"])
    launch.CreateDisk(services, "d").execute(uid, host, image, flavor)
    launch.DefineDomain(services, "def").execute(uid, host, req, flavor)
    launch.PowerOn(services, "on").execute(uid, host)
    launch.MarkActive(services, "a").execute(uid, host)
    return uid
