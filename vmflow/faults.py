"""Fault injection for tests and demos (configured by ``inject_*`` settings)."""

from __future__ import annotations

import logging
import os

LOG = logging.getLogger(__name__)


def crash(where: str) -> None:
    """End the process at once, as kill -9 would (crash tests only)."""
    LOG.critical("crash injected by configuration at %s", where)
    logging.shutdown()
    os._exit(137)
