"""Notifications ``instance.<operation>.start|end|error``.

Each is kept in the database (the dashboard and operators read them there)
and, when the broker is shared between processes, published as JSON to the
notifications queue (``<queue_prefix>.notifications``, bound to the topic
exchange of the same name with ``notifications.info`` / ``notifications.error``)
for whatever listens: billing, monitoring.  The embedded in-process transport
has no listener outside the process, so there the database is the only copy.
Nothing in vmflow consumes the queue: like Nova's, it is there for the
operator's consumers, and grows if nobody reads it.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import Celery
from kombu import Exchange, Queue
from sqlalchemy.orm import Session

from vmflow import context
from vmflow.config import EMBEDDED_BROKER, Config
from vmflow.db.models import Instance, Notification, utcnow
from vmflow.states import power_state, status_of

LOG = logging.getLogger(__name__)


def state_of(instance: Instance) -> dict[str, Any]:
    """The instance's state as a notification (and a flow's ``before``) records it."""
    return {"vm_state": instance.vm_state, "task_state": instance.task_state,
            "power_state": power_state.NAMES.get(instance.power_state, instance.power_state),
            "status": status_of(instance.vm_state, instance.task_state),
            "host": instance.host}


def notifications_exchange(cfg: Config) -> Exchange:
    return Exchange(f"{cfg.queue_prefix}.notifications", type="topic", durable=True)


def notifications_queue(cfg: Config) -> Queue:
    return Queue(f"{cfg.queue_prefix}.notifications", exchange=notifications_exchange(cfg),
                 routing_key="notifications.#", durable=True)


class Notifier:
    def __init__(self, cfg: Config, app: Celery | None, binary: str) -> None:
        self._app = app if app is not None and cfg.broker_url != EMBEDDED_BROKER else None
        self._exchange = notifications_exchange(cfg)
        self._queue = notifications_queue(cfg)
        self.publisher_id = f"{binary}:{socket.gethostname()}"

    def add(self, session: Session, instance: Instance, operation: str, phase: str, *,
            before: dict[str, Any] | None = None, fault: str | None = None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record ``instance.<operation>.<phase>`` in ``session``'s transaction; the
        returned message goes to :meth:`publish` once that transaction commits."""
        priority = "ERROR" if phase == "error" else "INFO"
        payload = {"instance_id": instance.uuid, "display_name": instance.name,
                   "project_id": instance.project_id, "user_id": instance.user_id,
                   "flavor": (instance.flavor or {}).get("name"),
                   "image_uuid": instance.image_ref, "state_before": before,
                   "state": state_of(instance)}
        if fault:
            payload["fault"] = fault
        payload.update(extra or {})
        row = Notification(event_type=f"instance.{operation}.{phase}", priority=priority,
                           publisher_id=self.publisher_id, instance_uuid=instance.uuid,
                           request_id=context.get_request_id(), payload=payload,
                           created_at=utcnow())
        session.add(row)
        return {"event_type": row.event_type, "priority": priority,
                "publisher_id": self.publisher_id, "request_id": row.request_id,
                "timestamp": row.created_at.isoformat(), "payload": payload}

    def publish(self, message: dict[str, Any] | None) -> None:
        """Send a recorded notification to the queue (best effort: the database
        already has it, and an operation never fails for want of a listener)."""
        if self._app is None or message is None:
            return
        key = f"notifications.{message['priority'].lower()}"
        try:
            with self._app.producer_or_acquire() as producer:
                producer.publish(message, exchange=self._exchange, routing_key=key,
                                 declare=[self._queue], serializer="json", retry=True,
                                 retry_policy={"max_retries": 2})
        except Exception as err:  # the broker is away: the database copy remains
            LOG.warning("could not publish %s: %s", message["event_type"], err)
