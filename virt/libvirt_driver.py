"""The libvirt driver: one class for the test driver, qemu:///system and remotes.

Simulated hosts.  libvirt's ``test:///default`` keeps one shared state per
process, so N simulated hosts in one process would see each other's guests.
The test driver also accepts ``test:///<file>``: a node description whose every
connection has its own private state.  :func:`simulated_host_uri` writes such a
file with the host's configured CPUs and memory, and the driver reads capacity
back from libvirt (``getInfo``) exactly as it does on a real host.  A bare
``test:///default`` still works for a single host.

Disks.  On real hypervisors an instance disk is a qcow2 overlay whose backing
file is the cached image (``qemu-img``).  Guests of the test driver never read
their disks, so there the disk is a sparse file of the flavor's size: the files
exist, are counted and are cleaned up, at no I/O cost.

An instance directory holds ``disk`` (the root disk), and for a while
``disk.pre-rebuild`` (the root disk a rebuild set aside) and ``disk.rescue``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import string
import subprocess
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import libvirt

from virt import configdrive, domain_xml
from virt.driver import ComputeDriver
from virt.guest import Guest
from vmflow.states import power_state


def domain_xml_hostname(name: str) -> str:
    """The host name a guest named ``name`` would print at its login prompt."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-.")[:63].rstrip("-")
    return text or "server"

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions

ROOT_DISK = "disk"
PRE_REBUILD_DISK = "disk.pre-rebuild"
RESCUE_DISK = "disk.rescue"
_CHUNK = 1024 * 1024

_NODE_XML = """<node>
  <cpu>
    <nodes>1</nodes><sockets>1</sockets><cores>{vcpus}</cores><threads>1</threads>
    <active>{vcpus}</active><mhz>2400</mhz><model>{arch}</model>
  </cpu>
  <memory>{memory_kib}</memory>
</node>
"""


def simulated_host_uri(state_dir: Path, *, vcpus: int, memory_mb: int, arch: str) -> str:
    """Write a test-driver node file with this capacity and return its URI."""
    state_dir.mkdir(parents=True, exist_ok=True)
    node_file = state_dir / "node.xml"
    node_file.write_text(_NODE_XML.format(vcpus=vcpus, memory_kib=memory_mb * 1024, arch=arch))
    return f"test://{node_file}"


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _remove(path: Path) -> bool:
    """Delete a file; False if it was not there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _image_file(image_dir: str, image_id: str) -> Path:
    if not image_id or Path(image_id).name != image_id:
        raise ValueError(f"image id {image_id!r} is not a plain file name")
    return Path(image_dir) / image_id


def _qemu_img(*args: str) -> None:
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"qemu-img {args[0]} failed: {done.stderr.strip()}")


def _md5(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def _sparse_md5(path: Path) -> str:
    """md5 over a file's data extents (each preceded by its offset) and its size.

    Holes are skipped, so an empty sparse disk of any size hashes at once.  Equal
    files give equal digests, changed contents a different one; it is not the
    ``md5sum`` of the file.
    """
    digest = hashlib.md5()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as err:
                if err.errno != errno.ENXIO:  # ENXIO: only a hole remains
                    raise
                break
            offset = os.lseek(fd, start, os.SEEK_HOLE)
            digest.update(start.to_bytes(8, "big"))
            _hash_range(digest, fd, start, offset)
        digest.update(size.to_bytes(8, "big"))
    finally:
        os.close(fd)
    return digest.hexdigest()


def _hash_range(digest: Any, fd: int, start: int, end: int) -> None:
    while start < end:
        chunk = os.pread(fd, min(_CHUNK, end - start), start)
        if not chunk:
            return
        digest.update(chunk)
        start += len(chunk)


class LibvirtDriver(ComputeDriver):
    """A ComputeDriver over one libvirt connection; each method's contract, idempotence
    included, is documented on ``virt.driver.ComputeDriver``."""

    def __init__(self, *, host: str, uri: str, state_dir: Path, disk_gb: int,
                 hypervisor_type: str = "QEMU", hypervisor_version: int = 0,
                 acpi_shutdown: bool = True, capacity: dict[str, Any] | None = None) -> None:
        self.host = host
        self.uri = uri
        self.state_dir = Path(state_dir)
        self.instances_dir = self.state_dir / "instances"
        self.cache_dir = self.state_dir / "_base"
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.disk_gb = disk_gb
        self.is_test = uri.startswith(("test:", "test+"))
        # A simulated host served by a shared test-driver daemon reports the
        # capacity it is configured with (vcpus, memory_mb, cpu_arch), not the
        # daemon's sample node.
        self._capacity = capacity or {}
        self.virt_type = "test" if self.is_test else ("kvm" if os.access("/dev/kvm", os.W_OK)
                                                      else "qemu")
        self.disk_format = "raw" if self.is_test else "qcow2"
        # A simulated guest without ACPI: shutdown requests are accepted and ignored.
        self._ignore_acpi = self.is_test and not acpi_shutdown
        self._hypervisor_type = hypervisor_type
        self._hypervisor_version = hypervisor_version
        self._conn = libvirt.open(uri)
        self._cache_lock = threading.Lock()
        # Live migrations of real guests started here: uuid -> {state, error}.
        self._migrations: dict[str, dict[str, Any]] = {}
        self._migrations_lock = threading.Lock()

    # -- lookups --------------------------------------------------------------------

    def _guest(self, instance_uuid: str) -> Guest | None:
        try:
            return Guest(self._conn.lookupByUUIDString(instance_uuid))
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _require_guest(self, instance_uuid: str) -> Guest:
        guest = self._guest(instance_uuid)
        if guest is None:
            raise LookupError(f"no guest {instance_uuid} on {self.host}")
        return guest

    def _instance_dir(self, instance_uuid: str) -> Path:
        return self.instances_dir / instance_uuid

    def _disk(self, instance_uuid: str, name: str = ROOT_DISK) -> Path:
        return self._instance_dir(instance_uuid) / name

    # -- ComputeDriver --------------------------------------------------------------

    def host_report(self) -> dict[str, Any]:
        arch, memory_mb, cpus = self._conn.getInfo()[:3]
        arch = self._capacity.get("cpu_arch", arch)
        memory_mb = self._capacity.get("memory_mb", memory_mb)
        cpus = self._capacity.get("vcpus", cpus)
        if self.is_test:
            hv_type, hv_version = self._hypervisor_type, self._hypervisor_version
        else:
            hv_type, hv_version = self._conn.getType(), self._conn.getVersion()
        return {
            "hypervisor_hostname": self.host, "hypervisor_type": hv_type,
            "hypervisor_version": hv_version, "cpu_arch": arch, "vcpus": cpus,
            "memory_mb": memory_mb, "local_gb": self.disk_gb,
        }

    def ensure_image_cached(self, image: dict[str, Any]) -> str:
        target = self.cache_dir / image["id"]
        with self._cache_lock:
            if target.exists():
                return str(target)
            partial = target.with_suffix(".part")
            source = Path(image["location"])
            try:
                os.link(source, partial)
            except OSError:
                shutil.copyfile(source, partial)
            os.replace(partial, target)
        return str(target)

    def create_disk(self, instance_uuid: str, image: dict[str, Any], root_gb: int) -> str:
        return self._create_disk_file(self._disk(instance_uuid), image, max(int(root_gb), 1))

    def _create_disk_file(self, path: Path, image: dict[str, Any], size_gb: int) -> str:
        """A sparse file (test driver) or a qcow2 overlay on the cached image, unless
        ``path`` exists already."""
        if path.exists():
            return str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial(path)
        if self.is_test:
            with open(partial, "wb") as fh:
                fh.truncate(size_gb * 1024**3)
        else:
            backing = self.ensure_image_cached(image)
            _qemu_img("create", "-q", "-f", "qcow2", "-F", image.get("disk_format", "qcow2"),
                      "-b", backing, str(partial), f"{size_gb}G")
        os.replace(partial, path)
        return str(path)

    def delete_disks(self, instance_uuid: str) -> bool:
        inst_dir = self._instance_dir(instance_uuid)
        if not inst_dir.exists():
            return False
        shutil.rmtree(inst_dir, ignore_errors=True)
        return True

    def define(self, instance: dict[str, Any]) -> None:
        if self._guest(instance["uuid"]) is None:
            if instance.get("config_drive") is not None and not self.is_test:
                configdrive.build(self._disk(instance["uuid"], configdrive.FILE_NAME),
                                  instance["config_drive"])
            self._define(instance, [ROOT_DISK])

    def define_rescue(self, instance: dict[str, Any]) -> None:
        self._require_guest(instance["uuid"]).poweroff()
        self._define(instance, [RESCUE_DISK, ROOT_DISK])

    def define_normal(self, instance: dict[str, Any]) -> None:
        self._require_guest(instance["uuid"]).poweroff()
        self._define(instance, [ROOT_DISK])

    def _define(self, instance: dict[str, Any], disk_names: list[str]) -> None:
        """Write the guest's persistent definition with these instance-directory
        disks as vda, vdb, ... (creates it, or replaces an existing one)."""
        inst_dir = self._instance_dir(instance["uuid"])
        disks = [domain_xml.Disk(str(inst_dir / name), self.disk_format, "vd" + letter)
                 for name, letter in zip(disk_names, string.ascii_lowercase, strict=False)]
        # The config drive made at launch stays attached whenever the guest is
        # redefined (rescue, unrescue), whoever redefines it.
        drive = inst_dir / configdrive.FILE_NAME
        xml = domain_xml.domain_xml(
            virt_type=self.virt_type, instance=instance, disks=disks,
            console_log=None if self.is_test else str(inst_dir / "console.log"),
            config_drive=str(drive) if drive.exists() else None,
        )
        self._conn.defineXML(xml)

    def undefine(self, instance_uuid: str) -> bool:
        guest = self._guest(instance_uuid)
        if guest is None:
            return False
        guest.poweroff()
        guest.delete_configuration()
        return True

    def power_on(self, instance_uuid: str) -> None:
        guest = self._require_guest(instance_uuid)
        was_running = guest.is_active()
        guest.launch()
        if self.is_test and not was_running:
            self._synthetic_boot_log(instance_uuid, guest)

    def _synthetic_boot_log(self, instance_uuid: str, guest: Guest) -> None:
        """Append to a test-driver guest's console.log the lines a booting guest
        would print on its serial console (its name, uuid, a login prompt).

        A guest of the libvirt test driver runs nothing, so nothing writes its
        console; without this, console output (os-getConsoleOutput) would
        always be empty.  The log is synthetic and says so in its first line;
        real guests' logs are written by QEMU (the domain's serial console).
        """
        match = re.search(r"<\w+:name>([^<]*)</\w+:name>", guest._domain.XMLDesc())
        name = match.group(1) if match else f"instance-{instance_uuid}"
        host_name = domain_xml_hostname(name)
        lines = [
            f"[vmflow] synthetic console log: simulated guest on {self.host} "
            "(libvirt test driver; no guest OS runs)",
            f"[    0.000000] Booting instance-{instance_uuid} ({name})",
            f"[    0.000000] DMI: OpenStack Foundation OpenStack Nova, uuid {instance_uuid}",
            f"[    1.000000] Hostname set to <{host_name}>",
            "",
            f"{host_name} login: ",
        ]
        log = self._instance_dir(instance_uuid) / "console.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            out.write("\n".join(lines) + "\n")

    def power_off(self, instance_uuid: str) -> bool:
        guest = self._guest(instance_uuid)
        return guest.poweroff() if guest is not None else False

    def shutdown(self, instance_uuid: str) -> bool:
        guest = self._guest(instance_uuid)
        if guest is None:
            return False
        if self._ignore_acpi:
            return guest.is_active()
        return guest.shutdown()

    def pause(self, instance_uuid: str) -> None:
        self._require_guest(instance_uuid).pause()

    def unpause(self, instance_uuid: str) -> None:
        self._require_guest(instance_uuid).unpause()

    def suspend(self, instance_uuid: str) -> None:
        self._require_guest(instance_uuid).managed_save()

    def resume(self, instance_uuid: str) -> None:
        self._require_guest(instance_uuid).restore()

    def power_state(self, instance_uuid: str) -> int:
        guest = self._guest(instance_uuid)
        return guest.power_state() if guest is not None else power_state.NOSTATE

    def power_states(self) -> dict[str, int]:
        guests = [Guest(dom) for dom in self._conn.listAllDomains()]
        return {guest.uuid: guest.power_state() for guest in guests}

    def list_instances(self) -> list[str]:
        return [dom.UUIDString() for dom in self._conn.listAllDomains()]

    def snapshot_disk(self, instance_uuid: str, image_id: str, image_dir: str) -> dict[str, Any]:
        target = _image_file(image_dir, image_id)
        if not target.exists():
            self._convert_to_qcow2(instance_uuid, target)
        with open(target, "rb") as fh:
            sha512 = hashlib.file_digest(fh, "sha512").hexdigest()
        info = subprocess.run(["qemu-img", "info", "--output=json", str(target)],
                              capture_output=True, text=True, check=True)
        return {"location": str(target), "size": target.stat().st_size,
                "checksum": _md5(target), "os_hash_value": sha512, "disk_format": "qcow2",
                "virtual_size": json.loads(info.stdout)["virtual-size"]}

    def _convert_to_qcow2(self, instance_uuid: str, target: Path) -> None:
        """Write the root disk, flattened, as a qcow2 file at ``target`` (via ``.part``)."""
        disk = self._disk(instance_uuid)
        if not disk.exists():
            raise FileNotFoundError(f"instance {instance_uuid} has no root disk on {self.host}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial(target)
        # -U: a guest that is paused (not just stopped) still holds its disk's lock.
        _qemu_img("convert", "-U", "-f", self.disk_format, "-O", "qcow2", str(disk),
                  str(partial))
        os.replace(partial, target)

    def delete_snapshot(self, image_id: str, image_dir: str) -> bool:
        target = _image_file(image_dir, image_id)
        removed_partial = _remove(_partial(target))
        return _remove(target) or removed_partial

    def rebuild_disk(self, instance_uuid: str, image: dict[str, Any], root_gb: int) -> str:
        disk, aside = self._disk(instance_uuid), self._disk(instance_uuid, PRE_REBUILD_DISK)
        if not aside.exists() and disk.exists():
            os.replace(disk, aside)
        return self.create_disk(instance_uuid, image, root_gb)

    def restore_disk(self, instance_uuid: str) -> bool:
        try:
            os.replace(self._disk(instance_uuid, PRE_REBUILD_DISK), self._disk(instance_uuid))
        except FileNotFoundError:
            return False
        return True

    def discard_old_disk(self, instance_uuid: str) -> bool:
        return _remove(self._disk(instance_uuid, PRE_REBUILD_DISK))

    def create_rescue_disk(self, instance_uuid: str, image: dict[str, Any]) -> str:
        size_gb = max(int(image.get("min_disk") or 0), 1)
        return self._create_disk_file(self._disk(instance_uuid, RESCUE_DISK), image, size_gb)

    def delete_rescue_disk(self, instance_uuid: str) -> bool:
        return _remove(self._disk(instance_uuid, RESCUE_DISK))

    def domain_disks(self, instance_uuid: str) -> list[str]:
        guest = self._guest(instance_uuid)
        return guest.disk_paths() if guest is not None else []

    def disk_checksum(self, instance_uuid: str) -> str | None:
        try:
            return _sparse_md5(self._disk(instance_uuid))
        except FileNotFoundError:
            return None

    def console_output(self, instance_uuid: str, length: int | None = None) -> str:
        log = self._instance_dir(instance_uuid) / "console.log"
        if not log.exists():
            return ""  # not booted since it was defined
        text = log.read_text(errors="replace")
        if length is None:
            return text
        # As Nova's compute manager cuts the tail: the last ``length`` pieces
        # between newlines (so a log ending in a newline gives length - 1 lines).
        return "\n".join(text.split("\n")[-length:]) if length > 0 else ""

    def diagnostics(self, instance_uuid: str) -> dict[str, Any]:
        guest = self._require_guest(instance_uuid)
        return guest.diagnostics("libvirt", "test" if self.is_test else self.virt_type)

    def export_disk(self, instance_uuid: str, transfer_dir: str) -> dict[str, Any]:
        disk = self._disk(instance_uuid)
        if not disk.exists():
            raise FileNotFoundError(f"instance {instance_uuid} has no root disk on {self.host}")
        target = Path(transfer_dir) / ROOT_DISK
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = _partial(target)
            # Raw test disks stay raw and sparse; qcow2 overlays are flattened, so
            # the target needs no copy of this host's cached base image.
            _qemu_img("convert", "-U", "-f", self.disk_format, "-O", self.disk_format,
                      str(disk), str(partial))
            os.replace(partial, target)
        return {"path": str(target), "size": target.stat().st_size,
                "checksum": _sparse_md5(disk)}

    def import_disk(self, instance_uuid: str, transfer_dir: str, root_gb: int) -> str:
        disk = self._disk(instance_uuid)
        if disk.exists():
            return str(disk)
        source = Path(transfer_dir) / ROOT_DISK
        disk.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial(disk)
        _qemu_img("convert", "-f", self.disk_format, "-O", self.disk_format, str(source),
                  str(partial))
        wanted = max(int(root_gb), 1) * 1024**3
        info = subprocess.run(["qemu-img", "info", "--output=json", str(partial)],
                              capture_output=True, text=True, check=True)
        current = json.loads(info.stdout)["virtual-size"]
        if wanted < current:
            _remove(partial)
            raise ValueError(f"a root disk of {current} bytes cannot shrink to {root_gb} GB")
        if wanted > current:
            _qemu_img("resize", "-q", "-f", self.disk_format, str(partial), str(wanted))
        os.replace(partial, disk)
        return str(disk)

    def set_disk_aside(self, instance_uuid: str) -> bool:
        disk, aside = self._disk(instance_uuid), self._disk(instance_uuid, PRE_REBUILD_DISK)
        if aside.exists() or not disk.exists():
            return False
        os.replace(disk, aside)
        return True

    def delete_export(self, transfer_dir: str) -> bool:
        path = Path(transfer_dir)
        if not path.exists():
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True

    def create_disk_from_snapshot(self, instance_uuid: str, image: dict[str, Any],
                                  root_gb: int) -> str:
        disk = self._disk(instance_uuid)
        if not self.is_test or disk.exists():  # a qcow2 overlay keeps the image's contents
            return self._create_disk_file(disk, image, max(int(root_gb), 1))
        # Raw test disks: the image's contents copied in, grown to the flavor's size.
        source = self.ensure_image_cached(image)
        disk.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial(disk)
        _qemu_img("convert", "-f", image.get("disk_format", "qcow2"), "-O", "raw", source,
                  str(partial))
        wanted = max(int(root_gb), 1) * 1024**3
        if partial.stat().st_size < wanted:
            _qemu_img("resize", "-q", "-f", "raw", str(partial), str(wanted))
        os.replace(partial, disk)
        return str(disk)

    def disk_exists(self, instance_uuid: str) -> bool:
        return self._disk(instance_uuid).exists()

    # -- live migration of real guests (simulated hosts: flows/live_migrate.py) ----

    def live_migration_uri(self) -> str | None:
        if self.is_test:
            return None
        if urllib.parse.urlsplit(self.uri).hostname:  # a remote URI reaches it already
            return self.uri
        return f"qemu+tcp://{self.host}/system"

    def live_migration_start(self, instance_uuid: str, dest_uri: str,
                             block_migration: bool) -> None:
        self._require_real("live migration")
        with self._migrations_lock:
            under_way = self._migrations.get(instance_uuid)
            if under_way is not None and under_way["state"] == "running":
                return
            guest = self._require_guest(instance_uuid)
            job = {"state": "running", "error": None}
            self._migrations[instance_uuid] = job
        threading.Thread(target=self._migrate, args=(guest, dest_uri, block_migration, job),
                         name=f"migrate-{instance_uuid}", daemon=True).start()

    @staticmethod
    def _migrate(guest: Guest, dest_uri: str, block_migration: bool,
                 job: dict[str, Any]) -> None:
        try:
            guest.migrate(dest_uri, block_migration)
            job["state"] = "completed"
        except libvirt.libvirtError as err:
            aborted = err.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED
            job.update(state="cancelled" if aborted else "failed", error=str(err))

    def live_migration_progress(self, instance_uuid: str) -> dict[str, Any]:
        job = self._migrations.get(instance_uuid) or {"state": "none", "error": None}
        found = dict(job)
        guest = self._guest(instance_uuid) if job["state"] == "running" else None
        stats = guest.job_stats() if guest is not None else {}
        for key in ("memory_total", "memory_processed", "memory_remaining", "disk_total",
                    "disk_processed", "disk_remaining"):
            found[key] = stats.get(key)
        return found

    def live_migration_abort(self, instance_uuid: str) -> bool:
        self._require_real("live migration")
        guest = self._guest(instance_uuid)
        job = self._migrations.get(instance_uuid)
        if guest is None or job is None or job["state"] != "running":
            return False
        return guest.abort_job()

    def live_migration_force_complete(self, instance_uuid: str) -> bool:
        self._require_real("live migration")
        guest = self._guest(instance_uuid)
        job = self._migrations.get(instance_uuid)
        if guest is None or job is None or job["state"] != "running":
            return False
        guest.pause()  # no more dirty pages: the copy converges
        return True

    def _require_real(self, what: str) -> None:
        if self.is_test:
            raise NotImplementedError(f"{what} of simulated guests is modelled by the "
                                      "conductor, not done by the test driver")

    def _peer_disk(self, instance_uuid: str, host: str) -> Path:
        """The root disk of ``instance_uuid`` in ``host``'s instance directory, on
        the instance storage the hosts share."""
        if not host or Path(host).name != host:
            raise ValueError(f"host {host!r} is not a plain name")
        return self.state_dir.parent / host / "instances" / instance_uuid / ROOT_DISK

    def adopt_disk(self, instance_uuid: str, from_host: str) -> str:
        disk = self._disk(instance_uuid)
        if disk.exists():
            return str(disk)
        source = self._peer_disk(instance_uuid, from_host)
        if not source.exists():
            raise FileNotFoundError(f"instance {instance_uuid} has no root disk on {from_host}'s "
                                    "shared instance storage")
        disk.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, disk)
        return str(disk)

    def return_disk(self, instance_uuid: str, to_host: str) -> bool:
        disk = self._disk(instance_uuid)
        if not disk.exists():
            return False
        target = self._peer_disk(instance_uuid, to_host)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(disk, target)
        shutil.rmtree(self._instance_dir(instance_uuid), ignore_errors=True)
        return True

    def close(self) -> None:
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass
