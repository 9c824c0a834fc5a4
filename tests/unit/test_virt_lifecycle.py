"""Lifecycle steps of a compute host (stop, pause, suspend, snapshot, rebuild, rescue,
power-state sync) against the real libvirt test driver, called the way the
conductor calls them: by step name, with JSON data in and out."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from virt.domain_xml import Disk, disk_sources, domain_xml
from virt.guest import GuestNotRunning
from vmflow import config as config_mod
from vmflow import exception
from vmflow.states import power_state
from workers.compute import ComputeManager, make_driver

FLAVOR = {"id": "1", "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1}

LIFECYCLE_STEPS = {
    "shutdown", "power_off", "power_on", "pause", "unpause", "suspend", "resume",
    "power_states", "snapshot_disk", "delete_snapshot", "rebuild_disk", "restore_disk",
    "discard_old_disk", "create_rescue_disk", "define_rescue", "define_normal",
    "delete_rescue_disk", "domain_disks", "disk_checksum",
}


def step(manager: ComputeManager, name: str, **kwargs: Any) -> Any:
    """Dispatch a step with JSON-encoded arguments and return its JSON-decoded result."""
    result = manager.dispatch(name, json.loads(json.dumps(kwargs)))
    return json.loads(json.dumps(result))


def scribble(path: str | Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


@pytest.fixture
def host(managers) -> ComputeManager:
    return managers["compute-1"]


@pytest.fixture
def blank_image(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "images" / "blank"
    path.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1G"], check=True)
    return {"id": "img-blank", "name": "blank", "disk_format": "qcow2", "location": str(path),
            "min_disk": 0, "min_ram": 0}


def boot(manager: ComputeManager, image: dict[str, Any]) -> dict[str, Any]:
    """A running guest with a root disk; returns the instance as define() takes it."""
    instance = {"uuid": str(uuid.uuid4()), "name": "vm", "flavor": FLAVOR}
    step(manager, "create_disk", instance_uuid=instance["uuid"], image=image, root_gb=1)
    step(manager, "define", instance=instance)
    step(manager, "power_on", instance_uuid=instance["uuid"])
    return instance


@pytest.fixture
def guest(host, blank_image) -> str:
    return boot(host, blank_image)["uuid"]


def state(manager: ComputeManager, instance_uuid: str) -> int:
    return step(manager, "power_state", instance_uuid=instance_uuid)


def test_every_lifecycle_step_is_registered(host):
    assert LIFECYCLE_STEPS <= host.STEPS


# -- shutdown ------------------------------------------------------------------------

def test_shutdown_stops_the_guest_and_tolerates_a_stopped_or_absent_one(host, guest):
    assert step(host, "shutdown", instance_uuid=guest) is True
    assert state(host, guest) == power_state.SHUTDOWN
    assert step(host, "shutdown", instance_uuid=guest) is False
    assert step(host, "shutdown", instance_uuid=str(uuid.uuid4())) is False


def test_guest_ignoring_acpi_runs_on_until_powered_off(cfg, blank_image):
    deaf = ComputeManager("deaf", make_driver(cfg, config_mod.HostConfig("deaf",
                                                                         acpi_shutdown=False)))
    try:
        instance = boot(deaf, blank_image)["uuid"]
        assert step(deaf, "shutdown", instance_uuid=instance) is True
        assert step(deaf, "shutdown", instance_uuid=instance) is True
        assert state(deaf, instance) == power_state.RUNNING
        assert step(deaf, "power_off", instance_uuid=instance) is True
        assert state(deaf, instance) == power_state.SHUTDOWN
        assert step(deaf, "power_off", instance_uuid=instance) is False
        assert step(deaf, "shutdown", instance_uuid=instance) is False
    finally:
        deaf.driver.close()


def test_acpi_shutdown_is_read_from_the_hosts_tables(tmp_path):
    path = tmp_path / "vmflow.toml"
    path.write_text('[[hosts]]\nname = "deaf"\nacpi_shutdown = false\n'
                    '[[hosts]]\nname = "normal"\n')
    hosts = config_mod.load(path, data_dir=tmp_path).compute_hosts()
    assert [(h.name, h.acpi_shutdown) for h in hosts] == [("deaf", False), ("normal", True)]


# -- pause, suspend --------------------------------------------------------------------

def test_pause_and_unpause_twice_each(host, guest):
    for _ in range(2):
        step(host, "pause", instance_uuid=guest)
        assert state(host, guest) == power_state.PAUSED
    for _ in range(2):
        step(host, "unpause", instance_uuid=guest)
        assert state(host, guest) == power_state.RUNNING


def test_pause_refuses_a_stopped_or_absent_guest(host, guest):
    step(host, "power_off", instance_uuid=guest)
    with pytest.raises(GuestNotRunning):
        step(host, "pause", instance_uuid=guest)
    with pytest.raises(GuestNotRunning):
        step(host, "unpause", instance_uuid=guest)
    with pytest.raises(LookupError):
        step(host, "pause", instance_uuid=str(uuid.uuid4()))


def test_suspend_and_resume_twice_each(host, guest):
    for _ in range(2):
        step(host, "suspend", instance_uuid=guest)
        assert state(host, guest) == power_state.SUSPENDED
    for _ in range(2):
        step(host, "resume", instance_uuid=guest)
        assert state(host, guest) == power_state.RUNNING
    # No saved state remains: stopped now, the guest is shut down, not suspended.
    step(host, "power_off", instance_uuid=guest)
    assert state(host, guest) == power_state.SHUTDOWN


def test_a_paused_guest_can_be_suspended(host, guest):
    step(host, "pause", instance_uuid=guest)
    step(host, "suspend", instance_uuid=guest)
    assert state(host, guest) == power_state.SUSPENDED


def test_suspend_and_resume_refuse_a_stopped_guest_without_saved_state(host, guest):
    step(host, "power_off", instance_uuid=guest)
    with pytest.raises(GuestNotRunning):
        step(host, "suspend", instance_uuid=guest)
    with pytest.raises(GuestNotRunning):
        step(host, "resume", instance_uuid=guest)
    assert state(host, guest) == power_state.SHUTDOWN


def test_power_on_starts_a_suspended_guest_from_its_saved_state(host, guest):
    step(host, "suspend", instance_uuid=guest)
    step(host, "power_on", instance_uuid=guest)
    assert state(host, guest) == power_state.RUNNING


def test_power_states_of_every_guest_on_the_host(host, blank_image):
    assert step(host, "power_states") == {}
    running, paused, stopped, suspended = (boot(host, blank_image)["uuid"] for _ in range(4))
    step(host, "pause", instance_uuid=paused)
    step(host, "power_off", instance_uuid=stopped)
    step(host, "suspend", instance_uuid=suspended)
    expected = {running: power_state.RUNNING, paused: power_state.PAUSED,
                stopped: power_state.SHUTDOWN, suspended: power_state.SUSPENDED}
    assert step(host, "power_states") == expected
    assert step(host, "power_states") == step(host, "power_states")


# -- snapshot --------------------------------------------------------------------------

def test_snapshot_writes_a_qcow2_copy_of_the_root_disk_once(host, guest, tmp_path):
    disk = host.driver.instances_dir / guest / "disk"
    scribble(disk, 5 * 1024**2, b"the guest wrote this")
    image_dir = tmp_path / "store" / "images"

    snap = step(host, "snapshot_disk", instance_uuid=guest, image_id="snap-1",
                image_dir=str(image_dir))

    path = image_dir / "snap-1"
    data = path.read_bytes()
    assert snap == {"location": str(path), "size": len(data),
                    "checksum": hashlib.md5(data).hexdigest(),
                    "os_hash_value": hashlib.sha512(data).hexdigest(), "disk_format": "qcow2",
                    "virtual_size": 1024**3}
    assert data[:4] == b"QFI\xfb"
    assert snap["size"] < 10 * 1024**2  # the sparse 1 GiB disk was not copied byte for byte
    assert sorted(p.name for p in image_dir.iterdir()) == ["snap-1"]  # no .part left
    compare = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", str(disk),
                              str(path)], capture_output=True)
    assert compare.returncode == 0, compare.stdout  # same contents

    mtime = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert step(host, "snapshot_disk", instance_uuid=guest, image_id="snap-1",
                image_dir=str(image_dir)) == snap
    assert path.stat().st_mtime_ns == mtime


def test_delete_snapshot_removes_the_file_and_any_partial_copy(host, guest, tmp_path):
    step(host, "snapshot_disk", instance_uuid=guest, image_id="snap-1", image_dir=str(tmp_path))
    (tmp_path / "snap-2.part").write_bytes(b"interrupted")
    assert step(host, "delete_snapshot", image_id="snap-1", image_dir=str(tmp_path)) is True
    assert step(host, "delete_snapshot", image_id="snap-2", image_dir=str(tmp_path)) is True
    assert step(host, "delete_snapshot", image_id="snap-1", image_dir=str(tmp_path)) is False
    assert list(tmp_path.glob("snap-*")) == []


def test_snapshot_without_a_root_disk_fails(host, tmp_path):
    image_dir = tmp_path / "store"
    with pytest.raises(FileNotFoundError):
        step(host, "snapshot_disk", instance_uuid=str(uuid.uuid4()), image_id="snap",
             image_dir=str(image_dir))
    assert not image_dir.exists()


# -- rebuild ---------------------------------------------------------------------------

def test_rebuild_twice_keeps_the_original_and_restore_brings_it_back(host, guest, blank_image):
    disk = host.driver.instances_dir / guest / "disk"
    scribble(disk, 4096, b"original contents")
    original = step(host, "disk_checksum", instance_uuid=guest)
    step(host, "power_off", instance_uuid=guest)

    for _ in range(2):
        assert step(host, "rebuild_disk", instance_uuid=guest, image=blank_image,
                    root_gb=1) == str(disk)
        assert step(host, "disk_checksum", instance_uuid=guest) != original
        assert (disk.parent / "disk.pre-rebuild").exists()

    assert step(host, "restore_disk", instance_uuid=guest) is True
    assert step(host, "disk_checksum", instance_uuid=guest) == original
    assert step(host, "restore_disk", instance_uuid=guest) is False
    assert step(host, "disk_checksum", instance_uuid=guest) == original
    assert not (disk.parent / "disk.pre-rebuild").exists()


def test_discard_old_disk_after_a_rebuild(host, guest, blank_image):
    disk = host.driver.instances_dir / guest / "disk"
    scribble(disk, 0, b"original")
    step(host, "power_off", instance_uuid=guest)
    step(host, "rebuild_disk", instance_uuid=guest, image=blank_image, root_gb=1)
    rebuilt = step(host, "disk_checksum", instance_uuid=guest)
    assert step(host, "discard_old_disk", instance_uuid=guest) is True
    assert step(host, "discard_old_disk", instance_uuid=guest) is False
    assert step(host, "restore_disk", instance_uuid=guest) is False
    assert step(host, "disk_checksum", instance_uuid=guest) == rebuilt
    step(host, "power_on", instance_uuid=guest)
    assert state(host, guest) == power_state.RUNNING


# -- rescue ----------------------------------------------------------------------------

def test_rescue_and_unrescue(host, blank_image):
    instance = boot(host, blank_image)
    uid = instance["uuid"]
    inst_dir = host.driver.instances_dir / uid
    root, rescue = str(inst_dir / "disk"), str(inst_dir / "disk.rescue")
    scribble(root, 8192, b"data to rescue")
    original = step(host, "disk_checksum", instance_uuid=uid)

    for _ in range(2):
        assert step(host, "create_rescue_disk", instance_uuid=uid, image=blank_image) == rescue
    assert Path(rescue).stat().st_size == 1024**3  # max(1, min_disk) GiB
    for _ in range(2):
        step(host, "define_rescue", instance=instance)
        assert state(host, uid) == power_state.SHUTDOWN  # powered off to redefine
        assert step(host, "domain_disks", instance_uuid=uid) == [rescue, root]
    step(host, "power_on", instance_uuid=uid)
    assert state(host, uid) == power_state.RUNNING

    for _ in range(2):
        step(host, "define_normal", instance=instance)
        assert state(host, uid) == power_state.SHUTDOWN
        assert step(host, "domain_disks", instance_uuid=uid) == [root]
    assert step(host, "delete_rescue_disk", instance_uuid=uid) is True
    assert step(host, "delete_rescue_disk", instance_uuid=uid) is False
    assert not Path(rescue).exists()
    assert step(host, "disk_checksum", instance_uuid=uid) == original
    step(host, "power_on", instance_uuid=uid)
    assert state(host, uid) == power_state.RUNNING


def test_rescue_disk_takes_the_images_minimum_size(host, guest, blank_image):
    path = step(host, "create_rescue_disk", instance_uuid=guest,
                image=dict(blank_image, min_disk=3))
    assert Path(path).stat().st_size == 3 * 1024**3


def test_redefining_an_absent_guest_fails_and_reads_see_nothing(host):
    absent = {"uuid": str(uuid.uuid4()), "name": "gone", "flavor": FLAVOR}
    for name in ("define_rescue", "define_normal"):
        with pytest.raises(LookupError):
            step(host, name, instance=absent)
    assert step(host, "domain_disks", instance_uuid=absent["uuid"]) == []
    assert step(host, "disk_checksum", instance_uuid=absent["uuid"]) is None
    assert step(host, "list_instances") == []


# -- disk checksum, domain XML, fault injection ------------------------------------------

def test_disk_checksum_follows_contents_and_skips_holes(host, guest):
    disk = host.driver.instances_dir / guest / "disk"
    started = time.monotonic()
    empty = step(host, "disk_checksum", instance_uuid=guest)
    assert time.monotonic() - started < 1.0  # 1 GiB of holes is not read
    assert step(host, "disk_checksum", instance_uuid=guest) == empty
    scribble(disk, 1024**2, b"x")
    one = step(host, "disk_checksum", instance_uuid=guest)
    assert one != empty
    scribble(disk, 1024**2, b"y")
    assert step(host, "disk_checksum", instance_uuid=guest) not in (empty, one)


def test_domain_xml_with_several_disks_round_trips():
    instance = {"uuid": str(uuid.uuid4()), "name": "vm", "flavor": FLAVOR}
    xml = domain_xml(virt_type="test", instance=instance,
                     disks=[Disk("/d/second", "raw", "vdb"), Disk("/d/first", "qcow2", "vda")])
    assert disk_sources(xml) == ["/d/first", "/d/second"]
    single = domain_xml(virt_type="test", instance=instance, disk_path="/d/disk",
                        disk_format="raw")
    assert disk_sources(single) == ["/d/disk"]
    with pytest.raises(ValueError):
        domain_xml(virt_type="test", instance=instance)


def test_failure_injection_covers_the_new_steps(host, guest):
    faulty = ComputeManager("compute-1", host.driver, inject_failure="suspend")
    with pytest.raises(exception.HypervisorError):
        step(faulty, "suspend", instance_uuid=guest)
    assert state(host, guest) == power_state.RUNNING
    step(faulty, "pause", instance_uuid=guest)
    assert state(host, guest) == power_state.PAUSED


def test_power_off_discards_a_suspended_guests_saved_memory(host, guest):
    step(host, "suspend", instance_uuid=guest)
    assert step(host, "power_off", instance_uuid=guest) is True
    assert state(host, guest) == power_state.SHUTDOWN  # off, not suspended any more
    assert step(host, "power_off", instance_uuid=guest) is False
    step(host, "power_on", instance_uuid=guest)
    assert state(host, guest) == power_state.RUNNING


def test_a_disk_moves_between_hosts_through_a_transfer_directory(managers, guest, tmp_path):
    source, target = managers["compute-1"], managers["compute-2"]
    scribble(source.driver.instances_dir / guest / "disk", 5 * 1024**2, b"moved")
    transfer = str(tmp_path / "transfers" / "m-1")
    started = time.monotonic()
    exported = step(source, "export_disk", instance_uuid=guest, transfer_dir=transfer)
    assert time.monotonic() - started < 5.0  # sparse: 1 GiB of holes is not written
    assert exported["checksum"] == step(source, "disk_checksum", instance_uuid=guest)
    assert step(source, "export_disk", instance_uuid=guest,
                transfer_dir=transfer) == exported  # once
    path = step(target, "import_disk", instance_uuid=guest, transfer_dir=transfer, root_gb=2)
    assert Path(path).stat().st_size == 2 * 1024**3  # grown to the new flavor's disk
    with open(path, "rb") as fh:
        fh.seek(5 * 1024**2)
        assert fh.read(5) == b"moved"
    assert step(target, "import_disk", instance_uuid=guest, transfer_dir=transfer,
                root_gb=2) == path  # once
    assert step(target, "delete_export", transfer_dir=transfer) is True
    assert step(target, "delete_export", transfer_dir=transfer) is False


def test_importing_a_disk_never_shrinks_it(managers, guest, tmp_path):
    source, target = managers["compute-1"], managers["compute-2"]
    transfer = str(tmp_path / "transfers" / "m-2")
    os.truncate(source.driver.instances_dir / guest / "disk", 2 * 1024**3)  # a 2 GB root disk
    step(source, "export_disk", instance_uuid=guest, transfer_dir=transfer)
    other = str(uuid.uuid4())
    with pytest.raises(ValueError, match="cannot shrink"):
        target.dispatch("import_disk", {"instance_uuid": other, "transfer_dir": transfer,
                                        "root_gb": 1})
    assert not step(target, "disk_checksum", instance_uuid=other)
