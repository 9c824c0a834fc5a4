"""Checks of request bodies; each failure is a 400 naming the field and the problem."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from vmflow import exception


def only_keys(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise exception.Invalid(f"Invalid input for {where}: additional properties are not "
                                f"allowed ({', '.join(repr(k) for k in extra)} "
                                f"{'was' if len(extra) == 1 else 'were'} unexpected).")


def body_object(body: dict[str, Any], key: str, allowed: set[str],
                also_top: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The object under ``key`` of a ``{"<key>": {...}}`` body, checked for
    unknown keys at both levels (``also_top``: other keys the body may have)."""
    only_keys(body, {key} | also_top, "the request body")
    obj = body.get(key)
    if not isinstance(obj, dict):
        raise exception.Invalid(f"Invalid input for the request body: '{key}' is a required "
                                "property and must be an object.")
    only_keys(obj, allowed, key)
    return obj


def string(obj: dict[str, Any], key: str, where: str, *, required: bool = False,
           min_len: int = 0, max_len: int = 255, allow_int: bool = False) -> str | None:
    if key not in obj or obj[key] is None:
        if required:
            raise exception.Invalid(f"Invalid input for {where}: '{key}' is a required property.")
        return None
    value = obj[key]
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise exception.Invalid(f"Invalid input for field '{key}' of {where}: "
                                f"{value!r} is not a string.")
    if len(value.strip()) < min_len or (min_len and not value.strip()):
        raise exception.Invalid(f"Invalid input for field '{key}' of {where}: "
                                f"it must not be empty or only spaces.")
    if len(value) > max_len:
        raise exception.Invalid(f"Invalid input for field '{key}' of {where}: "
                                f"longer than {max_len} characters.")
    return value


def integer(obj: dict[str, Any], key: str, where: str, *, minimum: int | None = None,
            maximum: int | None = None) -> int | None:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise exception.Invalid(f"Invalid input for field '{key}' of {where}: "
                                f"{value!r} is not an integer.")
    if minimum is not None and value < minimum:
        raise exception.Invalid(f"Invalid input for field '{key}' of {where}: "
                                f"{value} is less than the minimum of {minimum}.")
    if maximum is not None and value > maximum:
        raise exception.Invalid(f"Invalid input for field '{key}' of {where}: "
                                f"{value} is greater than the maximum of {maximum}.")
    return value


def image_ref(ref: str, key: str) -> str:
    """An image reference: its UUID, or a link ending in it (clients send both);
    the UUID part, as given.  400 if it is not a UUID."""
    ref = ref.rsplit("/", 1)[-1]
    try:
        uuid.UUID(ref)
    except ValueError:
        raise exception.Invalid(f"Invalid {key} provided: {ref!r} is not a UUID.") from None
    return ref


def metadata(obj: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise exception.Invalid(f"Invalid input for field '{key}' of {where}: "
                                "it must be an object of strings.")
    for k, v in value.items():
        if not isinstance(v, str) or not 1 <= len(k) <= 255 or len(v) > 255:
            raise exception.Invalid(f"Invalid input for field '{key}' of {where}: keys must be "
                                    "1-255 characters and values strings of at most 255.")
    return dict(value)


def admin_password(obj: dict[str, Any], where: str) -> str:
    """The ``adminPass`` a request gives (create, rebuild, rescue), else a new one.

    Nova answers with the server's admin password whether or not its driver
    sets it in the guest, and its libvirt driver does not (no password
    injection by default); vmflow behaves the same: the password is answered,
    and no guest of vmflow's is told it (docs/compatibility.md).
    """
    given = string(obj, "adminPass", where, max_len=255)
    return given if given is not None else secrets.token_urlsafe(9)
