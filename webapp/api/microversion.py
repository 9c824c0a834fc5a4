"""Compute API microversions: which version a request asked for, and the echo.

A client names the version it wants with ``OpenStack-API-Version: compute X``
(several services may share that header, comma-separated) or with the legacy
``X-OpenStack-Nova-API-Version: X``; the first wins when both are present, as in
Nova.  No header means the minimum, 2.1; ``latest`` means the maximum.  A value
that is not ``<major>.<minor>`` answers 400; a well-formed version outside the
advertised range answers 406.  Every ``/v2.1`` response carries the version used
in both headers, so caches and clients (Tempest compares the legacy one) see it.

Blueprints shape their bodies with :func:`at_least`; :func:`requested` gives the
version as a tuple.
"""

from __future__ import annotations

import re

from flask import Flask, g, has_request_context, request

from vmflow import exception

MIN_VERSION = "2.1"
MAX_VERSION = "2.85"

HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
SERVICE_TYPE = "compute"

_VERSION_RE = re.compile(r"^([1-9]\d*)\.(0|[1-9]\d*)$")


class InvalidVersionString(exception.Invalid):
    message = ("API Version String {version} is of invalid format. "
               "Must be of format MajorNum.MinorNum.")


class VersionNotSupported(exception.VmflowError):
    code = 406
    kind = "computeFault"
    message = ("Version {version} is not supported by the API. "
               "Minimum is {minimum} and maximum is {maximum}.")


def parse(text: str) -> tuple[int, int]:
    """``"2.37"`` → ``(2, 37)``; 400 for anything else."""
    match = _VERSION_RE.match(text.strip())
    if not match:
        raise InvalidVersionString(version=text)
    return int(match.group(1)), int(match.group(2))


def text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


MIN = parse(MIN_VERSION)
MAX = parse(MAX_VERSION)


def header_value(headers) -> str | None:
    """The compute version a request names, or None when it names none.

    ``OpenStack-API-Version`` may list several ``<service> <version>`` pairs
    (comma-separated, or repeated headers); only ``compute`` concerns us.  The
    legacy header counts only when the new one does not name compute.
    """
    for raw in headers.getlist(HEADER):
        for item in raw.split(","):
            parts = item.strip().split(None, 1)
            if len(parts) == 2 and parts[0].lower() == SERVICE_TYPE:
                return parts[1].strip()
            if len(parts) == 1 and parts[0].lower() == SERVICE_TYPE:
                return ""
    legacy = headers.get(LEGACY_HEADER)
    return legacy.strip() if legacy is not None else None


def negotiate(value: str | None) -> tuple[int, int]:
    """The version to serve for a header value (None: no header)."""
    if value is None:
        return MIN
    if value.lower() == "latest":
        return MAX
    version = parse(value)
    if not MIN <= version <= MAX:
        raise VersionNotSupported(version=value, minimum=MIN_VERSION, maximum=MAX_VERSION)
    return version


def requested() -> tuple[int, int]:
    """The version of the current request; 2.1 outside a request or before negotiation."""
    if not has_request_context():
        return MIN
    return g.get("api_version", MIN)


def at_least(version: str) -> bool:
    """Whether the current request asked for ``version`` or later."""
    return requested() >= parse(version)


def require(version: str) -> None:
    """For a method that exists from ``version`` on: below it, 404 as in Nova."""
    if not at_least(version):
        raise exception.NotFound("The resource could not be found.")


def _is_compute_path(path: str) -> bool:
    return path == "/v2.1" or path.startswith("/v2.1/")


def init_app(app: Flask) -> None:
    @app.before_request
    def _negotiate() -> None:
        if _is_compute_path(request.path):
            g.api_version = negotiate(header_value(request.headers))

    @app.after_request
    def _echo(response):
        if _is_compute_path(request.path):
            served = text(g.get("api_version", MIN))
            response.headers[HEADER] = f"{SERVICE_TYPE} {served}"
            response.headers[LEGACY_HEADER] = served
            response.headers.add("Vary", f"{HEADER}, {LEGACY_HEADER}")
        return response
