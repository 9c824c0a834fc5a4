"""A real Redis broker, and compute workers as separate `vmflow compute` processes.

The conductor and the API run in the test process; each compute host is its own
OS process that consumes only its host's queue and holds no database settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from virt import hostd


def _start_compute(host: str, data_dir: Path, log_dir: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vmflow.cli", "compute", "--host", host,
         "--data-dir", str(data_dir), "--vcpus", "8"],
        env={**env, "VMFLOW_LOG_DIR": str(log_dir)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def test_compute_workers_as_separate_processes_over_redis(cloud_factory, redis_url, tmp_path):
    running = cloud_factory(run_compute=False, broker_url=redis_url, result_backend=redis_url,
                            report_interval=1.0)
    prefix = running.cfg.queue_prefix
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMFLOW_")}
    env.update(VMFLOW_BROKER_URL=redis_url, VMFLOW_RESULT_BACKEND=redis_url,
               VMFLOW_QUEUE_PREFIX=prefix, VMFLOW_REPORT_INTERVAL="1")
    compute_dir, log_dir = tmp_path / "compute-data", tmp_path / "logs"
    procs = [_start_compute(h, compute_dir, log_dir, env) for h in ("compute-1", "compute-2")]
    try:
        api = running.api
        deadline = time.monotonic() + 60
        while len(api.get("/v2.1/os-hypervisors").json()["hypervisors"]) < 2:
            assert time.monotonic() < deadline, "compute processes never reported"
            assert all(p.poll() is None for p in procs), "a compute process died"
            time.sleep(0.1)

        created = [api.create(f"dist-{i}") for i in range(4)]
        ids = [r.json()["server"]["id"] for r in created]
        servers = [api.wait_status(i) for i in ids]
        assert [s["status"] for s in servers] == ["ACTIVE"] * 4
        assert {s["OS-EXT-SRV-ATTR:host"] for s in servers} == {"compute-1", "compute-2"}
        stats = api.get("/v2.1/os-hypervisors/statistics").json()["hypervisor_statistics"]
        assert stats["running_vms"] == 4 and stats["vcpus_used"] == 4

        # The request id of the create is in the compute process's own log.
        first = servers[0]
        log = (log_dir / f"vmflow-compute-{first['OS-EXT-SRV-ATTR:host']}.log").read_text()
        rid = created[0].headers["X-OpenStack-Request-Id"]
        assert f"[{rid}] compute step define on {first['OS-EXT-SRV-ATTR:host']}" in log

        for server_id in ids:
            assert api.delete(f"/v2.1/servers/{server_id}").status_code == 204
        for server_id in ids:
            api.wait_gone(server_id)
        stats = api.get("/v2.1/os-hypervisors/statistics").json()["hypervisor_statistics"]
        assert stats["running_vms"] == 0 and stats["vcpus_used"] == 0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(20)
        for state_dir in (compute_dir / "hosts").glob("*"):  # their hypervisors
            hostd.stop(state_dir)
    # Compute processes never opened a database.
    assert not list(compute_dir.rglob("*.db"))
    assert all(p.returncode == 0 for p in procs)


def test_notifications_reach_the_notifications_queue(cloud_factory, redis_url, tmp_path):
    from kombu import Connection

    from vmflow.notifications import notifications_queue

    running = cloud_factory(run_compute=False, broker_url=redis_url,
                            result_backend=redis_url, report_interval=1.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMFLOW_")}
    env.update(VMFLOW_BROKER_URL=redis_url, VMFLOW_RESULT_BACKEND=redis_url,
               VMFLOW_QUEUE_PREFIX=running.cfg.queue_prefix, VMFLOW_REPORT_INTERVAL="1")
    compute_dir = tmp_path / "compute-data"
    proc = _start_compute("compute-1", compute_dir, tmp_path / "logs", env)
    try:
        api = running.api
        deadline = time.monotonic() + 60
        while not api.get("/v2.1/os-hypervisors").json()["hypervisors"]:
            assert time.monotonic() < deadline and proc.poll() is None, "no compute host"
            time.sleep(0.1)
        server_id = api.create("noisy").json()["server"]["id"]
        assert api.wait_status(server_id)["status"] == "ACTIVE"
        response = api.post(f"/v2.1/servers/{server_id}/action", {"os-stop": None})
        assert response.status_code == 202
        request_id = response.headers["X-OpenStack-Request-Id"]
        assert api.wait_status(server_id, ("SHUTOFF",))["status"] == "SHUTOFF"
    finally:
        proc.terminate()
        proc.wait(20)
        hostd.stop(compute_dir / "hosts" / "compute-1")

    received = []
    with Connection(redis_url) as conn:
        queue = conn.SimpleQueue(notifications_queue(running.cfg))
        try:
            while len(received) < 4:
                message = queue.get(timeout=10)
                received.append(message.payload)
                message.ack()
        finally:
            queue.queue.delete()
            queue.close()
    assert [m["event_type"] for m in received] == ["instance.create.start",
                                                   "instance.create.end",
                                                   "instance.stop.start", "instance.stop.end"]
    end = received[3]
    assert end["priority"] == "INFO" and end["request_id"] == request_id
    assert end["payload"]["instance_id"] == server_id
    assert end["payload"]["state_before"]["status"] == "ACTIVE"
    assert end["payload"]["state"]["status"] == "SHUTOFF"


def test_one_compute_process_serves_several_hosts(cloud_factory, redis_url, tmp_path):
    import redis

    running = cloud_factory(run_compute=False, broker_url=redis_url, result_backend=redis_url,
                            report_interval=1.0)
    prefix = running.cfg.queue_prefix
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMFLOW_")}
    env.update(VMFLOW_BROKER_URL=redis_url, VMFLOW_RESULT_BACKEND=redis_url,
               VMFLOW_QUEUE_PREFIX=prefix, VMFLOW_REPORT_INTERVAL="1")
    compute_dir, log_dir = tmp_path / "compute-data", tmp_path / "logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmflow.cli", "compute", "--host", "compute-1", "--host",
         "compute-2", "--data-dir", str(compute_dir), "--vcpus", "8"],
        env={**env, "VMFLOW_LOG_DIR": str(log_dir)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        api = running.api
        deadline = time.monotonic() + 60
        while len(api.get("/v2.1/os-hypervisors").json()["hypervisors"]) < 2:
            assert time.monotonic() < deadline, "the compute process never reported both hosts"
            assert proc.poll() is None, "the compute process died"
            time.sleep(0.1)
        # Each host keeps its own queue on its own routing key.
        bindings = redis.Redis.from_url(redis_url).smembers(f"_kombu.binding.{prefix}.compute")
        assert {b.decode().split("\x06\x16")[0] for b in bindings} >= {
            "compute.compute-1", "compute.compute-2"}

        ids = [api.create(f"multi-{i}").json()["server"]["id"] for i in range(4)]
        servers = [api.wait_status(i) for i in ids]
        assert [s["status"] for s in servers] == ["ACTIVE"] * 4
        assert {s["OS-EXT-SRV-ATTR:host"] for s in servers} == {"compute-1", "compute-2"}
        services = api.get("/v2.1/os-services", params={"binary": "vmflow-compute"}).json()
        assert {(s["host"], s["state"]) for s in services["services"]} == {
            ("compute-1", "up"), ("compute-2", "up")}

        # One process, one log file, both hosts' steps in it.
        log = (log_dir / "vmflow-compute-compute-1+1.log").read_text()
        assert "compute step define on compute-1" in log
        assert "compute step define on compute-2" in log

        for server_id in ids:
            assert api.delete(f"/v2.1/servers/{server_id}").status_code == 204
        for server_id in ids:
            api.wait_gone(server_id)
        stats = api.get("/v2.1/os-hypervisors/statistics").json()["hypervisor_statistics"]
        assert stats["running_vms"] == 0 and stats["vcpus_used"] == 0
    finally:
        proc.terminate()
        proc.wait(20)
        for state_dir in (compute_dir / "hosts").glob("*"):  # their hypervisors
            hostd.stop(state_dir)
    assert proc.returncode == 0
    assert not list(compute_dir.rglob("*.db"))
