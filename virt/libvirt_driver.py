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
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import libvirt

from virt import domain_xml
from virt.driver import ComputeDriver
from virt.guest import Guest
from vmflow.states import power_state

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions

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


class LibvirtDriver(ComputeDriver):
    def __init__(self, *, host: str, uri: str, state_dir: Path, disk_gb: int,
                 hypervisor_type: str = "QEMU", hypervisor_version: int = 0) -> None:
        self.host = host
        self.uri = uri
        self.state_dir = Path(state_dir)
        self.instances_dir = self.state_dir / "instances"
        self.cache_dir = self.state_dir / "_base"
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.disk_gb = disk_gb
        self.is_test = uri.startswith("test:")
        self.virt_type = "test" if self.is_test else ("kvm" if os.access("/dev/kvm", os.W_OK)
                                                      else "qemu")
        self._hypervisor_type = hypervisor_type
        self._hypervisor_version = hypervisor_version
        self._conn = libvirt.open(uri)
        self._cache_lock = threading.Lock()

    # -- lookups --------------------------------------------------------------------

    def _guest(self, instance_uuid: str) -> Guest | None:
        try:
            return Guest(self._conn.lookupByUUIDString(instance_uuid))
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _instance_dir(self, instance_uuid: str) -> Path:
        return self.instances_dir / instance_uuid

    # -- ComputeDriver --------------------------------------------------------------

    def host_report(self) -> dict[str, Any]:
        arch, memory_mb, cpus = self._conn.getInfo()[:3]
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
        inst_dir = self._instance_dir(instance_uuid)
        disk = inst_dir / "disk"
        if disk.exists():
            return str(disk)
        inst_dir.mkdir(parents=True, exist_ok=True)
        partial = inst_dir / "disk.part"
        size_gb = max(int(root_gb), 1)
        if self.is_test:
            with open(partial, "wb") as fh:
                fh.truncate(size_gb * 1024**3)
        else:
            backing = self.ensure_image_cached(image)
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F",
                            image.get("disk_format", "qcow2"), "-b", backing, str(partial),
                            f"{size_gb}G"], check=True)
        os.replace(partial, disk)
        return str(disk)

    def delete_disks(self, instance_uuid: str) -> bool:
        inst_dir = self._instance_dir(instance_uuid)
        if not inst_dir.exists():
            return False
        shutil.rmtree(inst_dir, ignore_errors=True)
        return True

    def define(self, instance: dict[str, Any]) -> None:
        if self._guest(instance["uuid"]) is not None:
            return
        inst_dir = self._instance_dir(instance["uuid"])
        xml = domain_xml.domain_xml(
            virt_type=self.virt_type, instance=instance, disk_path=str(inst_dir / "disk"),
            disk_format="raw" if self.is_test else "qcow2",
            console_log=None if self.is_test else str(inst_dir / "console.log"),
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
        guest = self._guest(instance_uuid)
        if guest is None:
            raise LookupError(f"no guest {instance_uuid} on {self.host}")
        guest.launch()

    def power_off(self, instance_uuid: str) -> bool:
        guest = self._guest(instance_uuid)
        return guest.poweroff() if guest is not None else False

    def power_state(self, instance_uuid: str) -> int:
        guest = self._guest(instance_uuid)
        return guest.power_state() if guest is not None else power_state.NOSTATE

    def list_instances(self) -> list[str]:
        return [dom.UUIDString() for dom in self._conn.listAllDomains()]

    def disk_exists(self, instance_uuid: str) -> bool:
        return (self._instance_dir(instance_uuid) / "disk").exists()

    def close(self) -> None:
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass
