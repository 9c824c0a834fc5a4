"""The query of ``GET /servers`` and ``/servers/detail``: filters and sort order.

As in Nova: a non-admin's filters are narrowed to a per-version list (other
parameters are dropped silently), an admin (``servers:allow_all_filters``)
may filter on every field; filters on joined tables and ``_``-prefixed ones
are a 400; from 2.75 a parameter Nova does not know is a 400.  Fields Nova
matches exactly are compared as strings, the others as regular expressions
searched in the field's text.  ``changes-since``/``changes-before`` (2.66)
also list deleted servers, as in Nova.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from flask import request

from vmflow import exception
from vmflow.db.models import Instance, utcnow
from vmflow.states import status_of
from webapp.api import common, microversion, usage, views

# Parameters on joined tables: refused, as Nova does.
_JOINED = frozenset({"block_device_mapping", "services", "metadata", "system_metadata",
                     "info_cache", "security_groups", "pci_devices"})
_PAGING = frozenset({"limit", "marker", "sort_key", "sort_dir", "all_tenants", "project_id",
                     "tenant_id", "deleted", "soft_deleted"})


def _iso(value: dt.datetime | None) -> str:
    return common.isotime(value) or ""


# Field readers.  Exact-match fields first, then the regular-expression ones.
_EXACT: dict[str, Callable[[Instance], Any]] = {
    "user_id": lambda i: i.user_id,
    "image": lambda i: i.image_ref,
    "image_ref": lambda i: i.image_ref,
    "vm_state": lambda i: i.vm_state,
    "task_state": lambda i: i.task_state,
    "host": lambda i: i.host,
    "uuid": lambda i: i.uuid,
    "launch_index": lambda i: i.launch_index or 0,
    "flavor": lambda i: (i.flavor or {}).get("flavorid"),
}
_REGEX: dict[str, Callable[[Instance], Any]] = {
    "name": lambda i: i.name,
    "display_name": lambda i: i.name,
    "description": lambda i: i.description,
    "display_description": lambda i: i.description,
    "reservation_id": lambda i: views.reservation_of(i),
    "hostname": lambda i: views.hostname_of(i.name),
    "key_name": lambda i: i.key_name,
    "power_state": lambda i: i.power_state,
    "node": lambda i: i.node,
    "availability_zone": lambda i: i.availability_zone,
    "launched_at": lambda i: _iso(i.launched_at),
    "terminated_at": lambda i: _iso(i.terminated_at),
    "created_at": lambda i: _iso(i.created_at),
    "locked_by": lambda i: i.locked_by,
    "config_drive": lambda i: "True" if i.config_drive else "",
    "progress": lambda i: i.progress,
    "kernel_id": lambda i: "",
    "ramdisk_id": lambda i: "",
    "root_device_name": lambda i: "/dev/vda",
    "access_ip_v4": lambda i: i.access_ip_v4,
    "access_ip_v6": lambda i: i.access_ip_v6,
    "auto_disk_config": lambda i: views.disk_config(i) == "AUTO",
    "ip": lambda i: None,  # no networking yet: no server has an address
    "ip6": lambda i: None,
}
_TAGS = ("tags", "tags-any", "not-tags", "not-tags-any")
_SPECIAL = frozenset({"status", "changes-since", "changes-before", "locked", *_TAGS})

# What sort_key may name, and how to read it (Nova's names).
_SORT: dict[str, Callable[[Instance], Any]] = {
    "created_at": lambda i: i.created_at, "updated_at": lambda i: i.updated_at,
    "display_name": lambda i: i.name, "display_description": lambda i: i.description,
    "uuid": lambda i: i.uuid, "vm_state": lambda i: i.vm_state,
    "task_state": lambda i: i.task_state, "power_state": lambda i: i.power_state,
    "host": lambda i: i.host, "node": lambda i: i.node, "hostname": lambda i: i.name,
    "availability_zone": lambda i: i.availability_zone, "key_name": lambda i: i.key_name,
    "launched_at": lambda i: i.launched_at, "terminated_at": lambda i: i.terminated_at,
    "user_id": lambda i: i.user_id, "project_id": lambda i: i.project_id,
    "progress": lambda i: i.progress, "image_ref": lambda i: i.image_ref,
    "instance_type_id": lambda i: (i.flavor or {}).get("flavorid"),
    "locked_by": lambda i: i.locked_by, "config_drive": lambda i: bool(i.config_drive),
    "launch_index": lambda i: i.launch_index or 0, "kernel_id": lambda i: "",
    "ramdisk_id": lambda i: "",
    "root_device_name": lambda i: "", "access_ip_v4": lambda i: i.access_ip_v4,
    "access_ip_v6": lambda i: i.access_ip_v6,
    "auto_disk_config": lambda i: views.disk_config(i) == "AUTO",
}
# Sort keys Nova accepts but ignores (below 2.75; 'locked' sorts from 2.73).
_IGNORED_SORT = frozenset({
    "architecture", "cell_name", "cleaned", "default_ephemeral_device", "default_swap_device",
    "deleted", "deleted_at", "disable_terminate", "ephemeral_gb", "ephemeral_key_uuid", "id",
    "key_data", "launched_on", "locked", "memory_mb", "os_type", "reservation_id", "root_gb",
    "shutdown_terminate", "user_data", "vcpus", "vm_mode"})


def _known() -> set[str]:
    """The parameters Nova's schema names at the request's version."""
    known = set(_EXACT) | set(_REGEX) | _JOINED | _PAGING | {"status", "changes-since"}
    if microversion.at_least("2.26"):
        known.update(_TAGS)
    if microversion.at_least("2.66"):
        known.add("changes-before")
    if microversion.at_least("2.73"):
        known.add("locked")
    return known


def _non_admin() -> set[str]:
    """The filters a caller without ``servers:allow_all_filters`` may use."""
    allowed = {"reservation_id", "name", "status", "image", "flavor", "ip", "changes-since",
               "all_tenants"}
    if microversion.at_least("2.5"):
        allowed.add("ip6")
    if microversion.at_least("2.26"):
        allowed.update(_TAGS)
    if microversion.at_least("2.66"):
        allowed.add("changes-before")
    if microversion.at_least("2.73"):
        allowed.add("locked")
    if microversion.at_least("2.83"):
        allowed.update({"availability_zone", "config_drive", "key_name", "created_at",
                        "launched_at", "terminated_at", "power_state", "task_state",
                        "vm_state", "progress", "user_id"})
    return allowed


def parse() -> dict[str, list[str]]:
    """The request's filters (name → values), checked, narrowed for non-admins."""
    given = {k: request.args.getlist(k) for k in request.args}
    if microversion.at_least("2.75"):
        unknown = sorted(k for k in given if k not in _known() and not k.startswith("_"))
        if unknown:
            raise exception.Invalid("Invalid input for query parameters: additional "
                                    f"properties are not allowed ({', '.join(unknown)}).")
    if not common.allowed("os_compute_api:servers:allow_all_filters"):
        allowed = _non_admin() | {"limit", "marker", "sort_key", "sort_dir"}
        given = {k: v for k, v in given.items() if k in allowed}
    for key in given:
        if key in _JOINED or key.startswith("_"):
            raise exception.Invalid(f"Invalid filter field: {key}.")
    return given


def wants_deleted(filters: dict[str, list[str]]) -> bool:
    """Whether deleted servers are listed too: asked for (admin ``deleted``) or
    implied by a change-time filter."""
    deleted = (filters.get("deleted") or [""])[-1].lower()
    if deleted in ("true", "1", "yes"):
        return True
    if deleted in ("false", "0", "no"):
        return False
    return "changes-since" in filters or "changes-before" in filters


def _time(filters: dict[str, list[str]], key: str) -> dt.datetime | None:
    values = filters.get(key)
    return usage.parse_time(key, values[-1], utcnow()) if values else None


def _regex(key: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error:
        raise exception.Invalid(f"Invalid regular expression in {key} filter: "
                                f"{pattern!r}.") from None


def apply(rows: list[Instance], filters: dict[str, list[str]],
          tags_of: Callable[[list[str]], dict[str, list[str]]]) -> list[Instance]:
    """The rows that pass every filter."""
    checks: list[Callable[[Instance], bool]] = []
    for key, values in filters.items():
        value = values[-1]
        if key in _EXACT:
            wanted = value.rsplit("/", 1)[-1] if key in ("image", "image_ref") else value
            read = _EXACT[key]
            checks.append(lambda i, read=read, wanted=wanted: str(read(i)) == wanted)
        elif key in _REGEX:
            pattern, read = _regex(key, value), _REGEX[key]
            checks.append(lambda i, read=read, pattern=pattern:
                          read(i) is not None and pattern.search(str(read(i))) is not None)
    statuses = {s.upper() for s in filters.get("status", [])}
    if statuses:
        checks.append(lambda i: status_of(i.vm_state, i.task_state) in statuses)
    if "deleted" in filters and not wants_deleted(filters):
        checks.append(lambda i: not i.deleted)
    elif (filters.get("deleted") or [""])[-1].lower() in ("true", "1", "yes"):
        checks.append(lambda i: bool(i.deleted))
    since, before = _time(filters, "changes-since"), _time(filters, "changes-before")
    if since and before and before < since:
        raise exception.Invalid("The value of changes-since must be less than or equal to "
                                "changes-before.")
    if since:
        checks.append(lambda i: i.updated_at >= since)
    if before:
        checks.append(lambda i: i.updated_at <= before)
    if "locked" in filters:
        flag = filters["locked"][-1].strip().lower()
        if flag not in ("true", "false", "1", "0", "yes", "no", "t", "f", "on", "off"):
            raise exception.Invalid(f"Unrecognized value '{flag}' for the locked filter; "
                                    "it must be a boolean.")
        locked = flag in ("true", "1", "yes", "t", "on")
        checks.append(lambda i: bool(i.locked) == locked)
    rows = [r for r in rows if all(check(r) for check in checks)]
    return _by_tags(rows, filters, tags_of)


def _by_tags(rows: list[Instance], filters: dict[str, list[str]],
             tags_of: Callable[[list[str]], dict[str, list[str]]]) -> list[Instance]:
    """2.26: ``tags`` (all of), ``tags-any``, ``not-tags`` (not all of),
    ``not-tags-any`` (none of); each a comma-separated list."""
    wanted = {key: set(filter(None, filters[key][-1].split(",")))
              for key in _TAGS if key in filters}
    if not wanted:
        return rows
    tags = tags_of([r.uuid for r in rows])
    kept = []
    for row in rows:
        have = set(tags.get(row.uuid, ()))
        if "tags" in wanted and not wanted["tags"] <= have:
            continue
        if "tags-any" in wanted and not wanted["tags-any"] & have:
            continue
        if "not-tags" in wanted and wanted["not-tags"] and wanted["not-tags"] <= have:
            continue
        if "not-tags-any" in wanted and wanted["not-tags-any"] & have:
            continue
        kept.append(row)
    return kept


def sort(rows: list[Instance], filters: dict[str, list[str]]) -> list[Instance]:
    """``sort_key``/``sort_dir`` pairs (default: newest first)."""
    keys = filters.get("sort_key") or []
    dirs = [d.lower() for d in filters.get("sort_dir") or []]
    for direction in dirs:
        if direction not in ("asc", "desc"):
            raise exception.Invalid(f"Invalid sort direction {direction!r}: it must be 'asc' "
                                    "or 'desc'.")
    usable = set(_SORT) | ({"locked"} if microversion.at_least("2.73") else set())
    ignored = set() if microversion.at_least("2.75") else _IGNORED_SORT - usable
    for key in keys:
        if key not in usable and key not in ignored:
            raise exception.Invalid(f"Invalid sort key {key!r}.")
    pairs = [(k, dirs[n] if n < len(dirs) else "desc") for n, k in enumerate(keys)
             if k in usable]
    if not pairs:
        pairs = [("created_at", "desc")]
    ordered = sorted(rows, key=lambda i: i.uuid)
    for key, direction in reversed(pairs):  # stable sorts, last key first
        read = (lambda i: bool(i.locked)) if key == "locked" else _SORT[key]
        ordered.sort(key=lambda i, read=read: _sortable(read(i)),
                     reverse=direction == "desc")
    return ordered


def _sortable(value: Any) -> tuple[bool, Any]:
    """Values of one field compare among themselves; None sorts apart from them."""
    return (value is not None, value if value is not None else "")
