"""os-services: heartbeats, enable/disable with a reason, force-down; a disabled
or down compute host gets no new instances."""

from __future__ import annotations

import time

MEMBER = {"X-Roles": "member"}


def _services(api, **query) -> list[dict]:
    return api.get("/v2.1/os-services", params=query).json()["services"]


def _compute(api, host: str) -> dict:
    return next(s for s in _services(api, binary="vmflow-compute") if s["host"] == host)


def test_services_report_heartbeats_and_state(cloud_factory):
    running = cloud_factory(report_interval=0.2)
    api = running.api
    first = _compute(api, "compute-1")
    assert first["state"] == "up" and first["status"] == "enabled" and first["zone"] == "nova"
    conductor = _services(api, binary="vmflow-conductor")
    assert conductor and conductor[0]["zone"] == "internal"
    deadline = time.monotonic() + 5
    while _compute(api, "compute-1")["updated_at"] == first["updated_at"]:
        assert time.monotonic() < deadline, "no new heartbeat"
        time.sleep(0.1)


def test_a_disabled_host_gets_no_new_instances_until_enabled(cloud_factory):
    running = cloud_factory(host_count=2)
    api = running.api
    response = api.http.put(api.base + "/v2.1/os-services/disable-log-reason",
                            json={"host": "compute-1", "binary": "vmflow-compute",
                                  "disabled_reason": "disk replacement"})
    assert response.status_code == 200, response.text
    assert response.json()["service"] == {"host": "compute-1", "binary": "vmflow-compute",
                                          "status": "disabled",
                                          "disabled_reason": "disk replacement"}
    shown = _compute(api, "compute-1")
    assert shown["status"] == "disabled" and shown["disabled_reason"] == "disk replacement"
    time.sleep(1.1)  # the scheduler's host view refreshes every second
    hosts = set()
    for i in range(4):
        server = api.wait_status(api.create(f"vm-{i}").json()["server"]["id"])
        hosts.add(server["OS-EXT-SRV-ATTR:host"])
    assert hosts == {"compute-2"}

    service_id = shown["id"]
    enabled = api.http.put(api.base + f"/v2.1/os-services/{service_id}",
                           json={"status": "enabled"})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["service"]["status"] == "enabled"
    assert enabled.json()["service"]["disabled_reason"] is None


def test_a_forced_down_host_is_down_and_gets_nothing(cloud_factory):
    running = cloud_factory(host_count=1)
    api = running.api
    response = api.http.put(api.base + "/v2.1/os-services/force-down",
                            json={"host": "compute-1", "binary": "vmflow-compute",
                                  "forced_down": True},
                            headers={"OpenStack-API-Version": "compute 2.11"})
    assert response.status_code == 200, response.text
    assert _compute(api, "compute-1")["state"] == "down"
    time.sleep(1.1)
    server = api.wait_status(api.create("nowhere").json()["server"]["id"])
    assert server["status"] == "ERROR"
    assert "ComputeFilter" in server["fault"]["message"]


def test_service_changes_are_for_admins_and_checked(cloud):
    api = cloud.api
    put = lambda path, body, **kw: api.http.put(api.base + path, json=body, **kw)  # noqa: E731
    body = {"host": "compute-1", "binary": "vmflow-compute"}
    assert put("/v2.1/os-services/disable", body, headers=MEMBER).status_code == 403
    assert put("/v2.1/os-services/disable", {"host": "nope", "binary": "vmflow-compute"}
               ).status_code == 404
    assert put("/v2.1/os-services/disable", dict(body, extra=1)).status_code == 400
    assert put("/v2.1/os-services/force-down", dict(body, forced_down="yes"),
               headers={"OpenStack-API-Version": "compute 2.11"}).status_code == 400
    assert put("/v2.1/os-services/1", {"status": "sleeping"}).status_code == 400
    assert put("/v2.1/os-services/999", {"status": "disabled"}).status_code == 404
    assert put("/v2.1/os-services/1", {}).status_code == 400
    assert all(s["status"] == "enabled" for s in _services(api))
