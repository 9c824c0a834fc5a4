"""The conductor: runs flows, and does the database work of compute hosts.

Flows arrive as ``run_flow(flow_id)`` messages; the flow run's row says which
operation to rebuild and with what arguments, and TaskFlow continues from
whatever state the run's steps were persisted in.  Running a finished flow
again does nothing, so a redelivered message is harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading

from celery import Celery
from sqlalchemy import or_, select

import flows
from flows import engine as flow_engine
from flows.base import Services
from scheduler.host_state import HostStateCache
from scheduler.manager import Scheduler
from vmflow import context
from vmflow.config import Config
from vmflow.db import hosts as hosts_db
from vmflow.db import instances as instances_db
from vmflow.db.flowstore import FlowStore
from vmflow.db.models import FlowRun
from vmflow.db.session import Database
from vmflow.notifications import Notifier
from vmflow.states import power_state
from workers.compute import COMPUTE_BINARY, RATIOS, REPORT_TASK
from workers.rpc import ComputeClient

LOG = logging.getLogger(__name__)

RUN_FLOW_TASK = "vmflow.conductor.run_flow"
CONDUCTOR_BINARY = "vmflow-conductor"


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
        self._stop = threading.Event()
        # Flow runs driven by this process right now: a second message for the
        # same run (a redelivery, a resume) must not start a second engine.
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        self._register_tasks()

    def _register_tasks(self) -> None:
        conductor = self

        @self.app.task(name=RUN_FLOW_TASK, acks_late=True, ignore_result=True, shared=False)
        def run_flow(flow_id: str) -> str | None:
            return conductor.run_flow(flow_id)

        @self.app.task(name=REPORT_TASK, acks_late=True, ignore_result=True, shared=False)
        def report_host(host: str, report: dict) -> None:
            conductor.report_host(host, report)

    # -- flows ------------------------------------------------------------------------

    def run_flow(self, flow_id: str) -> str | None:
        """Drive a flow run to its end; returns its final state."""
        with self._running_lock:
            if flow_id in self._running:
                LOG.info("flow %s is already running here; duplicate message dropped", flow_id)
                return None
            self._running.add(flow_id)
        try:
            return self._run_flow(flow_id)
        finally:
            with self._running_lock:
                self._running.discard(flow_id)

    def _run_flow(self, flow_id: str) -> str | None:
        run = self.store.run_row(flow_id)
        if run is None:
            LOG.error("no flow run %s; message dropped", flow_id)
            return None
        if run.state in flow_engine.FINISHED:
            LOG.info("flow %s already %s; nothing to do", flow_id, run.state)
            return run.state
        with context.request_id_scope(run.request_id):
            graph = flows.build(run.operation, self.services, run.params)
            detail = self.store.get_connection().get_flow_details(flow_id)
            engine = flow_engine.load(self.store, graph, detail)
            LOG.info("running flow %s (%s) for instance %s", flow_id, run.operation,
                     run.instance_uuid)
            try:
                engine.run()
            except Exception as err:
                # The flow's reverts have recorded the outcome (ERROR + fault).
                LOG.warning("flow %s (%s) reverted: %s", flow_id, run.operation, err)
            state = engine.storage.get_flow_state()
            LOG.info("flow %s (%s) ended %s", flow_id, run.operation, state)
            return state

    def resume_unfinished(self) -> int:
        """Enqueue every flow run that has not finished (after a restart)."""
        with self.db.read() as session:
            ids = list(session.scalars(select(FlowRun.id).where(or_(
                FlowRun.state.is_(None), FlowRun.state.not_in(list(flow_engine.FINISHED))))))
        for flow_id in ids:
            self.app.send_task(RUN_FLOW_TASK, args=[flow_id])
        if ids:
            LOG.info("resuming %d unfinished flow(s)", len(ids))
        return len(ids)

    # -- on behalf of compute hosts ---------------------------------------------------

    def report_host(self, host: str, report: dict) -> None:
        ratios = {name: getattr(self.cfg, name) for name in RATIOS}
        overrides = report.get("allocation_ratios") or {}
        ratios.update({k: float(v) for k, v in overrides.items() if k in ratios})
        messages = []
        with self.db.write() as session:
            hosts_db.report_node(session, host, report, ratios)
            hosts_db.heartbeat(session, COMPUTE_BINARY, host, topic=f"compute.{host}")
            if "power_states" in report:
                messages = self._sync_power_states(session, host, report)
        for message in messages:
            self.services.notifier.publish(message)

    def _sync_power_states(self, session, host: str, report: dict) -> list[dict]:
        taken_at = dt.datetime.fromisoformat(report["taken_at"])
        changed = instances_db.sync_power_states(session, host, report["power_states"],
                                                 taken_at)
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
        while not self._stop.wait(self.cfg.report_interval):
            try:
                self.heartbeat()
            except Exception:
                LOG.exception("conductor heartbeat failed")

    def stop(self) -> None:
        self._stop.set()
