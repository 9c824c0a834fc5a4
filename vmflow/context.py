"""Request context: who asks, and the request id that follows the work everywhere.

The request id lives in a context variable so that the log filter, the Celery
publish hook and the flow runner all read the same value without passing it
through every call.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import threading
import uuid
from collections.abc import Iterator

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# Set by the conductor driving a flow run when an operator asks to roll it back:
# the next step refuses to start and a call waiting on a host gives up.
_rollback: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "rollback", default=None)
# The flow run (id, lease epoch) whose steps this thread runs: host commands
# carry it, so that a host can tell a stale command from a current one.
_flow: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "flow", default=None)
# True while a flow step executes (not while it reverts): only then may a
# rollback cut a host call short.
_executing: contextvars.ContextVar[bool] = contextvars.ContextVar("executing", default=False)
# The flow step whose execute or revert runs now (``"stop.request-shutdown"``,
# ``"stop.request-shutdown (revert)"``): host commands carry it, for the host's
# log and for crash tests that end a compute worker at one step.
_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("step", default=None)


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def get_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> contextvars.Token:
    return _request_id.set(value or "-")


@contextlib.contextmanager
def request_id_scope(value: str) -> Iterator[None]:
    token = set_request_id(value)
    try:
        yield
    finally:
        _request_id.reset(token)


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """The caller of an API request."""

    request_id: str
    project_id: str
    user_id: str
    is_admin: bool = False
    roles: tuple[str, ...] = ()


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


@contextlib.contextmanager
def rollback_scope(event: threading.Event) -> Iterator[None]:
    """Within this scope, ``rollback_requested()`` is whether ``event`` is set."""
    token = _rollback.set(event)
    try:
        yield
    finally:
        _rollback.reset(token)


def rollback_requested() -> bool:
    event = _rollback.get()
    return event is not None and event.is_set()


@contextlib.contextmanager
def flow_scope(flow_id: str, epoch: int) -> Iterator[None]:
    """Within this scope, host commands are sent on behalf of this flow run."""
    token = _flow.set((flow_id, epoch))
    try:
        yield
    finally:
        _flow.reset(token)


def current_flow() -> tuple[str, int] | None:
    return _flow.get()


def set_executing(flag: bool) -> None:
    """Mark the start (True) and end (False) of a flow step's execute."""
    _executing.set(flag)


def set_step(name: str | None) -> None:
    """Name the flow step that runs now (None when it has ended)."""
    _step.set(name)


def current_step() -> str | None:
    return _step.get()


def interrupted() -> bool:
    """Whether the step executing now should give up: its run is being rolled back."""
    return _executing.get() and rollback_requested()
