"""One module per operation; each exposes a module-level ``get_flow``.

A factory only builds the graph.  Running it (and resuming it after a crash,
which rebuilds the same graph from the arguments stored with the flow run) is
the conductor's job, so factories must be deterministic in their arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskflow.flow import Flow

from flows import delete, launch
from flows.base import Services

FACTORIES: dict[str, Callable[..., Flow]] = {
    "launch": launch.get_flow,
    "delete": delete.get_flow,
}


def build(operation: str, services: Services, params: dict[str, Any]) -> Flow:
    """Rebuild the graph of ``operation`` with the arguments it was started with."""
    try:
        factory = FACTORIES[operation]
    except KeyError:
        raise ValueError(f"no flow for operation {operation!r}") from None
    return factory(services, **params)
