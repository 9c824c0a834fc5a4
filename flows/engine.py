"""Loading a flow run into a TaskFlow engine, with step logging attached."""

from __future__ import annotations

import logging
from typing import Any

from taskflow import engines
from taskflow import states as tf_states
from taskflow.engines.action_engine import compiler
from taskflow.engines.base import Engine
from taskflow.flow import Flow
from taskflow.persistence import models
from taskflow.types import failure as tf_failure

from vmflow import exception
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


def record(store: FlowStore, graph: Flow, *, operation: str, request_id: str,
           instance_uuid: str | None, inputs: dict[str, Any],
           params: dict[str, Any] | None = None, user_id: str | None = None,
           project_id: str | None = None) -> str:
    """Record a new run of ``graph`` with its inputs, ready for a conductor to
    drive (nothing runs here); returns the run's id."""
    detail = store.create_run(name=operation, operation=operation, request_id=request_id,
                              user_id=user_id, project_id=project_id,
                              instance_uuid=instance_uuid, params=params or {})
    engine = load(store, graph, detail, inputs=inputs)
    engine.compile()
    engine.prepare()
    return detail.uuid


def prepare_rollback(engine: Engine, store: FlowStore) -> list[str]:
    """Make a loaded flow run revert when it runs (an operator's rollback).

    The steps that need it are marked so that TaskFlow reverts them on resume:
    a step left running (its conductor died in it, or it was stuck) becomes a
    failure of unknown outcome (``StepInterrupted``), whose revert undoes what
    it may have done; a revert that failed is marked reverting, so it runs
    again, with the result of the step's execution (from the step's events).
    Steps not started yet refuse to start while the rollback scope is set
    (``VmTask.pre_execute``), which turns the rest of the run into a revert.
    Returns the names of the steps marked.
    """
    engine.compile()
    engine.prepare()
    storage = engine.storage
    graph = engine.compilation.execution_graph
    atoms = {node.name: data["kind"] for node, data in graph.nodes(data=True)
             if data["kind"] in compiler.ATOMS}
    marked = []
    for name, (state, _intention) in storage.get_atoms_states(atoms).items():
        if state == tf_states.RUNNING and atoms[name] == compiler.TASK:
            cut = exception.StepInterrupted(step=name)
            storage.save(name, tf_failure.Failure.from_exception(cut), tf_states.FAILURE)
            marked.append(name)
        elif state == tf_states.REVERT_FAILURE:
            succeeded, result = store.executed(storage.flow_uuid, name)
            if succeeded:
                storage.save(name, result, tf_states.SUCCESS)
            storage.set_atom_intention(name, tf_states.REVERT)
            storage.set_atom_state(name, tf_states.REVERTING)
            marked.append(name)
    if marked:
        LOG.warning("rolling back: marked %s", ", ".join(sorted(marked)))
    return marked
