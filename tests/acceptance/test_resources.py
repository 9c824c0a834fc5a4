"""Flavors, images, keypairs, hosts and zones with `openstack`; what an admin
may do and a member may not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization

from tests.acceptance.conftest import User


def test_a_wrong_password_is_refused(demo):
    intruder = User({**demo.openrc, "OS_PASSWORD": "not-the-password"}, demo.home)
    refused = intruder.fails("server", "list")
    assert "HTTP 401" in refused.stderr, refused.stderr
    assert "not-the-password" not in refused.stderr


def test_flavor_list(demo):
    flavors = {f["Name"]: f for f in demo.json("flavor", "list")}
    assert {"m1.tiny", "m1.small", "m1.medium"} <= set(flavors)
    assert flavors["m1.tiny"]["RAM"] == 512 and flavors["m1.tiny"]["VCPUs"] == 1


def test_image_list(demo):
    images = {i["Name"]: i for i in demo.json("image", "list")}
    assert images["blank-qcow2"]["Status"] == "active"


def test_image_create_from_a_file(demo, tmp_path: Path):
    path = tmp_path / "x.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(path), "16M"], check=True,
                   capture_output=True)
    image = demo.json("image", "create", "--disk-format", "qcow2", "--file", str(path),
                      "accept-upload")
    assert image["status"] == "active"
    assert image["disk_format"] == "qcow2"
    assert image["size"] == path.stat().st_size
    assert image["virtual_size"] == 16 * 1024 * 1024
    shown = demo.json("image", "show", "accept-upload")
    assert shown["id"] == image["id"] and shown["checksum"] == image["checksum"]
    assert "accept-upload" in {i["Name"] for i in demo.json("image", "list")}


def test_an_upload_that_is_not_an_image_is_refused(demo, tmp_path: Path):
    path = tmp_path / "notes.qcow2"
    path.write_text("hello, not an image\n")
    refused = demo.fails("image", "create", "--disk-format", "qcow2", "--file", str(path),
                         "accept-not-an-image")
    assert "400" in refused.stderr and "not a qcow2 image" in refused.stderr, refused.stderr
    active = {i["Name"] for i in demo.json("image", "list") if i["Status"] == "active"}
    assert "accept-not-an-image" not in active


def test_keypair_create_prints_a_usable_private_key(demo):
    private = demo("keypair", "create", "accept-key")
    key = serialization.load_ssh_private_key(private.encode(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    listed = {k["Name"]: k for k in demo.json("keypair", "list")}
    assert "accept-key" in listed
    stored = demo("keypair", "show", "--public-key", "accept-key").split()
    assert stored[:2] == public.split()[:2]


def test_hypervisor_list(admin):
    hypervisors = {h["Hypervisor Hostname"]: h for h in admin.json("hypervisor", "list")}
    assert set(hypervisors) == {"compute-1", "compute-2"}
    assert all(h["State"] == "up" for h in hypervisors.values())


def test_hypervisor_show(admin):
    shown = admin.json("hypervisor", "show", "compute-1")
    assert shown["hypervisor_hostname"] == "compute-1"
    assert shown["state"] == "up" and shown["status"] == "enabled"


def test_hypervisor_stats_show(admin):
    stats = admin.json("hypervisor", "stats", "show")
    assert stats["count"] == 2
    assert stats["vcpus"] > 0 and stats["memory_mb"] > 0


def test_compute_service_list_and_disable(admin):
    services = admin.json("compute", "service", "list")
    computes = {s["Host"]: s for s in services if s["Binary"].endswith("compute")}
    assert set(computes) == {"compute-1", "compute-2"}
    binary = computes["compute-2"]["Binary"]
    admin("compute", "service", "set", "--disable", "--disable-reason", "maintenance",
          "compute-2", binary)
    shown = {s["Host"]: s for s in admin.json("compute", "service", "list", "--long",
                                               "--service", binary)}
    assert shown["compute-2"]["Status"] == "disabled"
    assert shown["compute-2"]["Disabled Reason"] == "maintenance"
    assert shown["compute-1"]["Status"] == "enabled"
    admin("compute", "service", "set", "--enable", "compute-2", binary)
    shown = {s["Host"]: s for s in admin.json("compute", "service", "list")}
    assert shown["compute-2"]["Status"] == "enabled"


def test_a_member_is_refused_an_admin_command(admin, demo):
    binary = next(s["Binary"] for s in admin.json("compute", "service", "list")
                  if s["Host"] == "compute-1")
    refused = demo.fails("compute", "service", "set", "--disable", "compute-1", binary)
    assert "403" in refused.stderr and "Policy doesn't allow" in refused.stderr, \
        refused.stderr
    assert refused.stdout == ""
    shown = {s["Host"]: s for s in admin.json("compute", "service", "list")}
    assert shown["compute-1"]["Status"] == "enabled"


def test_aggregate_list(admin):
    assert admin.json("aggregate", "list") == []
    admin("aggregate", "create", "--zone", "accept-zone", "accept-aggregate")
    (aggregate,) = admin.json("aggregate", "list")
    assert aggregate["Name"] == "accept-aggregate"
    assert aggregate["Availability Zone"] == "accept-zone"


def test_availability_zone_list_compute(admin, demo):
    zones = {z["Zone Name"]: z for z in demo.json("availability", "zone", "list", "--compute")}
    assert zones["nova"]["Zone Status"] == "available"
    zones = {z["Zone Name"]: z for z in admin.json("availability", "zone", "list", "--compute")}
    assert zones["nova"]["Zone Status"] == "available"


def test_no_password_or_token_in_the_logs(user_cloud, admin, demo):
    token = demo("token", "issue", "-f", "value", "-c", "id").strip()
    used = requests.get(f"{user_cloud.base}/v2.1/servers", headers={"X-Auth-Token": token},
                        timeout=30)
    assert used.status_code == 200, used.text
    logs = [*sorted((user_cloud.data_dir / "logs").glob("*.log")), user_cloud.stderr_path]
    text = "\n".join(path.read_text() for path in logs)
    assert "POST /identity/v3/auth/tokens" in text  # the logs do record the requests
    for secret in (admin.openrc["OS_PASSWORD"], demo.openrc["OS_PASSWORD"], token,
                   "not-the-password"):
        assert secret not in text
