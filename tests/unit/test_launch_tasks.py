"""Each launch task's execute and revert, called directly against real pieces."""

from __future__ import annotations

import uuid

import pytest
from taskflow import retry
from taskflow.types import failure

from flows import launch
from vmflow import exception
from vmflow.db import claims
from vmflow.db.models import ComputeNode, Instance, InstanceFault
from vmflow.states import power_state, task_states, vm_states


def _request(**kw):
    base = {"name": "vm", "flavor_ref": "1", "project_id": "p1", "user_id": "u1",
            "availability_zone": None, "metadata": {}}
    base.update(kw)
    return base


@pytest.fixture
def instance_uuid(services, flavor, image) -> str:
    uid = str(uuid.uuid4())
    launch.CreateInstanceRecord(services, "c").execute(
        uid, _request(image_ref=image["id"]), flavor, image)
    return uid


def _instance(services, uid) -> Instance:
    with services.db.read() as session:
        return session.get(Instance, uid)


def test_validate_request_resolves_flavor_and_image(services, image):
    task = launch.ValidateRequest(services, "v")
    flavor, img = task.execute(_request(image_ref=image["id"]))
    assert flavor["name"] == "m1.tiny" and flavor["memory_mb"] == 512
    assert img["id"] == image["id"] and img["location"]
    with pytest.raises(exception.FlavorNotFound):
        task.execute(_request(flavor_ref="nope", image_ref=image["id"]))
    with pytest.raises(exception.ImageNotFound):
        task.execute(_request(image_ref=str(uuid.uuid4())))


def test_validate_request_refuses_image_too_big_for_flavor(services, image):
    from vmflow.db.models import Image

    with services.db.write() as session:
        session.get(Image, image["id"]).min_disk = 50
    with pytest.raises(exception.Invalid, match="too small"):
        launch.ValidateRequest(services, "v").execute(_request(image_ref=image["id"]))


def test_check_quota(services, flavor, image):
    services.config.quota_instances = 1
    task = launch.CheckQuota(services, "q")
    task.execute(_request(), flavor)  # nothing used yet
    launch.CreateInstanceRecord(services, "c").execute(
        str(uuid.uuid4()), _request(image_ref=image["id"]), flavor, image)
    with pytest.raises(exception.QuotaExceeded, match="instances"):
        task.execute(_request(), flavor)
    services.config.quota_instances = 10
    services.config.quota_cores = 1
    with pytest.raises(exception.QuotaExceeded, match="cores"):
        task.execute(_request(), flavor)


def test_create_instance_record_is_idempotent_and_reverts_to_error(services, flavor, image):
    uid = str(uuid.uuid4())
    task = launch.CreateInstanceRecord(services, "c")
    task.execute(uid, _request(image_ref=image["id"]), flavor, image)
    task.execute(uid, _request(image_ref=image["id"]), flavor, image)
    row = _instance(services, uid)
    assert (row.vm_state, row.task_state) == (vm_states.BUILDING, task_states.SCHEDULING)
    assert row.flavor["vcpus"] == 1 and row.project_id == "p1"

    boom = failure.Failure.from_exception(exception.HypervisorError(host="h", step="s",
                                                                    reason="disk full"))
    task.revert(None, uid, flow_failures={"launch.create-disk": boom})
    row = _instance(services, uid)
    assert (row.vm_state, row.task_state) == (vm_states.ERROR, None)
    with services.db.read() as session:
        fault = session.query(InstanceFault).filter_by(instance_uuid=uid).one()
    assert fault.code == 500 and "disk full" in fault.message and fault.details


def test_create_instance_record_rechecks_quota_after_insert(services, flavor, image):
    services.config.quota_instances = 0
    uid = str(uuid.uuid4())
    with pytest.raises(exception.QuotaExceeded):
        launch.CreateInstanceRecord(services, "c").execute(
            uid, _request(image_ref=image["id"]), flavor, image)
    assert _instance(services, uid) is None


def test_select_destinations_excludes_tried_hosts(services, instance_uuid, flavor, image):
    task = launch.SelectDestinations(services, "s")
    req = _request(image_ref=image["id"])
    candidates, decision = task.execute(instance_uuid, req, flavor, image, 1)
    assert sorted(candidates) == ["compute-1", "compute-2"]
    assert decision["candidates"] == candidates and decision["hosts"] == 2
    with services.db.write() as session:
        session.get(Instance, instance_uuid).tried_hosts = ["compute-1"]
    assert task.execute(instance_uuid, req, flavor, image, 2)[0] == ["compute-2"]
    with services.db.write() as session:
        session.get(Instance, instance_uuid).tried_hosts = ["compute-1", "compute-2"]
    with pytest.raises(exception.NoValidHost, match="RetryFilter eliminated the last 2"):
        task.execute(instance_uuid, req, flavor, image, 3)


def test_claim_skips_full_hosts_and_revert_releases(services, instance_uuid, flavor):
    with services.db.write() as session:  # compute-1 is full
        session.query(ComputeNode).filter_by(host="compute-1").update({"vcpus_used": 4})
    task = launch.ClaimResources(services, "claim")
    host = task.execute(instance_uuid, _request(), flavor, ["compute-1", "compute-2"])
    assert host == "compute-2"
    row = _instance(services, instance_uuid)
    assert (row.host, row.task_state) == ("compute-2", task_states.BLOCK_DEVICE_MAPPING)
    with services.db.read() as session:
        assert [a.host for a in claims.allocations_of(session, instance_uuid)] == ["compute-2"]
        node = session.query(ComputeNode).filter_by(host="compute-2").one()
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used) == (1, 512, 1)

    task.revert(host, instance_uuid, flavor)
    task.revert(host, instance_uuid, flavor)  # a second revert changes nothing
    row = _instance(services, instance_uuid)
    assert (row.host, row.task_state, row.tried_hosts) == (None, task_states.SCHEDULING,
                                                          ["compute-2"])
    with services.db.read() as session:
        node = session.query(ComputeNode).filter_by(host="compute-2").one()
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used) == (0, 0, 0)
        assert claims.allocations_of(session, instance_uuid) == []


def test_claim_on_deleted_instance_is_refused_and_rolled_back(services, instance_uuid, flavor):
    with services.db.write() as session:
        session.get(Instance, instance_uuid).task_state = task_states.DELETING
    with pytest.raises(exception.InstanceGone):
        launch.ClaimResources(services, "claim").execute(instance_uuid, _request(), flavor,
                                                         ["compute-1"])
    with services.db.read() as session:
        assert claims.allocations_of(session, instance_uuid) == []
        assert session.query(ComputeNode).filter_by(host="compute-1").one().vcpus_used == 0


def _on_host(services, instance_uuid, host="compute-1"):
    with services.db.write() as session:
        row = session.get(Instance, instance_uuid)
        row.host, row.task_state = host, task_states.BLOCK_DEVICE_MAPPING
    return services.compute.managers[host].driver


def test_host_steps_execute_and_revert(services, instance_uuid, flavor, image):
    driver = _on_host(services, instance_uuid)
    req = _request(image_ref=image["id"])

    launch.CacheImage(services, "i").execute("compute-1", image)
    assert (driver.cache_dir / image["id"]).exists()

    disk = launch.CreateDisk(services, "d")
    disk.execute(instance_uuid, "compute-1", image, flavor)
    disk.execute(instance_uuid, "compute-1", image, flavor)  # idempotent
    assert driver.disk_exists(instance_uuid)

    define = launch.DefineDomain(services, "def")
    define.execute(instance_uuid, "compute-1", req, flavor)
    define.execute(instance_uuid, "compute-1", req, flavor)  # idempotent
    assert driver.list_instances() == [instance_uuid]
    assert _instance(services, instance_uuid).task_state == task_states.SPAWNING

    power = launch.PowerOn(services, "on")
    power.execute(instance_uuid, "compute-1")
    power.execute(instance_uuid, "compute-1")
    assert driver.power_state(instance_uuid) == power_state.RUNNING
    assert launch.WaitForRunning(services, "w").execute(instance_uuid, "compute-1", 1) == 1

    power.revert(None, instance_uuid, "compute-1")
    assert driver.power_state(instance_uuid) == power_state.SHUTDOWN
    with pytest.raises(exception.HypervisorError, match="SHUTDOWN, not RUNNING"):
        launch.WaitForRunning(services, "w").execute(instance_uuid, "compute-1", 1)
    define.revert(None, instance_uuid, "compute-1")
    define.revert(None, instance_uuid, "compute-1")  # already gone is fine
    assert driver.list_instances() == []
    disk.revert(None, instance_uuid, "compute-1")
    assert not driver.disk_exists(instance_uuid)


def test_mark_active_only_from_spawning(services, instance_uuid):
    _on_host(services, instance_uuid)
    task = launch.MarkActive(services, "a")
    with pytest.raises(exception.InstanceGone):
        task.execute(instance_uuid, "compute-1")  # still block_device_mapping
    with services.db.write() as session:
        session.get(Instance, instance_uuid).task_state = task_states.SPAWNING
    task.execute(instance_uuid, "compute-1")
    row = _instance(services, instance_uuid)
    assert (row.vm_state, row.task_state, row.power_state) == (vm_states.ACTIVE, None, 1)
    assert row.launched_at is not None


def _history(*failures):
    return retry.History([(i + 1, {"step": f}) for i, f in enumerate(failures)])


def test_reschedule_decisions():
    r = launch.RescheduleRetry(max_attempts=3)
    host_fail = failure.Failure.from_exception(
        exception.HypervisorError(host="h", step="s", reason="x"))
    gone = failure.Failure.from_exception(exception.InstanceGone(instance_id="i"))
    no_host = failure.Failure.from_exception(exception.NoValidHost(reason="none"))
    assert r.on_failure(_history(host_fail)) == retry.RETRY
    assert r.on_failure(_history(host_fail, host_fail)) == retry.RETRY
    assert r.on_failure(_history(host_fail, host_fail, host_fail)) == retry.REVERT_ALL
    assert r.on_failure(_history(gone)) == retry.REVERT_ALL
    assert r.on_failure(_history(no_host)) == retry.REVERT_ALL
    assert r.execute(_history(host_fail)) == 2
