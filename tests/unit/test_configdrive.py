"""Config drives: the ISO image (read back with isoinfo), its place in the domain
XML (accepted by libvirt), what the conductor puts in it, and that a guest
redefined on its host (rescue, unrescue) keeps it."""

from __future__ import annotations

import json
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from flows import launch
from virt import configdrive
from virt.domain_xml import Disk, disk_sources, domain_xml
from vmflow.db.models import Instance

FLAVOR = {"id": "1", "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1}
META = {"uuid": "6c1d3f0e-0000-4000-8000-000000000001", "name": "Web 1", "hostname": "web-1",
        "public_keys": {"mine": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE mine@test"},
        "keys": [{"name": "mine", "type": "ssh",
                  "data": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE mine@test"}],
        "launch_index": 0, "meta": {"role": "web"}}


def _isoinfo(*args: str) -> str:
    return subprocess.run(["isoinfo", *args], check=True, capture_output=True,
                          text=True).stdout


def test_the_image_is_an_iso_labelled_config_2_with_the_metadata(tmp_path: Path):
    target = tmp_path / "inst" / configdrive.FILE_NAME
    assert configdrive.build(target, META) == target
    assert "Volume id: config-2" in _isoinfo("-d", "-i", str(target))
    for version in configdrive.VERSIONS:
        text = _isoinfo("-R", "-i", str(target), "-x", f"/openstack/{version}/meta_data.json")
        assert json.loads(text) == META
        assert _isoinfo("-R", "-i", str(target), "-x",
                        f"/openstack/{version}/vendor_data.json") == "{}"
    # Built once: running the step again keeps the image (and makes no partial files).
    before = target.stat().st_mtime_ns
    configdrive.build(target, {**META, "name": "changed"})
    assert target.stat().st_mtime_ns == before
    assert sorted(p.name for p in target.parent.iterdir()) == [configdrive.FILE_NAME]


def test_the_domain_gets_a_read_only_cdrom_that_libvirt_accepts(tmp_path: Path):
    instance = {"uuid": str(uuid.uuid4()), "name": "vm", "flavor": FLAVOR}
    drive = str(tmp_path / configdrive.FILE_NAME)
    xml = domain_xml(virt_type="test", instance=instance,
                     disks=[Disk(str(tmp_path / "disk"), "raw", "vda")], config_drive=drive)
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(xml)
        defined = ET.fromstring(dom.XMLDesc())
        dom.undefine()
    finally:
        conn.close()
    (cdrom,) = defined.iterfind("devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == drive
    assert cdrom.find("readonly") is not None
    assert cdrom.find("target").get("bus") == "sata"
    # The root disk is still the only disk the driver counts as the guest's disks.
    assert disk_sources(xml) == [str(tmp_path / "disk")]
    assert "cdrom" not in domain_xml(virt_type="test", instance=instance,
                                     disk_path=str(tmp_path / "disk"))


def test_a_redefined_guest_keeps_its_config_drive(managers):
    """Rescue and unrescue redefine the guest without knowing of the drive; the
    image made at launch stays attached.  (Simulated hosts never make one: the
    file is put there by hand, as a real host's define would have.)"""
    host = managers["compute-1"]
    driver = host.driver
    instance = {"uuid": str(uuid.uuid4()), "name": "vm", "flavor": FLAVOR,
                "config_drive": META}
    inst_dir = driver.instances_dir / instance["uuid"]
    host.dispatch("define", {"instance": instance})
    assert not (inst_dir / configdrive.FILE_NAME).exists()  # simulated: records only

    configdrive.build(inst_dir / configdrive.FILE_NAME, META)
    for disk in ("disk", "disk.rescue"):
        (inst_dir / disk).write_bytes(b"")
    driver.define_rescue(instance)
    driver.define_normal(instance)
    # What libvirt itself holds for the guest, through the host's own connection.
    xml = ET.fromstring(driver._conn.lookupByUUIDString(instance["uuid"]).XMLDesc())
    (cdrom,) = xml.iterfind("devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == str(inst_dir / configdrive.FILE_NAME)
    driver.undefine(instance["uuid"])


@pytest.mark.parametrize("name,expected", [
    ("Web 1", "web-1"), ("db_primary.local", "db-primary.local"), ("été!", "t"),
    ("***", "server"), ("a" * 70, "a" * 63)])
def test_hostnames_from_display_names(name, expected):
    assert launch.hostname(name) == expected


def test_what_the_conductor_puts_on_the_drive():
    row = Instance(uuid="u-1", name="Web 1", project_id="p", availability_zone="nova",
                   metadata_={"role": "web"}, key_name="mine", key_data="ssh-ed25519 AAAA c",
                   config_drive=True)
    assert launch.config_drive_metadata(row) == {
        "uuid": "u-1", "name": "Web 1", "hostname": "web-1", "availability_zone": "nova",
        "project_id": "p", "launch_index": 0, "meta": {"role": "web"}, "devices": [],
        "public_keys": {"mine": "ssh-ed25519 AAAA c"},
        "keys": [{"name": "mine", "type": "ssh", "data": "ssh-ed25519 AAAA c"}]}
    row.key_name = row.key_data = None
    assert launch.config_drive_metadata(row)["public_keys"] == {}
    row.config_drive = False
    assert launch.config_drive_metadata(row) is None
