"""The parts of Nova's server API that Tempest found missing, through HTTP:
several servers in one request, server metadata, ``OS-DCF:diskConfig``,
``/ips``, ``os-server-password``, ``createBackup`` with rotation,
``forceDelete`` and ``restore``, console output of simulated guests.

Real components throughout (embedded cloud, Celery workers, libvirt test
driver hosts).  Each bad request is checked for Nova's error body and for
leaving nothing behind.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from tests.functional.checks import run_of
from vmflow.db.models import FlowRun, Image, Instance
from webapp.api.microversion import MAX_VERSION

FAST = {"spawn_poll_attempts": 3, "shutdown_timeout": 0.3, "report_interval": 60.0}
LATEST = {"OpenStack-API-Version": f"compute {MAX_VERSION}"}
MEMBER = {"X-Roles": "member"}
READER = {"X-Roles": "reader"}
OTHER = {"X-Roles": "member", "X-Auth-Project-Id": "elsewhere"}


@pytest.fixture
def running(cloud_factory):
    return cloud_factory(host_count=2, **FAST)


def _count(running, model, *where) -> int:
    with running.db.read() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def _error(response, code: int, text: str | None = None) -> dict:
    """Nova's error body: ``{"<kind>": {"code": N, "message": "..."}}``."""
    assert response.status_code == code, response.text
    (kind, body), = response.json().items()
    assert body["code"] == code, body
    assert kind == {400: "badRequest", 403: "forbidden", 404: "itemNotFound",
                    409: "conflictingRequest"}[code]
    if text is not None:
        assert text in body["message"], body
    return body


def _boot(running, name: str, **server) -> dict:
    body = {"server": {"name": name, "flavorRef": "1", "imageRef": running.api.image_id(),
                       **server}}
    return running.api.post("/v2.1/servers", body)


def _launch(running, name: str = "vm", **server) -> dict:
    response = _boot(running, name, **server)
    assert response.status_code == 202, response.text
    return running.api.wait_status(response.json()["server"]["id"])


def _act(running, server_id: str, body: dict, headers: dict | None = None):
    return running.api.post(f"/v2.1/servers/{server_id}/action", body,
                            headers={**LATEST, **(headers or {})})


def _settled(running, server_id: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        server = running.api.server(server_id)
        if server["OS-EXT-STS:task_state"] is None:
            return server
        assert time.monotonic() < deadline, server
        time.sleep(0.05)


def _put(running, path: str, body, headers: dict | None = None):
    return running.api.http.put(running.api.base + path, json=body, headers=headers or {},
                                timeout=30)


# -- several servers in one request ------------------------------------------------------

def test_several_servers_in_one_request_share_a_reservation(cloud_factory):
    running = cloud_factory(host_count=2, quota_instances=3, **FAST)
    api = running.api
    response = _boot(running, "many", min_count=2, max_count=5)  # room for 3: 3 are made
    assert response.status_code == 202, response.text
    first = response.json()["server"]["id"]
    listed = api.get("/v2.1/servers/detail", params={"name": "^many"}).json()["servers"]
    assert sorted(s["name"] for s in listed) == ["many-1", "many-2", "many-3"]
    for server in listed:
        api.wait_status(server["id"], ("ACTIVE",))
    # The extended attributes (reservation id, launch index) are there from 2.3.
    by_name = {s["name"]: api.server(s["id"], "2.3") for s in listed}
    assert by_name["many-1"]["id"] == first  # the answer is the first server's
    reservations = {s["OS-EXT-SRV-ATTR:reservation_id"] for s in by_name.values()}
    assert len(reservations) == 1 and reservations.pop().startswith("r-")
    indexes = sorted((s["OS-EXT-SRV-ATTR:launch_index"], n) for n, s in by_name.items())
    assert indexes == [(0, "many-1"), (1, "many-2"), (2, "many-3")]

    # The quota is checked for the whole count: none fits now, so nothing is made.
    runs = _count(running, FlowRun)
    _error(_boot(running, "more", min_count=1, max_count=2), 403,
           "Quota exceeded for instances")
    for bad in ({"min_count": 3, "max_count": 2}, {"min_count": 0}, {"max_count": "x"}):
        _error(_boot(running, "bad", **bad), 400)
    assert _count(running, Instance) == 3 and _count(running, FlowRun) == runs

    for server in by_name.values():
        assert api.delete(f"/v2.1/servers/{server['id']}").status_code == 204
    for server in by_name.values():
        api.wait_gone(server["id"])
    # min_count above what fits: 403, nothing made; one name only: the name as given.
    _error(_boot(running, "four", min_count=4, max_count=4), 403, "instances")
    assert _count(running, Instance, Instance.deleted.is_(False)) == 0
    response = _boot(running, "pair", max_count=2, return_reservation_id=True)
    assert response.status_code == 202, response.text
    reservation = response.json()["reservation_id"]
    found = api.get("/v2.1/servers", params={"reservation_id": reservation}).json()["servers"]
    assert sorted(s["name"] for s in found) == ["pair-1", "pair-2"]
    single = api.server(_launch(running, "single")["id"], "2.3")
    assert single["name"] == "single" and single["OS-EXT-SRV-ATTR:launch_index"] == 0
    assert single["OS-EXT-SRV-ATTR:reservation_id"] != reservation


# -- server metadata -----------------------------------------------------------------------

def test_server_metadata_follows_novas_semantics(cloud_factory):
    running = cloud_factory(host_count=1, quota_metadata_items=3, **FAST)
    api = running.api
    server = _launch(running, metadata={"a": "1"})
    path = f"/v2.1/servers/{server['id']}/metadata"

    assert api.get(path).json() == {"metadata": {"a": "1"}}
    merged = api.post(path, {"metadata": {"b": "2"}})
    assert merged.status_code == 200 and merged.json() == {"metadata": {"a": "1", "b": "2"}}
    replaced = _put(running, path, {"metadata": {"c": "3"}})
    assert replaced.status_code == 200 and replaced.json() == {"metadata": {"c": "3"}}
    one = _put(running, f"{path}/d", {"meta": {"d": "4"}})
    assert one.status_code == 200 and one.json() == {"meta": {"d": "4"}}
    assert api.get(f"{path}/d").json() == {"meta": {"d": "4"}}
    assert api.delete(f"{path}/c").status_code == 204
    assert api.get(path).json() == {"metadata": {"d": "4"}}
    assert api.server(server["id"])["metadata"] == {"d": "4"}

    # Bad input: Nova's 400s, and the metadata is as it was.
    _error(_put(running, f"{path}/d", {"meta": {"e": "5"}}), 400, "Request body and URI mismatch")
    _error(_put(running, f"{path}/d", {"meta": {"d": "5", "e": "5"}}), 400,
           "Request body contains too many items")
    _error(api.post(path, {"metadata": {"": "x"}}), 400)
    _error(api.post(path, {"metadata": {"k" * 256: "x"}}), 400)
    _error(api.post(path, {"metadata": {"k": "v" * 256}}), 400)
    _error(api.post(path, {"metadata": {"k": 1}}), 400)
    _error(api.post(path, {"meta": {"k": "v"}}), 400)
    _error(_put(running, path, {"metadata": "x"}), 400)
    _error(api.post(path, {"metadata": {"x": "1", "y": "2", "z": "3"}}), 403,
           "Quota exceeded for metadata_items")
    _error(_put(running, path, {"metadata": {"w": "1", "x": "1", "y": "2", "z": "3"}}), 403,
           "metadata_items")
    assert api.get(path).json() == {"metadata": {"d": "4"}}

    # Missing things: 404.
    _error(api.get(f"{path}/nope"), 404, "Metadata item was not found")
    _error(api.delete(f"{path}/nope"), 404)
    missing = "/v2.1/servers/00000000-0000-4000-8000-000000000000/metadata"
    _error(api.get(missing), 404)
    _error(_put(running, missing, {"metadata": {}}), 404)
    _error(api.get(path, headers=OTHER), 404)  # another project's server

    # Policy: readers read, members change; a locked server refuses its owner.
    assert api.get(path, headers=READER).status_code == 200
    _error(api.post(path, {"metadata": {"r": "1"}}, headers=READER), 403)
    assert _act(running, server["id"], {"lock": None}, MEMBER).status_code == 202
    _error(api.post(path, {"metadata": {"m": "1"}}, headers=MEMBER), 409, "locked")
    assert api.post(path, {"metadata": {"m": "1"}}).status_code == 200  # an admin may
    assert _act(running, server["id"], {"unlock": None}, MEMBER).status_code == 202

    # Only a settled server's metadata changes (Nova: ACTIVE, PAUSED, SUSPENDED,
    # STOPPED with no task); a rescued one refuses.
    assert _act(running, server["id"], {"rescue": None}).status_code == 200
    assert _settled(running, server["id"])["status"] == "RESCUE"
    _error(api.post(path, {"metadata": {"n": "1"}}), 409, "vm_state rescued")
    assert api.get(path).json() == {"metadata": {"d": "4", "m": "1"}}


# -- OS-DCF:diskConfig, ips, server password ------------------------------------------------

def test_disk_config_is_kept_as_given(running):
    api = running.api
    response = _boot(running, "auto", **{"OS-DCF:diskConfig": "AUTO"})
    assert response.status_code == 202, response.text
    assert response.json()["server"]["OS-DCF:diskConfig"] == "AUTO"
    server = api.wait_status(response.json()["server"]["id"])
    assert server["OS-DCF:diskConfig"] == "AUTO"
    path = f"/v2.1/servers/{server['id']}"

    updated = _put(running, path, {"server": {"OS-DCF:diskConfig": "MANUAL"}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["server"]["OS-DCF:diskConfig"] == "MANUAL"
    _error(_put(running, path, {"server": {"OS-DCF:diskConfig": "SOMETIMES"}}), 400,
           "OS-DCF:diskConfig")
    assert api.server(server["id"])["OS-DCF:diskConfig"] == "MANUAL"

    rebuilt = _act(running, server["id"], {"rebuild": {"imageRef": api.image_id(),
                                                       "OS-DCF:diskConfig": "AUTO"}})
    assert rebuilt.status_code == 202, rebuilt.text
    assert rebuilt.json()["server"]["OS-DCF:diskConfig"] == "AUTO"
    assert _settled(running, server["id"])["OS-DCF:diskConfig"] == "AUTO"
    runs = _count(running, FlowRun)
    _error(_boot(running, "bad", **{"OS-DCF:diskConfig": "auto"}), 400)
    assert _count(running, Instance) == 1 and _count(running, FlowRun) == runs
    plain = _launch(running, "plain")
    assert plain["OS-DCF:diskConfig"] == "MANUAL"


def test_ips_and_the_server_password(running):
    api = running.api
    server = _launch(running)
    base = f"/v2.1/servers/{server['id']}"
    assert api.get(f"{base}/ips").json() == {"addresses": {}}
    _error(api.get(f"{base}/ips/private"), 404, "not a member of specified network")
    _error(api.get(f"{base}/ips", headers=OTHER), 404)

    assert api.get(f"{base}/os-server-password").json() == {"password": ""}
    with running.db.write() as session:  # as a guest posting to the metadata service would
        instance = session.get(Instance, server["id"])
        instance.system_metadata = {**instance.system_metadata, "password_0": "c2VjcmV0",
                                    "password_1": "", "password_2": "", "password_3": ""}
    assert api.get(f"{base}/os-server-password",
                   headers=READER).json() == {"password": "c2VjcmV0"}
    _error(api.delete(f"{base}/os-server-password", headers=READER), 403)
    assert api.delete(f"{base}/os-server-password", headers=MEMBER).status_code == 204
    assert api.get(f"{base}/os-server-password").json() == {"password": ""}
    missing = "/v2.1/servers/00000000-0000-4000-8000-000000000000"
    _error(api.get(f"{missing}/os-server-password"), 404)
    _error(api.get(f"{missing}/ips"), 404)


# -- createBackup, forceDelete, restore, console output --------------------------------------

def _images(running, **params) -> list[dict]:
    response = running.api.get("/image/v2/images", params=params)
    assert response.status_code == 200, response.text
    return response.json()["images"]


def test_create_backup_keeps_the_newest_of_its_type(running):
    api = running.api
    server = _launch(running)
    made = []
    for n in range(3):
        response = _act(running, server["id"], {"createBackup": {
            "name": f"daily-{n}", "backup_type": "daily", "rotation": 2}})
        assert response.status_code == 202, response.text
        made.append(response.json()["image_id"])
        assert _settled(running, server["id"])["status"] == "ACTIVE"
        assert run_of(running, server["id"], "backup").state == "SUCCESS"
    weekly = _act(running, server["id"], {"createBackup": {
        "name": "weekly-0", "backup_type": "weekly", "rotation": 1}},
        headers={"OpenStack-API-Version": "compute 2.1"})
    assert weekly.status_code == 202 and weekly.content == b""  # below 2.45: a Location
    weekly_id = weekly.headers["Location"].rsplit("/", 1)[1]
    assert _settled(running, server["id"])["status"] == "ACTIVE"

    daily = _images(running, image_type="backup", backup_type="daily",
                    instance_uuid=server["id"], sort_key="created_at", sort_dir="asc")
    assert [i["name"] for i in daily] == ["daily-1", "daily-2"]
    assert [i["id"] for i in daily] == made[1:]
    assert api.get(f"/image/v2/images/{made[0]}").status_code == 404  # rotated out
    assert [i["id"] for i in _images(running, backup_type="weekly")] == [weekly_id]
    assert api.get(f"/image/v2/images/{made[2]}/tasks").json() == {"tasks": []}
    actions = api.get(f"/v2.1/servers/{server['id']}/os-instance-actions").json()
    assert [a["action"] for a in actions["instanceActions"]].count("createBackup") == 4

    # Bad input: 400, no image, no flow run; a missing server: 404.
    images, runs = _count(running, Image), _count(running, FlowRun)
    for bad in ({"backup_type": "daily", "rotation": 1},
                {"name": "x", "rotation": 1},
                {"name": "x", "backup_type": "daily"},
                {"name": "x", "backup_type": "daily", "rotation": -1},
                {"name": "x", "backup_type": "daily", "rotation": "many"},
                {"name": "x", "backup_type": "daily", "rotation": 1, "extra": 1}):
        _error(_act(running, server["id"], {"createBackup": bad}), 400)
    _error(_act(running, "00000000-0000-4000-8000-000000000000", {"createBackup": {
        "name": "x", "backup_type": "daily", "rotation": 1}}), 404)
    _error(_act(running, server["id"], {"createBackup": {
        "name": "x", "backup_type": "daily", "rotation": 1}}, READER), 403)
    assert (_count(running, Image), _count(running, FlowRun)) == (images, runs)


def test_force_delete_deletes_and_restore_has_nothing_to_restore(running):
    api = running.api
    server = _launch(running)
    missing = "00000000-0000-4000-8000-000000000000"
    _error(_act(running, missing, {"forceDelete": None}), 404)
    _error(_act(running, missing, {"restore": None}), 404)
    _error(_act(running, server["id"], {"restore": None}), 409, "vm_state active")
    _error(_act(running, server["id"], {"forceDelete": {"now": True}}), 400)
    _error(_act(running, server["id"], {"forceDelete": None}, OTHER), 404)
    assert api.server(server["id"])["status"] == "ACTIVE"
    response = _act(running, server["id"], {"forceDelete": None})
    assert response.status_code == 202, response.text
    api.wait_gone(server["id"])


def test_console_output_of_a_simulated_guest(running):
    server = _launch(running)
    response = _act(running, server["id"], {"os-getConsoleOutput": {"length": 3}})
    assert response.status_code == 200, response.text
    tail = response.json()["output"]
    assert len(tail.split("\n")) == 3 and "login:" in tail  # Nova's tail: 3 pieces
    whole = _act(running, server["id"], {"os-getConsoleOutput": {}}).json()["output"]
    assert whole.startswith("[vmflow] synthetic console log") and server["id"] in whole
    assert _act(running, server["id"], {"reboot": {"type": "HARD"}}).status_code == 202
    _settled(running, server["id"])
    again = _act(running, server["id"], {"os-getConsoleOutput": None}).json()["output"]
    assert again.count("login:") == 2  # each boot adds its lines


def test_a_failed_backup_leaves_the_older_backups_and_no_new_image(running):
    api = running.api
    server = _launch(running)
    kept = _act(running, server["id"], {"createBackup": {
        "name": "kept", "backup_type": "daily", "rotation": 1}}).json()["image_id"]
    assert _settled(running, server["id"])["status"] == "ACTIVE"
    # The rotation step fails: the steps before it revert, so the new backup
    # is discarded and the rotation deletes nothing.
    running.cfg.inject_step_failures[:] = ["backup.rotate"]
    response = _act(running, server["id"], {"createBackup": {
        "name": "lost", "backup_type": "daily", "rotation": 1}})
    assert response.status_code == 202, response.text
    lost = response.json()["image_id"]
    assert run_of(running, server["id"], "backup").state == "REVERTED"
    running.cfg.inject_step_failures[:] = []
    assert _settled(running, server["id"])["status"] == "ACTIVE"
    assert api.get(f"/image/v2/images/{lost}").status_code == 404
    assert api.get(f"/image/v2/images/{kept}").json()["status"] == "active"
    assert [i["id"] for i in _images(running, backup_type="daily")] == [kept]
