"""Logging: one line format for every service, carrying the request id.

``<timestamp> <pid> <LEVEL> <module> [<request-id>] <message>``
"""

from __future__ import annotations

import logging
import os
import re
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


# A secret's name, then ":" or "=" (with the quotes of a header, a dict or JSON
# around it), then its value: a token header, a password, anything ending in
# "token" or "password" in a query string or a body.
_SECRET = re.compile(
    r"""((?:x-auth-token|x-subject-token|x-storage-token|password|passwd|token|secret_key)"""
    r"""["']?\s*[:=]\s*)("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^\s"',;&}]+)""",
    re.IGNORECASE)


def _masked(match: re.Match) -> str:
    value = match.group(2)
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match.group(1)}{quote}***{quote}"


def mask_secrets(text: str) -> str:
    """``text`` with the values of tokens and passwords replaced by ``***``."""
    return _SECRET.sub(_masked, text)


class SecretsFilter(logging.Filter):
    """Mask token and password values in every record before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info or record.exc_text:  # the traceback, however it got formatted
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask_secrets(text)
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
        handler.addFilter(SecretsFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that are chatty at INFO about their own plumbing.
    for noisy in ("taskflow", "kombu", "celery.worker.strategy", "celery.app.trace", "werkzeug",
                  "stevedore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
