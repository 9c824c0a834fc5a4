"""Policy through the HTTP API of an embedded cloud, in no-auth mode (the caller's
roles come from ``X-Roles``, its project from ``X-Auth-Project-Id``).

Admin-only APIs refuse a member (403, naming the rule) and record nothing; a
reader reads its project's servers but changes nothing; another project's
server is not found; other projects' servers and host names are an admin's; a
locked server refuses its owner but not an admin; an operator's ``[policy]``
entry replaces a default.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from vmflow.db.models import (
    Aggregate,
    Flavor,
    FlowRun,
    Image,
    Instance,
    ServerGroup,
    Service,
)

ADMIN = {"X-Roles": "admin"}
MEMBER = {"X-Roles": "member"}
READER = {"X-Roles": "reader"}
OTHER_MEMBER = {"X-Roles": "member", "X-Auth-Project-Id": "other"}
OTHER_READER = {"X-Roles": "reader", "X-Auth-Project-Id": "other"}
OPS_ADMIN = {"X-Roles": "admin", "X-Auth-Project-Id": "ops"}
HOST_KEYS = {"OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:hypervisor_hostname",
             "OS-EXT-SRV-ATTR:instance_name"}


def _call(api, method: str, path: str, body: Any = None, headers: dict | None = None):
    return api.http.request(method, api.base + path, json=body, headers=headers, timeout=60)


def _boot(api, name: str, headers: dict) -> dict:
    response = api.post("/v2.1/servers", {"server": {"name": name, "flavorRef": "1",
                                                     "imageRef": api.image_id()}},
                        headers=headers)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    return api.server(server_id)


def _recorded(running) -> dict:
    """Everything a refused request might have changed."""
    with running.db.read() as session:
        def rows(query):
            return sorted(tuple(r) for r in session.execute(query))
        return {
            "flows": session.scalar(select(func.count()).select_from(FlowRun)),
            "flavors": rows(select(Flavor.flavorid, Flavor.name, Flavor.disabled,
                                   Flavor.extra_specs)),
            "aggregates": rows(select(Aggregate.id, Aggregate.name, Aggregate.metadata_)),
            "services": rows(select(Service.host, Service.binary, Service.disabled,
                                    Service.forced_down)),
            "instances": rows(select(Instance.uuid, Instance.name, Instance.vm_state,
                                     Instance.task_state, Instance.locked)),
            "images": session.scalar(select(func.count()).select_from(Image)),
            "groups": session.scalar(select(func.count()).select_from(ServerGroup)),
        }


def _refused(response, rule: str) -> None:
    assert response.status_code == 403, (rule, response.status_code, response.text)
    assert response.json() == {"forbidden": {
        "code": 403, "message": f"Policy doesn't allow {rule} to be performed."}}


def test_a_member_is_refused_every_admin_api_and_nothing_changes(cloud):
    api = cloud.api
    server = _boot(api, "mine", MEMBER)
    sid = server["id"]
    created = _call(api, "POST", "/v2.1/os-aggregates", {"aggregate": {"name": "rack-1"}})
    assert created.status_code == 200, created.text
    agg = created.json()["aggregate"]["id"]
    flow = api.get("/v2.1/os-flows").json()["flows"][0]
    rid = flow["request_id"]
    compute = {"host": "compute-1", "binary": "vmflow-compute"}
    admin_only = [
        ("GET", "/v2.1/os-hypervisors", None, "os-hypervisors:list"),
        ("GET", "/v2.1/os-hypervisors/detail", None, "os-hypervisors:list-detail"),
        ("GET", "/v2.1/os-hypervisors/statistics", None, "os-hypervisors:statistics"),
        ("GET", "/v2.1/os-hypervisors/1", None, "os-hypervisors:show"),
        ("GET", "/v2.1/os-services", None, "os-services:list"),
        ("PUT", "/v2.1/os-services/disable", compute, "os-services:update"),
        ("GET", "/v2.1/os-aggregates", None, "os-aggregates:index"),
        ("POST", "/v2.1/os-aggregates", {"aggregate": {"name": "rack-2"}},
         "os-aggregates:create"),
        ("GET", f"/v2.1/os-aggregates/{agg}", None, "os-aggregates:show"),
        ("PUT", f"/v2.1/os-aggregates/{agg}", {"aggregate": {"name": "renamed"}},
         "os-aggregates:update"),
        ("DELETE", f"/v2.1/os-aggregates/{agg}", None, "os-aggregates:delete"),
        ("POST", f"/v2.1/os-aggregates/{agg}/action", {"add_host": {"host": "compute-1"}},
         "os-aggregates:add_host"),
        ("POST", f"/v2.1/os-aggregates/{agg}/action",
         {"set_metadata": {"metadata": {"ssd": "true"}}}, "os-aggregates:set_metadata"),
        ("POST", "/v2.1/flavors", {"flavor": {"name": "m1.huge", "ram": 1024, "vcpus": 1,
                                              "disk": 1}}, "os-flavor-manage:create"),
        ("DELETE", "/v2.1/flavors/1", None, "os-flavor-manage:delete"),
        ("POST", "/v2.1/flavors/1/os-extra_specs", {"extra_specs": {"hw:cpu": "2"}},
         "os-flavor-extra-specs:create"),
        ("DELETE", "/v2.1/flavors/1/os-extra_specs/hw:cpu", None,
         "os-flavor-extra-specs:delete"),
        ("GET", "/v2.1/os-availability-zone/detail", None, "os-availability-zone:detail"),
        ("GET", "/v2.1/servers?all_tenants=1", None, "servers:index:get_all_tenants"),
        ("GET", "/v2.1/servers/detail?all_tenants=true", None,
         "servers:detail:get_all_tenants"),
        ("GET", "/v2.1/os-simple-tenant-usage", None, "os-simple-tenant-usage:list"),
        ("GET", "/v2.1/os-flows", None, "vmflow:os-flows:list"),
        ("GET", f"/v2.1/os-flows/{flow['id']}", None, "vmflow:os-flows:show"),
        ("POST", f"/v2.1/os-flows/{flow['id']}/action", {"rollback": None},
         "vmflow:os-flows:action"),
        ("GET", "/dashboard/api/flows", None, "vmflow:dashboard:flows"),
        ("GET", f"/dashboard/api/flows/{flow['id']}", None, "vmflow:dashboard:flows"),
        ("GET", f"/dashboard/api/trace/{rid}", None, "vmflow:dashboard:trace"),
    ]
    before = _recorded(cloud)
    for method, path, body, rule in admin_only:
        rule = rule if rule.startswith("vmflow:") else f"os_compute_api:{rule}"
        for caller in (MEMBER, READER, OTHER_MEMBER):
            _refused(_call(api, method, path, body, caller), rule)
    # The hypervisor's view of the member's own server: admin only too.
    for caller in (MEMBER, READER):
        _refused(api.get(f"/v2.1/servers/{sid}/diagnostics", headers=caller),
                 "os_compute_api:os-server-diagnostics")
    assert _recorded(cloud) == before
    # The same requests from an admin are answered (the reads at least; the table
    # is not a list of broken URLs).
    for method, path, body, _rule in admin_only:
        if method == "GET":
            response = _call(api, method, path, body, ADMIN)
            assert response.status_code == 200, (path, response.text)


# Every change a member may make to its own server, as (body, rule); the reader
# of the same project is refused each one.
WRITES = [
    ({"os-stop": None}, "os_compute_api:servers:stop"),
    ({"os-start": None}, "os_compute_api:servers:start"),
    ({"reboot": {"type": "SOFT"}}, "os_compute_api:servers:reboot"),
    ({"reboot": {"type": "HARD"}}, "os_compute_api:servers:reboot"),
    ({"pause": None}, "os_compute_api:os-pause-server:pause"),
    ({"unpause": None}, "os_compute_api:os-pause-server:unpause"),
    ({"suspend": None}, "os_compute_api:os-suspend-server:suspend"),
    ({"resume": None}, "os_compute_api:os-suspend-server:resume"),
    ({"lock": None}, "os_compute_api:os-lock-server:lock"),
    ({"unlock": None}, "os_compute_api:os-lock-server:unlock"),
    ({"createImage": {"name": "snap"}}, "os_compute_api:servers:create_image"),
    ({"rescue": None}, "os_compute_api:os-rescue"),
    ({"unrescue": None}, "os_compute_api:os-unrescue"),
    ({"os-getConsoleOutput": {"length": 10}}, "os_compute_api:os-console-output"),
]


def test_a_reader_reads_its_projects_servers_and_changes_nothing(cloud):
    api = cloud.api
    server = _boot(api, "mine", MEMBER)
    sid = server["id"]
    image = api.image_id()
    request_id = api.get(f"/v2.1/servers/{sid}/os-instance-actions").json()[
        "instanceActions"][0]["request_id"]
    reads = [f"/v2.1/servers/{sid}", "/v2.1/servers", "/v2.1/servers/detail",
             f"/v2.1/servers/{sid}/os-instance-actions",
             f"/v2.1/servers/{sid}/os-instance-actions/{request_id}",
             "/v2.1/os-simple-tenant-usage/demo", "/v2.1/flavors/detail",
             "/v2.1/flavors/1/os-extra_specs", "/v2.1/images", "/v2.1/os-server-groups",
             "/v2.1/os-availability-zone"]
    for path in reads:
        response = api.get(path, headers=READER)
        assert response.status_code == 200, (path, response.text)
    listed = api.get("/v2.1/servers/detail", headers=READER).json()["servers"]
    assert [s["id"] for s in listed] == [sid]

    before = _recorded(cloud)
    writes = WRITES + [({"rebuild": {"imageRef": image}}, "os_compute_api:servers:rebuild")]
    for body, rule in writes:
        _refused(api.post(f"/v2.1/servers/{sid}/action", body, headers=READER), rule)
    _refused(api.delete(f"/v2.1/servers/{sid}", headers=READER),
             "os_compute_api:servers:delete")
    _refused(api.post("/v2.1/servers", {"server": {"name": "no", "flavorRef": "1",
                                                   "imageRef": image}}, headers=READER),
             "os_compute_api:servers:create")
    _refused(api.post("/v2.1/os-server-groups", {"server_group": {
        "name": "g", "policies": ["affinity"]}}, headers=READER),
        "os_compute_api:os-server-groups:create")
    assert _recorded(cloud) == before
    assert api.server(sid)["status"] == "ACTIVE"

    # The member of the project may (an example of each kind).
    assert api.post(f"/v2.1/servers/{sid}/action", {"os-stop": None},
                    headers=MEMBER).status_code == 202
    assert api.wait_status(sid, ("SHUTOFF",))["status"] == "SHUTOFF"
    console = api.post(f"/v2.1/servers/{sid}/action", {"os-getConsoleOutput": {}},
                       headers=MEMBER)
    assert console.status_code != 403, console.text
    assert api.delete(f"/v2.1/servers/{sid}", headers=MEMBER).status_code == 204
    api.wait_gone(sid)


def test_another_projects_server_is_not_found_and_hosts_are_for_admins(cloud):
    api = cloud.api
    mine = _boot(api, "mine", MEMBER)
    theirs = _boot(api, "theirs", OTHER_MEMBER)

    for caller in (OTHER_MEMBER, OTHER_READER):
        sid = mine["id"]
        assert api.get(f"/v2.1/servers/{sid}", headers=caller).status_code == 404
        for body, _rule in WRITES:
            response = api.post(f"/v2.1/servers/{sid}/action", body, headers=caller)
            assert response.status_code == 404, (body, response.text)
            assert "could not be found" in response.json()["itemNotFound"]["message"]
        assert api.delete(f"/v2.1/servers/{sid}", headers=caller).status_code == 404
        assert api.get(f"/v2.1/servers/{sid}/os-instance-actions",
                       headers=caller).status_code == 404
        assert api.get(f"/v2.1/servers/{sid}/diagnostics", headers=caller).status_code == 404
        listed = api.get("/v2.1/servers/detail", headers=caller).json()["servers"]
        assert [s["id"] for s in listed] == [theirs["id"]]
    assert api.server(mine["id"])["status"] == "ACTIVE"

    # Members and readers never see host names, in a server or a list.
    for caller in (MEMBER, READER):
        shown = api.get(f"/v2.1/servers/{mine['id']}", headers=caller).json()["server"]
        assert not HOST_KEYS & set(shown) and shown["hostId"]
        (listed,) = api.get("/v2.1/servers/detail", headers=caller).json()["servers"]
        assert not HOST_KEYS & set(listed)
        (action,) = api.get(f"/v2.1/servers/{mine['id']}/os-instance-actions",
                            headers=caller).json()["instanceActions"]
        # From 2.51 they see the events; from 2.62 with an opaque hostId, never the host.
        events = api.get(f"/v2.1/servers/{mine['id']}/os-instance-actions/"
                         f"{action['request_id']}",
                         headers={**caller, "OpenStack-API-Version": "compute 2.84"}).json()[
                             "instanceAction"]["events"]
        assert all("hostId" in e for e in events) and any(e["hostId"] for e in events)
        assert not any("host" in e or "traceback" in e or "details" in e for e in events)
    events = api.get(f"/v2.1/servers/{mine['id']}/os-instance-actions/{action['request_id']}",
                     headers={**OPS_ADMIN, "OpenStack-API-Version": "compute 2.84"}).json()[
                         "instanceAction"]["events"]
    assert mine["OS-EXT-SRV-ATTR:host"] in {e["host"] for e in events}
    assert all("traceback" in e for e in events)

    # An admin (of any project) sees every project's servers, with their hosts.
    every = api.get("/v2.1/servers/detail?all_tenants=1", headers=OPS_ADMIN).json()["servers"]
    assert {s["id"]: s["tenant_id"] for s in every} == {mine["id"]: "demo",
                                                          theirs["id"]: "other"}
    assert all(s["OS-EXT-SRV-ATTR:host"].startswith("compute-") for s in every)
    only = api.get("/v2.1/servers?all_tenants=1&project_id=other", headers=OPS_ADMIN)
    assert [s["id"] for s in only.json()["servers"]] == [theirs["id"]]
    shown = api.get(f"/v2.1/servers/{theirs['id']}", headers=OPS_ADMIN).json()["server"]
    assert shown["OS-EXT-SRV-ATTR:host"] == theirs["OS-EXT-SRV-ATTR:host"]
    # Without all_tenants, an admin's list is its own project's, as in Nova.
    assert api.get("/v2.1/servers", headers=OPS_ADMIN).json()["servers"] == []


def _act(api, sid: str, body: dict, headers: dict):
    return api.post(f"/v2.1/servers/{sid}/action", body, headers=headers)


def _settled(api, sid: str) -> dict:
    deadline = time.monotonic() + 30
    while (server := api.server(sid))["OS-EXT-STS:task_state"] is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return server


def _locked(running, sid: str) -> tuple[bool, str | None]:
    with running.db.read() as session:
        row = session.get(Instance, sid)
        return bool(row.locked), row.locked_by


def test_a_locked_server_refuses_its_owner_but_not_an_admin(cloud):
    api = cloud.api
    sid = _boot(api, "locked", MEMBER)["id"]
    assert _act(api, sid, {"lock": {"locked_reason": "keep"}}, MEMBER).status_code == 202
    runs = _recorded(cloud)["flows"]
    refused = _act(api, sid, {"os-stop": None}, MEMBER)
    assert refused.status_code == 409
    assert refused.json()["conflictingRequest"]["message"] == f"Instance {sid} is locked"
    assert api.delete(f"/v2.1/servers/{sid}", headers=MEMBER).status_code == 409
    # A reader is refused by policy first (403), whatever the lock.
    assert _act(api, sid, {"os-stop": None}, READER).status_code == 403
    assert _recorded(cloud)["flows"] == runs

    assert _act(api, sid, {"os-stop": None}, OPS_ADMIN).status_code == 202
    assert _settled(api, sid)["status"] == "SHUTOFF"
    # The owner lifts its own lock; a lock an admin set needs the override rule.
    assert _act(api, sid, {"unlock": None}, MEMBER).status_code == 202
    assert _act(api, sid, {"lock": None}, OPS_ADMIN).status_code == 202
    _refused(_act(api, sid, {"unlock": None}, MEMBER),
             "os_compute_api:os-lock-server:unlock:unlock_override")
    assert _locked(cloud, sid) == (True, "admin")
    assert _act(api, sid, {"unlock": None}, OPS_ADMIN).status_code == 202
    assert _locked(cloud, sid) == (False, None)


def test_a_policy_entry_in_the_configuration_replaces_the_default(cloud_factory, db):
    running = cloud_factory(database=db, policy={
        "os_compute_api:servers:create": "rule:admin_api",
        "os_compute_api:os-hypervisors:list": "rule:project_reader_or_admin"})
    api = running.api
    image = api.image_id()
    body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": image}}
    before = _recorded(running)
    _refused(api.post("/v2.1/servers", body, headers=MEMBER), "os_compute_api:servers:create")
    assert _recorded(running) == before
    assert api.get("/v2.1/servers", headers=MEMBER).json()["servers"] == []
    # Loosened: a reader lists hypervisors; the rules not named keep their defaults.
    assert api.get("/v2.1/os-hypervisors", headers=READER).status_code == 200
    _refused(api.get("/v2.1/os-hypervisors/detail", headers=READER),
             "os_compute_api:os-hypervisors:list-detail")
    created = api.post("/v2.1/servers", body, headers=ADMIN)
    assert created.status_code == 202, created.text
    assert api.wait_status(created.json()["server"]["id"])["status"] == "ACTIVE"
