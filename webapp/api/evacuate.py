"""The ``evacuate`` server action (admin): rebuild a server whose host is down on
another host.  Body rules per microversion are Nova's:

* below 2.14: ``onSharedStorage`` is required; ``adminPass`` may not come with
  ``onSharedStorage: true``; the answer is 200 ``{"adminPass": ...}`` (the one
  given, one generated, or null on shared storage);
* from 2.14: ``onSharedStorage`` is refused (the cloud knows), the answer is 200
  with an empty body;
* 2.29 to 2.67: ``force`` (bool) skips the scheduler's check of the named host
  (400 without a host).

As everywhere, the answer's password is not set in the guest (vmflow's
driver, as Nova's libvirt driver, does not inject passwords).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify

from vmflow import exception
from webapp.api import common, microversion, validation

# Nova's parameter_types.boolean: these strings count as booleans too.
_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})
_HOSTNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")


def _boolean(args: dict[str, Any], key: str, *, required: bool = False) -> bool | None:
    if key not in args:
        if required:
            raise exception.Invalid(f"Invalid input for field/attribute evacuate: "
                                    f"'{key}' is a required property.")
        return None
    value = args[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise exception.Invalid(f"Invalid input for field/attribute {key}: {value!r} is not a "
                            "boolean.")


def _host(args: dict[str, Any]) -> str | None:
    host = validation.string(args, "host", "evacuate", max_len=255)
    if host is not None and (not host or not set(host) <= _HOSTNAME_CHARS):
        raise exception.Invalid(f"Invalid input for field/attribute host: {host!r} is not a "
                                "valid host name.")
    return host


def evacuate(server_id: str, value: Any):
    """POST /servers/{id}/action ``{"evacuate": {...}}``."""
    legacy = not microversion.at_least("2.14")
    if value is None and not legacy:
        value = {}  # nothing to say (as other actions' null): the scheduler chooses
    if not isinstance(value, dict):
        raise exception.Invalid("Invalid input for action 'evacuate': it must be an object.")
    allowed = {"host", "adminPass"} | ({"onSharedStorage"} if legacy else set())
    can_force = microversion.at_least("2.29") and not microversion.at_least("2.68")
    if can_force:
        allowed.add("force")
    validation.only_keys(value, allowed, "evacuate")
    host = _host(value)
    shared = _boolean(value, "onSharedStorage", required=True) if legacy else None
    force = bool(_boolean(value, "force")) if can_force else False
    if force and not host:
        raise exception.Invalid("Can't force to a non-provided destination")
    if legacy and "adminPass" in value and shared:
        raise exception.Invalid("admin password can't be changed on existing disk")
    password = None if legacy and shared else validation.admin_password(value, "evacuate")
    common.compute_api().evacuate(common.context(), server_id, host=host, force=force,
                                  on_shared_storage=shared)
    if legacy:
        return jsonify({"adminPass": password})
    return current_app.response_class(status=200)
