"""The conductor: runs flows, and does the database work of compute hosts.

Flows arrive as ``run_flow(flow_id)`` messages; the flow run's row says which
operation to rebuild and with what arguments, and TaskFlow continues from
whatever state the run's steps were persisted in.  Running a finished flow
again does nothing, so a redelivered message is harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from celery import Celery
from sqlalchemy import select
from taskflow import states as tf_states

import flows
from flows import engine as flow_engine
from flows import evacuate as evacuate_flow
from flows import migrate as migrate_flow
from flows import shelve as shelve_flow
from flows.base import Services
from scheduler.host_state import HostStateCache
from scheduler.manager import Scheduler
from vmflow import context, exception
from vmflow.config import Config
from vmflow.db import claims, leases, moves
from vmflow.db import hosts as hosts_db
from vmflow.db import instances as instances_db
from vmflow.db.flowstore import FlowStore
from vmflow.db.models import Allocation, FlowRun, Instance
from vmflow.db.session import Database
from vmflow.faults import crash
from vmflow.notifications import Notifier
from vmflow.states import power_state, task_states, vm_states
from workers.compute import CHECK_COMMAND_TASK, COMPUTE_BINARY, RATIOS, REPORT_TASK
from workers.rpc import ComputeClient

LOG = logging.getLogger(__name__)

RUN_FLOW_TASK = "vmflow.conductor.run_flow"
CONDUCTOR_BINARY = "vmflow-conductor"
# On a compute host's start, instances of that host held by an operation with
# no run for at least this long are resolved (the API records a run within
# moments of taking an instance's task_state).
STARTING_GRACE = 5.0
# Seconds between checks for operators' rollbacks of the runs driven here.
ROLLBACK_CHECK = 1.0
# Seconds between looks for resizes due for automatic confirmation.
CONFIRM_CHECK = 1.0


class Conductor:
    def __init__(self, app: Celery, cfg: Config, db: Database) -> None:
        self.app = app
        self.cfg = cfg
        self.db = db
        self.store = FlowStore(db)
        self.scheduler = Scheduler(
            HostStateCache(db, service_down_time=cfg.service_down_time,
                           default_zone=cfg.default_availability_zone), cfg)
        self.services = Services(config=cfg, db=db, compute=ComputeClient(app, cfg),
                                 scheduler=self.scheduler,
                                 notifier=Notifier(cfg, app, binary=CONDUCTOR_BINARY))
        self.hostname = socket.gethostname()
        # This conductor's name on the leases it holds (unique per process start).
        self.owner = f"{self.hostname}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        # Flow runs driven by this process right now, with their lease epoch: a
        # second message for the same run (a redelivery, a resume) must not
        # start a second engine, and these leases are renewed.
        self._running: dict[str, int | None] = {}
        self._running_lock = threading.Lock()
        # Per run driven here: set when an operator asks to roll it back.
        self._rollbacks: dict[str, threading.Event] = {}
        self._register_tasks()

    def _register_tasks(self) -> None:
        conductor = self

        @self.app.task(name=RUN_FLOW_TASK, acks_late=True, ignore_result=True, shared=False)
        def run_flow(flow_id: str) -> str | None:
            return conductor.run_flow(flow_id)

        @self.app.task(name=REPORT_TASK, acks_late=True, ignore_result=True, shared=False)
        def report_host(host: str, report: dict) -> None:
            conductor.report_host(host, report)

        @self.app.task(name=CHECK_COMMAND_TASK, shared=False)
        def check_command(flow_id: str, epoch: int, instance_uuid: str | None,
                          host: str) -> dict:
            problem = conductor.check_command(flow_id, epoch, instance_uuid, host)
            return {"ok": problem is None, "reason": problem}

    # -- flows ------------------------------------------------------------------------

    def run_flow(self, flow_id: str) -> str | None:
        """Drive a flow run to its end, if this conductor can take its lease;
        returns its final state (None if it is not this conductor's to drive)."""
        with self._running_lock:
            if flow_id in self._running:
                LOG.info("flow %s is already running here; duplicate message dropped", flow_id)
                return None
            self._running[flow_id] = None
        try:
            return self._run_flow(flow_id)
        finally:
            with self._running_lock:
                self._running.pop(flow_id, None)

    def _run_flow(self, flow_id: str) -> str | None:
        run = self.store.run_row(flow_id)
        if run is None:
            LOG.error("no flow run %s; message dropped", flow_id)
            return None
        if run.state in flow_engine.FINISHED:
            LOG.info("flow %s already %s; nothing to do", flow_id, run.state)
            return run.state
        with self.db.write() as session:
            taken = leases.claim(session, flow_id, self.owner, self.cfg.flow_lease_seconds)
        if taken is None:
            LOG.info("flow %s is driven by %s (lease until %s); message dropped", flow_id,
                     run.owner, run.lease_expires_at)
            return None
        epoch, attempts = taken
        rollback = threading.Event()
        if run.rollback_requested_at is not None:
            rollback.set()
        with self._running_lock:
            self._running[flow_id] = epoch
            self._rollbacks[flow_id] = rollback
        try:
            with context.request_id_scope(run.request_id), context.rollback_scope(rollback), \
                    context.flow_scope(flow_id, epoch):
                if attempts > self.cfg.max_flow_attempts:
                    return self._give_up(run, epoch, attempts)
                return self._drive(run, epoch, rollback)
        finally:
            with self._running_lock:
                self._rollbacks.pop(flow_id, None)
            try:
                with self.db.write() as session:
                    leases.release(session, flow_id, self.owner, epoch)
            except Exception as err:  # the database is away: the lease runs out instead
                LOG.warning("flow %s: could not release its lease (%s); it expires in %s s",
                            flow_id, type(err).__name__, self.cfg.flow_lease_seconds)

    def _drive(self, run: FlowRun, epoch: int, rollback: threading.Event) -> str | None:
        store = self.store.fenced(run.id, epoch)
        if run.state == tf_states.REVERTING:
            # Marked for operators while its reverts ran (flowstore.mark_reverting);
            # TaskFlow resumes a run left RUNNING, and finishes its reverts.
            with self.db.write() as session:
                leases.check(session, run.id, epoch)
                leases.set_state(session, run.id, tf_states.RUNNING)
        graph = flows.build(run.operation, self.services, run.params)
        detail = store.get_connection().get_flow_details(run.id)
        engine = flow_engine.load(store, graph, detail)
        if rollback.is_set():
            LOG.warning("flow %s (%s): rolling back at an operator's request", run.id,
                        run.operation)
            flow_engine.prepare_rollback(engine, store)
        if self.cfg.inject_crash.endswith(":after-save"):
            step = self.cfg.inject_crash.rsplit(":", 1)[0]
            engine.atom_notifier.register(tf_states.SUCCESS, lambda _state, details: (
                crash(step) if details.get("task_name") == step else None))
        LOG.info("running flow %s (%s) for instance %s, epoch %d", run.id, run.operation,
                 run.instance_uuid, epoch)
        try:
            engine.run()
        except Exception as err:
            if _caused_by(err, leases.LeaseLost):
                LOG.warning("flow %s: lease lost to another conductor; stopped here", run.id)
                return None
            # The flow's reverts have recorded the outcome (ERROR + fault).
            LOG.warning("flow %s (%s) reverted: %s", run.id, run.operation, err)
        state = engine.storage.get_flow_state()
        LOG.info("flow %s (%s) ended %s", run.id, run.operation, state)
        return state

    def _give_up(self, run: FlowRun, epoch: int, attempts: int) -> str:
        """A run whose conductors keep dying (a poison run) is not driven again:
        it ends FAILURE and its instance goes to ERROR with a fault; an
        operator may still roll it back (os-flows), which gives it a fresh
        budget of attempts."""
        problem = exception.GaveUp(operation=run.operation, attempts=attempts - 1)
        LOG.error("flow %s: %s", run.id, problem)
        note = None
        with self.db.write() as session:
            leases.check(session, run.id, epoch)
            leases.set_state(session, run.id, tf_states.FAILURE)
            instance = session.get(Instance, run.instance_uuid) if run.instance_uuid else None
            if instance is not None and not instance.deleted and instances_db.update_if(
                    session, instance.uuid, {"vm_state": vm_states.ERROR, "task_state": None},
                    expected_task_state=instance.task_state):
                instances_db.add_fault(session, instance.uuid, code=problem.code,
                                       message=str(problem), host=instance.host)
                session.refresh(instance)
                note = self.services.notifier.add(session, instance, run.operation, "error",
                                                  fault=str(problem))
        self.services.notifier.publish(note)
        return tf_states.FAILURE

    def resume_unfinished(self) -> int:
        """Enqueue every flow run that has not finished (after a restart)."""
        with self.db.read() as session:
            ids = list(session.scalars(select(FlowRun.id).where(leases.unfinished())))
        for flow_id in ids:
            self.app.send_task(RUN_FLOW_TASK, args=[flow_id])
        if ids:
            LOG.info("resuming %d unfinished flow(s)", len(ids))
        return len(ids)

    # -- on behalf of compute hosts ---------------------------------------------------

    def check_command(self, flow_id: str, epoch: int, instance_uuid: str | None,
                      host: str) -> str | None:
        """Why a host must not act on a command of flow run ``flow_id`` sent at
        lease ``epoch`` for ``instance_uuid``, or None if it may: the run must
        still be under way and driven at that epoch, and the instance must
        live on that host or hold a claim there."""
        with self.db.read() as session:
            run = session.get(FlowRun, flow_id)
            if run is None or run.state in leases.RUN_FINISHED:
                return f"its operation has ended ({run.state if run else 'no such run'})"
            if run.epoch != epoch:
                return f"its operation is driven at epoch {run.epoch} now, not {epoch}"
            if instance_uuid is None:
                return None
            instance = session.get(Instance, instance_uuid)
            if instance is None:
                return "its instance does not exist"
            # A move's claims count as the instance's: the migration holds the
            # source's while the instance holds the target's; and the last
            # move's two hosts are the instance's while it settles (a confirm
            # or revert cleans up the side it left: flows/migrate.py).
            if instance.host != host and not session.scalar(
                    select(Allocation.id).where(
                        Allocation.instance_uuid.in_(claims.consumers_of(session,
                                                                         instance_uuid)),
                        Allocation.host == host)):
                last = moves.latest(session, instance_uuid)
                if last is None or host not in (last.source_compute, last.dest_compute):
                    return f"its instance lives on {instance.host}, not {host}"
        return None

    def report_host(self, host: str, report: dict) -> None:
        ratios = {name: getattr(self.cfg, name) for name in RATIOS}
        overrides = report.get("allocation_ratios") or {}
        ratios.update({k: float(v) for k, v in overrides.items() if k in ratios})
        messages, unknown, elsewhere = [], [], []
        with self.db.write() as session:
            hosts_db.report_node(session, host, report, ratios)
            hosts_db.heartbeat(session, COMPUTE_BINARY, host, topic=f"compute.{host}")
            if "power_states" in report:
                taken_at = dt.datetime.fromisoformat(report["taken_at"])
                messages = self._sync_power_states(session, host, report["power_states"],
                                                   taken_at)
                unknown, elsewhere = instances_db.foreign_guests(
                    session, host, report["power_states"], taken_at)
        for message in messages:
            self.services.notifier.publish(message)
        self._clean_up_guests(host, unknown, elsewhere)
        evacuate_flow.destroy_evacuated(self.services, host)  # stale copies of evacuees
        if report.get("starting"):
            self.resolve_stranded(host, grace=STARTING_GRACE)

    def _clean_up_guests(self, host: str, unknown: list[str], elsewhere: list[str]) -> None:
        """Nova's clean-up on a compute host: a guest of an instance that now lives
        elsewhere is destroyed (no instance ever runs on two hosts); a guest no
        instance owns is reported, and destroyed when configured
        (``destroy_unknown_guests``)."""
        for guest in unknown:
            LOG.warning("host %s runs guest %s, which belongs to no live instance%s", host,
                        guest, "; destroying it" if self.cfg.destroy_unknown_guests else "")
        doomed = elsewhere + (unknown if self.cfg.destroy_unknown_guests else [])
        for guest in elsewhere:
            LOG.warning("host %s still has guest %s, whose instance now lives elsewhere; "
                        "destroying it", host, guest)
        for guest in doomed:
            try:
                self.services.compute.call(host, "undefine", instance_uuid=guest)
                self.services.compute.call(host, "delete_disks", instance_uuid=guest)
            except Exception as err:  # the next report tries again
                LOG.error("could not destroy guest %s on %s: %s", guest, host, err)

    def _sync_power_states(self, session, host: str, states: dict[str, int],
                           taken_at: dt.datetime) -> list[dict]:
        changed = instances_db.sync_power_states(session, host, states, taken_at)
        messages = []
        for instance, before in changed:
            session.refresh(instance)
            LOG.warning("instance %s on %s: the hypervisor reports %s (was %s); now %s",
                        instance.uuid, host, power_state.NAMES.get(instance.power_state),
                        power_state.NAMES.get(before["power_state"]), instance.vm_state)
            messages.append(self.services.notifier.add(session, instance, "power_sync", "end",
                                                       before=before))
        return messages

    # -- own heartbeat ----------------------------------------------------------------

    def heartbeat(self) -> None:
        with self.db.write() as session:
            hosts_db.heartbeat(session, CONDUCTOR_BINARY, self.hostname, topic="conductor")

    def start(self) -> None:
        self.heartbeat()
        threading.Thread(target=self._loop, name="conductor-heartbeat", daemon=True).start()

    def _loop(self) -> None:
        """Heartbeat; renew the leases of the flows driven here; re-drive flows
        nobody drives (their conductor died, or their message was lost)."""
        lease = self.cfg.flow_lease_seconds
        jobs = [(self.cfg.report_interval, self.heartbeat), (lease / 3, self.renew_leases),
                (lease, self.reap), (ROLLBACK_CHECK, self.watch_rollbacks),
                (self.cfg.shelved_poll_interval, self.offload_shelved),
                (CONFIRM_CHECK, self.confirm_resizes)]
        due = [time.monotonic() + every for every, _job in jobs]
        while not self._stop.wait(min(every for every, _job in jobs)):
            now = time.monotonic()
            for i, (every, job) in enumerate(jobs):
                if now < due[i]:
                    continue
                due[i] = now + every
                try:
                    job()
                except Exception:
                    LOG.exception("conductor %s failed", job.__name__)

    def renew_leases(self) -> None:
        with self._running_lock:
            held = {f: e for f, e in self._running.items() if e is not None}
        if not held:
            return
        with self.db.write() as session:
            lost = leases.renew(session, self.owner, held, self.cfg.flow_lease_seconds)
        for flow_id in lost:
            LOG.warning("flow %s: lease lost (this conductor stalled); its next save stops it",
                        flow_id)

    def watch_rollbacks(self) -> None:
        """Tell the flows driven here that an operator asked to roll them back:
        the step running gives up waiting on its host, the next one does not
        start, and the run reverts."""
        with self._running_lock:
            watched = {f: e for f, e in self._rollbacks.items() if not e.is_set()}
        if not watched:
            return
        with self.db.read() as session:
            asked = leases.rollbacks_requested(session, watched)
        for flow_id in asked:
            LOG.warning("flow %s: an operator asked for a rollback", flow_id)
            watched[flow_id].set()

    def resolve_stranded(self, host: str | None = None,
                         grace: float | None = None) -> list[str]:
        """Instances held by an operation nobody will finish (the API died
        between taking the task_state and recording the run), resolved as
        Nova's ``_init_instance`` does: a delete is carried out, an interrupted
        build ends in ERROR with a fault, any other operation is let go
        (task_state cleared; the power-state sync corrects the rest).
        Returns the instances resolved."""
        grace = self.cfg.flow_lease_seconds if grace is None else grace
        with self.db.read() as session:
            found = [(i.uuid, i.task_state, i.vm_state, i.project_id, i.user_id)
                     for i in instances_db.stranded(session, grace, host)]
        for uuid_, task_state, vm_state, project_id, user_id in found:
            LOG.warning("instance %s has been %s with no operation driving it; resolving it",
                        uuid_, task_state)
            if task_state == task_states.DELETING:
                flow_id = flow_engine.record(
                    self.store, flows.build("delete", self.services, {}), operation="delete",
                    request_id=context.new_request_id(), instance_uuid=uuid_,
                    inputs={"instance_uuid": uuid_}, user_id=user_id, project_id=project_id)
                self.app.send_task(RUN_FLOW_TASK, args=[flow_id])
                continue
            values: dict[str, Any] = {"task_state": None}
            message = f"The operation in progress ({task_state}) was interrupted; let go"
            if vm_state == vm_states.BUILDING:
                values["vm_state"] = vm_states.ERROR
                message = "The build was interrupted before it was scheduled"
            with self.db.write() as session:
                if instances_db.update_if(session, uuid_, values,
                                          expected_task_state=task_state):
                    instance = session.get(Instance, uuid_)
                    instances_db.add_fault(session, uuid_, code=500, message=message,
                                           host=instance.host)
                    migrate_flow.let_go(session, uuid_, task_state)
        return [f[0] for f in found]

    def reap(self) -> int:
        """Enqueue every unfinished flow run that nobody drives; resolve
        instances held by an operation that has no run."""
        with self._running_lock:
            mine = set(self._running)
        with self.db.read() as session:
            ids = leases.orphans(session, grace=self.cfg.flow_lease_seconds, exclude=mine)
        for flow_id in ids:
            LOG.warning("flow %s has no live conductor; driving it again", flow_id)
            self.app.send_task(RUN_FLOW_TASK, args=[flow_id])
        self.resolve_stranded()
        return len(ids)

    def offload_shelved(self) -> list[str]:
        """Offload the instances SHELVED for ``shelved_offload_time`` seconds or
        more (Nova's periodic task; 0 offloads in the shelve itself, -1 never);
        returns the flow runs started."""
        if self.cfg.shelved_offload_time <= 0:
            return []
        started = shelve_flow.start_due_offloads(self.services, self.store,
                                                 self.cfg.shelved_offload_time)
        for flow_id in started:
            self.app.send_task(RUN_FLOW_TASK, args=[flow_id])
        return started

    def confirm_resizes(self) -> list[str]:
        """Confirm the resizes and migrations left in VERIFY_RESIZE for
        ``resize_confirm_window`` seconds or more (0: never, Nova's default);
        returns the flow runs started."""
        if self.cfg.resize_confirm_window <= 0:
            return []
        started = migrate_flow.start_due_confirms(self.services, self.store,
                                                  self.cfg.resize_confirm_window)
        for flow_id in started:
            self.app.send_task(RUN_FLOW_TASK, args=[flow_id])
        return started

    def stop(self) -> None:
        self._stop.set()


def _caused_by(err: BaseException | None, kind: type[BaseException]) -> bool:
    seen = 0
    while err is not None and seen < 20:
        if isinstance(err, kind):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False
