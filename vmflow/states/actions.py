"""Every operation on an existing instance: its names, and when it is allowed.

This table is the state machine: which ``vm_state`` an operation may start
from, the ``task_state`` it holds while it runs (set by the API with a
compare-and-swap from None, so one operation runs at a time), and where it
ends.  One name per operation everywhere: the API action, ``flows/<family>``'s
operation, the instance action and the notifications ``instance.<name>.*``.
"""

from __future__ import annotations

import dataclasses

from vmflow.states import power_state, task_states, vm_states


@dataclasses.dataclass(frozen=True)
class Action:
    name: str  # flow operation and notification name (instance.<name>.start)
    api: str  # the key of Nova's POST /servers/{id}/action body
    allowed: frozenset[str]  # vm_states it may start from
    task_state: str | None  # held while it runs (None: decided in the API)
    # Where it ends (None: where it started, e.g. a snapshot).
    vm_state: str | None = None
    power_state: int | None = None
    # The instance action's name where Nova's differs from ``name``.
    recorded_as: str | None = None

    @property
    def instance_action(self) -> str:
        return self.recorded_as or self.name


_ACTIVE = frozenset({vm_states.ACTIVE})

ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("stop", "os-stop", frozenset({vm_states.ACTIVE, vm_states.ERROR}),
           task_states.POWERING_OFF, vm_states.STOPPED, power_state.SHUTDOWN),
    Action("start", "os-start", frozenset({vm_states.STOPPED}),
           task_states.POWERING_ON, vm_states.ACTIVE, power_state.RUNNING),
    Action("reboot", "reboot", _ACTIVE,
           task_states.REBOOTING, vm_states.ACTIVE, power_state.RUNNING),
    # A hard reboot also rescues an instance whose guest is in any other state.
    Action("reboot_hard", "reboot", frozenset({
        vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED, vm_states.SUSPENDED,
        vm_states.ERROR}), task_states.REBOOTING_HARD, vm_states.ACTIVE, power_state.RUNNING,
        recorded_as="reboot"),
    Action("pause", "pause", _ACTIVE,
           task_states.PAUSING, vm_states.PAUSED, power_state.PAUSED),
    Action("unpause", "unpause", frozenset({vm_states.PAUSED}),
           task_states.UNPAUSING, vm_states.ACTIVE, power_state.RUNNING),
    Action("suspend", "suspend", _ACTIVE,
           task_states.SUSPENDING, vm_states.SUSPENDED, power_state.SUSPENDED),
    Action("resume", "resume", frozenset({vm_states.SUSPENDED}),
           task_states.RESUMING, vm_states.ACTIVE, power_state.RUNNING),
    Action("snapshot", "createImage", frozenset({
        vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED, vm_states.SUSPENDED}),
        task_states.IMAGE_SNAPSHOT, recorded_as="createImage"),
    Action("backup", "createBackup", frozenset({
        vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED, vm_states.SUSPENDED}),
        task_states.IMAGE_BACKUP, recorded_as="createBackup"),
    Action("rebuild", "rebuild", frozenset({vm_states.ACTIVE, vm_states.STOPPED,
                                            vm_states.ERROR}),
           task_states.REBUILDING),
    Action("rescue", "rescue", frozenset({vm_states.ACTIVE, vm_states.STOPPED}),
           task_states.RESCUING, vm_states.RESCUED, power_state.RUNNING),
    Action("unrescue", "unrescue", frozenset({vm_states.RESCUED}),
           task_states.UNRESCUING, vm_states.ACTIVE, power_state.RUNNING),
    # Live migration: the guest keeps running (or paused) while it moves; it
    # ends in the vm_state it started in.
    Action("live_migrate", "os-migrateLive", frozenset({vm_states.ACTIVE, vm_states.PAUSED}),
           task_states.MIGRATING, recorded_as="live-migration"),
    # Shelve: snapshot into an image, then off the host (at once, or later:
    # shelved_offload_time); unshelve boots it again, wherever it is.
    Action("shelve", "shelve", frozenset({
        vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED, vm_states.SUSPENDED}),
        task_states.SHELVING, vm_states.SHELVED, power_state.SHUTDOWN),
    Action("shelve_offload", "shelveOffload", frozenset({vm_states.SHELVED}),
           task_states.SHELVING_OFFLOADING, vm_states.SHELVED_OFFLOADED, power_state.NOSTATE,
           recorded_as="shelveOffload"),
    Action("unshelve", "unshelve", frozenset({vm_states.SHELVED, vm_states.SHELVED_OFFLOADED}),
           task_states.UNSHELVING, vm_states.ACTIVE, power_state.RUNNING),
    # Resize and cold migration end RESIZED (VERIFY_RESIZE) on the target; confirm
    # and revert end ACTIVE or STOPPED, as the instance was (flows/migrate.py).
    Action("resize", "resize", frozenset({vm_states.ACTIVE, vm_states.STOPPED}),
           task_states.RESIZE_PREP, vm_states.RESIZED),
    Action("migrate", "migrate", frozenset({vm_states.ACTIVE, vm_states.STOPPED}),
           task_states.RESIZE_PREP, vm_states.RESIZED),
    Action("confirm_resize", "confirmResize", frozenset({vm_states.RESIZED}),
           task_states.RESIZE_CONFIRMING, recorded_as="confirmResize"),
    Action("revert_resize", "revertResize", frozenset({vm_states.RESIZED}),
           task_states.RESIZE_REVERTING, recorded_as="revertResize"),
    # Evacuate: rebuilt on another host while its own is down; ends ACTIVE, or
    # STOPPED for a stopped one (flows/evacuate.py).
    Action("evacuate", "evacuate", frozenset({vm_states.ACTIVE, vm_states.STOPPED,
                                              vm_states.ERROR}), task_states.REBUILDING),
    Action("lock", "lock", vm_states.ALL - {vm_states.DELETED}, None),
    Action("unlock", "unlock", vm_states.ALL - {vm_states.DELETED}, None),
)}

# Nova's API action names -> operation (reboot's type picks soft or hard).
BY_API = {a.api: a for a in ACTIONS.values() if a.name != "reboot_hard"}


def allows(action: Action, vm_state: str, task_state: str | None) -> bool:
    """May ``action`` start now?  Only from an allowed vm_state, with no other
    operation under way (operations decided in the API ignore task_state)."""
    if vm_state not in action.allowed:
        return False
    return action.task_state is None or task_state is None
