"""Calls from the conductor to one compute host's worker.

Each call is a Celery message on the compute exchange with routing key
``compute.<host>``; the worker replies through the result backend with
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.  A call
that gets no answer within its timeout raises ComputeUnavailable, and its
message expires so a host that comes back late does not act on it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from vmflow import exception
from vmflow.config import Config
from workers.celery_app import compute_exchange, compute_routing_key

LOG = logging.getLogger(__name__)

COMPUTE_TASK = "vmflow.compute.call"


class ComputeClient:
    def __init__(self, app: Celery, cfg: Config) -> None:
        self._app = app
        self._exchange = compute_exchange(cfg).name
        self._timeout = cfg.compute_rpc_timeout
        self._interval = max(cfg.broker_polling_interval / 2, 0.001)

    def call(self, host: str, method: str, *, timeout: float | None = None,
             **kwargs: Any) -> Any:
        """Run ``method(**kwargs)`` on ``host``'s compute worker and return its result."""
        timeout = timeout or self._timeout
        LOG.debug("compute call %s on %s", method, host)
        result = self._app.send_task(COMPUTE_TASK, args=[host, method, kwargs],
                                     exchange=self._exchange,
                                     routing_key=compute_routing_key(host), expires=timeout)
        try:
            reply = result.get(timeout=timeout, interval=self._interval, propagate=True,
                               disable_sync_subtasks=False)
        except CeleryTimeout:
            raise exception.ComputeUnavailable(host=host, step=method, timeout=timeout) from None
        finally:
            result.forget()
        if not isinstance(reply, dict) or "ok" not in reply:
            raise exception.HypervisorError(host=host, step=method,
                                            reason=f"malformed reply {reply!r:.200}")
        if not reply["ok"]:
            raise exception.HypervisorError(host=host, step=method, reason=reply.get("error"))
        return reply.get("result")
