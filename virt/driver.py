"""What a compute host can do to guests; every method is idempotent.

Instances are named by uuid; arguments and results are plain data, so the same
calls travel as JSON between the conductor and a compute worker.
"""

from __future__ import annotations

import abc
from typing import Any


class ComputeDriver(abc.ABC):
    """One hypervisor (one compute host)."""

    @abc.abstractmethod
    def host_report(self) -> dict[str, Any]:
        """Capacity and identity of the hypervisor: vcpus, memory_mb, local_gb,
        cpu_arch, hypervisor_type, hypervisor_version, hypervisor_hostname."""

    @abc.abstractmethod
    def ensure_image_cached(self, image: dict[str, Any]) -> str:
        """Make the image available in this host's image cache; return its path.
        Already cached: nothing is done."""

    @abc.abstractmethod
    def create_disk(self, instance_uuid: str, image: dict[str, Any], root_gb: int) -> str:
        """Create the instance's root disk from the cached image; return its path.
        Already there: nothing is done."""

    @abc.abstractmethod
    def delete_disks(self, instance_uuid: str) -> bool:
        """Remove the instance's disks; False if there were none."""

    @abc.abstractmethod
    def define(self, instance: dict[str, Any]) -> None:
        """Define the guest (domain XML from the instance and flavor) unless a
        guest with this uuid is already defined.  ``instance["config_drive"]``,
        when present, is the metadata of the guest's config drive (real
        hypervisors attach one; simulated guests never read disks)."""

    @abc.abstractmethod
    def undefine(self, instance_uuid: str) -> bool:
        """Stop the guest if it runs and remove its definition; False if absent."""

    @abc.abstractmethod
    def power_on(self, instance_uuid: str) -> None:
        """Start the guest unless it is already running."""

    @abc.abstractmethod
    def power_off(self, instance_uuid: str) -> bool:
        """Stop the guest at once (pull the plug); False if it was not running.
        A suspended guest's saved memory is discarded (it then boots afresh)."""

    @abc.abstractmethod
    def shutdown(self, instance_uuid: str) -> bool:
        """Ask the guest to shut down gracefully (ACPI) and return without waiting.
        False if the guest is absent or not running (nothing to ask); asking twice
        is harmless."""

    @abc.abstractmethod
    def pause(self, instance_uuid: str) -> None:
        """Stop the guest's vCPUs, keeping it in memory.  Paused already: nothing is
        done.  Raises if the guest is absent or shut off."""

    @abc.abstractmethod
    def unpause(self, instance_uuid: str) -> None:
        """Let a paused guest's vCPUs run again.  Running already: nothing is done.
        Raises if the guest is absent or shut off."""

    @abc.abstractmethod
    def suspend(self, instance_uuid: str) -> None:
        """Save the guest's memory to disk and stop it (managed save); its power
        state becomes SUSPENDED.  Suspended already: nothing is done.  Raises if the
        guest is absent or shut off without saved state."""

    @abc.abstractmethod
    def resume(self, instance_uuid: str) -> None:
        """Start a suspended guest from its saved memory; no saved state remains.
        Running already: nothing is done.  Raises if the guest is absent or shut off
        without saved state."""

    @abc.abstractmethod
    def power_state(self, instance_uuid: str) -> int:
        """The guest's power state (``vmflow.states.power_state``); NOSTATE if absent."""

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Uuids of every guest defined on this hypervisor."""

    @abc.abstractmethod
    def power_states(self) -> dict[str, int]:
        """``{uuid: power state}`` of every guest defined on this hypervisor (a read:
        calling it twice changes nothing)."""

    @abc.abstractmethod
    def snapshot_disk(self, instance_uuid: str, image_id: str, image_dir: str) -> dict[str, Any]:
        """Copy the instance's root disk, flattened to qcow2, to ``<image_dir>/<image_id>``
        (written as ``.part`` and renamed at the end); return its ``location``,
        ``size``, md5 ``checksum`` and ``disk_format``.  The file exists already: it
        is described, not copied again.  Raises if the instance has no root disk."""

    @abc.abstractmethod
    def delete_snapshot(self, image_id: str, image_dir: str) -> bool:
        """Remove ``<image_dir>/<image_id>`` and any partial copy; False if there was
        neither (deleted already)."""

    @abc.abstractmethod
    def rebuild_disk(self, instance_uuid: str, image: dict[str, Any], root_gb: int) -> str:
        """Set the root disk aside (``disk.pre-rebuild``) and create a fresh one from
        ``image``; return its path.  Set aside already: the saved original is kept and
        only a missing new disk is created.  The guest should be powered off."""

    @abc.abstractmethod
    def restore_disk(self, instance_uuid: str) -> bool:
        """Move the disk set aside by ``rebuild_disk`` back over the root disk (undo a
        rebuild); False if nothing was set aside (restored already)."""

    @abc.abstractmethod
    def discard_old_disk(self, instance_uuid: str) -> bool:
        """Delete the disk set aside by ``rebuild_disk`` (the rebuild succeeded);
        False if there was none (discarded already)."""

    @abc.abstractmethod
    def create_rescue_disk(self, instance_uuid: str, image: dict[str, Any]) -> str:
        """Create the rescue disk (``disk.rescue``) from ``image``; return its path.
        Already there: nothing is done."""

    @abc.abstractmethod
    def define_rescue(self, instance: dict[str, Any]) -> None:
        """Redefine the guest to boot from the rescue disk (vda) with its root disk
        as vdb, powering it off first if it runs.  Rescue-defined already: the same
        definition is written again.  Raises if the guest is absent."""

    @abc.abstractmethod
    def define_normal(self, instance: dict[str, Any]) -> None:
        """Redefine the guest with its root disk only (vda), powering it off first if
        it runs (unrescue; undoes ``define_rescue``).  Normal already: the same
        definition is written again.  Raises if the guest is absent."""

    @abc.abstractmethod
    def delete_rescue_disk(self, instance_uuid: str) -> bool:
        """Remove the rescue disk; False if it was absent (deleted already)."""

    @abc.abstractmethod
    def domain_disks(self, instance_uuid: str) -> list[str]:
        """Files of the guest's disks as its definition names them, in target order
        (vda, vdb, ...); [] if the guest is absent.  A read."""

    @abc.abstractmethod
    def disk_checksum(self, instance_uuid: str) -> str | None:
        """Fingerprint (md5 hex) of the root disk's contents; None if there is no root
        disk.  A read."""

    @abc.abstractmethod
    def console_output(self, instance_uuid: str, length: int | None = None) -> str:
        """The guest's serial console log (its last ``length`` lines); empty if the
        guest has no console.  Reads only."""

    @abc.abstractmethod
    def diagnostics(self, instance_uuid: str) -> dict[str, Any]:
        """The hypervisor's figures for the guest (CPU time, memory, disk I/O) in
        Nova's diagnostics shape.  Reads only; LookupError if there is no guest."""

    # -- moving a disk between hosts (resize, cold migration, block migration) ------
    # The transfer directory is shared by the hosts and the controller, as the
    # image store is (``<data_dir>/transfers/<migration uuid>``).

    @abc.abstractmethod
    def export_disk(self, instance_uuid: str, transfer_dir: str) -> dict[str, Any]:
        """Copy the instance's root disk (flattened, sparse where the format allows)
        to ``<transfer_dir>/disk`` (written as ``.part``, renamed at the end); return
        its ``path``, ``size`` and the source's ``checksum`` (as ``disk_checksum``).
        Exported already: described, not copied again.  Raises if there is no root
        disk.  The guest should not be writing (powered off or paused)."""

    @abc.abstractmethod
    def import_disk(self, instance_uuid: str, transfer_dir: str, root_gb: int) -> str:
        """Make ``<transfer_dir>/disk`` the instance's root disk on this host, grown
        to ``root_gb`` if that is larger (never shrunk: raises); return its path.
        The root disk exists already: nothing is done."""

    @abc.abstractmethod
    def delete_export(self, transfer_dir: str) -> bool:
        """Remove ``transfer_dir`` and what it holds; False if it was absent."""

    @abc.abstractmethod
    def set_disk_aside(self, instance_uuid: str) -> bool:
        """Set the root disk aside as ``rebuild_disk`` does (a resize on the same
        host imports its grown copy in its place); ``restore_disk`` puts it back,
        ``discard_old_disk`` deletes it.  False if it is set aside already (or
        there is no root disk)."""

    # -- shelve ------------------------------------------------------------------

    @abc.abstractmethod
    def create_disk_from_snapshot(self, instance_uuid: str, image: dict[str, Any],
                                  root_gb: int) -> str:
        """Create the instance's root disk holding ``image``'s contents (a snapshot
        of an instance's own disk: the shelved image an unshelve boots from, or
        puts back when an offload is undone), at least ``root_gb``; return its
        path.  Unlike ``create_disk``, the contents survive on every hypervisor,
        simulated ones included.  Already there: nothing is done."""

    # -- live migration -------------------------------------------------------------
    # Simulated hosts (the test driver) are moved by the conductor's model of a
    # live migration (flows/live_migrate.py) with the calls above; real
    # hypervisors move the guest themselves, driven from the source host.

    @abc.abstractmethod
    def disk_exists(self, instance_uuid: str) -> bool:
        """Whether the instance's root disk is in this host's instance storage (on
        a live migration's target: whether that storage is shared with the
        source).  A read."""

    @abc.abstractmethod
    def live_migration_uri(self) -> str | None:
        """The URI a source hypervisor migrates guests to this host with; None for a
        simulated host (its guests are moved by the conductor's model)."""

    @abc.abstractmethod
    def live_migration_start(self, instance_uuid: str, dest_uri: str,
                             block_migration: bool) -> None:
        """Start moving the running guest to ``dest_uri`` (live, peer to peer, the
        definition persisted there and removed here; with ``block_migration`` the
        root disk is copied as well) and return at once; ``live_migration_progress``
        follows it.  Under way already: nothing is done."""

    @abc.abstractmethod
    def live_migration_progress(self, instance_uuid: str) -> dict[str, Any]:
        """``state`` of the migration started here ("running", "completed",
        "failed", "cancelled" or "none"), its ``error``, and the bytes of memory and
        disk: ``memory_total``/``processed``/``remaining``, ``disk_*``.  A read."""

    @abc.abstractmethod
    def live_migration_abort(self, instance_uuid: str) -> bool:
        """Cancel the migration under way (the guest stays here); False if none is."""

    @abc.abstractmethod
    def live_migration_force_complete(self, instance_uuid: str) -> bool:
        """Pause the guest so the migration under way converges (Nova's
        force-complete); False if none is under way."""

    # -- evacuate from a dead host onto shared instance storage --------------------
    # With ``shared_instance_storage`` every host's instance directory
    # (``<data_dir>/hosts/<host>/instances``) is on storage all hosts mount.

    @abc.abstractmethod
    def adopt_disk(self, instance_uuid: str, from_host: str) -> str:
        """Take the instance's root disk out of ``from_host``'s instance directory
        (that host is down) as this host's own, contents unchanged; return its
        path.  Taken already: nothing is done.  Raises if neither host has it."""

    @abc.abstractmethod
    def return_disk(self, instance_uuid: str, to_host: str) -> bool:
        """Undo ``adopt_disk``: put the root disk back in ``to_host``'s instance
        directory and remove this host's; False if this host had none."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the hypervisor connection."""
