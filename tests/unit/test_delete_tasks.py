"""Each delete task's execute and revert, called directly against real pieces."""

from __future__ import annotations

from taskflow.types import failure

from flows import delete
from vmflow import exception
from vmflow.db import claims
from vmflow.db.models import ComputeNode, Instance, InstanceFault
from vmflow.states import task_states, vm_states


def test_delete_steps_remove_everything(services, running_instance):
    uid = running_instance
    driver = services.compute.managers["compute-1"].driver
    delete.BeginDelete(services, "b").execute(uid)
    with services.db.read() as session:
        assert session.get(Instance, uid).task_state == task_states.DELETING
    hosts = delete.FindHosts(services, "f").execute(uid)
    assert hosts == ["compute-1"]
    for _ in range(2):  # every step is safe to repeat
        delete.DestroyGuests(services, "g").execute(uid, hosts)
        delete.DeleteDisks(services, "k").execute(uid, hosts)
        delete.ReleaseClaims(services, "r").execute(uid)
    assert driver.list_instances() == [] and not driver.disk_exists(uid)
    delete.MarkDeleted(services, "m").execute(uid)
    with services.db.read() as session:
        row = session.get(Instance, uid)
        assert row.deleted and row.vm_state == vm_states.DELETED and row.deleted_at
        assert claims.allocations_of(session, uid) == []
        node = session.query(ComputeNode).filter_by(host="compute-1").one()
        assert (node.vcpus_used, node.memory_mb_used, node.local_gb_used) == (0, 0, 0)


def test_find_hosts_includes_hosts_holding_claims(services, running_instance, flavor):
    with services.db.write() as session:
        claims.claim(session, running_instance, "compute-2", claims.Resources.of_flavor(flavor))
    assert delete.FindHosts(services, "f").execute(running_instance) == ["compute-1",
                                                                         "compute-2"]


def test_failed_delete_reverts_to_error_with_fault(services, running_instance):
    uid = running_instance
    begin = delete.BeginDelete(services, "b")
    begin.execute(uid)
    boom = failure.Failure.from_exception(
        exception.ComputeUnavailable(host="compute-1", step="undefine", timeout=60))
    begin.revert(None, uid, flow_failures={"delete.destroy-guests": boom})
    with services.db.read() as session:
        row = session.get(Instance, uid)
        assert (row.vm_state, row.task_state, row.deleted) == (vm_states.ERROR, None, False)
        fault = session.query(InstanceFault).filter_by(instance_uuid=uid).one()
    assert fault.message.startswith("Delete failed: Compute host compute-1 did not answer")
