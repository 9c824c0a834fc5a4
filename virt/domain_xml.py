"""Domain XML: the one place where a guest's libvirt definition is written."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr


def domain_xml(*, virt_type: str, instance: dict[str, Any], disk_path: str,
               disk_format: str, console_log: str | None = None,
               emulator: str | None = None, arch: str = "x86_64") -> str:
    """Build the XML for ``instance`` (uuid, name, flavor) on a ``virt_type`` host.

    ``virt_type`` is the libvirt domain type: ``test`` for the test driver,
    ``kvm`` or ``qemu`` for real guests.
    """
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
    parts += [
        "    <disk type='file' device='disk'>",
        f"      <driver name='qemu' type={quoteattr(disk_format)}/>",
        f"      <source file={quoteattr(disk_path)}/>",
        "      <target dev='vda' bus='virtio'/>",
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
