"""What the replay tests check after a process died: that the database, the
hypervisors and the claims agree."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from sqlalchemy import select

from vmflow.db.models import Allocation, ComputeNode, FlowRun, Instance, InstanceFault


def accepted(body: dict | None) -> int:
    """The status Nova answers an accepted action with: 200 for a rescue (its
    body holds the admin password), 204 for a delete, 202 for the rest."""
    if body is None:
        return 204
    return 200 if "rescue" in body else 202


def agree(running, server_id: str) -> None:
    """Database, hypervisors and claims tell the same story: one guest with its
    disk on the instance's host, one claim there, nothing anywhere else."""
    with running.db.read() as session:
        instance = session.get(Instance, server_id)
        allocations = list(session.scalars(select(Allocation).where(
            Allocation.instance_uuid == server_id)))
        usage = {n.host: (n.vcpus_used, n.memory_mb_used, n.local_gb_used)
                 for n in session.scalars(select(ComputeNode))}
    assert [a.host for a in allocations] == [instance.host]
    for host, manager in running.cloud.compute.managers.items():
        mine = host == instance.host
        assert manager.driver.list_instances() == ([server_id] if mine else []), host
        assert manager.driver.disk_exists(server_id) == mine, host
        assert usage[host] == ((1, 512, 1) if mine else (0, 0, 0)), host


def run_of(running, server_id: str, operation: str) -> FlowRun:
    """The operation's latest flow run, once it has ended."""
    deadline = time.monotonic() + 90  # a conductor starting on a loaded machine is slow
    while True:
        with running.db.read() as session:
            run = session.scalar(select(FlowRun).where(
                FlowRun.instance_uuid == server_id, FlowRun.operation == operation,
            ).order_by(FlowRun.created_at.desc(), FlowRun.id).limit(1))
        if run.state in ("SUCCESS", "REVERTED", "FAILURE") and run.owner is None:
            return run
        assert time.monotonic() < deadline, f"flow run {run.id} stayed {run.state}"
        time.sleep(0.05)


def faults(running, server_id: str) -> list[str]:
    with running.db.read() as session:
        return [f.message for f in session.scalars(select(InstanceFault).where(
            InstanceFault.instance_uuid == server_id).order_by(InstanceFault.id))]


def wait_hosts(api, count: int) -> None:
    deadline = time.monotonic() + 60
    while sum(s["state"] == "up" for s in api.get("/v2.1/os-services",
                                                  params={"binary": "vmflow-compute"}
                                                  ).json()["services"]) < count:
        assert time.monotonic() < deadline, "compute processes never reported"
        time.sleep(0.1)


def guests(running, host: str) -> dict[str, int]:
    conn = running.hypervisor(host)
    try:
        return {d.UUIDString(): d.state()[0] for d in conn.listAllDomains()}
    finally:
        conn.close()


@contextlib.contextmanager
def messages_lost(running) -> Iterator[list[str]]:
    """Within this block the broker loses the API's hand-offs to the conductor:
    the flow runs are recorded and nobody drives them (their ids are collected)."""
    compute_api = running.app.extensions["vmflow"]["compute_api"]
    lost: list[str] = []
    compute_api._hand_to_conductor = lost.append
    try:
        yield lost
    finally:
        del compute_api._hand_to_conductor
