"""Request context: who asks, and the request id that follows the work everywhere.

The request id lives in a context variable so that the log filter, the Celery
publish hook and the flow runner all read the same value without passing it
through every call.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import uuid
from collections.abc import Iterator

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


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
