"""Domain XML: the one place where a guest's libvirt definition is written."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any, NamedTuple
from xml.sax.saxutils import escape, quoteattr


class Disk(NamedTuple):
    """One disk of a guest: its file, its format (``raw``, ``qcow2``) and target (``vda``)."""

    path: str
    format: str
    target: str


def domain_xml(*, virt_type: str, instance: dict[str, Any], disk_path: str | None = None,
               disk_format: str = "raw", disks: Sequence[Disk] | None = None,
               console_log: str | None = None, emulator: str | None = None,
               arch: str = "x86_64", config_drive: str | None = None) -> str:
    """Build the XML for ``instance`` (uuid, name, flavor) on a ``virt_type`` host.

    ``virt_type`` is the libvirt domain type: ``test`` for the test driver,
    ``kvm`` or ``qemu`` for real guests.  The guest's disks are ``disks``, in
    boot order, or else the single disk ``disk_path`` (``disk_format``) as vda.
    ``config_drive``: an ISO image attached as a read-only CD-ROM (sda, SATA).
    """
    if disks is None:
        if disk_path is None:
            raise ValueError("domain_xml needs disk_path or disks")
        disks = [Disk(disk_path, disk_format, "vda")]
    flavor = instance["flavor"]
    uuid = instance["uuid"]
    parts = [
        f"<domain type={quoteattr(virt_type)}>",
        f"  <name>instance-{escape(uuid)}</name>",
        f"  <uuid>{escape(uuid)}</uuid>",
        "  <metadata><vmflow:instance xmlns:vmflow='https://vmflow.dev/xmlns/instance/1'>"
        f"<vmflow:name>{escape(instance.get('name', ''))}</vmflow:name>"
        f"<vmflow:flavor>{escape(flavor.get('name', ''))}</vmflow:flavor>"
        "</vmflow:instance></metadata>",
        f"  <memory unit='MiB'>{int(flavor['memory_mb'])}</memory>",
        f"  <vcpu>{int(flavor['vcpus'])}</vcpu>",
        f"  <os><type arch={quoteattr(arch)}>hvm</type><boot dev='hd'/></os>",
        "  <features><acpi/></features>",
        "  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>",
        "  <on_crash>destroy</on_crash>",
        "  <devices>",
    ]
    if emulator:
        parts.append(f"    <emulator>{escape(emulator)}</emulator>")
    for disk in disks:
        parts += _disk_xml(disk)
    if config_drive:
        parts += [
            "    <disk type='file' device='cdrom'>",
            "      <driver name='qemu' type='raw'/>",
            f"      <source file={quoteattr(config_drive)}/>",
            "      <target dev='sda' bus='sata'/>",
            "      <readonly/>",
            "    </disk>",
        ]
    if console_log:
        parts += [
            "    <serial type='file'>",
            f"      <source path={quoteattr(console_log)}/>",
            "      <target port='0'/>",
            "    </serial>",
        ]
    parts += ["  </devices>", "</domain>"]
    return "\n".join(parts)


def _disk_xml(disk: Disk) -> list[str]:
    return [
        "    <disk type='file' device='disk'>",
        f"      <driver name='qemu' type={quoteattr(disk.format)}/>",
        f"      <source file={quoteattr(disk.path)}/>",
        f"      <target dev={quoteattr(disk.target)} bus='virtio'/>",
        "    </disk>",
    ]


def disk_sources(xml: str) -> list[str]:
    """The source files of a domain's disks (from its XML), in target order (vda, vdb…)."""
    found = []
    for disk in ET.fromstring(xml).iterfind("devices/disk[@device='disk']"):
        target, source = disk.find("target"), disk.find("source")
        if target is not None and source is not None and source.get("file"):
            dev = target.get("dev", "")
            found.append(((len(dev), dev), source.get("file")))
    return [path for _key, path in sorted(found)]
