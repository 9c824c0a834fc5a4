"""Calls from the conductor to one compute host's worker.

Each call is a Celery message on the compute exchange with routing key
``compute.<host>``; the worker replies through the result backend with
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.  A call
that gets no answer within its timeout raises ComputeUnavailable, and its
message expires so a host that comes back late does not act on it.  Each
message carries a command header (sent, expires, and the flow run and lease
epoch it was sent for) that the host checks before it acts
(``workers.compute.CommandGate``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from vmflow import context, exception
from vmflow.config import Config
from workers.celery_app import compute_exchange, compute_routing_key

LOG = logging.getLogger(__name__)

COMPUTE_TASK = "vmflow.compute.call"
# The message header that says when a host command was sent, until when it may
# be acted on, and for which flow run (id and lease epoch) it was sent.
COMMAND_HEADER = "vmflow_command"
# Seconds between checks for an operator's rollback while waiting on a host.
INTERRUPT_CHECK = 0.5


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
        flow = context.current_flow()
        command = {"sent_at": time.time(), "expires_at": time.time() + timeout}
        if flow is not None:
            command.update(flow_id=flow[0], epoch=flow[1])
        if context.current_step():
            command["step"] = context.current_step()
        result = self._app.send_task(COMPUTE_TASK, args=[host, method, kwargs],
                                     exchange=self._exchange,
                                     routing_key=compute_routing_key(host), expires=timeout,
                                     headers={COMMAND_HEADER: command})
        try:
            reply = self._wait(result, host, method, timeout)
        finally:
            result.forget()
        if not isinstance(reply, dict) or "ok" not in reply:
            raise exception.HypervisorError(host=host, step=method,
                                            reason=f"malformed reply {reply!r:.200}")
        if not reply["ok"]:
            raise exception.HypervisorError(host=host, step=method, reason=reply.get("error"))
        return reply.get("result")

    def _wait(self, result: Any, host: str, method: str, timeout: float) -> Any:
        """The reply, waited for in slices so that an operator's rollback of the
        flow run can cut the wait short (the host may still act: the step's
        revert undoes whatever it did)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise exception.ComputeUnavailable(host=host, step=method, timeout=timeout)
            if context.interrupted():
                raise exception.StepInterrupted(step=f"{method} on {host}")
            try:
                return result.get(timeout=min(left, INTERRUPT_CHECK), interval=self._interval,
                                  propagate=True, disable_sync_subtasks=False)
            except CeleryTimeout:
                continue
