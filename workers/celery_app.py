"""The Celery application shared by every vmflow service.

Embedded mode uses kombu's in-process ``memory://`` transport and an in-process
result store: a real Celery worker consumes real messages, only the wire is
local.  Distributed mode points the same app at Redis.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from kombu import Exchange, Queue, binding

from vmflow import context
from vmflow.config import Config

LOG = logging.getLogger(__name__)

REQUEST_ID_HEADER = "vmflow_request_id"


def conductor_queue(cfg: Config) -> str:
    return f"{cfg.queue_prefix}.conductor"


def compute_exchange(cfg: Config) -> Exchange:
    return Exchange(f"{cfg.queue_prefix}.compute", type="direct", durable=True)


def compute_routing_key(host: str) -> str:
    return f"compute.{host}"


def compute_queue(cfg: Config, hosts: list[str], name: str | None = None) -> Queue:
    """The queue a compute worker consumes: its host's routing key(s).

    A distributed compute worker serves one host (queue ``compute.<host>``); the
    embedded worker serves every simulated host through one queue bound to all
    of their routing keys, so it polls one queue instead of one per host.
    """
    exchange = compute_exchange(cfg)
    qname = name or f"{cfg.queue_prefix}.{compute_routing_key(hosts[0])}"
    return Queue(qname, exchange=exchange,
                 bindings=[binding(exchange, routing_key=compute_routing_key(h)) for h in hosts])


def make_app(cfg: Config, *, compute_queues: list[Queue] | None = None) -> Celery:
    app = Celery("vmflow", broker=cfg.broker_url, backend=cfg.result_backend,
                 set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=conductor_queue(cfg),
        task_queues=[Queue(conductor_queue(cfg))] + list(compute_queues or []),
        task_routes={"vmflow.conductor.*": {"queue": conductor_queue(cfg)}},
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"polling_interval": cfg.broker_polling_interval,
                                  "visibility_timeout": 4 * 3600},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_store_errors_even_if_ignored=True,
    )
    return app


@signals.before_task_publish.connect
def _stamp_request_id(headers: dict[str, Any] | None = None, **_kw: Any) -> None:
    """Carry the publisher's request id in every message's headers."""
    if headers is not None and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = context.get_request_id()


@signals.task_prerun.connect
def _adopt_request_id(task: Any = None, **_kw: Any) -> None:
    """Log under the request id that the message carried."""
    if task is not None:
        context.set_request_id(task.request.get(REQUEST_ID_HEADER) or "-")


@signals.task_postrun.connect
def _drop_request_id(**_kw: Any) -> None:
    context.set_request_id("-")
