"""The filter scheduler end to end, through the API of an embedded cloud."""

from __future__ import annotations

from vmflow.config import HostConfig


def _create(api, name, flavor="1", **server):
    body = {"server": {"name": name, "flavorRef": flavor, "imageRef": api.image_id(), **server}}
    hints = server.pop("hints", None)
    if hints:
        body["server"].pop("hints")
        body["os:scheduler_hints"] = hints
    response = api.post("/v2.1/servers", body)
    assert response.status_code == 202, response.text
    return response.json()["server"]["id"]


def _flavor(api, name, ram, vcpus=1, disk=1, extra_specs=None):
    response = api.post("/v2.1/flavors", {"flavor": {"name": name, "ram": ram, "vcpus": vcpus,
                                                     "disk": disk}})
    assert response.status_code == 200, response.text
    flavor = response.json()["flavor"]
    if extra_specs:
        r = api.post(f"/v2.1/flavors/{flavor['id']}/os-extra_specs",
                     {"extra_specs": extra_specs})
        assert r.status_code == 200 and r.json()["extra_specs"] == extra_specs
    return flavor["id"]


def test_request_that_fits_one_host_lands_there(cloud_factory):
    hosts = [HostConfig(name="small-1", memory_mb=2048), HostConfig(name="small-2", memory_mb=2048),
             HostConfig(name="big", memory_mb=16384)]
    running = cloud_factory(hosts=hosts, ram_allocation_ratio=1.0)
    api = running.api
    flavor = _flavor(api, "huge", ram=8192)
    server = api.wait_status(_create(api, "only-big", flavor=flavor))
    assert server["status"] == "ACTIVE" and server["OS-EXT-SRV-ATTR:host"] == "big"

    # Its create action's scheduling event says why the others were rejected.
    actions = api.get(f"/v2.1/servers/{server['id']}/os-instance-actions").json()
    (action,) = actions["instanceActions"]
    assert action["action"] == "create" and action["request_id"].startswith("req-")
    detail = api.get(f"/v2.1/servers/{server['id']}/os-instance-actions/"
                     f"{action['request_id']}",  # events have details from 2.84
                     headers={"OpenStack-API-Version": "compute 2.84"}).json()["instanceAction"]
    events = {e["event"]: e for e in detail["events"]}
    assert events["launch.mark-active"]["result"] == "Success"
    decision = events["launch.select-destinations"]["details"]
    assert "RamFilter: 3 in, 2 out" in decision
    assert "small-1: RamFilter:" in decision and "8192 MB requested" in decision
    assert "chosen: big" in decision


def test_anti_affinity_group_spreads_and_fourth_member_fails(cloud_factory):
    running = cloud_factory(host_count=3)
    api = running.api
    group = api.post("/v2.1/os-server-groups",
                     {"server_group": {"name": "spread", "policies": ["anti-affinity"]}})
    assert group.status_code == 200, group.text
    group_id = group.json()["server_group"]["id"]
    ids = [_create(api, f"m{i}", hints={"group": group_id}) for i in range(3)]
    servers = [api.wait_status(i) for i in ids]
    assert {s["OS-EXT-SRV-ATTR:host"] for s in servers} == {"compute-1", "compute-2",
                                                            "compute-3"}
    fourth = api.wait_status(_create(api, "m4", hints={"group": group_id}))
    assert fourth["status"] == "ERROR"
    assert "ServerGroupAntiAffinityFilter eliminated the last 3 host(s)" in \
        fourth["fault"]["message"]
    shown = api.get(f"/v2.1/os-server-groups/{group_id}").json()["server_group"]
    assert shown["policies"] == ["anti-affinity"] and sorted(shown["members"]) == sorted(
        ids + [fourth["id"]])


def test_affinity_group_stacks(cloud_factory):
    running = cloud_factory(host_count=3)
    api = running.api
    group_id = api.post("/v2.1/os-server-groups", {"server_group": {
        "name": "together", "policies": ["affinity"]}}).json()["server_group"]["id"]
    servers = [api.wait_status(_create(api, f"a{i}", hints={"group": group_id}))
               for i in range(3)]
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in servers}) == 1


def test_zone_request_and_zone_apis(cloud_factory):
    running = cloud_factory(host_count=3)
    api = running.api
    agg = api.post("/v2.1/os-aggregates", {"aggregate": {"name": "rack-a",
                                                         "availability_zone": "az-a"}})
    assert agg.status_code == 200, agg.text
    agg_id = agg.json()["aggregate"]["id"]
    r = api.post(f"/v2.1/os-aggregates/{agg_id}/action", {"add_host": {"host": "compute-3"}})
    assert r.status_code == 200 and r.json()["aggregate"]["hosts"] == ["compute-3"]
    running.cloud.conductor.scheduler.cache.invalidate()

    zones = api.get("/v2.1/os-availability-zone").json()["availabilityZoneInfo"]
    assert sorted(z["zoneName"] for z in zones) == ["az-a", "nova"]
    detail = api.get("/v2.1/os-availability-zone/detail").json()["availabilityZoneInfo"]
    by_zone = {z["zoneName"]: z for z in detail}
    assert set(by_zone["az-a"]["hosts"]) == {"compute-3"}
    assert "vmflow-conductor" in next(iter(by_zone["internal"]["hosts"].values()))

    for i in range(2):
        server = api.wait_status(_create(api, f"z{i}", availability_zone="az-a"))
        assert server["OS-EXT-SRV-ATTR:host"] == "compute-3"
        assert server["OS-EXT-AZ:availability_zone"] == "az-a"
    server = api.wait_status(_create(api, "default-zone", availability_zone="nova"))
    assert server["OS-EXT-SRV-ATTR:host"] in ("compute-1", "compute-2")
    anywhere = api.wait_status(_create(api, "any-zone"))
    assert anywhere["OS-EXT-AZ:availability_zone"] == (
        "az-a" if anywhere["OS-EXT-SRV-ATTR:host"] == "compute-3" else "nova")
    services = api.get("/v2.1/os-services").json()["services"]
    assert {s["host"]: s["zone"] for s in services if s["binary"] == "vmflow-compute"} == {
        "compute-1": "nova", "compute-2": "nova", "compute-3": "az-a"}
    bad = api.post("/v2.1/servers", {"server": {"name": "x", "flavorRef": "1",
                                                "imageRef": api.image_id(),
                                                "availability_zone": "nowhere"}})
    assert bad.status_code == 400 and "nowhere" in bad.json()["badRequest"]["message"]

    meta = api.post(f"/v2.1/os-aggregates/{agg_id}/action",
                    {"set_metadata": {"metadata": {"ssd": "true"}}})
    assert meta.json()["aggregate"]["metadata"] == {"availability_zone": "az-a", "ssd": "true"}
    assert api.delete(f"/v2.1/os-aggregates/{agg_id}").status_code == 400  # still has hosts
    api.post(f"/v2.1/os-aggregates/{agg_id}/action", {"remove_host": {"host": "compute-3"}})
    assert api.delete(f"/v2.1/os-aggregates/{agg_id}").status_code == 200
    assert api.get("/v2.1/os-aggregates").json()["aggregates"] == []


def test_negative_ram_multiplier_stacks(cloud_factory):
    running = cloud_factory(host_count=3, ram_weight_multiplier=-1.0, cpu_weight_multiplier=0.0,
                            disk_weight_multiplier=0.0)
    api = running.api
    servers = [api.wait_status(_create(api, f"s{i}")) for i in range(4)]
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in servers}) == 1


def test_oversubscribed_ram_ratio_admits_what_it_should_and_no_more(cloud_factory):
    # 4096 MB × 1.5 = 6144 MB usable: three 2048 MB servers fit, a fourth does not.
    running = cloud_factory(hosts=[HostConfig(name="only", memory_mb=4096, vcpus=8)],
                            ram_allocation_ratio=1.5)
    api = running.api
    flavor = _flavor(api, "two-gig", ram=2048)
    servers = [api.wait_status(_create(api, f"r{i}", flavor=flavor)) for i in range(4)]
    assert [s["status"] for s in servers] == ["ACTIVE", "ACTIVE", "ACTIVE", "ERROR"]
    assert "RamFilter" in servers[3]["fault"]["message"]
    assert "6144" in servers[3]["fault"]["message"] or "0 MB usable" in \
        servers[3]["fault"]["message"]


def test_capabilities_extra_spec_and_image_properties(cloud_factory):
    hosts = [HostConfig(name="qemu", hypervisor_type="QEMU"),
             HostConfig(name="xen", hypervisor_type="Xen"),
             HostConfig(name="arm", arch="aarch64")]
    running = cloud_factory(hosts=hosts)
    api = running.api
    xen_only = _flavor(api, "xen-only", ram=512, extra_specs={"capabilities:hypervisor_type":
                                                              "s== Xen"})
    server = api.wait_status(_create(api, "on-xen", flavor=xen_only))
    assert server["OS-EXT-SRV-ATTR:host"] == "xen"
    # The default image says hw_architecture=x86_64: the aarch64 host never qualifies.
    ids = [_create(api, f"x86-image-{i}") for i in range(4)]
    assert {api.wait_status(i)["OS-EXT-SRV-ATTR:host"] for i in ids} <= {"qemu", "xen"}
    arm_only = _flavor(api, "arm-only", ram=512, extra_specs={"capabilities:cpu_arch":
                                                              "s== aarch64"})
    server = api.wait_status(_create(api, "nowhere", flavor=arm_only))
    assert server["status"] == "ERROR"
    assert "ImagePropertiesFilter eliminated the last 1 host(s) (arm:" in \
        server["fault"]["message"]


def test_flavor_create_delete_and_bad_input(cloud):
    api = cloud.api
    flavor_id = _flavor(api, "custom", ram=1024, vcpus=2, disk=5)
    shown = api.get(f"/v2.1/flavors/{flavor_id}").json()["flavor"]
    assert (shown["ram"], shown["vcpus"], shown["disk"]) == (1024, 2, 5)
    dup = api.post("/v2.1/flavors", {"flavor": {"name": "custom", "ram": 1, "vcpus": 1,
                                                "disk": 1}})
    assert dup.status_code == 409
    bad = api.post("/v2.1/flavors", {"flavor": {"name": "neg", "ram": -1, "vcpus": 1,
                                                "disk": 1}})
    assert bad.status_code == 400 and "minimum" in bad.json()["badRequest"]["message"]
    assert api.delete(f"/v2.1/flavors/{flavor_id}").status_code == 202
    assert api.get(f"/v2.1/flavors/{flavor_id}").status_code == 404
    assert "custom" not in [f["name"] for f in api.get("/v2.1/flavors").json()["flavors"]]
