"""A libvirt domain with verbs, so callers never touch libvirt flags."""

from __future__ import annotations

import libvirt

from vmflow.states import power_state

_POWER = {
    libvirt.VIR_DOMAIN_NOSTATE: power_state.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: power_state.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: power_state.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: power_state.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: power_state.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: power_state.SUSPENDED,
}


# Errors that mean "someone else already stopped or removed it".
_ALREADY_GONE = frozenset({libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID})


class Guest:
    def __init__(self, domain: libvirt.virDomain) -> None:
        self._domain = domain

    @property
    def uuid(self) -> str:
        return self._domain.UUIDString()

    def is_active(self) -> bool:
        return bool(self._domain.isActive())

    def power_state(self) -> int:
        state, _reason = self._domain.state()
        if state == libvirt.VIR_DOMAIN_SHUTOFF and self._domain.hasManagedSaveImage():
            return power_state.SUSPENDED
        return _POWER.get(state, power_state.NOSTATE)

    def launch(self) -> None:
        """Start the guest (from its managed-save image if it has one)."""
        if not self.is_active():
            self._domain.create()

    def poweroff(self) -> bool:
        """Pull the plug; False if it was not running (or is gone)."""
        try:
            if not self.is_active():
                return False
            self._domain.destroy()
        except libvirt.libvirtError as err:
            if err.get_error_code() in _ALREADY_GONE:
                return False
            raise
        return True

    def delete_configuration(self) -> None:
        """Undefine the guest (and its managed-save image); gone already is fine."""
        try:
            try:
                self._domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                    raise
                self._domain.undefine()
        except libvirt.libvirtError as err:
            if err.get_error_code() not in _ALREADY_GONE:
                raise
