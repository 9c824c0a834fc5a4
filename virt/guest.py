"""A libvirt domain with verbs, so callers never touch libvirt flags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import libvirt

from virt import domain_xml
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


class GuestNotRunning(RuntimeError):
    """The guest is shut off, so a verb that needs a running guest cannot act."""


class Guest:
    def __init__(self, domain: libvirt.virDomain) -> None:
        self._domain = domain

    @property
    def uuid(self) -> str:
        return self._domain.UUIDString()

    def is_active(self) -> bool:
        return bool(self._domain.isActive())

    def power_state(self) -> int:
        """The power state (``vmflow.states.power_state``); NOSTATE once the guest is gone."""
        try:
            state, _reason = self._domain.state()
            if state == libvirt.VIR_DOMAIN_SHUTOFF and self.has_saved_state():
                return power_state.SUSPENDED
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return power_state.NOSTATE
            raise
        return _POWER.get(state, power_state.NOSTATE)

    def is_paused(self) -> bool:
        return self._domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED

    def has_saved_state(self) -> bool:
        """Whether a managed-save image (a suspended guest's memory) exists."""
        return bool(self._domain.hasManagedSaveImage())

    def disk_paths(self) -> list[str]:
        """The files of the guest's disks, in target order (vda, vdb, ...)."""
        return domain_xml.disk_sources(self._domain.XMLDesc())

    def diagnostics(self, driver_name: str, hypervisor: str) -> dict[str, Any]:
        """What the hypervisor says about the running guest, in Nova's
        diagnostics shape (microversion 2.48): CPU time, memory, disk I/O."""
        state, max_kib, _mem_kib, ncpus, cpu_time = self._domain.info()
        disks = self.disk_paths()
        details = []
        for path in disks:
            try:
                rd_req, rd_bytes, wr_req, wr_bytes, errors = self._domain.blockStats(path)
            except libvirt.libvirtError:
                continue  # not every driver keeps statistics for every disk
            details.append({"read_bytes": rd_bytes, "read_requests": rd_req,
                            "write_bytes": wr_bytes, "write_requests": wr_req,
                            "errors_count": errors})
        used_kib = None
        if self.is_active():
            stats = self._domain.memoryStats()
            if "actual" in stats:
                used_kib = stats["actual"] - stats.get("unused", 0)
        return {
            "state": power_state.NAMES.get(_POWER.get(state, 0), "NOSTATE").lower(),
            "driver": driver_name, "hypervisor": hypervisor, "hypervisor_os": "linux",
            "uptime": None, "config_drive": False, "num_cpus": ncpus,
            "num_disks": len(disks), "num_nics": 0, "nic_details": [],
            "cpu_details": [{"id": None, "time": cpu_time, "utilisation": None}],
            "memory_details": {"maximum": max_kib // 1024,
                               "used": used_kib // 1024 if used_kib is not None else None},
            "disk_details": details,
        }

    def launch(self) -> None:
        """Start the guest (from its managed-save image if it has one)."""
        if not self.is_active():
            self._domain.create()

    def poweroff(self) -> bool:
        """Pull the plug; False if it was not running (or is gone).  A suspended
        guest's saved memory is discarded: it is off, and boots afresh."""
        if not self.is_active() and self.has_saved_state():
            self._domain.managedSaveRemove()
            return True
        return self._stop(self._domain.destroy)

    def shutdown(self) -> bool:
        """Ask the guest to shut down (ACPI) without waiting; False if it was not running."""
        return self._stop(self._domain.shutdown)

    def _stop(self, how: Callable[[], object]) -> bool:
        try:
            if not self.is_active():
                return False
            how()
        except libvirt.libvirtError as err:
            if err.get_error_code() in _ALREADY_GONE:
                return False
            raise
        return True

    def pause(self) -> None:
        """Stop the vCPUs; paused already is fine."""
        self._require_active("pause")
        if not self.is_paused():
            self._domain.suspend()

    def unpause(self) -> None:
        """Let the vCPUs run again; running already is fine."""
        self._require_active("unpause")
        if self.is_paused():
            self._domain.resume()

    def managed_save(self) -> None:
        """Save the guest's memory to disk and stop it; suspended already is fine."""
        if not self.is_active() and self.has_saved_state():
            return
        self._require_active("suspend")
        self._domain.managedSave()

    def restore(self) -> None:
        """Start the guest from its managed-save image; running already is fine."""
        if self.is_active():
            return
        if not self.has_saved_state():
            raise GuestNotRunning(f"guest {self.uuid} is shut off and has no saved state")
        self._domain.create()

    def migrate(self, dest_uri: str, block_migration: bool) -> None:
        """Move the running guest to the hypervisor at ``dest_uri``, live and peer
        to peer, its definition persisted there and removed here; with
        ``block_migration`` its root disk (vda) is copied too.  Blocks until the
        guest has moved, or the migration failed or was aborted (libvirtError)."""
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
                 | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        params: dict[str, Any] = {}
        if block_migration:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = ["vda"]
        self._domain.migrateToURI3(dest_uri, params, flags)

    def job_stats(self) -> dict[str, Any]:
        """The figures of the job under way (a migration's bytes), {} if none."""
        try:
            return dict(self._domain.jobStats())
        except libvirt.libvirtError:
            return {}

    def abort_job(self) -> bool:
        """Cancel the job under way (a migration); False if there was none."""
        try:
            self._domain.abortJob()
        except libvirt.libvirtError:
            return False
        return True

    def _require_active(self, verb: str) -> None:
        if not self.is_active():
            raise GuestNotRunning(f"cannot {verb} guest {self.uuid}: it is not running")

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
