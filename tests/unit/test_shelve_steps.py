"""Shelve's pieces without the rest of the cloud: the graphs' wiring (every
requirement provided, stable names), and the host step that makes a root disk
from a shelved image, on the real libvirt test driver."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import pytest
from taskflow import engines

import flows
from flows import shelve
from flows.base import Services
from vmflow import config
from workers.compute import ComputeManager

FLAVOR = {"id": "1", "name": "m1.tiny", "vcpus": 1, "memory_mb": 512, "root_gb": 1}


def _services() -> Services:
    return Services(config=config.Config(data_dir="/nonexistent"), db=None)


def _validate(flow, inputs: dict[str, Any]) -> None:
    engine = engines.load(flow, store=inputs, engine="serial")
    engine.compile()
    engine.prepare()
    engine.validate()


@pytest.mark.parametrize("offload", [True, False])
@pytest.mark.parametrize("graceful", [True, False])
def test_shelve_graph(offload, graceful):
    flow = shelve.get_flow(_services(), offload=offload, graceful=graceful)
    names = flows.task_names(flow)
    assert names[0] == "shelve.begin" and names[-1] == "shelve.finish"
    assert len(names) == len(set(names))
    assert ("shelve.request-shutdown" in names) is graceful
    assert ("shelve.power-off" in names) is not graceful
    offloading = ["shelve.undefine", "shelve.delete-disks", "shelve.release-claim"]
    assert (names[-4:-1] == offloading) is offload
    # The image is copied before anything leaves the host.
    assert names.index("shelve.activate-image") < len(names) - (4 if offload else 1)
    assert flow.requires == {"instance_uuid", "image_id"}
    _validate(flow, {"instance_uuid": "u", "image_id": "i"})


def test_offload_graph_undefines_before_deleting_disks_and_releases_last():
    flow = shelve.get_offload_flow(_services())
    assert flows.task_names(flow) == [
        "shelve_offload.begin", "shelve_offload.undefine", "shelve_offload.delete-disks",
        "shelve_offload.release-claim", "shelve_offload.finish"]
    _validate(flow, {"instance_uuid": "u", "image_id": "i"})


@pytest.mark.parametrize("offloaded", [True, False])
def test_unshelve_graph(offloaded):
    flow = flows.build("unshelve", _services(), {"offloaded": offloaded})
    names = flows.task_names(flow)
    if offloaded:
        assert names[1:6] == ["unshelve.select-destination", "unshelve.claim",
                              "unshelve.cache-image", "unshelve.create-disk",
                              "unshelve.define-domain"]
    else:
        assert "unshelve.claim" not in names
    assert names[-1] == "unshelve.finish"
    _validate(flow, {"instance_uuid": "u", "availability_zone": None})


def test_every_step_says_how_it_reverts():
    built = [shelve.get_flow(_services(), graceful=False), shelve.get_offload_flow(_services()),
             shelve.get_unshelve_flow(_services(), offloaded=True)]
    for flow in built:
        for task in flows.tasks(flow):
            assert "Revert" in (type(task).__doc__ or ""), type(task).__name__


# -- the host step ---------------------------------------------------------------------

def _step(manager: ComputeManager, name: str, **kwargs: Any) -> Any:
    return json.loads(json.dumps(manager.dispatch(name, json.loads(json.dumps(kwargs)))))


def test_a_disk_made_from_a_shelved_image_has_its_contents(managers, tmp_path):
    source, target = managers["compute-1"], managers["compute-2"]
    guest = str(uuid.uuid4())
    _step(source, "create_disk", instance_uuid=guest, image={"id": "x", "location": ""},
          root_gb=1)
    disk = source.driver.instances_dir / guest / "disk"
    with open(disk, "r+b") as fh:
        fh.seek(3 * 1024**2)
        fh.write(b"shelved marker")
    store = tmp_path / "store"
    snap = _step(source, "snapshot_disk", instance_uuid=guest, image_id="shelved",
                 image_dir=str(store))
    image = {"id": "shelved", "location": snap["location"], "disk_format": "qcow2"}

    path = _step(target, "create_disk_from_snapshot", instance_uuid=guest, image=image,
                 root_gb=2)
    made = target.driver.instances_dir / guest / "disk"
    assert path == str(made)
    with open(made, "rb") as fh:
        fh.seek(3 * 1024**2)
        assert fh.read(14) == b"shelved marker"
    assert made.stat().st_size == 2 * 1024**3  # grown to the flavor's disk
    assert not list(made.parent.glob("*.part"))
    # Made already: nothing is done (a step run again after a crash).
    with open(made, "r+b") as fh:
        fh.write(b"changed after")
    _step(target, "create_disk_from_snapshot", instance_uuid=guest, image=image, root_gb=2)
    assert made.read_bytes()[:13] == b"changed after"
    # The same size: the same contents as the shelved disk.
    _step(target, "delete_disks", instance_uuid=guest)
    _step(target, "create_disk_from_snapshot", instance_uuid=guest, image=image, root_gb=1)
    same = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", str(disk),
                           str(made)], capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    info = subprocess.run(["qemu-img", "info", "--output=json", str(made)],
                          capture_output=True, text=True, check=True)
    assert json.loads(info.stdout)["format"] == "raw"
