"""Loading a flow run into a TaskFlow engine, with step logging attached."""

from __future__ import annotations

import logging
from typing import Any

from taskflow import engines
from taskflow import states as tf_states
from taskflow.engines.base import Engine
from taskflow.flow import Flow
from taskflow.persistence import models

from vmflow.db.flowstore import FlowStore
from vmflow.db.leases import RUN_FINISHED

LOG = logging.getLogger(__name__)

FINISHED = RUN_FINISHED


def _log_step(state: str, details: dict[str, Any]) -> None:
    name = details.get("task_name") or details.get("retry_name")
    if state in (tf_states.FAILURE, tf_states.REVERT_FAILURE):
        LOG.warning("step %s %s: %s", name, state, details.get("result"))
    else:
        LOG.info("step %s %s", name, state)


def load(store: FlowStore, flow: Flow, flow_detail: models.FlowDetail,
         inputs: dict[str, Any] | None = None) -> Engine:
    """A serial engine over ``flow``, persisting into ``flow_detail``.

    Serial: the steps of one flow run one after another in the caller's thread,
    so the request id in the caller's context is in every log line they write.
    """
    engine = engines.load(flow, store=inputs, flow_detail=flow_detail, backend=store,
                          engine="serial")
    engine.atom_notifier.register("*", _log_step)
    return engine
