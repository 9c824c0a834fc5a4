"""The API's ``status`` derived from vm_state and task_state, as Nova shows it."""

from __future__ import annotations

from vmflow.states import task_states, vm_states

# vm_state -> {task_state or "default": status}
_RESIZING = {state: "RESIZE" for state in (
    task_states.RESIZE_PREP, task_states.RESIZE_MIGRATING, task_states.RESIZE_MIGRATED,
    task_states.RESIZE_FINISH)}
_STATUS = {
    vm_states.ACTIVE: {"default": "ACTIVE", task_states.REBOOTING: "REBOOT",
                       task_states.REBOOTING_HARD: "HARD_REBOOT",
                       task_states.REBUILDING: "REBUILD",
                       task_states.REBUILD_SPAWNING: "REBUILD",
                       task_states.MIGRATING: "MIGRATING", **_RESIZING},
    vm_states.BUILDING: {"default": "BUILD"},
    vm_states.PAUSED: {"default": "PAUSED", task_states.REBOOTING_HARD: "HARD_REBOOT"},
    vm_states.SUSPENDED: {"default": "SUSPENDED", task_states.REBOOTING_HARD: "HARD_REBOOT"},
    vm_states.STOPPED: {"default": "SHUTOFF", task_states.REBOOTING_HARD: "HARD_REBOOT",
                        task_states.REBUILDING: "REBUILD",
                        task_states.REBUILD_SPAWNING: "REBUILD", **_RESIZING},
    vm_states.RESCUED: {"default": "RESCUE"},
    vm_states.RESIZED: {"default": "VERIFY_RESIZE",
                        task_states.RESIZE_REVERTING: "REVERT_RESIZE"},
    vm_states.SHELVED: {"default": "SHELVED"},
    vm_states.SHELVED_OFFLOADED: {"default": "SHELVED_OFFLOADED"},
    vm_states.DELETED: {"default": "DELETED"},
    vm_states.ERROR: {"default": "ERROR", task_states.REBUILDING: "REBUILD",
                      task_states.REBUILD_SPAWNING: "REBUILD"},
}


def status_of(vm_state: str, task_state: str | None) -> str:
    """Return the API status for a (vm_state, task_state) pair."""
    table = _STATUS.get(vm_state)
    if table is None:
        return "UNKNOWN"
    return table.get(task_state or "default", table["default"])
