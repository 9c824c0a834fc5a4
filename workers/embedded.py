"""Real Celery workers running in threads of the current process.

Used by the embedded mode (`vmflow up`) and by tests: the worker consumes real
messages from the configured broker (the in-process ``memory://`` transport or
Redis) with a thread pool; nothing runs eagerly.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from celery import Celery
from celery.concurrency import thread
from celery.result import _set_task_join_will_block
from celery.worker import WorkController

LOG = logging.getLogger(__name__)

# Seconds before a worker that stopped by itself is replaced.
RESTART_DELAY = 1.0


class _AppThreadPool(thread.TaskPool):
    """Celery's thread pool, with this worker's app current in every thread.

    Celery finds the app of a message through ``current_app``, which is per
    thread; the stock pool's threads would fall back to the process's default
    app, which knows none of this worker's tasks.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.executor.shutdown(wait=False)
        self.executor = ThreadPoolExecutor(max_workers=self.limit,
                                           initializer=self.app.set_current)


class _Worker(WorkController):
    def __init__(self, *args, ready: threading.Event, **kwargs) -> None:
        self._ready = ready
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer) -> None:
        super().on_consumer_ready(consumer)
        self._ready.set()


class ThreadedWorker:
    """One Celery worker (its own consumer and thread pool) for some queues.

    Supervised: a Celery worker whose consumer could not recover from a lost
    broker connection (seen when Redis restarts) stops by itself; it is then
    replaced by a new one, since the process around it (a conductor, a compute
    service) is alive and must keep consuming.
    """

    def __init__(self, app: Celery, *, name: str, queues: list[str], concurrency: int) -> None:
        self.app = app
        self.name = name
        self.queues = list(queues)
        self.concurrency = concurrency
        self._ready = threading.Event()
        self._stopping = threading.Event()
        app.finalize()
        self._worker = self._new_worker()
        self._thread = threading.Thread(target=self._serve, name=f"celery-{name}",
                                        daemon=True)

    def _new_worker(self) -> _Worker:
        return _Worker(
            app=self.app, hostname=f"{self.name}@embedded", pool_cls=_AppThreadPool,
            concurrency=self.concurrency,
            queues=self.queues, loglevel="WARNING", ready_callback=None,
            without_heartbeat=True, without_mingle=True, without_gossip=True,
            ready=self._ready,
        )

    def _serve(self) -> None:
        while True:
            try:
                self._worker.start()
            except Exception:
                LOG.exception("celery worker %s failed", self.name)
            if self._stopping.wait(RESTART_DELAY):
                return
            LOG.error("celery worker %s stopped by itself (its broker connection was lost); "
                      "starting a new one", self.name)
            self._worker = self._new_worker()

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"Celery worker {self.name} did not start within {timeout}s")
        # Flows wait for compute results inside a worker thread of this process.
        _set_task_join_will_block(False)
        LOG.info("celery worker %s consuming %s", self.name, ", ".join(self.queues))

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._worker.stop(in_sighandler=False)
        self._thread.join(timeout)
