"""Key pairs through the HTTP API of an embedded cloud: generated and imported
keys (checked against ssh-keygen's own fingerprints), list/show/delete per
user, microversion shapes, bad input, the key_pairs quota, and ``key_name`` on
server create reaching the instance."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import func, select

from vmflow.db.models import FlowRun, Instance, KeyPair

KEYPAIRS = "/v2.1/os-keypairs"
OTHER_USER = {"X-Auth-User": "bob", "X-Roles": "member"}
MEMBER = {"X-Roles": "member"}


def _version(v: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {v}"}


def _ssh_keygen(tmp_path: Path, kind: str, name: str, *extra: str) -> str:
    """A public key made by OpenSSH's own ssh-keygen."""
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"{name}@test",
                    "-f", str(path)], check=True)
    return (tmp_path / f"{name}.pub").read_text().strip()


def _md5_fingerprint(tmp_path: Path, public_key: str) -> str:
    """ssh-keygen's MD5 fingerprint of a public key (``MD5:aa:bb:...`` -> ``aa:bb:...``)."""
    path = tmp_path / "check.pub"
    path.write_text(public_key + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1].removeprefix("MD5:")


def _create(api, body: dict, headers: dict | None = None):
    return api.post(KEYPAIRS, {"keypair": body}, headers=headers or {})


def _bad(response, *fragments: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["badRequest"]["message"]
    for fragment in fragments:
        assert fragment in message, message


def _count(cloud, model=KeyPair) -> int:
    with cloud.db.read() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_generate_show_list_delete(cloud, tmp_path):
    api = cloud.api
    response = _create(api, {"name": "gen-1"})
    assert response.status_code == 200, response.text  # 2.1: 200; 201 from 2.2
    keypair = response.json()["keypair"]
    assert set(keypair) == {"name", "public_key", "fingerprint", "user_id", "private_key"}
    assert keypair["name"] == "gen-1" and keypair["user_id"] == "demo"
    assert keypair["public_key"].startswith("ssh-rsa ")
    assert keypair["fingerprint"] == _md5_fingerprint(tmp_path, keypair["public_key"])
    # The private key is a real RSA key whose public half is the one returned.
    private = serialization.load_pem_private_key(keypair["private_key"].encode(), None)
    assert private.key_size == 2048
    assert private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() == \
        " ".join(keypair["public_key"].split()[:2])
    # ...and it is never stored.
    with cloud.db.read() as session:
        row = session.scalar(select(KeyPair))
        assert "PRIVATE" not in row.public_key and row.public_key == keypair["public_key"]

    shown = api.get(f"{KEYPAIRS}/gen-1").json()["keypair"]
    assert "private_key" not in shown
    assert {k: shown[k] for k in ("name", "public_key", "fingerprint", "user_id")} == {
        k: keypair[k] for k in ("name", "public_key", "fingerprint", "user_id")}
    assert shown["deleted"] is False and shown["created_at"].endswith("Z")
    listed = api.get(KEYPAIRS).json()
    assert listed == {"keypairs": [{"keypair": {"name": "gen-1",
                                                "public_key": keypair["public_key"],
                                                "fingerprint": keypair["fingerprint"]}}]}

    # Another user sees none of it.
    assert api.get(KEYPAIRS, headers=OTHER_USER).json() == {"keypairs": []}
    assert api.get(f"{KEYPAIRS}/gen-1", headers=OTHER_USER).status_code == 404
    assert api.delete(f"{KEYPAIRS}/gen-1", headers=OTHER_USER).status_code == 404

    assert api.delete(f"{KEYPAIRS}/gen-1").status_code == 202  # 2.1: 202; 204 from 2.2
    missing = api.get(f"{KEYPAIRS}/gen-1")
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["message"] == "Keypair gen-1 not found for user demo"
    assert api.delete(f"{KEYPAIRS}/gen-1").status_code == 404
    assert _count(cloud) == 0


@pytest.mark.parametrize("kind,extra", [("ed25519", ()), ("rsa", ("-b", "3072")),
                                        ("ecdsa", ("-b", "256")), ("ecdsa", ("-b", "521"))])
def test_import_openssh_public_keys(cloud, tmp_path, kind, extra):
    api = cloud.api
    public_key = _ssh_keygen(tmp_path, kind, "mine", *extra)
    response = _create(api, {"name": "imported key", "public_key": public_key}, _version("2.2"))
    assert response.status_code == 201, response.text
    keypair = response.json()["keypair"]
    assert "private_key" not in keypair
    assert keypair["type"] == "ssh" and keypair["public_key"] == public_key
    assert keypair["fingerprint"] == _md5_fingerprint(tmp_path, public_key)
    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.md5(blob).hexdigest()
    assert keypair["fingerprint"].replace(":", "") == digest
    shown = api.get(f"{KEYPAIRS}/imported key", headers=_version("2.2")).json()["keypair"]
    assert shown["type"] == "ssh" and shown["fingerprint"] == keypair["fingerprint"]
    assert api.delete(f"{KEYPAIRS}/imported key", headers=_version("2.2")).status_code == 204


def test_x509_key_pairs_from_2_2(cloud):
    api = cloud.api
    _bad(_create(api, {"name": "cert", "type": "x509"}), "'type' was unexpected")
    response = _create(api, {"name": "cert", "type": "x509"}, _version("2.2"))
    assert response.status_code == 201, response.text
    keypair = response.json()["keypair"]
    cert = x509.load_pem_x509_certificate(keypair["public_key"].encode())
    assert keypair["type"] == "x509"
    assert keypair["fingerprint"] == cert.fingerprint(hashes.SHA1()).hex(":")
    private = serialization.load_pem_private_key(keypair["private_key"].encode(), None)
    assert private.public_key().public_numbers() == cert.public_key().public_numbers()
    imported = _create(api, {"name": "cert-2", "type": "x509",
                             "public_key": keypair["public_key"]}, _version("2.2"))
    assert imported.status_code == 201 and imported.json()["keypair"]["fingerprint"] == \
        keypair["fingerprint"]
    _bad(_create(api, {"name": "cert-3", "type": "x509", "public_key": "ssh-rsa AAAA"},
                 _version("2.2")), "not a PEM X.509 certificate")
    _bad(_create(api, {"name": "cert-3", "type": "gpg"}, _version("2.2")),
         "'gpg' is not one of ssh, x509")


def test_bad_names_keys_and_duplicates_are_refused_and_leave_nothing(cloud, tmp_path):
    api = cloud.api
    good = _ssh_keygen(tmp_path, "ed25519", "good")
    other = _ssh_keygen(tmp_path, "ed25519", "other")
    ed_type, ed_blob = good.split()[:2]
    rsa_blob = _ssh_keygen(tmp_path, "rsa", "rsa").split()[1]
    for body, fragment in [
        ({"name": ""}, "1 to 255 characters"),
        ({"name": "x" * 256}, "1 to 255 characters"),
        ({"name": 42}, "1 to 255 characters"),
        ({"name": "a/b"}, "only letters, digits, spaces"),
        ({"name": "clé"}, "only letters, digits, spaces"),
        ({"name": "   "}, "only letters, digits, spaces"),
        ({}, "'name' is a required property"),
        ({"name": "k", "colour": "blue"}, "'colour' was unexpected"),
        ({"name": "k", "user_id": "bob"}, "'user_id' was unexpected"),  # before 2.10
        ({"name": "k", "public_key": "not a key"}, "Keypair data is invalid"),
        ({"name": "k", "public_key": "ssh-dss AAAAB3NzaC1kc3M="}, "not supported"),
        ({"name": "k", "public_key": f"{ed_type} !!!notbase64"}, "does not decode"),
        ({"name": "k", "public_key": f"ssh-rsa {ed_blob}"}, "holds a 'ssh-ed25519' key"),
        ({"name": "k", "public_key": f"{ed_type} {ed_blob[:-8]}"}, "cannot be loaded"),
        ({"name": "k", "public_key": f"ssh-rsa {rsa_blob[:60]}"}, "Keypair data is invalid"),
        ({"name": "k", "public_key": 12}, "must be a string"),
    ]:
        _bad(_create(api, body), fragment)
    _bad(api.post(KEYPAIRS, {"key": {"name": "k"}}), "'key' was unexpected")
    assert _count(cloud) == 0

    assert _create(api, {"name": "mine_1.2@x-y", "public_key": good}).status_code == 200
    duplicate = _create(api, {"name": "mine_1.2@x-y", "public_key": other})
    assert duplicate.status_code == 409
    assert duplicate.json() == {"conflictingRequest": {
        "code": 409, "message": "Key pair 'mine_1.2@x-y' already exists."}}
    # The same name is free for another user.
    assert _create(api, {"name": "mine_1.2@x-y", "public_key": other},
                   OTHER_USER).status_code == 200
    assert _count(cloud) == 2


def test_admins_act_for_other_users_from_2_10_and_lists_page_from_2_35(cloud, tmp_path):
    api = cloud.api
    v210 = _version("2.10")
    for_bob = _create(api, {"name": "for-bob", "user_id": "bob"}, v210)
    assert for_bob.status_code == 201, for_bob.text
    assert for_bob.json()["keypair"]["user_id"] == "bob"
    assert [k["keypair"]["name"] for k in api.get(KEYPAIRS, headers=OTHER_USER).json()[
        "keypairs"]] == ["for-bob"]
    assert api.get(KEYPAIRS).json()["keypairs"] == []  # the admin's own list
    assert api.get(KEYPAIRS, params={"user_id": "bob"}, headers=v210).json()[
        "keypairs"][0]["keypair"]["name"] == "for-bob"
    assert api.get(f"{KEYPAIRS}/for-bob", params={"user_id": "bob"},
                   headers=v210).json()["keypair"]["user_id"] == "bob"
    # A member may not.
    refused = _create(api, {"name": "for-alice", "user_id": "alice"}, {**MEMBER, **v210})
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"] == \
        "Policy doesn't allow os_compute_api:os-keypairs:create to be performed."
    assert api.get(KEYPAIRS, params={"user_id": "bob"},
                   headers={**MEMBER, **v210}).status_code == 403
    assert api.delete(f"{KEYPAIRS}/for-bob", params={"user_id": "bob"},
                      headers=v210).status_code == 204
    assert _count(cloud) == 0

    key = _ssh_keygen(tmp_path, "ed25519", "k")
    for i in range(5):
        assert _create(api, {"name": f"k{i}", "public_key": key}).status_code == 200
    v235 = _version("2.35")
    page = api.get(KEYPAIRS, params={"limit": 2}, headers=v235).json()
    assert [k["keypair"]["name"] for k in page["keypairs"]] == ["k0", "k1"]
    assert page["keypairs_links"][0]["rel"] == "next"
    assert page["keypairs_links"][0]["href"].endswith("/v2.1/os-keypairs?limit=2&marker=k1")
    page = api.get(KEYPAIRS, params={"limit": 2, "marker": "k3"}, headers=v235).json()
    assert [k["keypair"]["name"] for k in page["keypairs"]] == ["k4"]
    assert "keypairs_links" not in page
    _bad(api.get(KEYPAIRS, params={"marker": "nope"}, headers=v235), "marker [nope] not found")
    _bad(api.get(KEYPAIRS, params={"limit": "x"}, headers=v235), "limit")
    # Before 2.35 paging parameters are ignored.
    assert len(api.get(KEYPAIRS, params={"limit": 2}).json()["keypairs"]) == 5


def test_key_pairs_quota_counts_per_user(cloud, tmp_path):
    api = cloud.api
    put = api.http.put(f"{api.base}/v2.1/os-quota-sets/demo",
                       json={"quota_set": {"key_pairs": 2}}, timeout=30)
    assert put.status_code == 200, put.text
    key = _ssh_keygen(tmp_path, "ed25519", "q")
    for name in ("one", "two"):
        assert _create(api, {"name": name, "public_key": key}).status_code == 200
    refused = _create(api, {"name": "three", "public_key": key})
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"] == (
        "Quota exceeded for key_pairs: Requested 1, but already used 2 of 2 key_pairs")
    assert _count(cloud) == 2
    # Another user of the project has a count of their own.
    assert _create(api, {"name": "three", "public_key": key}, OTHER_USER).status_code == 200
    detail = api.get("/v2.1/os-quota-sets/demo/detail").json()["quota_set"]
    assert detail["key_pairs"] == {"in_use": 3, "limit": 2, "reserved": 0}
    assert api.delete(f"{KEYPAIRS}/one").status_code == 202
    assert _create(api, {"name": "three", "public_key": key}).status_code == 200


def test_key_name_on_server_create_is_kept_and_shown(cloud, tmp_path):
    api = cloud.api
    public_key = _ssh_keygen(tmp_path, "ed25519", "boot")
    assert _create(api, {"name": "boot-key", "public_key": public_key}).status_code == 200
    response = api.post("/v2.1/servers", {"server": {
        "name": "with-key", "flavorRef": "1", "imageRef": api.image_id(),
        "key_name": "boot-key"}})
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    server = api.wait_status(server_id)
    assert server["status"] == "ACTIVE" and server["key_name"] == "boot-key"
    # No metadata service: the key travels on a config drive (made by real hosts).
    assert server["config_drive"] == "True"
    with cloud.db.read() as session:
        instance = session.get(Instance, server_id)
        assert (instance.key_name, instance.key_data) == ("boot-key", public_key)
    # The instance keeps its key when the key pair goes.
    assert api.delete(f"{KEYPAIRS}/boot-key").status_code == 202
    assert api.server(server_id)["key_name"] == "boot-key"
    assert api.get("/v2.1/servers/detail").json()["servers"][0]["key_name"] == "boot-key"

    plain = api.server(api.create("no-key").json()["server"]["id"])
    assert plain["key_name"] is None and plain["config_drive"] == ""
    asked = api.post("/v2.1/servers", {"server": {
        "name": "drive", "flavorRef": "1", "imageRef": api.image_id(), "config_drive": True}})
    assert asked.status_code == 202, asked.text
    assert api.server(asked.json()["server"]["id"])["config_drive"] == "True"

    runs = _count(cloud, FlowRun)
    instances = _count(cloud, Instance)
    # Unknown key, a key of another user, a key name that is not a string: 400, nothing kept.
    assert _create(api, {"name": "bobs", "public_key": public_key},
                   OTHER_USER).status_code == 200
    for key_name in ("nope", "bobs", 5):
        refused = api.post("/v2.1/servers", {"server": {
            "name": "bad-key", "flavorRef": "1", "imageRef": api.image_id(),
            "key_name": key_name}})
        assert refused.status_code == 400, refused.text
        if isinstance(key_name, str):
            assert refused.json()["badRequest"]["message"] == "Invalid key_name provided."
    refused = api.post("/v2.1/servers", {"server": {
        "name": "bad-drive", "flavorRef": "1", "imageRef": api.image_id(),
        "config_drive": "maybe"}})
    assert refused.status_code == 400
    assert "'config_drive'" in refused.json()["badRequest"]["message"]
    assert _count(cloud, FlowRun) == runs and _count(cloud, Instance) == instances


def test_concurrent_creates_never_pass_the_key_pairs_quota(db, cloud_factory, tmp_path):
    """20 imports at once against a quota of 5 (SQLite and PostgreSQL)."""
    cloud = cloud_factory(database=db, quota_key_pairs=5)
    api = cloud.api
    key = _ssh_keygen(tmp_path, "ed25519", "race")
    start = threading.Barrier(20)
    results: list = [None] * 20

    def create(i: int) -> None:
        start.wait()
        results[i] = api.http.post(f"{api.base}{KEYPAIRS}", timeout=60, json={
            "keypair": {"name": f"race-{i}", "public_key": key}})

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = sorted(r.json()["keypair"]["name"] for r in results if r.status_code == 200)
    assert 1 <= len(made) <= 5
    for response in results:
        if response.status_code != 200:
            assert response.status_code == 403, response.text
            assert response.json()["forbidden"]["message"].startswith(
                "Quota exceeded for key_pairs: Requested 1, but already used ")
    listed = sorted(k["keypair"]["name"] for k in api.get(KEYPAIRS).json()["keypairs"])
    assert listed == made and _count(cloud) == len(made)


def test_force_config_drive_gives_every_server_one(cloud_factory):
    api = cloud_factory(force_config_drive=True).api
    server_id = api.create("plain").json()["server"]["id"]
    assert api.server(server_id)["config_drive"] == "True"
