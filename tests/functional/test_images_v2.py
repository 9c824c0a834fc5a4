"""The image service (a Glance v2 subset at /image) through the HTTP API of an
embedded cloud: version discovery, create, upload (checked with qemu-img),
download, listing with filters and paging, JSON-patch updates, visibility and
policy, delete; images booted by the compute API; snapshots shown here."""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from vmflow.db.models import Image

IMAGES = "/image/v2/images"
MEMBER = {"X-Roles": "member"}                                # of project demo
OTHER = {"X-Auth-Project-Id": "other", "X-Roles": "member"}   # of another project
READER = {"X-Roles": "reader"}                                # of project demo
ADMIN = {"X-Roles": "admin"}
OCTETS = "application/octet-stream"
PATCH = "application/openstack-images-v2.1-json-patch"


def _qcow2(tmp_path: Path, name: str = "disk.qcow2", *options: str) -> bytes:
    path = tmp_path / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), "16M"],
                   check=True)
    return path.read_bytes()


def _create(api, headers=MEMBER, **fields) -> dict:
    body = {"name": "img", "disk_format": "qcow2", "container_format": "bare", **fields}
    response = api.post(IMAGES, body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _put(api, image_id: str, data, headers=MEMBER, content_type: str = OCTETS):
    return api.http.put(f"{api.base}{IMAGES}/{image_id}/file", data=data, timeout=60,
                        headers={**headers, "Content-Type": content_type})


def _patch(api, image_id: str, ops: list, headers=MEMBER, content_type: str = PATCH):
    return api.http.patch(f"{api.base}{IMAGES}/{image_id}", json=ops, timeout=30,
                          headers={**headers, "Content-Type": content_type})


def _image(api, image_id: str, headers=MEMBER) -> dict:
    response = api.get(f"{IMAGES}/{image_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _error(response, code: int, kind: str) -> str:
    assert response.status_code == code, response.text
    message = response.json()[kind]["message"]
    assert response.json()[kind]["code"] == code and message
    return message


def _store_files(running) -> list[str]:
    """Files in the image directory other than those of active images."""
    with running.db.read() as session:
        kept = {Path(loc).name for loc in session.scalars(
            select(Image.location).where(Image.status == "active"))}
    directory = running.cfg.data_dir / "images"
    return sorted(p.name for p in directory.iterdir() if p.name not in kept)


def _image_count(running) -> int:
    with running.db.read() as session:
        return session.scalar(select(func.count()).select_from(Image))


def test_version_documents_and_schemas(cloud):
    api = cloud.api
    root = api.get("/image")
    assert root.status_code == 300
    versions = root.json()["versions"]
    assert [v["status"] for v in versions].count("CURRENT") == 1
    assert all(v["id"].startswith("v2.") for v in versions)
    for version in versions:
        href = version["links"][0]["href"]
        assert version["links"][0]["rel"] == "self" and href.endswith("/image/v2/")
        assert api.get(href[len(api.base):]).status_code == 200
    assert api.get("/image/versions").json()["versions"] == versions
    assert api.get("/image/").status_code == 300
    image_schema = api.get("/image/v2/schemas/image").json()
    assert image_schema["name"] == "image" and "visibility" in image_schema["properties"]
    images_schema = api.get("/image/v2/schemas/images").json()
    assert images_schema["properties"]["images"]["type"] == "array"


def test_upload_boot_download_delete(cloud_factory, db, tmp_path):
    """On SQLite and on PostgreSQL: a user's qcow2, from record to server and back."""
    running = cloud_factory(database=db)
    api = running.api
    image = _create(api, name="my-disk", min_ram=64, tags=["web"], os_distro="debian")
    assert image["status"] == "queued" and image["visibility"] == "shared"
    assert image["owner"] == "demo" and image["size"] is None and image["checksum"] is None
    assert image["os_distro"] == "debian" and image["tags"] == ["web"]
    assert image["self"] == f"/v2/images/{image['id']}"
    assert image["file"] == f"/v2/images/{image['id']}/file"
    assert api.get(f"{IMAGES}/{image['id']}/file").status_code == 204  # no data yet

    # A queued image does not boot.
    refused = api.create("too-early", image=image["id"])
    assert "is not active" in _error(refused, 400, "badRequest")

    data = _qcow2(tmp_path)
    response = _put(api, image["id"], data)
    assert response.status_code == 204, response.text
    shown = _image(api, image["id"])
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert shown["virtual_size"] == 16 * 1024**2

    download = api.get(f"{IMAGES}/{image['id']}/file")
    assert download.status_code == 200 and download.content == data
    assert download.headers["Content-MD5"] == shown["checksum"]

    # Bootable by the compute API, by id.
    server_id = api.create("from-upload", image=image["id"]).json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    assert api.server(server_id)["image"]["id"] == image["id"]

    # Deleted though in use, as in Glance: the instance keeps running.
    assert api.delete(f"{IMAGES}/{image['id']}", headers=MEMBER).status_code == 204
    _error(api.get(f"{IMAGES}/{image['id']}"), 404, "itemNotFound")
    assert image["id"] not in [i["id"] for i in api.get(IMAGES).json()["images"]]
    assert _store_files(running) == []
    assert api.server(server_id)["status"] == "ACTIVE"
    _error(api.delete(f"{IMAGES}/{image['id']}", headers=MEMBER), 404, "itemNotFound")


def test_an_upload_must_be_the_declared_self_contained_format(cloud, tmp_path):
    api = cloud.api
    image = _create(api)
    cases = [
        (b"just some text, not a disk\n" * 100, "is not a qcow2 image"),
        (_qcow2(tmp_path, "overlay.qcow2", "-F", "raw", "-b", "/etc/passwd"), "backing file"),
        (_qcow2(tmp_path, "external.qcow2", "-o", f"data_file={tmp_path / 'data.raw'}"),
         "external data file"),
        (b"", "empty"),
    ]
    for data, words in cases:
        message = _error(_put(api, image["id"], data), 400, "badRequest")
        assert words in message, message
        assert _image(api, image["id"])["status"] == "queued"
        assert _store_files(cloud) == []
    raw_image = _create(api, disk_format="raw")
    message = _error(_put(api, raw_image["id"], _qcow2(tmp_path)), 400, "badRequest")
    assert "is not a raw image" in message
    _error(_put(api, image["id"], b"x", content_type="application/json"), 415, "badMediaType")

    # The refusals left the image queued: a proper upload still works, once.
    data = _qcow2(tmp_path, "good.qcow2")
    assert _put(api, image["id"], data).status_code == 204
    assert "queued" in _error(_put(api, image["id"], data), 409, "conflictingRequest")
    assert _image(api, image["id"])["checksum"] == hashlib.md5(data).hexdigest()


def test_the_upload_limit_is_its_own(cloud_factory):
    """max_body_bytes (256 KiB) does not apply to uploads; max_image_upload_bytes does,
    whether the size is announced (Content-Length) or streamed (chunked)."""
    running = cloud_factory(max_image_upload_bytes=1024 * 1024)
    api = running.api
    fits = _create(api, disk_format="raw")
    data = bytes(512 * 1024)
    assert _put(api, fits["id"], data).status_code == 204
    assert _image(api, fits["id"])["size"] == len(data)

    too_big = _create(api, disk_format="raw")
    for body in (bytes(2 * 1024 * 1024), (bytes(64 * 1024) for _ in range(32))):
        message = _error(_put(api, too_big["id"], body), 413, "overLimit")
        assert "1048576 bytes" in message
        assert _image(api, too_big["id"])["status"] == "queued"
        assert _store_files(running) == []
    # A JSON body is still held to max_body_bytes.
    big_json = api.post(IMAGES, {"name": "x" * (300 * 1024), "disk_format": "raw"},
                        headers=MEMBER)
    _error(big_json, 413, "overLimit")


def test_bad_create_bodies_are_refused_and_record_nothing(cloud):
    api = cloud.api
    before = _image_count(cloud)
    for body, code, kind in [
        ({"name": "x", "disk_format": "vmdk"}, 400, "badRequest"),
        ({"name": "x"}, 400, "badRequest"),
        ({"name": "x", "disk_format": "raw", "container_format": "ovf"}, 400, "badRequest"),
        ({"name": "x", "disk_format": "raw", "visibility": "everyone"}, 400, "badRequest"),
        ({"name": "x", "disk_format": "raw", "min_disk": -1}, 400, "badRequest"),
        ({"name": "x", "disk_format": "raw", "tags": "web"}, 400, "badRequest"),
        ({"name": "x", "disk_format": "raw", "custom": 5}, 400, "badRequest"),
        ({"name": "x", "disk_format": "raw", "id": "not-a-uuid"}, 400, "badRequest"),
        ({"name": "x", "disk_format": "raw", "size": 5}, 403, "forbidden"),
        ({"name": "x", "disk_format": "raw", "status": "active"}, 403, "forbidden"),
    ]:
        _error(api.post(IMAGES, body, headers=MEMBER), code, kind)
    _error(api.http.post(f"{api.base}{IMAGES}", data="{nope", headers=MEMBER), 400,
           "badRequest")
    assert _image_count(cloud) == before
    chosen = str(uuid.uuid4())
    assert _create(api, id=chosen)["id"] == chosen
    _error(api.post(IMAGES, {"id": chosen, "disk_format": "raw"}, headers=MEMBER), 409,
           "conflictingRequest")


def test_visibility_and_policy(cloud, tmp_path):
    api = cloud.api
    private = _create(api, name="mine", visibility="private")
    # Another project cannot see it at all: 404 everywhere, absent from lists.
    for response in (api.get(f"{IMAGES}/{private['id']}", headers=OTHER),
                     api.get(f"{IMAGES}/{private['id']}/file", headers=OTHER),
                     _put(api, private["id"], _qcow2(tmp_path), headers=OTHER),
                     _patch(api, private["id"], [{"op": "replace", "path": "/name",
                                                  "value": "x"}], headers=OTHER),
                     api.delete(f"{IMAGES}/{private['id']}", headers=OTHER)):
        _error(response, 404, "itemNotFound")
    assert private["id"] not in [i["id"] for i in api.get(IMAGES, headers=OTHER).json()["images"]]
    # ... nor boot it.
    other_boot = api.post("/v2.1/servers", {"server": {"name": "x", "flavorRef": "1",
                                                       "imageRef": private["id"]}}, headers=OTHER)
    assert other_boot.status_code == 400, other_boot.text

    # A reader of the project lists and shows, and changes nothing.
    assert private["id"] in [i["id"] for i in api.get(IMAGES, headers=READER).json()["images"]]
    assert _image(api, private["id"], headers=READER)["name"] == "mine"
    before = _image_count(cloud)
    assert "image:add_image" in _error(api.post(IMAGES, {"name": "r", "disk_format": "raw"},
                                                headers=READER), 403, "forbidden")
    assert _image_count(cloud) == before
    _error(_put(api, private["id"], _qcow2(tmp_path), headers=READER), 403, "forbidden")
    _error(api.delete(f"{IMAGES}/{private['id']}", headers=READER), 403, "forbidden")
    assert _image(api, private["id"])["status"] == "queued"

    # Public images: only an admin makes one; everyone sees it; its owner deletes it.
    assert "image:publicize_image" in _error(
        api.post(IMAGES, {"name": "p", "disk_format": "raw", "visibility": "public"},
                 headers=MEMBER), 403, "forbidden")
    public = _create(api, headers=ADMIN, name="shared-base", visibility="public")
    assert _image(api, public["id"], headers=OTHER)["visibility"] == "public"
    _error(api.delete(f"{IMAGES}/{public['id']}", headers=OTHER), 403, "forbidden")
    _error(api.post(IMAGES, {"disk_format": "raw", "owner": "other"}, headers=MEMBER), 403,
           "forbidden")

    # A protected image is not deleted until it is unprotected.
    guarded = _create(api, protected=True)
    assert "protected" in _error(api.delete(f"{IMAGES}/{guarded['id']}", headers=MEMBER),
                                 403, "forbidden")
    assert _patch(api, guarded["id"], [{"op": "replace", "path": "/protected",
                                        "value": False}]).status_code == 200
    assert api.delete(f"{IMAGES}/{guarded['id']}", headers=MEMBER).status_code == 204


def test_filters_sorting_and_paging(cloud):
    api = cloud.api
    made = [_create(api, name=f"page-{i}", tags=["even"] if i % 2 == 0 else [])
            for i in range(5)]
    ids = [m["id"] for m in made]

    def listed(query: str = "", headers=MEMBER) -> dict:
        response = api.get(f"{IMAGES}{query}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    body = listed()
    assert body["schema"] == "/v2/schemas/images" and body["first"] == "/v2/images"
    assert "next" not in body
    # Newest first by default: the five in reverse order of creation, then the seed image.
    names = [i["name"] for i in body["images"]]
    assert names[:5] == [f"page-{i}" for i in reversed(range(5))]
    assert [i["name"] for i in listed("?name=page-3")["images"]] == ["page-3"]
    assert listed("?name=nothing")["images"] == []
    chosen = listed(f"?id=in:{ids[0]},{ids[2]},{uuid.uuid4()}")["images"]
    assert sorted(i["id"] for i in chosen) == sorted([ids[0], ids[2]])
    assert [i["name"] for i in listed("?sort_key=name&sort_dir=asc&status=queued")["images"]] \
        == [f"page-{i}" for i in range(5)]
    assert [i["name"] for i in listed("?sort=name:desc&tag=even")["images"]] == \
        ["page-4", "page-2", "page-0"]
    assert listed("?visibility=public")["images"][0]["name"] == "blank-qcow2"
    assert {i["owner"] for i in listed("?owner=demo")["images"]} == {"demo"}
    assert listed("?os_hidden=true")["images"] == []

    # Paging: follow `next` (relative to the image root, as clients do) to the end.
    seen, page = [], listed("?limit=2&status=queued")
    while True:
        assert len(page["images"]) <= 2
        seen += [i["id"] for i in page["images"]]
        if "next" not in page:
            break
        assert page["next"].startswith("/v2/images?")
        page = listed(page["next"][len("/v2/images"):])
    assert seen == list(reversed(ids))

    for query in ("?marker=" + str(uuid.uuid4()), "?sort_key=secret", "?sort_dir=sideways",
                  "?limit=0", "?limit=x", "?visibility=everyone", "?protected=maybe"):
        _error(api.get(f"{IMAGES}{query}", headers=MEMBER), 400, "badRequest")


def test_json_patch_updates(cloud):
    api = cloud.api
    image = _create(api, name="before", os_distro="debian")
    response = _patch(api, image["id"], [
        {"op": "replace", "path": "/name", "value": "after"},
        {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
        {"op": "remove", "path": "/os_distro"},
        {"op": "replace", "path": "/tags", "value": ["a", "b"]},
        {"op": "add", "path": "/tags/-", "value": "c"},
        {"op": "replace", "path": "/min_disk", "value": 2},
        {"op": "replace", "path": "/visibility", "value": "private"},
    ])
    assert response.status_code == 200, response.text
    shown = _image(api, image["id"])
    assert shown == response.json()
    assert (shown["name"], shown["hw_disk_bus"], shown["tags"], shown["min_disk"],
            shown["visibility"]) == ("after", "virtio", ["a", "b", "c"], 2, "private")
    assert "os_distro" not in shown

    for ops, code, kind in [
        ([{"op": "replace", "path": "/visibility", "value": "public"}], 403, "forbidden"),
        ([{"op": "replace", "path": "/size", "value": 1}], 403, "forbidden"),
        ([{"op": "replace", "path": "/owner", "value": "other"}], 403, "forbidden"),
        ([{"op": "remove", "path": "/nothing"}], 409, "conflictingRequest"),
        ([{"op": "move", "path": "/name", "value": "x"}], 400, "badRequest"),
        ([{"op": "replace", "path": "/min_ram", "value": "lots"}], 400, "badRequest"),
        ([{"op": "replace", "path": "/name", "value": "x"},
          {"op": "add", "path": "/custom", "value": 7}], 400, "badRequest"),
    ]:
        _error(_patch(api, image["id"], ops), code, kind)
    _error(_patch(api, image["id"], [], content_type="application/json"), 415, "badMediaType")
    assert _image(api, image["id"]) == shown  # the refused patches changed nothing


def test_a_snapshot_is_an_image_of_its_project(cloud):
    api = cloud.api
    server_id = api.create("snapped").json()["server"]["id"]
    api.wait_status(server_id)
    response = api.post(f"/v2.1/servers/{server_id}/action",
                        {"createImage": {"name": "snap-1", "metadata": {"purpose": "test"}}})
    assert response.status_code == 202, response.text
    image_id = response.headers["Location"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 60
    while (image := _image(api, image_id))["status"] != "active":
        assert time.monotonic() < deadline, image
        time.sleep(0.05)
    assert (image["owner"], image["visibility"], image["name"]) == ("demo", "private", "snap-1")
    assert image["image_type"] == "snapshot" and image["instance_uuid"] == server_id
    assert image["base_image_ref"] == api.image_id() and image["purpose"] == "test"
    assert image["size"] > 0 and len(image["os_hash_value"]) == 128
    assert image["virtual_size"] == 1024**3
    _error(api.get(f"{IMAGES}/{image_id}", headers=OTHER), 404, "itemNotFound")
    # The snapshot boots a new server.
    second = api.create("from-snapshot", image=image_id).json()["server"]["id"]
    assert api.wait_status(second)["status"] == "ACTIVE"


@pytest.mark.parametrize("path", ["/image/v2/images/nope", "/image/v2/images/nope/file"])
def test_a_non_uuid_id_is_404(cloud, path):
    _error(cloud.api.get(path), 404, "itemNotFound")


def test_openstacksdk_creates_lists_updates_downloads_and_deletes(cloud, tmp_path):
    """The real client (openstacksdk, as openstackclient's `image create --file`
    drives it) against the image API: discovery from /image, create + upload,
    paging through `next`, JSON-patch update, download, errors, delete."""
    import openstack
    from openstack import exceptions

    api = cloud.api
    conn = openstack.connect(auth_type="none", auth={"endpoint": f"{api.base}/image"},
                             image_endpoint_override=f"{api.base}/image",
                             region_name="RegionOne", load_yaml_config=False,
                             load_envvars=False)
    data = _qcow2(tmp_path, "sdk.qcow2")
    created = conn.image.create_image("sdk-img", filename=str(tmp_path / "sdk.qcow2"),
                                      disk_format="qcow2", container_format="bare")
    image = conn.image.get_image(created.id)
    assert (image.status, image.size, image.checksum, image.hash_algo) == (
        "active", len(data), hashlib.md5(data).hexdigest(), "sha512")
    assert conn.image.find_image("sdk-img").id == image.id
    # One image per page: the client follows `next` to the end.
    assert [i.name for i in conn.image.images(limit=1)] == ["sdk-img", "blank-qcow2"]

    conn.image.update_image(image, name="sdk-renamed", purpose="testing")
    shown = _image(api, image.id)
    assert (shown["name"], shown["purpose"]) == ("sdk-renamed", "testing")
    assert conn.image.download_image(image).content == data

    server_id = api.create("from-sdk-image", image=image.id).json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"

    with pytest.raises(exceptions.BadRequestException, match="is not a raw image"):
        conn.image.create_image("wrong-format", filename=str(tmp_path / "sdk.qcow2"),
                                disk_format="raw", container_format="bare")
    assert conn.image.find_image("wrong-format") is None  # the client deleted its record

    conn.image.delete_image(image)
    assert conn.image.find_image("sdk-renamed") is None


def test_an_image_larger_than_the_flavor_disk_does_not_boot(cloud, tmp_path):
    api = cloud.api
    image = _create(api, name="two-gig")
    path = tmp_path / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "2G"], check=True)
    assert _put(api, image["id"], path.read_bytes()).status_code == 204
    assert _image(api, image["id"])["virtual_size"] == 2 * 1024**3
    refused = api.create("too-small", flavor="1", image=image["id"])  # m1.tiny: 1 GB disk
    assert "too small" in _error(refused, 400, "badRequest")
    server_id = api.create("fits", flavor="2", image=image["id"]).json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
