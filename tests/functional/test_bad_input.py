"""Bad input: a 4xx in Nova's error shape with a clear message, nothing recorded
or enqueued, never a 500."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from vmflow.db.models import FlowRun, Instance


@pytest.fixture(scope="module")
def shared_cloud(tmp_path_factory):
    from tests.conftest import Running, make_config

    running = Running(make_config(tmp_path_factory.mktemp("badinput"), host_count=1,
                                  max_body_bytes=4096))
    yield running
    running.stop()


def _counts(running):
    with running.db.read() as session:
        return (session.scalar(select(func.count()).select_from(Instance)),
                session.scalar(select(func.count()).select_from(FlowRun)))


def _server(**fields):
    return {"server": fields}


IMAGE = "IMAGE"  # replaced by the real image id


CASES = [
    ("unknown flavor", _server(name="a", flavorRef="404", imageRef=IMAGE), 400,
     "Flavor 404 could not be found"),
    ("unknown image", _server(name="a", flavorRef="1", imageRef=str(uuid.UUID(int=7))), 400,
     "could not be found"),
    ("missing name", _server(flavorRef="1", imageRef=IMAGE), 400, "'name' is a required"),
    ("blank name", _server(name="  ", flavorRef="1", imageRef=IMAGE), 400, "must not be empty"),
    ("long name", _server(name="x" * 256, flavorRef="1", imageRef=IMAGE), 400,
     "longer than 255"),
    ("name not a string", _server(name=5, flavorRef="1", imageRef=IMAGE), 400,
     "is not a string"),
    ("missing flavor", _server(name="a", imageRef=IMAGE), 400, "'flavorRef' is a required"),
    ("missing image", _server(name="a", flavorRef="1"), 400, "'imageRef' is a required"),
    ("image not a uuid", _server(name="a", flavorRef="1", imageRef="cirros"), 400,
     "is not a UUID"),
    ("unknown field", _server(name="a", flavorRef="1", imageRef=IMAGE, colour="red"), 400,
     "'colour' was unexpected"),
    ("unknown top-level field", {"server": {"name": "a", "flavorRef": "1", "imageRef": IMAGE},
                                 "extra": 1}, 400, "'extra' was unexpected"),
    ("server not an object", {"server": "a"}, 400, "must be an object"),
    ("body not an object", ["server"], 400, "must be a JSON object"),
    ("metadata not an object", _server(name="a", flavorRef="1", imageRef=IMAGE, metadata=[1]),
     400, "metadata"),
    ("negative count", _server(name="a", flavorRef="1", imageRef=IMAGE, min_count=0), 400,
     "less than the minimum of 1"),
    ("more at least than at most", _server(name="a", flavorRef="1", imageRef=IMAGE,
                                           min_count=3, max_count=2), 400,
     "min_count must be <= max_count"),
    ("a real network", _server(name="a", flavorRef="1", imageRef=IMAGE,
                               networks=[{"uuid": str(uuid.uuid4())}]), 400, "Networking"),
]


def _fill(value, image):
    if isinstance(value, dict):
        return {k: _fill(v, image) for k, v in value.items()}
    return image if value == IMAGE else value


@pytest.mark.parametrize("label,body,code,message", CASES, ids=[c[0] for c in CASES])
def test_bad_create_bodies(shared_cloud, label, body, code, message):
    api = shared_cloud.api
    before = _counts(shared_cloud)
    response = api.post("/v2.1/servers", _fill(body, api.image_id()))
    assert response.status_code == code, response.text
    assert response.headers["X-OpenStack-Request-Id"].startswith("req-")
    (kind, err), = response.json().items()
    assert kind == "badRequest" and err["code"] == code
    assert message in err["message"]
    assert _counts(shared_cloud) == before


def test_malformed_json_empty_body_and_oversized_body(shared_cloud):
    api = shared_cloud.api
    before = _counts(shared_cloud)
    url = api.base + "/v2.1/servers"
    response = api.http.post(url, data="{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"].startswith("Malformed request body")
    response = api.http.post(url, data="")
    assert response.status_code == 400 and "empty" in response.json()["badRequest"]["message"]
    response = api.http.post(url, data="{" + " " * 10000 + "}",
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["overLimit"]["message"] == "The request body is too large."
    assert _counts(shared_cloud) == before


def test_ids_that_name_nothing(shared_cloud):
    api = shared_cloud.api
    for path in ("/v2.1/servers/not-a-uuid", f"/v2.1/servers/{uuid.uuid4()}",
                 "/v2.1/flavors/nope", "/v2.1/images/not-a-uuid", "/v2.1/os-hypervisors/99",
                 "/v2.1/no-such-thing"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["itemNotFound"]["code"] == 404
    response = api.delete("/v2.1/servers/not-a-uuid")
    assert response.status_code == 404
    response = api.http.put(api.base + "/v2.1/servers", json={})
    assert response.status_code == 405 and "badMethod" in response.json()
    response = api.get("/v2.1/servers?limit=abc")
    assert response.status_code == 400 and "limit" in response.json()["badRequest"]["message"]


def test_unknown_query_parameters_are_ignored(shared_cloud):
    api = shared_cloud.api
    response = api.get("/v2.1/servers/detail?deleted=False&whatever=1")
    assert response.status_code == 200
    response = api.get("/v2.1/flavors/detail?is_public=None")
    assert response.status_code == 200
    assert [f["name"] for f in response.json()["flavors"]][:2] == ["m1.tiny", "m1.small"]


def test_version_documents(shared_cloud):
    api = shared_cloud.api
    versions = api.get("/").json()["versions"]
    assert versions[-1]["id"] == "v2.1" and versions[-1]["status"] == "CURRENT"
    assert versions[-1]["version"] and versions[-1]["min_version"]
    for link in versions[-1]["links"]:
        assert api.http.get(link["href"]).json()["version"]["id"] == "v2.1"
    assert api.get("/v2.1").json()["version"]["id"] == "v2.1"


def test_hypervisors_and_services(shared_cloud):
    api = shared_cloud.api
    hypervisors = api.get("/v2.1/os-hypervisors/detail").json()["hypervisors"]
    assert [h["hypervisor_hostname"] for h in hypervisors] == ["compute-1"]
    h = hypervisors[0]
    assert (h["vcpus"], h["memory_mb"], h["local_gb"]) == (16, 32768, 500)
    assert h["state"] == "up" and h["status"] == "enabled"
    assert api.get(f"/v2.1/os-hypervisors/{h['id']}").json()["hypervisor"]["id"] == h["id"]
    # No uptime from libvirt's hosts: Nova's answer for such a driver (clients accept it).
    uptime = api.get(f"/v2.1/os-hypervisors/{h['id']}/uptime")
    assert uptime.status_code == 501 and "uptime" in uptime.json()["notImplemented"]["message"]
    assert api.get("/v2.1/os-hypervisors/999/uptime").status_code == 404
    assert api.get("/v2.1/os-hypervisors").json()["hypervisors"][0]["state"] == "up"
    stats = api.get("/v2.1/os-hypervisors/statistics").json()["hypervisor_statistics"]
    assert stats["count"] == 1 and stats["vcpus"] == 16
    services = api.get("/v2.1/os-services").json()["services"]
    by_binary = {s["binary"]: s for s in services}
    assert by_binary["vmflow-compute"]["zone"] == "nova"
    assert by_binary["vmflow-conductor"]["zone"] == "internal"
    assert all(s["state"] == "up" and s["status"] == "enabled" for s in services)
