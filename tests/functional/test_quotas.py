"""Quotas and limits through the HTTP API of an embedded cloud: per-project limits
set by an admin and enforced on real launches, server groups and metadata;
the limits' used figures following boots and deletes; bad updates refused; and
the instance quota holding under 50 concurrent creates."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from vmflow.db.models import FlowRun, Instance, Notification, QuotaOverride, ServerGroupMember
from webapp.api import microversion

QUOTAS = "/v2.1/os-quota-sets"
MEMBER = {"X-Roles": "member"}
MEMBER_OF_OTHER = {"X-Auth-Project-Id": "other", "X-Roles": "member"}
# What Nova's quota set holds at 2.1, and what goes at 2.36 and 2.57.
NETWORK = {"fixed_ips", "floating_ips", "security_groups", "security_group_rules"}
INJECTED = {"injected_files", "injected_file_content_bytes", "injected_file_path_bytes"}
QUOTA_KEYS = {"instances", "cores", "ram", "key_pairs", "metadata_items", "server_groups",
              "server_group_members"} | NETWORK | INJECTED
NOVA_DEFAULTS = {"instances": 10, "cores": 20, "ram": 51200, "key_pairs": 100,
                 "server_groups": 10, "server_group_members": 10, "metadata_items": 128,
                 "injected_files": 5, "injected_file_content_bytes": 10240,
                 "injected_file_path_bytes": 255, "fixed_ips": -1, "floating_ips": 10,
                 "security_groups": 10, "security_group_rules": 20}
LIMIT_KEYS = {"maxTotalInstances", "maxTotalCores", "maxTotalRAMSize", "maxTotalKeypairs",
              "maxServerMeta", "maxServerGroups", "maxServerGroupMembers", "totalInstancesUsed",
              "totalCoresUsed", "totalRAMUsed", "totalServerGroupsUsed"}
LIMIT_KEYS_GONE = {"2.36": {"maxTotalFloatingIps", "maxSecurityGroups", "maxSecurityGroupRules",
                            "totalFloatingIpsUsed", "totalSecurityGroupsUsed"},
                   "2.39": {"maxImageMeta"}, "2.57": {"maxPersonality", "maxPersonalitySize"}}
MEDIUM = "3"  # m1.medium: 2 vCPUs, 4096 MB


def _version(v: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {v}"}


def _served(v: str) -> bool:
    """Whether the API serves microversion ``v`` (checks of later versions wait for it)."""
    return microversion.parse(v) <= microversion.MAX


def _put(api, project: str, body, headers=None):
    return api.http.put(f"{api.base}{QUOTAS}/{project}", json=body, headers=headers or {},
                        timeout=30)


def _boot(api, name: str, flavor: str = "1", headers=None, **extra):
    server = {"name": name, "flavorRef": flavor, "imageRef": api.image_id(), **extra}
    return api.post("/v2.1/servers", {"server": server}, headers=headers or {})


def _boot_active(api, name: str, flavor: str = "1", **extra) -> str:
    response = _boot(api, name, flavor, **extra)
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    return server_id


def _forbidden(response, message: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json() == {"forbidden": {"code": 403, "message": message}}


def _bad(response, *fragments: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["badRequest"]["message"]
    for fragment in fragments:
        assert fragment in message, message


def _rows(cloud, model, *where) -> int:
    with cloud.db.read() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def _limits(api, version: str = "2.1", **params) -> dict:
    response = api.get("/v2.1/limits", headers=_version(version), params=params)
    assert response.status_code == 200, response.text
    assert response.json()["limits"]["rate"] == []
    return response.json()["limits"]["absolute"]


def test_defaults_are_novas_and_follow_the_microversion(cloud):
    api = cloud.api
    quota_set = api.get(f"{QUOTAS}/demo").json()["quota_set"]
    assert set(quota_set) == QUOTA_KEYS | {"id"}
    assert quota_set == {"id": "demo", **NOVA_DEFAULTS}
    assert api.get(f"{QUOTAS}/demo/defaults").json()["quota_set"] == quota_set

    at_236 = api.get(f"{QUOTAS}/demo", headers=_version("2.36")).json()["quota_set"]
    assert set(at_236) == (QUOTA_KEYS - NETWORK) | {"id"}
    if _served("2.57"):
        at_257 = api.get(f"{QUOTAS}/demo", headers=_version("2.57")).json()["quota_set"]
        assert set(at_257) == (QUOTA_KEYS - NETWORK - INJECTED) | {"id"}

    # The default quota class: no server group quotas before 2.50, no network ones from it.
    default = api.get("/v2.1/os-quota-class-sets/default").json()
    assert default["quota_class_set"] == {
        "id": "default", **{k: v for k, v in NOVA_DEFAULTS.items()
                            if k not in ("server_groups", "server_group_members")}}
    _forbidden(api.get("/v2.1/os-quota-class-sets/default", headers=MEMBER),
               "Policy doesn't allow os_compute_api:os-quota-class-sets:show to be performed.")
    if _served("2.50"):
        at_250 = api.get("/v2.1/os-quota-class-sets/default", headers=_version("2.50")).json()
        assert set(at_250["quota_class_set"]) == (QUOTA_KEYS - NETWORK) | {"id"}


def test_configured_defaults_apply_to_every_project(cloud_factory):
    cloud = cloud_factory(quota_instances=3, quota_key_pairs=7)
    quota_set = cloud.api.get(f"{QUOTAS}/anyone").json()["quota_set"]
    assert (quota_set["instances"], quota_set["key_pairs"], quota_set["cores"]) == (3, 7, 20)


def test_admin_sets_a_projects_limit_and_launches_stop_there(cloud):
    api = cloud.api
    response = _put(api, "demo", {"quota_set": {"instances": 1, "ram": "2048"}})
    assert response.status_code == 200, response.text
    # Nova's update answer has no id.
    assert response.json()["quota_set"] == {**NOVA_DEFAULTS, "instances": 1, "ram": 2048}
    assert api.get(f"{QUOTAS}/demo").json()["quota_set"]["instances"] == 1
    assert api.get(f"{QUOTAS}/other").json()["quota_set"]["instances"] == 10  # not others'
    assert api.get(f"{QUOTAS}/demo/defaults").json()["quota_set"]["instances"] == 10

    first = _boot_active(api, "first")
    runs_before = _rows(cloud, FlowRun)
    _forbidden(_boot(api, "second"), "Quota exceeded for instances: Requested 1, but already "
                                     "used 1 of 1 instances")
    # A refused request leaves nothing: no instance, no flow run, no notification.
    assert _rows(cloud, Instance) == 1 and _rows(cloud, FlowRun) == runs_before
    assert _rows(cloud, Notification, Notification.instance_uuid != first) == 0
    # Another project is not limited by demo's quota.
    other = _boot(api, "elsewhere", headers={"X-Auth-Project-Id": "other"})
    assert other.status_code == 202, other.text

    # RAM: 2048 MB allowed, m1.medium asks 4096 more.
    assert _put(api, "demo", {"quota_set": {"instances": 5}}).status_code == 200
    _forbidden(_boot(api, "big", MEDIUM), "Quota exceeded for ram: Requested 4096, but already "
                                          "used 512 of 2048 ram")
    # -1 is unlimited.
    assert _put(api, "demo", {"quota_set": {"ram": -1}}).json()["quota_set"]["ram"] == -1
    big = _boot_active(api, "big", MEDIUM)

    # DELETE: back to the defaults (202, as Nova).
    response = api.delete(f"{QUOTAS}/demo")
    assert response.status_code == 202
    assert api.get(f"{QUOTAS}/demo").json()["quota_set"] == {"id": "demo", **NOVA_DEFAULTS}
    assert _rows(cloud, QuotaOverride) == 0
    for server_id in (first, big):
        assert api.delete(f"/v2.1/servers/{server_id}").status_code == 204
        api.wait_gone(server_id)


def test_cores_quota_counts_the_flavors_vcpus(cloud):
    api = cloud.api
    assert _put(api, "demo", {"quota_set": {"cores": 3}}).status_code == 200
    _boot_active(api, "two-cores", MEDIUM)
    _forbidden(_boot(api, "two-more", MEDIUM), "Quota exceeded for cores: Requested 2, but "
                                               "already used 2 of 3 cores")
    assert _boot(api, "one-more").status_code == 202  # m1.tiny: 1 vCPU still fits


def test_members_read_their_own_projects_quotas_only_and_never_change_them(cloud):
    api = cloud.api
    assert api.get(f"{QUOTAS}/demo", headers=MEMBER).status_code == 200
    assert api.get(f"{QUOTAS}/demo/detail", headers=MEMBER).status_code == 200
    # Defaults are anybody's to read.
    assert api.get(f"{QUOTAS}/demo/defaults", headers=MEMBER_OF_OTHER).status_code == 200
    _forbidden(api.get(f"{QUOTAS}/demo", headers=MEMBER_OF_OTHER),
               "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed.")
    _forbidden(api.get(f"{QUOTAS}/demo/detail", headers=MEMBER_OF_OTHER),
               "Policy doesn't allow os_compute_api:os-quota-sets:detail to be performed.")
    _forbidden(_put(api, "demo", {"quota_set": {"instances": 50}}, headers=MEMBER),
               "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed.")
    _forbidden(api.delete(f"{QUOTAS}/demo", headers=MEMBER),
               "Policy doesn't allow os_compute_api:os-quota-sets:delete to be performed.")
    assert _rows(cloud, QuotaOverride) == 0
    # Readers may read too.
    assert api.get(f"{QUOTAS}/demo", headers={"X-Roles": "reader"}).status_code == 200


def test_bad_updates_are_refused_and_change_nothing(cloud):
    api = cloud.api
    for body, fragment in [
        ({"quota_set": {"instances": -2}}, "less than the minimum of -1"),
        ({"quota_set": {"instances": "ten"}}, "is not an integer"),
        ({"quota_set": {"instances": 1.5}}, "is not an integer"),
        ({"quota_set": {"instances": True}}, "is not an integer"),
        ({"quota_set": {"instances": None}}, "is not an integer"),
        ({"quota_set": {"instances": 2**31}}, "greater than the maximum"),
        ({"quota_set": {"gigabytes": 5}}, "'gigabytes' was unexpected"),
        ({"quota_set": {"instances": 5, "force": "maybe"}}, "is not a boolean"),
        ({"quota_set": []}, "'quota_set' is a required property"),
        ({"quota": {"instances": 5}}, "'quota' was unexpected"),
    ]:
        _bad(_put(api, "demo", body), fragment)
    response = api.http.put(f"{api.base}{QUOTAS}/demo", data="{nope", timeout=30)
    _bad(response, "not valid JSON")
    response = api.http.put(f"{api.base}{QUOTAS}/demo", params={"user_id": "bob"},
                            json={"quota_set": {"instances": 5}}, timeout=30)
    _bad(response, "Per-user quotas are not supported")
    _bad(api.delete(f"{QUOTAS}/demo", params={"user_id": "bob"}),
         "Per-user quotas are not supported")
    # Network and injected-file quotas are gone from their microversions on.
    _bad(_put(api, "demo", {"quota_set": {"floating_ips": 5}}, _version("2.36")),
         "'floating_ips' was unexpected")
    if _served("2.57"):
        _bad(_put(api, "demo", {"quota_set": {"injected_files": 5}}, _version("2.57")),
             "'injected_files' was unexpected")
    assert _rows(cloud, QuotaOverride) == 0
    assert api.get(f"{QUOTAS}/demo").json()["quota_set"] == {"id": "demo", **NOVA_DEFAULTS}

    # Below what is in use: refused unless forced.
    _boot_active(api, "a")
    _boot_active(api, "b")
    _bad(_put(api, "demo", {"quota_set": {"instances": 1}}),
         "Quota limit 1 for instances must be greater than or equal to already used and "
         "reserved 2.")
    assert _rows(cloud, QuotaOverride) == 0
    forced = _put(api, "demo", {"quota_set": {"instances": 1, "force": True}})
    assert forced.status_code == 200 and forced.json()["quota_set"]["instances"] == 1
    _forbidden(_boot(api, "c"), "Quota exceeded for instances: Requested 1, but already used "
                                "2 of 1 instances")


def test_limits_and_detail_follow_boots_and_deletes(cloud):
    api = cloud.api
    absolute = _limits(api)
    assert set(absolute) == LIMIT_KEYS.union(*LIMIT_KEYS_GONE.values())
    assert absolute == {
        "maxTotalInstances": 10, "maxTotalCores": 20, "maxTotalRAMSize": 51200,
        "maxTotalKeypairs": 100, "maxServerMeta": 128, "maxImageMeta": 128,
        "maxServerGroups": 10, "maxServerGroupMembers": 10, "maxPersonality": 5,
        "maxPersonalitySize": 10240, "maxTotalFloatingIps": 10, "maxSecurityGroups": 10,
        "maxSecurityGroupRules": 20, "totalInstancesUsed": 0, "totalCoresUsed": 0,
        "totalRAMUsed": 0, "totalServerGroupsUsed": 0, "totalFloatingIpsUsed": 0,
        "totalSecurityGroupsUsed": 0}
    gone: set[str] = set()
    for version, keys in LIMIT_KEYS_GONE.items():
        gone |= keys
        if _served(version):
            assert set(_limits(api, version)) == (LIMIT_KEYS.union(*LIMIT_KEYS_GONE.values())
                                                  - gone)

    server_id = _boot_active(api, "counted", MEDIUM)
    group = api.post("/v2.1/os-server-groups",
                     {"server_group": {"name": "g", "policies": ["affinity"]}})
    assert group.status_code == 200, group.text
    absolute = _limits(api, "2.39")
    assert (absolute["totalInstancesUsed"], absolute["totalCoresUsed"],
            absolute["totalRAMUsed"], absolute["totalServerGroupsUsed"]) == (1, 2, 4096, 1)
    detail = api.get(f"{QUOTAS}/demo/detail").json()["quota_set"]
    assert detail["id"] == "demo" and set(detail) == QUOTA_KEYS | {"id"}
    assert detail["instances"] == {"in_use": 1, "limit": 10, "reserved": 0}
    assert detail["cores"] == {"in_use": 2, "limit": 20, "reserved": 0}
    assert detail["ram"] == {"in_use": 4096, "limit": 51200, "reserved": 0}
    assert detail["server_groups"] == {"in_use": 1, "limit": 10, "reserved": 0}
    # Another project's figures are its own; an admin may ask for them, a member not.
    assert _limits(api, tenant_id="other")["totalInstancesUsed"] == 0
    _forbidden(api.get("/v2.1/limits", params={"tenant_id": "demo"}, headers=MEMBER_OF_OTHER),
               "Policy doesn't allow os_compute_api:limits:other_project to be performed.")
    assert api.get("/v2.1/limits", headers=MEMBER_OF_OTHER).json()["limits"]["absolute"][
        "totalInstancesUsed"] == 0

    assert api.delete(f"/v2.1/servers/{server_id}").status_code == 204
    api.wait_gone(server_id)
    absolute = _limits(api)
    assert (absolute["totalInstancesUsed"], absolute["totalCoresUsed"],
            absolute["totalRAMUsed"]) == (0, 0, 0)
    # Limits show per-project overrides.
    _put(api, "demo", {"quota_set": {"instances": 4, "metadata_items": 3}})
    absolute = _limits(api)
    assert (absolute["maxTotalInstances"], absolute["maxServerMeta"],
            absolute["maxImageMeta"]) == (4, 3, 3)


def test_metadata_items_server_groups_and_members_have_quotas(cloud):
    api = cloud.api
    assert _put(api, "demo", {"quota_set": {"metadata_items": 2, "server_groups": 1,
                                            "server_group_members": 1}}).status_code == 200
    runs = _rows(cloud, FlowRun)
    _forbidden(_boot(api, "meta", metadata={"a": "1", "b": "2", "c": "3"}),
               "Quota exceeded for metadata_items: Requested 3, but already used 0 of 2 "
               "metadata_items")
    assert _rows(cloud, Instance) == 0 and _rows(cloud, FlowRun) == runs

    new_group = {"server_group": {"name": "g", "policies": ["anti-affinity"]}}
    group = api.post("/v2.1/os-server-groups", new_group)
    assert group.status_code == 200, group.text
    _forbidden(api.post("/v2.1/os-server-groups", new_group),
               "Quota exceeded for server_groups: Requested 1, but already used 1 of 1 "
               "server_groups")
    assert len(api.get("/v2.1/os-server-groups").json()["server_groups"]) == 1

    group_id = group.json()["server_group"]["id"]
    hint = {"os:scheduler_hints": {"group": group_id}}

    def boot_in_group(name: str):
        body = {"server": {"name": name, "flavorRef": "1", "imageRef": api.image_id(),
                           "metadata": {"a": "1", "b": "2"}}, **hint}
        return api.post("/v2.1/servers", body)

    member = boot_in_group("member-1")
    assert member.status_code == 202, member.text
    member_id = member.json()["server"]["id"]
    api.wait_status(member_id)
    _forbidden(boot_in_group("member-2"), "Quota exceeded for server_group_members: Requested "
                                          "1, but already used 1 of 1 server_group_members")
    assert _rows(cloud, ServerGroupMember) == 1
    # A deleted member no longer counts.
    assert api.delete(f"/v2.1/servers/{member_id}").status_code == 204
    api.wait_gone(member_id)
    assert boot_in_group("member-2").status_code == 202


@pytest.mark.timeout(600)
def test_fifty_concurrent_creates_never_pass_the_instance_quota(db, cloud_factory):
    """50 creates at once against a quota of 10, on SQLite and on PostgreSQL: at most
    10 instances exist, every refusal is a 403 naming the quota, and nothing is
    left of the refused ones.  The race is real on both: with the re-check after
    the insert switched off, 28 of the 50 got through on SQLite."""
    cloud = cloud_factory(database=db, conductor_concurrency=8)
    api = cloud.api
    image = api.image_id()
    start = threading.Barrier(50)
    results: list = [None] * 50

    def create(i: int) -> None:
        start.wait()
        results[i] = api.http.post(f"{api.base}/v2.1/servers", timeout=120, json={
            "server": {"name": f"race-{i}", "flavorRef": "1", "imageRef": image}})

    threads = [threading.Thread(target=create, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    accepted = [r.json()["server"]["id"] for r in results if r.status_code == 202]
    refused = [r for r in results if r.status_code != 202]
    assert 1 <= len(accepted) <= 10
    assert len(accepted) + len(refused) == 50
    for response in refused:
        assert response.status_code == 403, response.text
        message = response.json()["forbidden"]["message"]
        assert message.startswith("Quota exceeded for instances: Requested 1, but already "
                                  "used "), message
        assert message.endswith(" of 10 instances"), message
    # Nothing recorded for the refused: instances (deleted or not), flow runs,
    # notifications all belong to the accepted ones.
    with cloud.db.read() as session:
        assert sorted(session.scalars(select(Instance.uuid))) == sorted(accepted)
        assert sorted(session.scalars(select(FlowRun.instance_uuid).where(
            FlowRun.operation == "launch"))) == sorted(accepted)
        assert set(session.scalars(select(Notification.instance_uuid))) <= set(accepted)
    for server_id in accepted:
        assert api.wait_status(server_id)["status"] == "ACTIVE"
    used = _limits(api)
    assert used["totalInstancesUsed"] == len(accepted) <= used["maxTotalInstances"]
