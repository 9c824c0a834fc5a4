"""The shelve actions of POST /servers/{id}/action: ``shelve``, ``shelveOffload``
and ``unshelve`` (flows/shelve.py), their bodies checked here.

``shelve`` and ``shelveOffload`` take null.  ``unshelve`` takes null, and from
microversion 2.77 ``{"availability_zone": "<zone>"}`` as well: the zone must
exist (400), and only a SHELVED_OFFLOADED server may be given one (409), as in
Nova.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import current_app

from vmflow import exception
from vmflow.db import aggregates as aggregates_db
from vmflow.db import catalog
from vmflow.db import instances as instances_db
from vmflow.db.models import Instance
from vmflow.states import vm_states
from webapp.api import common, microversion, validation

# Nova's action names.
NAMES = frozenset({"shelve", "shelveOffload", "unshelve"})


def act(server_id: str, name: str, value: Any):
    """Check the body of shelve action ``name`` and start it; 202, no body."""
    if name == "shelve":
        _takes_nothing(name, value)
        _shelve(server_id)
    elif name == "shelveOffload":
        _takes_nothing(name, value)
        _shelve_offload(server_id)
    else:
        _unshelve(server_id, _zone_of(value))
    return current_app.response_class(status=202)


def _takes_nothing(name: str, value: Any) -> None:
    if value not in (None, {}):
        raise exception.Invalid(f"Invalid input for action '{name}': it takes no arguments "
                                "(send null).")


def _zone_of(value: Any) -> str | None:
    """The availability zone an unshelve asks for (2.77), or None."""
    if value is None:
        return None
    if not microversion.at_least("2.77"):
        _takes_nothing("unshelve", value)
        return None
    if not isinstance(value, dict):
        raise exception.Invalid("Invalid input for action 'unshelve': it must be null or "
                                "an object.")
    validation.only_keys(value, {"availability_zone"}, "unshelve")
    if "availability_zone" in value and value["availability_zone"] is None:
        raise exception.Invalid("Invalid input for field 'availability_zone' of unshelve: "
                                "None is not a string.")
    zone = validation.string(value, "availability_zone", "unshelve", min_len=1)
    if zone is not None:
        with common.db().read() as session:
            zones = set(aggregates_db.zones_of_hosts(session).values())
        if zone not in zones | {common.config().default_availability_zone}:
            raise exception.Invalid(f"The requested availability zone is not available: "
                                    f"{zone}.")
    return zone


def _shelve(server_id: str) -> None:
    """Start a shelve: the shelved image is recorded (queued) with the task_state."""
    image_id = str(uuid.uuid4())
    offload = common.config().shelved_offload_time == 0

    def record_image(session, instance: Instance) -> dict[str, Any]:
        catalog.create_snapshot_image(session, image_id, f"{instance.name}-shelved",
                                      instance, {})
        # A running or stopped guest is asked to shut down; a paused or
        # suspended one is powered off.
        graceful = instance.vm_state in (vm_states.ACTIVE, vm_states.STOPPED)
        return {"offload": offload, "graceful": graceful}

    common.compute_api().act(common.context(), server_id, "shelve",
                             inputs={"image_id": image_id}, prepare=record_image)


def _shelved_image_id(server_id: str) -> str | None:
    ctx = common.context()
    with common.db().read() as session:
        instance = instances_db.get(session, server_id,
                                    project_id=None if ctx.is_admin else ctx.project_id)
        return (instance.system_metadata or {}).get("shelved_image_id")


def _shelve_offload(server_id: str) -> None:
    common.compute_api().act(common.context(), server_id, "shelve_offload",
                             inputs={"image_id": _shelved_image_id(server_id)})


def _unshelve(server_id: str, zone: str | None) -> None:
    def decide(_session, instance: Instance) -> dict[str, Any]:
        offloaded = instance.vm_state == vm_states.SHELVED_OFFLOADED
        if zone is not None and not offloaded:
            raise exception.Conflict(
                f"The availability_zone parameter may only be given to unshelve a "
                f"SHELVED_OFFLOADED server; {server_id} is {instance.vm_state}.")
        return {"offloaded": offloaded}

    common.compute_api().act(common.context(), server_id, "unshelve",
                             inputs={"availability_zone": zone}, prepare=decide)
