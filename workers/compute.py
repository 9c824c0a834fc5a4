"""The compute service: one per host, the only code that touches a hypervisor.

It never opens the database.  It learns what to do from messages on its host's
routing key and tells the conductor what it has (resource reports, heartbeats)
through the conductor's queue.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery

from virt import hostd
from virt.driver import ComputeDriver
from virt.libvirt_driver import LibvirtDriver, simulated_host_uri
from vmflow import exception
from vmflow.config import Config, HostConfig
from vmflow.faults import crash
from workers.rpc import COMMAND_HEADER, COMPUTE_TASK

LOG = logging.getLogger(__name__)

REPORT_TASK = "vmflow.conductor.report_host"
CHECK_COMMAND_TASK = "vmflow.conductor.check_command"
RATIOS = ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio")
COMPUTE_BINARY = "vmflow-compute"
LOCK_STRIPES = 64
# How many flow runs' latest lease epochs a host remembers.
REMEMBERED_FLOWS = 4096


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
        "export_disk", "import_disk", "delete_export",
        "disk_exists", "live_migration_uri", "live_migration_start",
        "live_migration_progress", "live_migration_abort", "live_migration_force_complete",
        "set_disk_aside",
        "create_disk_from_snapshot",
        "adopt_disk", "return_disk",
    })
    # Steps named differently from the driver method they run.
    _DRIVER_METHODS = {"prepare_image": "ensure_image_cached"}

    def __init__(self, host: str, driver: ComputeDriver, inject_failure: str = "",
                 inject_crash: str = "") -> None:
        self.host = host
        self.driver = driver
        self._inject = inject_failure
        # Crash tests: "compute.<method or flow step>:before" or ":after" ends
        # this process there.
        self._crash = inject_crash if inject_crash.startswith("compute.") else ""
        # Striped: a fixed set of locks, an instance always maps to the same one.
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def _instance_lock(self, instance_uuid: str) -> threading.Lock:
        return self._locks[hash(instance_uuid) % LOCK_STRIPES]

    def dispatch(self, method: str, kwargs: dict[str, Any], step: str | None = None) -> Any:
        """Run one step (``step``: the flow step that sent it, if any); steps on
        the same instance run one at a time (a delete tearing a guest down while
        a failed launch reverts it, say)."""
        if method not in self.STEPS:
            raise exception.Invalid(f"unknown compute step {method!r}")
        if self._inject in (method, "*"):
            raise exception.HypervisorError(host=self.host, step=method,
                                            reason="failure injected by configuration")
        run = getattr(self.driver, self._DRIVER_METHODS.get(method, method))
        self._maybe_crash(method, step, "before")
        instance_uuid = kwargs.get("instance_uuid") or (kwargs.get("instance") or {}).get("uuid")
        if not instance_uuid:
            result = run(**kwargs)
        else:
            with self._instance_lock(instance_uuid):
                result = run(**kwargs)
        self._maybe_crash(method, step, "after")
        return result

    def _maybe_crash(self, method: str, step: str | None, when: str) -> None:
        """Crash tests name the point by the compute step (``compute.power_on:after``)
        or by the flow step that sent it (``compute.reboot.wait-for-running:before``)."""
        if self._crash in (f"compute.{method}:{when}", f"compute.{step}:{when}"):
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
        # Hosts whose first report (which asks the conductor to reconcile) is sent.
        self._reported: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        register_compute_task(app, self.managers, CommandGate(app, cfg))

    def report(self) -> None:
        """Send each host's capacity and its guests' power states to the conductor
        (also the host's heartbeat).  The conductor compares the power states
        with the database: Nova's power-state sync, without database access here.
        The first report of each host says it is starting: the conductor then
        resolves that host's instances stuck in an operation nobody drives."""
        for host, manager in self.managers.items():
            taken_at = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
            report = dict(manager.driver.host_report(), allocation_ratios=self._ratios[host],
                          power_states=manager.driver.power_states(), taken_at=taken_at,
                          starting=host not in self._reported)
            self.app.send_task(REPORT_TASK, args=[host, report])
            self._reported.add(host)

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


class CommandGate:
    """Decides whether a host may act on a command (reliability: per-host queues).

    A command carries when it was sent, until when it may be acted on, and the
    flow run and lease epoch it was sent for (``workers.rpc``).  It is refused
    when it has expired; when a newer epoch of the same flow run has been
    seen here (a conductor that lost its lease still sending); and, when it is
    old (``host_command_fresh_seconds``) or delivered again, unless the
    conductor confirms that its operation is still under way at that epoch and
    its instance lives on this host (or holds a claim here).  Commands sent
    outside a flow (reads, clean-ups from the reports) pass on expiry alone.
    """

    def __init__(self, app: Celery, cfg: Config) -> None:
        self.app = app
        self.fresh_for = cfg.host_command_fresh_seconds
        self.check_timeout = cfg.compute_rpc_timeout / 2
        self._epochs: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._lock = threading.Lock()

    def refusal(self, host: str, kwargs: dict[str, Any], command: dict[str, Any] | None,
                redelivered: bool = False) -> str | None:
        """Why the host must not act on this command, or None."""
        if not isinstance(command, dict):
            return None  # a message from before commands were stamped: expiry applies
        now = time.time()
        if now > float(command.get("expires_at") or now + 1):
            return "it has expired"
        flow_id, epoch = command.get("flow_id"), command.get("epoch")
        if flow_id is None or epoch is None:
            return None
        with self._lock:
            seen = self._epochs.get(flow_id, -1)
            if epoch < seen:
                return f"its operation is driven at epoch {seen} now, not {epoch}"
            self._epochs[flow_id] = epoch
            self._epochs.move_to_end(flow_id)
            while len(self._epochs) > REMEMBERED_FLOWS:
                self._epochs.popitem(last=False)
        if not redelivered and now - float(command.get("sent_at") or now) < self.fresh_for:
            return None
        instance_uuid = kwargs.get("instance_uuid") or (kwargs.get("instance") or {}).get("uuid")
        try:
            answer = self.app.send_task(CHECK_COMMAND_TASK,
                                        args=[flow_id, epoch, instance_uuid, host]).get(
                timeout=self.check_timeout, disable_sync_subtasks=False)
        except Exception as err:  # no conductor to confirm: do not act
            return f"the conductor could not confirm it ({type(err).__name__})"
        return None if answer.get("ok") else answer.get("reason") or "refused"


def register_compute_task(app: Celery, managers: dict[str, ComputeManager],
                          gate: CommandGate) -> None:
    @app.task(name=COMPUTE_TASK, acks_late=True, shared=False, bind=True)
    def compute_call(task, host: str, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        manager = managers.get(host)
        if manager is None:
            LOG.error("rejected %s for host %s: not served by this worker", method, host)
            return {"ok": False, "error": f"host {host} is not served by this worker"}
        kwargs = kwargs if isinstance(kwargs, dict) else {}
        command = task.request.get(COMMAND_HEADER)
        refusal = gate.refusal(host, kwargs, command,
                               bool((task.request.delivery_info or {}).get("redelivered")))
        if refusal:
            LOG.warning("refused %s on %s: %s", method, host, refusal)
            return {"ok": False, "error": f"refused by host {host}: {refusal}"}
        step = command.get("step") if isinstance(command, dict) else None
        LOG.info("compute step %s on %s%s", method, host, f" for {step}" if step else "")
        try:
            result = manager.dispatch(method, kwargs, step)
        except Exception as err:
            LOG.warning("compute step %s on %s failed: %s", method, host, err)
            return {"ok": False, "error": f"{type(err).__name__}: {err}"}
        return {"ok": True, "result": result}
