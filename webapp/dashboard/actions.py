"""The instance actions the dashboard offers, derived from ``vmflow.states.actions``.

The state machine stays in one place: which actions each vm_state allows is
computed here with ``allows()`` itself and rendered into every page, so the
page's script only looks the answer up.  What this module adds is how an
action looks and what it asks for: its label, whether it needs confirming,
the fields of its dialog and the fixed arguments of its request body.
"""

from __future__ import annotations

from typing import Any

from vmflow.states import power_state, vm_states
from vmflow.states.actions import ACTIONS, allows

# Any value other than None: "some operation is under way".
_BUSY = "busy"

# name -> presentation.  ``quick``: offered in the instance list's row itself (the
# others are under "More"); ``confirm``: the question a destructive action asks;
# ``danger``: it destroys data (drawn in red); ``args``: fixed arguments;
# ``fields``: what the dialog asks for (``kind`` "text" or "image"); ``when``:
# shown only if the server's field has this value.
LOOKS: dict[str, dict[str, Any]] = {
    "stop": {"label": "Stop", "quick": True,
             "confirm": "Stop {name}? The guest is asked to shut down and is powered off "
                        "if it has not done so within the shutdown timeout."},
    "start": {"label": "Start", "quick": True},
    "reboot": {"label": "Reboot", "quick": True, "args": {"type": "SOFT"}},
    "reboot_hard": {"label": "Hard reboot", "args": {"type": "HARD"},
                    "confirm": "Power-cycle {name}? The guest is not asked first: what it "
                               "has not written to disk is lost."},
    "pause": {"label": "Pause"},
    "unpause": {"label": "Unpause", "quick": True},
    "suspend": {"label": "Suspend"},
    "resume": {"label": "Resume", "quick": True},
    "snapshot": {"label": "Create snapshot",
                 "fields": [{"name": "name", "label": "Snapshot name", "kind": "text",
                             "default": "{name}-snapshot"}]},
    "backup": {"label": "Create backup",
               "fields": [{"name": "name", "label": "Backup name", "kind": "text",
                           "default": "{name}-backup"},
                          {"name": "backup_type", "label": "Backup type", "kind": "text",
                           "default": "daily"},
                          {"name": "rotation", "label": "Backups of this type to keep",
                           "kind": "text", "default": "7"}]},
    "rebuild": {"label": "Rebuild", "danger": True,
                "confirm": "Rebuild {name} from an image? Its root disk is replaced: "
                           "everything on it is lost.",
                "fields": [{"name": "imageRef", "label": "Image", "kind": "image"}]},
    "rescue": {"label": "Rescue"},
    "unrescue": {"label": "Unrescue", "quick": True},
    "live_migrate": {"label": "Live migrate", "args": {"block_migration": "auto", "host": None},
                     "fields": [{"name": "host", "label": "Destination host (empty: the "
                                 "scheduler chooses)", "kind": "text", "optional": True}]},
    "evacuate": {"label": "Evacuate",
                 "confirm": "Rebuild {name} on another host? Only while its host is down; "
                            "without shared instance storage its disk is made afresh from "
                            "its image.",
                 "fields": [{"name": "host", "label": "Destination host (empty: the "
                             "scheduler chooses)", "kind": "text", "optional": True}]},
    "shelve": {"label": "Shelve",
               "confirm": "Shelve {name}? The guest is shut down and its disk saved as the "
                          "image {name}-shelved; unshelve boots it again."},
    "shelve_offload": {"label": "Offload shelved",
                       "confirm": "Remove shelved {name} from its host? Its guest and disks "
                                  "are deleted there; unshelve makes them again from its "
                                  "shelved image, on a host the scheduler chooses."},
    "unshelve": {"label": "Unshelve", "quick": True},
    "resize": {"label": "Resize",
               "fields": [{"name": "flavorRef", "label": "New flavor (id or name)",
                           "kind": "text"}]},
    "migrate": {"label": "Migrate (cold)",
                "confirm": "Move {name} to another host? Its guest is powered off while "
                           "its disk is copied; confirm or revert the move afterwards."},
    "confirm_resize": {"label": "Confirm resize", "quick": True},
    "revert_resize": {"label": "Revert resize",
                      "confirm": "Go back to {name}'s previous flavor and host?"},
    "lock": {"label": "Lock", "when": {"locked": False},
             "fields": [{"name": "locked_reason", "label": "Reason (optional)",
                         "kind": "text", "optional": True}]},
    "unlock": {"label": "Unlock", "when": {"locked": True}},
}

# Delete is not an operation of the table: the API takes it from any state.
DELETE = {"name": "delete", "label": "Delete", "method": "DELETE", "quick": True,
          "danger": True, "unless_task_state": "deleting",
          "confirm": "Delete {name}? Its guest and disks are destroyed; this cannot be undone."}


def controls() -> list[dict[str, Any]]:
    """Every action as the page offers it, in the table's order, then delete."""
    result = []
    for name, action in ACTIONS.items():
        look = LOOKS.get(name, {})
        result.append({"name": name, "api": action.api, "method": "POST",
                       "label": look.get("label", name.replace("_", " ").capitalize()),
                       "quick": look.get("quick", False), "confirm": look.get("confirm"),
                       "danger": look.get("danger", False), "args": look.get("args"),
                       "fields": look.get("fields", []), "when": look.get("when")})
    return [*result, DELETE]


def allowed() -> dict[str, dict[str, list[str]]]:
    """vm_state -> {"idle": actions, "busy": actions}: what may start when no
    operation holds the instance, and what may start while one does."""
    return {state: {"idle": [n for n, a in ACTIONS.items() if allows(a, state, None)] + [
                        "delete"],
                    "busy": [n for n, a in ACTIONS.items() if allows(a, state, _BUSY)] + [
                        "delete"]}
            for state in sorted(vm_states.ALL - {vm_states.DELETED})}


def page_meta() -> dict[str, Any]:
    """What every dashboard page's script is given with the page."""
    return {"actions": controls(), "allowed": allowed(),
            "power_states": {str(k): v for k, v in power_state.NAMES.items()}}
