"""Assembling services into a running cloud.

``Cloud`` wires one process's share of vmflow from a configuration: the
database, the Celery app, and whichever of the conductor, the compute hosts and
the API this process runs.  The embedded mode (`vmflow up`) runs them all; the
distributed commands (`vmflow conductor`, `vmflow compute`) run one each.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select

from vmflow.config import Config
from vmflow.db import catalog, migrate
from vmflow.db.models import ComputeNode
from vmflow.db.session import Database
from workers.celery_app import compute_queue, conductor_queue, make_app
from workers.compute import ComputeService
from workers.conductor import Conductor
from workers.embedded import ThreadedWorker

LOG = logging.getLogger(__name__)


def prepare_database(cfg: Config) -> Database:
    """Open the database, bring its schema up to date, seed flavors and an image."""
    db = Database(cfg.database_url)
    migrate.upgrade(db)
    with db.write() as session:
        catalog.seed_defaults(session, cfg.data_dir / "images")
    return db


class Cloud:
    """Some or all vmflow services of one process, started and stopped together."""

    def __init__(self, cfg: Config, *, run_conductor: bool = True, run_compute: bool = True,
                 db: Database | None = None) -> None:
        self.cfg = cfg
        self.hosts = cfg.compute_hosts() if run_compute else []
        queues = []
        if self.hosts:
            names = [h.name for h in self.hosts]
            qname = f"{cfg.queue_prefix}.compute.embedded" if len(names) > 1 else None
            queues.append(compute_queue(cfg, names, name=qname))
        # One Celery app per worker: a worker narrows its app's queue selection.
        self.app = make_app(cfg)
        self.compute_app = make_app(cfg, compute_queues=queues) if self.hosts else None
        self.db = db if db is not None else (prepare_database(cfg) if run_conductor else None)
        self.conductor = Conductor(self.app, cfg, self.db) if run_conductor else None
        self.compute = (ComputeService(self.compute_app, cfg, self.hosts,
                                       report_interval=cfg.report_interval)
                        if self.hosts else None)
        self._workers: list[ThreadedWorker] = []
        if self.conductor is not None:
            self._workers.append(ThreadedWorker(self.app, name="conductor",
                                                queues=[conductor_queue(cfg)],
                                                concurrency=cfg.conductor_concurrency))
        if self.compute is not None:
            self._workers.append(ThreadedWorker(self.compute_app, name="compute",
                                                queues=[q.name for q in queues],
                                                concurrency=cfg.compute_concurrency))

    def start(self, wait_for_hosts: float = 30.0) -> None:
        for worker in self._workers:
            worker.start()
        if self.conductor is not None:
            self.conductor.start()
        if self.compute is not None:
            self.compute.start()
        if self.conductor is not None and self.hosts:
            self._wait_for_hosts(wait_for_hosts)
            self.conductor.resume_unfinished()

    def _wait_for_hosts(self, timeout: float) -> None:
        """Wait until every local host has reported to the conductor."""
        wanted = {h.name for h in self.hosts}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.db.read() as session:
                known = set(session.scalars(select(ComputeNode.host).where(
                    ComputeNode.host.in_(wanted))))
            if known == wanted:
                self.conductor.scheduler.cache.invalidate()
                return
            time.sleep(0.05)
        raise RuntimeError(f"hosts never reported: {', '.join(sorted(wanted - known))}")

    def stop(self) -> None:
        if self.compute is not None:
            self.compute.stop()
        if self.conductor is not None:
            self.conductor.stop()
        for worker in reversed(self._workers):
            worker.stop()
        if self.db is not None:
            self.db.dispose()
