"""Every error in Nova's shape: ``{"<kind>": {"code": N, "message": "..."}}``."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from vmflow import exception

LOG = logging.getLogger(__name__)

_HTTP_KINDS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit",
               415: "badMediaType"}
_HTTP_MESSAGES = {404: "The resource could not be found.",
                  405: "The method is not allowed for this resource.",
                  413: "The request body is too large."}


def fault(kind: str, code: int, message: str):
    response = jsonify({kind: {"code": code, "message": message}})
    response.status_code = code
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(exception.VmflowError)
    def _vmflow_error(err: exception.VmflowError):
        if err.code >= 500:
            LOG.error("request failed: %s", err)
        return fault(err.kind, err.code, err.text)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        code = err.code or 500
        message = _HTTP_MESSAGES.get(code) or err.description or err.name
        return fault(_HTTP_KINDS.get(code, "computeFault"), code, message)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        LOG.exception("unexpected error")
        return fault("computeFault", 500,
                     "Unexpected API Error. Please report this at the vmflow issue tracker "
                     "and attach the request id.")
