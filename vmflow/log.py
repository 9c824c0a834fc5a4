"""Logging: one line format for every service, carrying the request id.

``<timestamp> <pid> <LEVEL> <module> [<request-id>] <message>``
"""

from __future__ import annotations

import logging
import os
import sys

from vmflow import context

FORMAT = "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [%(request_id)s] %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"


class RequestIdFilter(logging.Filter):
    """Stamp each record with the request id of the work that emitted it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = context.get_request_id()
        return True


def formatter() -> logging.Formatter:
    return logging.Formatter(FORMAT, DATEFMT)


def setup(level: str = "INFO", log_dir: str = "", service: str = "vmflow") -> None:
    """Configure the root logger for one service.

    Logs go to stderr, and also to ``<log_dir>/<service>.log`` when a log
    directory is configured, so each service of a deployment has its own file.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_vmflow", False):
            root.removeHandler(handler)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(log_dir, f"{service}.log")))
    for handler in handlers:
        handler._vmflow = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter())
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that are chatty at INFO about their own plumbing.
    for noisy in ("taskflow", "kombu", "celery.worker.strategy", "celery.app.trace", "werkzeug",
                  "stevedore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
