"""Compute API microversions through the HTTP API of an embedded cloud.

The version a request names (either header, ``latest``, or none: 2.1) is echoed
back; bodies follow it: at 2.1 a server holds exactly the fields Nova had at 2.1
(Tempest's schema forbids any other), later fields appear from their version on.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import pytest

from webapp.api.microversion import MAX_VERSION

MEMBER = {"X-Roles": "member", "X-Auth-Project-Id": "demo"}

# The fields of a server at 2.1 (../shared/docs/clients.md, from Tempest's schema).
FIELDS_2_1 = {
    "id", "name", "status", "image", "flavor", "fault", "user_id", "tenant_id", "created",
    "updated", "progress", "metadata", "links", "addresses", "hostId", "OS-DCF:diskConfig",
    "accessIPv4", "accessIPv6", "key_name", "security_groups", "OS-SRV-USG:launched_at",
    "OS-SRV-USG:terminated_at", "OS-EXT-AZ:availability_zone", "OS-EXT-STS:task_state",
    "OS-EXT-STS:vm_state", "OS-EXT-STS:power_state", "OS-EXT-SRV-ATTR:host",
    "OS-EXT-SRV-ATTR:instance_name", "OS-EXT-SRV-ATTR:hypervisor_hostname",
    "os-extended-volumes:volumes_attached", "config_drive"}
# Always there for an ACTIVE server (fault only in ERROR; security groups need networking).
REQUIRED_2_1 = FIELDS_2_1 - {"fault", "security_groups"}
HOST_FIELDS = {"OS-EXT-SRV-ATTR:host", "OS-EXT-SRV-ATTR:instance_name",
               "OS-EXT-SRV-ATTR:hypervisor_hostname"}
FIELDS_2_3 = {"OS-EXT-SRV-ATTR:reservation_id", "OS-EXT-SRV-ATTR:launch_index",
              "OS-EXT-SRV-ATTR:hostname", "OS-EXT-SRV-ATTR:kernel_id",
              "OS-EXT-SRV-ATTR:ramdisk_id", "OS-EXT-SRV-ATTR:root_device_name",
              "OS-EXT-SRV-ATTR:user_data"}


def v(version: str, **more: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}", **more}


def _echoed(response, version: str) -> None:
    assert response.headers["OpenStack-API-Version"] == f"compute {version}"
    assert response.headers["X-OpenStack-Nova-API-Version"] == version
    vary = response.headers["Vary"]
    assert "OpenStack-API-Version" in vary and "X-OpenStack-Nova-API-Version" in vary


def _error(response, code: int, kind: str) -> str:
    assert response.status_code == code, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == [kind] and body[kind]["code"] == code
    return body[kind]["message"]


def _boot(api, name: str, **extra) -> dict:
    server = {"name": name, "flavorRef": "1", "imageRef": api.image_id(), "networks": "none",
              **extra}
    response = api.post("/v2.1/servers", {"server": server}, headers=v(MAX_VERSION))
    assert response.status_code == 202, response.text
    return api.wait_status(response.json()["server"]["id"])


def test_headers_negotiated_and_echoed(cloud):
    api = cloud.api
    _echoed(api.get("/v2.1/flavors"), "2.1")
    _echoed(api.get("/v2.1/flavors", headers=v("2.9")), "2.9")
    _echoed(api.get("/v2.1/flavors", headers={"X-OpenStack-Nova-API-Version": "2.11"}), "2.11")
    _echoed(api.get("/v2.1/flavors", headers={"OpenStack-API-Version": "image 2.5, compute 2.3"}),
            "2.3")
    _echoed(api.get("/v2.1/flavors", headers=v("latest")), MAX_VERSION)
    _echoed(api.get("/v2.1/flavors", headers={"X-OpenStack-Nova-API-Version": "latest"}),
            MAX_VERSION)
    # Errors carry the headers too.
    _echoed(api.get("/v2.1/servers/nope", headers=v("2.19")), "2.19")

    too_high = f"2.{int(MAX_VERSION.split('.')[1]) + 1}"
    for bad in (too_high, "2.0", "3.0"):
        response = api.get("/v2.1/flavors", headers=v(bad))
        assert _error(response, 406, "computeFault") == (
            f"Version {bad} is not supported by the API. Minimum is 2.1 and maximum is "
            f"{MAX_VERSION}.")
    for garbage in ("2.x", "latest-ish", "2"):
        for headers in (v(garbage), {"X-OpenStack-Nova-API-Version": garbage}):
            message = _error(api.get("/v2.1/flavors", headers=headers), 400, "badRequest")
            assert garbage in message and "MajorNum.MinorNum" in message
    # A refused version records nothing.
    refused = api.post("/v2.1/servers", {"server": {"name": "x", "flavorRef": "1",
                                                    "imageRef": api.image_id()}},
                       headers=v(too_high))
    assert refused.status_code == 406
    assert api.get("/v2.1/servers").json()["servers"] == []


def test_version_documents_and_their_links(cloud):
    api = cloud.api
    versions = api.get("/").json()["versions"]
    assert [(d["id"], d["status"]) for d in versions] == [("v2.0", "SUPPORTED"),
                                                           ("v2.1", "CURRENT")]
    current = versions[1]
    assert current["version"] == MAX_VERSION and current["min_version"] == "2.1"
    assert int(MAX_VERSION.split(".")[1]) >= 37  # openstackclient's --nic none needs 2.37
    for document in versions:
        for link in document["links"]:
            assert link["rel"] == "self"
            followed = api.http.get(link["href"], timeout=30)
            assert followed.status_code == 200, link
            assert followed.json()["version"] == document
    for path in ("/v2.1", "/v2.1/"):
        assert api.get(path).json()["version"] == current
    for path in ("/v2", "/v2/"):
        assert api.get(path).json()["version"] == versions[0]


def test_server_body_follows_the_version(cloud):
    api = cloud.api
    data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    server = _boot(api, "shaped", description="web tier", tags=["blue", "web"], user_data=data)
    sid = server["id"]

    def show(version: str | None, headers: dict | None = None) -> dict:
        extra = {} if version is None else v(version)
        response = api.get(f"/v2.1/servers/{sid}", headers={**extra, **(headers or {})})
        assert response.status_code == 200, response.text
        return response.json()["server"]

    at_21 = show(None)
    assert set(at_21) == REQUIRED_2_1, set(at_21) ^ REQUIRED_2_1
    assert at_21["flavor"]["id"] == "1" and set(at_21["flavor"]) == {"id", "links"}
    assert set(show(None, MEMBER)) == REQUIRED_2_1 - HOST_FIELDS
    listed = api.get("/v2.1/servers/detail").json()["servers"]
    assert [set(s) for s in listed] == [REQUIRED_2_1]

    at_23 = show("2.3")
    assert set(at_23) == REQUIRED_2_1 | FIELDS_2_3
    assert at_23["OS-EXT-SRV-ATTR:hostname"] == "shaped"
    assert at_23["OS-EXT-SRV-ATTR:launch_index"] == 0
    assert at_23["OS-EXT-SRV-ATTR:reservation_id"].startswith("r-")
    assert at_23["OS-EXT-SRV-ATTR:user_data"] == data
    assert set(show("2.3", MEMBER)) == REQUIRED_2_1 - HOST_FIELDS  # admin-only fields

    assert show("2.8").keys() == at_23.keys()
    assert show("2.9")["locked"] is False and "locked" not in at_23
    assert show("2.16")["host_status"] == "UP"
    assert "host_status" not in show("2.16", MEMBER)
    assert "description" not in show("2.18")
    assert show("2.19")["description"] == "web tier"
    assert "tags" not in show("2.25")
    assert show("2.26")["tags"] == ["blue", "web"]
    assert show("2.46")["flavor"]["id"] == "1"
    assert show("2.47")["flavor"] == {"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0,
                                      "swap": 0, "original_name": "m1.tiny",
                                      "extra_specs": {}}

    assert "trusted_image_certificates" not in show("2.62")
    assert show("2.63")["trusted_image_certificates"] is None
    assert "server_groups" not in show("2.70")
    assert show("2.71")["server_groups"] == []
    assert "locked_reason" not in show("2.72")
    assert show("2.73")["locked_reason"] is None

    latest = show(MAX_VERSION)
    later = {"locked", "host_status", "description", "tags", "trusted_image_certificates",
             "server_groups", "locked_reason"}
    assert set(latest) == REQUIRED_2_1 | FIELDS_2_3 | later
    assert set(show(MAX_VERSION, MEMBER)) == REQUIRED_2_1 - HOST_FIELDS | later - {"host_status"}
    # Lists show no server groups (2.71 is for show, update and rebuild only).
    listed = api.get("/v2.1/servers/detail", headers=v(MAX_VERSION)).json()["servers"]
    assert listed == [{k: val for k, val in latest.items() if k != "server_groups"}]


def test_later_request_fields_are_refused_below_their_version(cloud):
    api = cloud.api
    image = api.image_id()

    def create(version: str, **extra):
        server = {"name": "refused", "flavorRef": "1", "imageRef": image, **extra}
        return api.post("/v2.1/servers", {"server": server}, headers=v(version))

    assert "'description'" in _error(create("2.18", description="x"), 400, "badRequest")
    assert "'tags'" in _error(create("2.51", tags=["x"]), 400, "badRequest")
    assert "/" in _error(create(MAX_VERSION, networks="none", tags=["a/b"]), 400, "badRequest")
    # 2.37: networks becomes required, and "none"/"auto" appear.
    assert "2.37" in _error(create("2.36", networks="none"), 400, "badRequest")
    assert "'networks' is a required" in _error(create("2.37"), 400, "badRequest")
    assert "Networking" in _error(create("2.37", networks=[{"uuid": image}]), 400,
                                  "badRequest")
    assert api.get("/v2.1/servers").json()["servers"] == []  # nothing recorded
    assert create("2.37", networks="none").status_code == 202
    assert create("2.36").status_code == 202  # optional below 2.37
    reserved = create("2.37", networks="none", return_reservation_id=True)
    assert reserved.status_code == 202 and list(reserved.json()) == ["reservation_id"]
    found = api.get(f"/v2.1/servers/detail?reservation_id={reserved.json()['reservation_id']}",
                    headers=v("2.3")).json()["servers"]
    assert [s["OS-EXT-SRV-ATTR:reservation_id"] for s in found] == [
        reserved.json()["reservation_id"]]


def test_update_description_and_tags(cloud):
    api = cloud.api
    sid = _boot(api, "tagged")["id"]
    path = f"/v2.1/servers/{sid}"

    def put(sub: str, body, version: str = MAX_VERSION, headers: dict | None = None):
        return api.http.put(f"{api.base}{path}{sub}", json=body, timeout=30,
                            headers={**v(version), **(headers or {})})

    assert "'description'" in _error(put("", {"server": {"description": "x"}}, "2.18"), 400,
                                     "badRequest")
    renamed = put("", {"server": {"name": "renamed", "description": "db"}}, headers=MEMBER)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["server"]["name"] == "renamed"
    assert renamed.json()["server"]["description"] == "db"
    assert put("", {"server": {"description": None}}).json()["server"]["description"] is None

    # Tags: from 2.26 only.
    _error(api.get(f"{path}/tags", headers=v("2.25")), 404, "itemNotFound")
    assert api.get(f"{path}/tags", headers=v("2.26")).json() == {"tags": []}
    added = put("/tags/red", None, "2.26")
    assert added.status_code == 201 and added.headers["Location"].endswith(f"{path}/tags/red")
    assert put("/tags/red", None, "2.26").status_code == 204  # already there
    assert api.get(f"{path}/tags/red", headers=v("2.26")).status_code == 204
    _error(api.get(f"{path}/tags/blue", headers=v("2.26")), 404, "itemNotFound")
    replaced = put("/tags", {"tags": ["b", "a", "b"]}, "2.26")
    assert replaced.json() == {"tags": ["a", "b"]}
    _error(put("/tags", {"tags": ["x" * 61]}, "2.26"), 400, "badRequest")
    _error(put("/tags", {"tags": [str(i) for i in range(51)]}, "2.26"), 400, "badRequest")
    other = _boot(api, "untagged")["id"]
    by_tag = api.get("/v2.1/servers?tags=a,b", headers=v("2.26")).json()["servers"]
    assert [s["id"] for s in by_tag] == [sid]
    not_tagged = api.get("/v2.1/servers?not-tags-any=a", headers=v("2.26")).json()["servers"]
    assert [s["id"] for s in not_tagged] == [other]
    assert api.http.delete(f"{api.base}{path}/tags/a", headers=v("2.26")).status_code == 204
    _error(api.http.delete(f"{api.base}{path}/tags/a", headers=v("2.26")), 404, "itemNotFound")
    assert api.http.delete(f"{api.base}{path}/tags", headers=v("2.26")).status_code == 204
    assert api.get(f"{path}/tags", headers=v("2.26")).json() == {"tags": []}

    # 2.38: an unknown status is a 400 (below, it matches nothing).
    assert api.get("/v2.1/servers?status=NOPE").json()["servers"] == []
    _error(api.get("/v2.1/servers?status=NOPE", headers=v("2.38")), 400, "badRequest")


def test_create_image_location_then_image_id(cloud):
    api = cloud.api
    sid = _boot(api, "snap-source")["id"]

    def snapshot(version: str, name: str):
        response = api.post(f"/v2.1/servers/{sid}/action", {"createImage": {"name": name}},
                            headers=v(version))
        assert response.status_code == 202, response.text
        api.wait_status(sid)
        return response

    old = snapshot("2.44", "snap-old")
    assert old.text == ""
    image_id = old.headers["Location"].rsplit("/", 1)[1]
    assert api.get(f"/v2.1/images/{image_id}").json()["image"]["name"] == "snap-old"
    new = snapshot("2.45", "snap-new")
    assert "Location" not in new.headers
    image_id = new.json()["image_id"]
    assert api.get(f"/v2.1/images/{image_id}").json()["image"]["name"] == "snap-new"
    # 2.36 removed the proxy to the image service.
    _error(api.get(f"/v2.1/images/{image_id}", headers=v("2.36")), 404, "itemNotFound")
    _error(api.get("/v2.1/images", headers=v("2.36")), 404, "itemNotFound")


def test_admin_resources_by_version(cloud):
    api = cloud.api
    services = api.get("/v2.1/os-services").json()["services"]
    assert services and all("forced_down" not in s for s in services)
    assert all(s["forced_down"] is False for s in
               api.get("/v2.1/os-services", headers=v("2.11")).json()["services"])
    compute = next(s for s in services if s["binary"] == "vmflow-compute")
    force = {"host": compute["host"], "binary": compute["binary"], "forced_down": False}
    _error(api.http.put(f"{api.base}/v2.1/os-services/force-down", json=force, timeout=30),
           404, "itemNotFound")
    assert api.http.put(f"{api.base}/v2.1/os-services/force-down", json=force, timeout=30,
                        headers=v("2.11")).status_code == 200

    detail = api.get("/v2.1/os-hypervisors/detail").json()["hypervisors"]
    assert isinstance(detail[0]["cpu_info"], str)
    detail = api.get("/v2.1/os-hypervisors/detail", headers=v("2.28")).json()["hypervisors"]
    assert isinstance(detail[0]["cpu_info"], dict)
    every = api.get("/v2.1/os-hypervisors").json()["hypervisors"]
    assert len(every) == 3
    assert len(api.get("/v2.1/os-hypervisors?limit=1").json()["hypervisors"]) == 3
    page = api.get(f"/v2.1/os-hypervisors?limit=1&marker={every[0]['id']}",
                   headers=v("2.33")).json()["hypervisors"]
    assert page == [every[1]]
    _error(api.get("/v2.1/os-hypervisors?marker=999", headers=v("2.33")), 400, "badRequest")

    made = api.post("/v2.1/os-aggregates", {"aggregate": {"name": "agg"}}).json()["aggregate"]
    assert "uuid" not in made
    shown = api.get(f"/v2.1/os-aggregates/{made['id']}", headers=v("2.41")).json()
    assert len(shown["aggregate"]["uuid"]) == 36


def test_server_groups_by_version(cloud):
    api = cloud.api
    body = {"server_group": {"name": "g", "policies": ["soft-anti-affinity"]}}
    assert "soft-anti-affinity" not in _error(api.post("/v2.1/os-server-groups", body), 400,
                                              "badRequest")
    made = api.post("/v2.1/os-server-groups", body, headers=v("2.15"))
    assert made.status_code == 200, made.text
    group = made.json()["server_group"]
    assert group["policies"] == ["soft-anti-affinity"] and group["project_id"] == "demo"
    old = api.get(f"/v2.1/os-server-groups/{group['id']}").json()["server_group"]
    assert "project_id" not in old and "user_id" not in old
    # A soft policy is a preference: members boot, on different hosts while there is room.
    hosts = set()
    for i in range(2):
        server = _boot(api, f"soft-{i}")
        hosts.add(server["OS-EXT-SRV-ATTR:host"])
        assert server["status"] == "ACTIVE"
    hint = {"group": group["id"]}
    ids = []
    for i in range(3):
        response = api.post("/v2.1/servers", {"server": {
            "name": f"member-{i}", "flavorRef": "1", "imageRef": api.image_id(),
            "networks": "none"}, "os:scheduler_hints": hint}, headers=v(MAX_VERSION))
        assert response.status_code == 202, response.text
        ids.append(response.json()["server"]["id"])
        api.wait_status(ids[-1])
    placed = [api.server(i)["OS-EXT-SRV-ATTR:host"] for i in ids]
    assert all(api.server(i)["status"] == "ACTIVE" for i in ids)
    assert len(set(placed)) == 3, placed  # three hosts: each member went where none was


def test_usage_paging_and_actions_of_deleted_servers(cloud):
    api = cloud.api
    ids = sorted(_boot(api, f"used-{i}")["id"] for i in range(3))
    start = "2000-01-01T00:00:00"

    def usage(query: str, version: str | None = None) -> dict:
        response = api.get(f"/v2.1/os-simple-tenant-usage/demo?start={start}{query}",
                           headers=v(version) if version else {})
        assert response.status_code == 200, response.text
        return response.json()

    assert len(usage("&limit=1")["tenant_usage"]["server_usages"]) == 3  # ignored below 2.40
    first = usage("&limit=2", "2.40")
    assert [s["instance_id"] for s in first["tenant_usage"]["server_usages"]] == ids[:2]
    link = first["tenant_usage_links"][0]
    assert link["rel"] == "next" and f"marker={ids[1]}" in link["href"]
    following = api.http.get(link["href"], headers=v("2.40"), timeout=30).json()
    assert [s["instance_id"] for s in following["tenant_usage"]["server_usages"]] == ids[2:]
    assert "tenant_usage_links" not in following
    _error(api.get(f"/v2.1/os-simple-tenant-usage/demo?marker={start}", headers=v("2.40")),
           400, "badRequest")

    # 2.21: the actions of a deleted server.
    assert api.delete(f"/v2.1/servers/{ids[0]}").status_code == 204
    api.wait_gone(ids[0])
    path = f"/v2.1/servers/{ids[0]}/os-instance-actions"
    _error(api.get(path), 404, "itemNotFound")
    deadline = time.monotonic() + 30
    while True:
        actions = api.get(path, headers=v("2.21")).json()["instanceActions"]
        if {a["action"] for a in actions} == {"create", "delete"} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert {a["action"] for a in actions} == {"create", "delete"}


@pytest.mark.parametrize("version", ["2.16", MAX_VERSION])
def test_host_status_follows_the_service(cloud, version):
    api = cloud.api
    server = _boot(api, "status")
    host = server["OS-EXT-SRV-ATTR:host"]
    disable = {"host": host, "binary": "vmflow-compute", "disabled_reason": "maintenance"}
    response = api.http.put(f"{api.base}/v2.1/os-services/disable-log-reason", json=disable,
                            timeout=30)
    assert response.status_code == 200, response.text
    shown = api.get(f"/v2.1/servers/{server['id']}", headers=v(version)).json()["server"]
    assert shown["host_status"] == "MAINTENANCE"


def _put(api, path: str, body, version: str = MAX_VERSION, headers: dict | None = None):
    return api.http.put(f"{api.base}{path}", json=body, timeout=30,
                        headers={**v(version), **(headers or {})})


def test_update_and_rebuild_answer_compact_then_full_bodies(cloud):
    api = cloud.api
    sid = _boot(api, "compact")["id"]
    compact = {"id", "name", "status", "image", "flavor", "user_id", "tenant_id", "created",
               "updated", "progress", "metadata", "links", "addresses", "hostId",
               "OS-DCF:diskConfig", "accessIPv4", "accessIPv6"}
    at_21 = _put(api, f"/v2.1/servers/{sid}", {"server": {"name": "c2"}}, "2.1").json()
    assert set(at_21["server"]) == compact
    at_74 = _put(api, f"/v2.1/servers/{sid}", {"server": {"name": "c3"}}, "2.74").json()
    assert set(at_74["server"]) == compact | {
        "locked", "description", "tags", "trusted_image_certificates", "server_groups",
        "locked_reason"}
    addressed = _put(api, f"/v2.1/servers/{sid}", {"server": {"accessIPv4": "192.0.2.7",
                                                              "accessIPv6": "2001:db8::7"}})
    assert addressed.status_code == 200, addressed.text
    assert (addressed.json()["server"]["accessIPv4"],
            addressed.json()["server"]["accessIPv6"]) == ("192.0.2.7", "2001:db8::7")
    for bad in ({"accessIPv4": "2001:db8::7"}, {"accessIPv6": "192.0.2.7"},
                {"accessIPv4": "nope"}):
        _error(_put(api, f"/v2.1/servers/{sid}", {"server": bad}), 400, "badRequest")
    at_75 = _put(api, f"/v2.1/servers/{sid}", {"server": {"name": "c4"}}, "2.75").json()
    shown = api.get(f"/v2.1/servers/{sid}", headers=v("2.75")).json()["server"]
    assert set(at_75["server"]) == set(shown)

    data = base64.b64encode(b"#cloud-config\n").decode()
    rebuild = {"rebuild": {"imageRef": api.image_id(), "user_data": data, "key_name": None}}
    _error(api.post(f"/v2.1/servers/{sid}/action", rebuild, headers=v("2.56")), 400,
           "badRequest")
    rebuilt = api.post(f"/v2.1/servers/{sid}/action", rebuild, headers=v("2.57"))
    assert rebuilt.status_code == 202, rebuilt.text
    body = rebuilt.json()["server"]
    assert body["user_data"] == data and body["key_name"] is None
    assert "OS-EXT-STS:vm_state" not in body  # compact below 2.75
    api.wait_status(sid)
    assert api.server(sid, "2.3")["OS-EXT-SRV-ATTR:user_data"] == data
    bad = {"rebuild": {"imageRef": api.image_id(), "user_data": "not base64!"}}
    _error(api.post(f"/v2.1/servers/{sid}/action", bad, headers=v("2.57")), 400, "badRequest")
    certs = {"rebuild": {"imageRef": api.image_id(), "trusted_image_certificates": ["x"]}}
    _error(api.post(f"/v2.1/servers/{sid}/action", certs, headers=v("2.63")), 400,
           "badRequest")

    # Diagnostics: the driver's flat keys below 2.48, the standard shape from 2.48.
    old = api.get(f"/v2.1/servers/{sid}/diagnostics").json()
    assert old["memory"] == 512 * 1024 and "cpu0_time" in old and "vda_read" in old
    new = api.get(f"/v2.1/servers/{sid}/diagnostics", headers=v("2.48")).json()
    assert new["memory_details"]["maximum"] == 512 and new["driver"] == "libvirt"


def test_instance_action_events_by_version(cloud):
    api = cloud.api
    server = _boot(api, "events")
    sid, host = server["id"], server["OS-EXT-SRV-ATTR:host"]
    path = f"/v2.1/servers/{sid}/os-instance-actions"
    (create,) = api.get(path).json()["instanceActions"]
    assert "updated_at" not in create
    one = f"{path}/{create['request_id']}"

    def events(version: str, headers: dict | None = None) -> list[dict] | None:
        response = api.get(one, headers={**v(version), **(headers or {})})
        assert response.status_code == 200, response.text
        return response.json()["instanceAction"].get("events")

    admin_21 = events("2.1")
    assert admin_21 and all(set(e) == {"event", "start_time", "finish_time", "result",
                                       "traceback"} for e in admin_21)
    assert events("2.50", MEMBER) is None  # events were for admins before 2.51
    member = events("2.51", MEMBER)
    assert member and all("traceback" not in e for e in member)
    admin_62 = events("2.62")
    assert {e["host"] for e in admin_62} >= {host}
    assert all(bool(e["hostId"]) == bool(e["host"]) for e in admin_62)  # "" before a host
    member_62 = events("2.62", MEMBER)
    assert all("host" not in e for e in member_62)
    assert [e["hostId"] for e in member_62] == [e["hostId"] for e in admin_62]
    assert all("details" not in e for e in events("2.83"))
    decided = {e["event"]: e for e in events("2.84")}["launch.select-destinations"]
    assert "weights:" in decided["details"] or "RamFilter" in decided["details"]
    assert all("details" not in e for e in events("2.84", MEMBER))

    # 2.58: updated_at, paging by request id; 2.66: changes-before.
    for body in ({"os-stop": None}, {"os-start": None}):
        assert api.post(f"/v2.1/servers/{sid}/action", body).status_code == 202
        api.wait_status(sid, ("ACTIVE", "SHUTOFF"))
    listed = api.get(path, headers=v("2.58")).json()
    assert [a["action"] for a in listed["instanceActions"]] == ["start", "stop", "create"]
    assert all(a["updated_at"] for a in listed["instanceActions"])
    page = api.get(f"{path}?limit=1", headers=v("2.58")).json()
    assert [a["action"] for a in page["instanceActions"]] == ["start"]
    following = api.http.get(page["links"][0]["href"], headers=v("2.58"), timeout=30).json()
    assert [a["action"] for a in following["instanceActions"]] == ["stop"]
    _error(api.get(f"{path}?marker=req-nope", headers=v("2.58")), 400, "badRequest")
    early = "2000-01-01T00:00:00Z"
    assert api.get(f"{path}?changes-before={early}", headers=v("2.66")).json()[
        "instanceActions"] == []
    assert len(api.get(f"{path}?changes-before={early}", headers=v("2.65")).json()[
        "instanceActions"]) == 3  # not a filter before 2.66


def test_services_hypervisors_flavors_by_version(cloud):
    api = cloud.api
    services = api.get("/v2.1/os-services", headers=v("2.53")).json()["services"]
    compute = next(s for s in services if s["binary"] == "vmflow-compute")
    assert len(compute["id"]) == 36
    assert compute["id"] == api.get("/v2.1/os-services", headers=v(MAX_VERSION)).json()[
        "services"][services.index(compute)]["id"]  # stable
    _error(_put(api, "/v2.1/os-services/disable", {"host": compute["host"],
                                                   "binary": "vmflow-compute"}, "2.53"),
           404, "itemNotFound")
    changed = _put(api, f"/v2.1/os-services/{compute['id']}",
                   {"status": "disabled", "disabled_reason": "rack move"}, "2.53")
    assert changed.status_code == 200, changed.text
    assert changed.json()["service"]["status"] == "disabled"
    assert changed.json()["service"]["id"] == compute["id"]
    _error(_put(api, "/v2.1/os-services/1", {"status": "enabled"}, "2.53"), 404,
           "itemNotFound")

    server = _boot(api, "on-hv")
    nodes = api.get("/v2.1/os-hypervisors?with_servers=true", headers=v("2.53")).json()[
        "hypervisors"]
    assert all(len(n["id"]) == 36 for n in nodes)
    holder = next(n for n in nodes if n["hypervisor_hostname"]
                  == server["OS-EXT-SRV-ATTR:hypervisor_hostname"])
    assert holder["servers"] == [{"uuid": server["id"], "name": f"instance-{server['id']}"}]
    assert sum("servers" in n for n in nodes) == 1  # empty lists only from 2.75
    later = api.get("/v2.1/os-hypervisors?with_servers=1", headers=v("2.75")).json()
    assert all("servers" in n for n in later["hypervisors"])
    shown = api.get(f"/v2.1/os-hypervisors/{holder['id']}", headers=v("2.53")).json()
    assert shown["hypervisor"]["hypervisor_hostname"] == holder["hypervisor_hostname"]
    _error(api.get("/v2.1/os-hypervisors/1", headers=v("2.53")), 404, "itemNotFound")
    pattern = holder["hypervisor_hostname"]
    found = api.get(f"/v2.1/os-hypervisors?hypervisor_hostname_pattern={pattern}",
                    headers=v("2.53")).json()["hypervisors"]
    assert [n["id"] for n in found] == [holder["id"]]

    # Flavors: description from 2.55 (and PUT), extra specs in the body from 2.61.
    assert "description" not in api.get("/v2.1/flavors/1", headers=v("2.54")).json()["flavor"]
    _error(_put(api, "/v2.1/flavors/1", {"flavor": {"description": "x"}}, "2.54"), 404,
           "itemNotFound")
    described = _put(api, "/v2.1/flavors/1", {"flavor": {"description": "smallest"}}, "2.55")
    assert described.json()["flavor"]["description"] == "smallest"
    assert api.get("/v2.1/flavors", headers=v("2.55")).json()["flavors"][0]["description"]
    _error(_put(api, "/v2.1/flavors/1", {"flavor": {"description": "y"}}, "2.55", MEMBER),
           403, "forbidden")
    api.post("/v2.1/flavors/1/os-extra_specs", {"extra_specs": {"hw:cpu_policy": "shared"}})
    assert "extra_specs" not in api.get("/v2.1/flavors/1", headers=v("2.60")).json()["flavor"]
    assert api.get("/v2.1/flavors/1", headers=v("2.61")).json()["flavor"]["extra_specs"] == {
        "hw:cpu_policy": "shared"}
    made = api.post("/v2.1/flavors", {"flavor": {"name": "described", "ram": 256, "vcpus": 1,
                                                 "disk": 1, "description": "new"}},
                    headers=v("2.61"))
    assert made.status_code == 200, made.text
    assert made.json()["flavor"]["description"] == "new"
    assert made.json()["flavor"]["extra_specs"] == {}


def test_server_group_policy_and_rules(cloud):
    api = cloud.api
    old = {"server_group": {"name": "old", "policies": ["anti-affinity"]}}
    _error(api.post("/v2.1/os-server-groups", old, headers=v("2.64")), 400, "badRequest")
    body = {"server_group": {"name": "pairs", "policy": "anti-affinity",
                             "rules": {"max_server_per_host": 2}}}
    _error(api.post("/v2.1/os-server-groups", body, headers=v("2.63")), 400, "badRequest")
    _error(api.post("/v2.1/os-server-groups", {"server_group": {
        "name": "x", "policy": "affinity", "rules": {"max_server_per_host": 2}}},
        headers=v("2.64")), 400, "badRequest")
    made = api.post("/v2.1/os-server-groups", body, headers=v("2.64"))
    assert made.status_code == 200, made.text
    group = made.json()["server_group"]
    assert set(group) == {"id", "name", "policy", "rules", "members", "project_id", "user_id"}
    assert group["rules"] == {"max_server_per_host": 2}
    shown = api.get(f"/v2.1/os-server-groups/{group['id']}").json()["server_group"]
    assert shown["policies"] == ["anti-affinity"] and "rules" not in shown

    # Six members on three hosts, two each; a seventh finds no host.
    placed = []
    for i in range(7):
        response = api.post("/v2.1/servers", {"server": {
            "name": f"pair-{i}", "flavorRef": "1", "imageRef": api.image_id(),
            "networks": "none"}, "os:scheduler_hints": {"group": group["id"]}},
            headers=v(MAX_VERSION))
        assert response.status_code == 202, response.text
        placed.append(api.wait_status(response.json()["server"]["id"]))
    hosts = [s["OS-EXT-SRV-ATTR:host"] for s in placed[:6]]
    assert all(s["status"] == "ACTIVE" for s in placed[:6])
    assert sorted(hosts.count(h) for h in set(hosts)) == [2, 2, 2]
    assert placed[6]["status"] == "ERROR"
    actions = f"/v2.1/servers/{placed[6]['id']}/os-instance-actions"
    (create,) = api.get(actions).json()["instanceActions"]
    refused = api.get(f"{actions}/{create['request_id']}", headers=v("2.84")).text
    assert "2 members here" in refused
    shown = api.get(f"/v2.1/servers/{placed[0]['id']}", headers=v("2.71")).json()["server"]
    assert shown["server_groups"] == [group["id"]]


def test_create_on_a_requested_host(cloud):
    api = cloud.api
    image = api.image_id()

    def create(version: str, headers: dict | None = None, **extra):
        server = {"name": "placed", "flavorRef": "1", "imageRef": image, "networks": "none",
                  **extra}
        return api.post("/v2.1/servers", {"server": server},
                        headers={**v(version), **(headers or {})})

    _error(create("2.73", host="compute-2"), 400, "badRequest")
    _error(create("2.74", MEMBER, host="compute-2"), 403, "forbidden")
    assert "nope" in _error(create("2.74", host="nope"), 400, "badRequest")
    _error(create("2.74", host="compute-1", hypervisor_hostname="compute-2"), 400,
           "badRequest")
    assert api.get("/v2.1/servers").json()["servers"] == []
    for _ in range(2):
        made = create("2.74", host="compute-2")
        assert made.status_code == 202, made.text
        server = api.wait_status(made.json()["server"]["id"])
        assert server["OS-EXT-SRV-ATTR:host"] == "compute-2"
    node = api.server(server["id"])["OS-EXT-SRV-ATTR:hypervisor_hostname"]
    made = create("2.74", hypervisor_hostname=node)
    assert api.wait_status(made.json()["server"]["id"])["OS-EXT-SRV-ATTR:host"] == "compute-2"


def test_server_list_filters_and_strict_queries(cloud):
    api = cloud.api
    first = _boot(api, "alpha", description="one", accessIPv4="198.51.100.1")
    second = _boot(api, "beta")
    assert api.post(f"/v2.1/servers/{second['id']}/action", {"lock": None}).status_code == 202
    deadline = time.monotonic() + 30
    while not api.server(second["id"], "2.9")["locked"] and time.monotonic() < deadline:
        time.sleep(0.05)

    def ids(query: str, version: str = MAX_VERSION, headers: dict | None = None) -> list[str]:
        response = api.get(f"/v2.1/servers{query}", headers={**v(version), **(headers or {})})
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["servers"]]

    both = {first["id"], second["id"]}
    assert set(ids("?locked=true")) == {second["id"]}
    assert set(ids("?locked=false")) == {first["id"]}
    assert set(ids("?locked=true", "2.72", MEMBER)) == both  # members: only from 2.73
    assert set(ids("?locked=true", "2.73", MEMBER)) == {second["id"]}
    _error(api.get("/v2.1/servers?locked=maybe", headers=v("2.73")), 400, "badRequest")
    assert ids(f"?image={api.image_id()}&flavor=1&sort_key=display_name&sort_dir=asc") == [
        first["id"], second["id"]]
    assert ids("?sort_key=display_name&sort_dir=desc") == [second["id"], first["id"]]
    assert ids("?flavor=2") == []
    assert ids("?access_ip_v4=198.51.100") == [first["id"]]
    assert ids("?ip=10.0") == []  # no server has an address
    assert ids("?description=one") == [first["id"]]  # an admin may filter on anything
    assert set(ids("?description=one", headers=MEMBER)) == both  # dropped for members
    assert ids("?availability_zone=nope", headers=MEMBER) == []  # 2.83: members may
    assert set(ids("?availability_zone=nope", "2.82", MEMBER)) == both
    # Unknown parameters: ignored below 2.75, refused from it.
    assert set(ids("?flavour=1", "2.74")) == both
    _error(api.get("/v2.1/servers?flavour=1", headers=v("2.75")), 400, "badRequest")
    _error(api.get("/v2.1/servers?metadata=x"), 400, "badRequest")
    _error(api.get("/v2.1/servers?sort_key=nope", headers=v("2.75")), 400, "badRequest")
    # Paging: a next link when a page is full.
    page = api.get("/v2.1/servers?limit=1&sort_key=display_name&sort_dir=asc").json()
    assert [s["id"] for s in page["servers"]] == [first["id"]]
    rest = api.http.get(page["servers_links"][0]["href"], timeout=30).json()
    assert [s["id"] for s in rest["servers"]] == [second["id"]]
    # changes-since and changes-before (2.66) also list deleted servers.
    assert api.post(f"/v2.1/servers/{second['id']}/action", {"unlock": None}).status_code == 202
    time.sleep(0.2)
    assert api.delete(f"/v2.1/servers/{first['id']}").status_code == 204
    api.wait_gone(first["id"])
    assert ids("") == [second["id"]]
    assert set(ids("?changes-since=2000-01-01T00:00:00Z")) == both
    assert ids("?changes-before=2000-01-01T00:00:00Z", "2.66") == []


def test_topology_and_image_cache(cloud):
    api = cloud.api
    sid = _boot(api, "topo")["id"]
    _error(api.get(f"/v2.1/servers/{sid}/topology", headers=v("2.77")), 404, "itemNotFound")
    assert api.get(f"/v2.1/servers/{sid}/topology", headers=v("2.78")).json() == {
        "nodes": [], "pagesize_kb": None}

    made = api.post("/v2.1/os-aggregates", {"aggregate": {"name": "cachers"}}).json()
    agg = made["aggregate"]["id"]
    assert api.post(f"/v2.1/os-aggregates/{agg}/action",
                    {"add_host": {"host": "compute-3"}}).status_code == 200
    image = api.image_id()
    cache = {"cache": [{"id": image}]}
    _error(api.post(f"/v2.1/os-aggregates/{agg}/images", cache, headers=v("2.80")), 404,
           "itemNotFound")
    _error(api.post(f"/v2.1/os-aggregates/{agg}/images", cache,
                    headers={**v("2.81"), **MEMBER}), 403, "forbidden")
    _error(api.post(f"/v2.1/os-aggregates/{agg}/images",
                    {"cache": [{"id": str(uuid.uuid4())}]}, headers=v("2.81")), 400,
           "badRequest")
    cached = cloud.driver("compute-3").cache_dir / image
    assert not cached.exists()
    assert api.post(f"/v2.1/os-aggregates/{agg}/images", cache,
                    headers=v("2.81")).status_code == 202
    deadline = time.monotonic() + 30
    while not cached.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cached.exists()


def test_dashboard_asks_for_the_maximum():
    script = Path(__file__).parents[2] / "webapp/dashboard/static/common.js"
    assert f'export const COMPUTE_VERSION = "{MAX_VERSION}";' in script.read_text()


def test_embedded_flavor_extra_specs_follow_policy(cloud_factory):
    rule = "os_compute_api:servers:show:flavor-extra-specs"
    running = cloud_factory(host_count=1, policy={rule: "role:admin"})
    api = running.api
    sid = _boot(api, "specs")["id"]
    assert api.server(sid, "2.47")["flavor"]["extra_specs"] == {}
    member = api.get(f"/v2.1/servers/{sid}", headers={**v("2.47"), **MEMBER}).json()["server"]
    assert "extra_specs" not in member["flavor"] and member["flavor"]["vcpus"] == 1
