"""A host checks a command before it acts on it (workers.compute.CommandGate).

Embedded cloud with ``host_command_fresh_seconds = 0``: every command sent for
a flow run is confirmed with the conductor first, so the whole lifecycle runs
through the check, and stale commands (an ended operation, an old lease epoch,
an instance on another host, an expired message) are refused without effect.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from tests.functional.checks import messages_lost
from vmflow import context, exception
from vmflow.db.models import FlowRun
from vmflow.states import power_state
from workers.rpc import COMMAND_HEADER, COMPUTE_TASK


@pytest.fixture
def strict(cloud_factory):
    return cloud_factory(host_command_fresh_seconds=0.0, shutdown_timeout=0.3,
                         report_interval=60.0)


def _client(running):
    return running.cloud.conductor.services.compute


def _run(running, server_id: str, operation: str) -> FlowRun:
    with running.db.read() as session:
        return session.scalar(select(FlowRun).where(FlowRun.instance_uuid == server_id,
                                                    FlowRun.operation == operation))


def test_current_commands_are_confirmed_and_acted_on(strict):
    api = strict.api
    server_id = api.create("checked").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    assert api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None}).status_code == 202
    assert api.wait_status(server_id, ("SHUTOFF",))["status"] == "SHUTOFF"
    assert api.post(f"/v2.1/servers/{server_id}/action", {"os-start": None}).status_code == 202
    assert api.wait_status(server_id, ("ACTIVE",))["status"] == "ACTIVE"
    host = api.server(server_id)["OS-EXT-SRV-ATTR:host"]
    assert strict.driver(host).power_state(server_id) == power_state.RUNNING


def test_a_command_of_an_ended_operation_is_refused(strict):
    api = strict.api
    server_id = api.create("settled").json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    host = api.server(server_id)["OS-EXT-SRV-ATTR:host"]
    launch = _run(strict, server_id, "launch")
    with context.flow_scope(launch.id, launch.epoch), \
            pytest.raises(exception.HypervisorError, match="its operation has ended"):
        _client(strict).call(host, "power_off", instance_uuid=server_id)
    assert strict.driver(host).power_state(server_id) == power_state.RUNNING


def test_commands_of_an_old_epoch_or_for_another_host_are_refused(strict):
    api = strict.api
    with messages_lost(strict) as lost:  # the broker loses the message
        server_id = api.create("held").json()["server"]["id"]
    client = _client(strict)

    with context.flow_scope(lost[0], 0), \
            pytest.raises(exception.HypervisorError, match="lives on None, not compute-1"):
        client.call("compute-1", "power_state", instance_uuid=server_id)
    with context.flow_scope(lost[0], 3), \
            pytest.raises(exception.HypervisorError, match="driven at epoch 0 now, not 3"):
        client.call("compute-1", "power_state", instance_uuid=server_id)
    # The host remembers the newest epoch it has seen of each run.
    with context.flow_scope(lost[0], 2), \
            pytest.raises(exception.HypervisorError, match="driven at epoch 3 now, not 2"):
        client.call("compute-1", "power_state", instance_uuid=server_id)


def test_an_expired_command_is_refused(strict):
    app = strict.cloud.conductor.app
    exchange = f"{strict.cfg.queue_prefix}.compute"
    stale = {"sent_at": time.time() - 120, "expires_at": time.time() - 60}
    reply = app.send_task(COMPUTE_TASK, args=["compute-1", "list_instances", {}],
                          exchange=exchange, routing_key="compute.compute-1",
                          headers={COMMAND_HEADER: stale}).get(timeout=10)
    assert reply == {"ok": False, "error": "refused by host compute-1: it has expired"}
    fresh = {"sent_at": time.time(), "expires_at": time.time() + 60}
    reply = app.send_task(COMPUTE_TASK, args=["compute-1", "list_instances", {}],
                          exchange=exchange, routing_key="compute.compute-1",
                          headers={COMMAND_HEADER: fresh}).get(timeout=10)
    assert reply == {"ok": True, "result": []}
