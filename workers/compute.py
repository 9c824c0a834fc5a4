"""The compute service: one per host, the only code that touches a hypervisor.

It never opens the database.  It learns what to do from messages on its host's
routing key and tells the conductor what it has (resource reports, heartbeats)
through the conductor's queue.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path
from typing import Any

from celery import Celery

from virt import hostd
from virt.driver import ComputeDriver
from virt.libvirt_driver import LibvirtDriver, simulated_host_uri
from vmflow import exception
from vmflow.config import Config, HostConfig
from vmflow.faults import crash
from workers.rpc import COMPUTE_TASK

LOG = logging.getLogger(__name__)

REPORT_TASK = "vmflow.conductor.report_host"
RATIOS = ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio")
COMPUTE_BINARY = "vmflow-compute"
LOCK_STRIPES = 64


class ComputeManager:
    """The steps one host performs: methods of its driver, each idempotent (see
    ``virt.driver``), taking and returning plain data."""

    STEPS = frozenset({
        "host_report", "prepare_image", "create_disk", "delete_disks", "define", "undefine",
        "power_on", "power_off", "power_state", "list_instances",
        "shutdown", "pause", "unpause", "suspend", "resume", "power_states",
        "snapshot_disk", "delete_snapshot", "rebuild_disk", "restore_disk", "discard_old_disk",
        "create_rescue_disk", "define_rescue", "define_normal", "delete_rescue_disk",
        "domain_disks", "disk_checksum", "console_output", "diagnostics",
    })
    # Steps named differently from the driver method they run.
    _DRIVER_METHODS = {"prepare_image": "ensure_image_cached"}

    def __init__(self, host: str, driver: ComputeDriver, inject_failure: str = "",
                 inject_crash: str = "") -> None:
        self.host = host
        self.driver = driver
        self._inject = inject_failure
        # Crash tests: "compute.<step>:before" or ":after" ends this process there.
        self._crash = inject_crash if inject_crash.startswith("compute.") else ""
        # Striped: a fixed set of locks, an instance always maps to the same one.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def _instance_lock(self, instance_uuid: str) -> threading.Lock:
        return self._locks[hash(instance_uuid) % LOCK_STRIPES]

    def dispatch(self, method: str, kwargs: dict[str, Any]) -> Any:
        """Run one step; steps on the same instance run one at a time (a delete
        tearing a guest down while a failed launch reverts it, say)."""
        if method not in self.STEPS:
            raise exception.Invalid(f"unknown compute step {method!r}")
        if self._inject in (method, "*"):
            raise exception.HypervisorError(host=self.host, step=method,
                                            reason="failure injected by configuration")
        step = getattr(self.driver, self._DRIVER_METHODS.get(method, method))
        self._maybe_crash(method, "before")
        instance_uuid = kwargs.get("instance_uuid") or (kwargs.get("instance") or {}).get("uuid")
        if not instance_uuid:
            result = step(**kwargs)
        else:
            with self._instance_lock(instance_uuid):
                result = step(**kwargs)
        self._maybe_crash(method, "after")
        return result

    def _maybe_crash(self, method: str, when: str) -> None:
        if self._crash == f"compute.{method}:{when}":
            crash(f"{self._crash} on {self.host}")


def make_driver(cfg: Config, host: HostConfig) -> LibvirtDriver:
    """The driver of ``host``: its libvirt URI, or a simulated host (in this
    process, or behind a daemon of its own that outlives this process, per
    ``simulated_hypervisor``)."""
    state_dir = Path(cfg.data_dir) / "hosts" / host.name
    capacity = None
    if host.uri:
        uri = host.uri
    elif cfg.simulated_hypervisor == "daemon":
        uri = hostd.ensure_running(state_dir)
        capacity = {"vcpus": host.vcpus, "memory_mb": host.memory_mb, "cpu_arch": host.arch}
    else:
        uri = simulated_host_uri(state_dir, vcpus=host.vcpus, memory_mb=host.memory_mb,
                                 arch=host.arch)
    return LibvirtDriver(host=host.name, uri=uri, state_dir=state_dir, disk_gb=host.disk_gb,
                         hypervisor_type=host.hypervisor_type,
                         hypervisor_version=host.hypervisor_version,
                         acpi_shutdown=host.acpi_shutdown, capacity=capacity)


class ComputeService:
    """The hosts this process serves, their Celery task and their reports."""

    def __init__(self, app: Celery, cfg: Config, hosts: list[HostConfig],
                 report_interval: float = 10.0) -> None:
        self.app = app
        self.cfg = cfg
        self.managers = {
            h.name: ComputeManager(h.name, make_driver(cfg, h), cfg.inject_failures.get(h.name, ""),
                                   cfg.inject_crash)
            for h in hosts
        }
        # Allocation ratios a host overrides for itself (reported with its capacity).
        self._ratios = {h.name: {k: getattr(h, k) for k in RATIOS if getattr(h, k) is not None}
                        for h in hosts}
        self._interval = report_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        register_compute_task(app, self.managers)

    def report(self) -> None:
        """Send each host's capacity and its guests' power states to the conductor
        (also the host's heartbeat).  The conductor compares the power states
        with the database: Nova's power-state sync, without database access here."""
        for host, manager in self.managers.items():
            taken_at = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
            report = dict(manager.driver.host_report(), allocation_ratios=self._ratios[host],
                          power_states=manager.driver.power_states(), taken_at=taken_at)
            self.app.send_task(REPORT_TASK, args=[host, report])

    def start(self) -> None:
        self.report()
        self._thread = threading.Thread(target=self._loop, name="compute-report", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.report()
            except Exception:  # the broker may be away; try again next period
                LOG.exception("resource report failed")

    def stop(self) -> None:
        self._stop.set()
        for manager in self.managers.values():
            manager.driver.close()


def register_compute_task(app: Celery, managers: dict[str, ComputeManager]) -> None:
    @app.task(name=COMPUTE_TASK, acks_late=True, shared=False)
    def compute_call(host: str, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        manager = managers.get(host)
        if manager is None:
            LOG.error("rejected %s for host %s: not served by this worker", method, host)
            return {"ok": False, "error": f"host {host} is not served by this worker"}
        LOG.info("compute step %s on %s", method, host)
        try:
            result = manager.dispatch(method, kwargs if isinstance(kwargs, dict) else {})
        except Exception as err:
            LOG.warning("compute step %s on %s failed: %s", method, host, err)
            return {"ok": False, "error": f"{type(err).__name__}: {err}"}
        return {"ok": True, "result": result}
