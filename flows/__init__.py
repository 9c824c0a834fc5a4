"""One module per operation; each exposes a module-level ``get_flow``.

A factory only builds the graph.  Running it (and resuming it after a crash,
which rebuilds the same graph from the arguments stored with the flow run) is
the conductor's job, so factories must be deterministic in their arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskflow.flow import Flow

from flows import (
    delete,
    evacuate,
    launch,
    live_migrate,
    lock,
    migrate,
    pause,
    power,
    rebuild,
    rescue,
    shelve,
    snapshot,
)
from flows.base import Services

FACTORIES: dict[str, Callable[..., Flow]] = {
    "launch": launch.get_flow,
    "delete": delete.get_flow,
    "stop": power.get_stop_flow,
    "start": power.get_start_flow,
    "reboot": power.get_reboot_flow,
    "reboot_hard": power.get_reboot_hard_flow,
    "pause": pause.get_pause_flow,
    "unpause": pause.get_unpause_flow,
    "suspend": pause.get_suspend_flow,
    "resume": pause.get_resume_flow,
    "lock": lock.get_lock_flow,
    "unlock": lock.get_unlock_flow,
    "snapshot": snapshot.get_flow,
    "backup": snapshot.get_backup_flow,
    "rebuild": rebuild.get_flow,
    "rescue": rescue.get_rescue_flow,
    "unrescue": rescue.get_unrescue_flow,
    "shelve": shelve.get_flow,
    "shelve_offload": shelve.get_offload_flow,
    "unshelve": shelve.get_unshelve_flow,
    "live_migrate": live_migrate.get_flow,
    "evacuate": evacuate.get_flow,
    "resize": migrate.get_resize_flow,
    "migrate": migrate.get_migrate_flow,
    "confirm_resize": migrate.get_confirm_flow,
    "revert_resize": migrate.get_revert_flow,
}


def build(operation: str, services: Services, params: dict[str, Any]) -> Flow:
    """Rebuild the graph of ``operation`` with the arguments it was started with."""
    try:
        factory = FACTORIES[operation]
    except KeyError:
        raise ValueError(f"no flow for operation {operation!r}") from None
    return factory(services, **params)


def tasks(flow: Flow) -> list[Any]:
    """``flow``'s tasks (nested flows included, retries not), in the order they
    were added."""
    found: list[Any] = []
    for node, _meta in flow.iter_nodes():
        found.extend(tasks(node) if isinstance(node, Flow) else [node])
    return found


def task_names(flow: Flow) -> list[str]:
    """The names of ``flow``'s tasks, in the order they were added."""
    return [task.name for task in tasks(flow)]
