"""Usage per project (os-simple-tenant-usage) through the HTTP API of an embedded
cloud: real launches and deletes, and the hours and flavor figures they make."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from vmflow.db.models import utcnow

NOVA_TIME = "%Y-%m-%dT%H:%M:%S.%f"
USAGE = "/v2.1/os-simple-tenant-usage"
SUMMARY_KEYS = {"tenant_id", "start", "stop", "total_hours", "total_vcpus_usage",
                "total_memory_mb_usage", "total_local_gb_usage"}
SERVER_KEYS = {"instance_id", "name", "hours", "memory_mb", "local_gb", "vcpus", "tenant_id",
               "flavor", "started_at", "ended_at", "state", "uptime"}
# The default flavors (vmflow/db/catalog.py): id -> (name, vcpus, memory_mb, root_gb).
TINY, SMALL, MEDIUM = ("1", "m1.tiny", 1, 512, 1), ("2", "m1.small", 1, 2048, 20), \
    ("3", "m1.medium", 2, 4096, 40)
MEMBER_OF_OTHER = {"X-Auth-Project-Id": "other", "X-Roles": "member"}


def _text(value: dt.datetime) -> str:
    return value.strftime(NOVA_TIME)


def _time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, NOVA_TIME)


def _boot(api, name: str, flavor: tuple, project: str = "demo") -> str:
    response = api.post("/v2.1/servers", {"server": {"name": name, "flavorRef": flavor[0],
                                                     "imageRef": api.image_id()}},
                        headers={"X-Auth-Project-Id": project})
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    assert api.wait_status(server_id)["status"] == "ACTIVE"
    return server_id


def _usage(api, tenant: str, **params) -> dict:
    response = api.get(f"{USAGE}/{tenant}", params=params)
    assert response.status_code == 200, response.text
    return response.json()["tenant_usage"]


def _check_flavor(server: dict, flavor: tuple) -> None:
    _, name, vcpus, memory_mb, root_gb = flavor
    assert (server["flavor"], server["vcpus"], server["memory_mb"], server["local_gb"]) == (
        name, vcpus, memory_mb, root_gb)


def test_a_running_server_counts_its_flavor_times_the_hours_it_has_run(cloud):
    api = cloud.api
    booted = utcnow()
    server_id = _boot(api, "app-1", MEDIUM)
    time.sleep(0.5)
    asked = utcnow()
    usage = _usage(api, "demo", start=_text(booted - dt.timedelta(minutes=1)))
    answered = utcnow()

    assert set(usage) == SUMMARY_KEYS | {"server_usages"}
    assert usage["tenant_id"] == "demo"
    assert usage["start"] == _text(booted - dt.timedelta(minutes=1))
    (server,) = usage["server_usages"]
    assert set(server) == SERVER_KEYS
    assert (server["instance_id"], server["name"], server["tenant_id"]) == (server_id, "app-1",
                                                                            "demo")
    _check_flavor(server, MEDIUM)
    assert server["state"] == "active" and server["ended_at"] is None
    started, stop = _time(server["started_at"]), _time(usage["stop"])
    # No end given: the period ends when the request is answered.
    assert booted < started < asked <= stop <= answered
    # It has run from its launch to the end of the period, at least the half second waited.
    assert server["hours"] == pytest.approx((stop - started).total_seconds() / 3600, abs=1e-9)
    assert 0.5 / 3600 <= server["hours"] <= (answered - booted).total_seconds() / 3600
    assert 0 <= server["uptime"] <= (answered - started).total_seconds() + 1
    # Totals: the flavor's figures times its hours.
    assert usage["total_hours"] == pytest.approx(server["hours"])
    assert usage["total_vcpus_usage"] == pytest.approx(2 * server["hours"])
    assert usage["total_memory_mb_usage"] == pytest.approx(4096 * server["hours"])
    assert usage["total_local_gb_usage"] == pytest.approx(40 * server["hours"])

    # A period of exactly one second inside its life: 1/3600 h of 2 vCPUs, 4 GB, 40 GB.
    while utcnow() < started + dt.timedelta(seconds=2):
        time.sleep(0.1)
    second = _usage(api, "demo", start=_text(started + dt.timedelta(seconds=0.5)),
                    end=_text(started + dt.timedelta(seconds=1.5)))
    assert second["server_usages"][0]["hours"] == pytest.approx(1 / 3600, rel=1e-9)
    assert second["total_vcpus_usage"] == pytest.approx(2 / 3600, rel=1e-9)
    assert second["total_memory_mb_usage"] == pytest.approx(4096 / 3600, rel=1e-9)
    assert second["total_local_gb_usage"] == pytest.approx(40 / 3600, rel=1e-9)
    assert second["stop"] == _text(started + dt.timedelta(seconds=1.5))

    # A period that ended before it was launched: nothing to report.
    assert _usage(api, "demo", start=_text(booted - dt.timedelta(hours=2)),
                  end=_text(booted - dt.timedelta(hours=1))) == {}


def test_a_deleted_server_counts_until_its_deletion_and_not_after(cloud):
    api = cloud.api
    booted = utcnow()
    server_id = _boot(api, "short-lived", SMALL)
    time.sleep(0.3)
    assert api.delete(f"/v2.1/servers/{server_id}").status_code == 204
    api.wait_gone(server_id)
    deleted = utcnow()
    since = _text(booted - dt.timedelta(minutes=1))

    usage = _usage(api, "demo", start=since)
    (server,) = usage["server_usages"]
    _check_flavor(server, SMALL)
    assert server["instance_id"] == server_id and server["state"] == "terminated"
    started, ended = _time(server["started_at"]), _time(server["ended_at"])
    assert booted < started < ended <= deleted
    # Counted from launch to deletion, not to the end of the period.
    assert server["hours"] == pytest.approx((ended - started).total_seconds() / 3600, abs=1e-9)
    assert server["hours"] >= 0.3 / 3600
    assert server["uptime"] == int((ended - started).total_seconds())
    assert usage["total_memory_mb_usage"] == pytest.approx(2048 * server["hours"])
    assert usage["total_local_gb_usage"] == pytest.approx(20 * server["hours"])
    time.sleep(0.3)
    assert _usage(api, "demo", start=since)["server_usages"][0]["hours"] == server["hours"]

    # A period that starts after the deletion does not see it (in any of the forms).
    after = ended + dt.timedelta(milliseconds=1)
    assert _usage(api, "demo", start=_text(after)) == {}
    listed = api.get(USAGE, params={"start": after.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                    "detailed": "1"})
    assert listed.status_code == 200 and listed.json() == {"tenant_usages": []}
    # A period that ends inside its life counts only up to the end of the period.
    half = started + (ended - started) / 2
    inside = _usage(api, "demo", start=since, end=_text(half))
    assert inside["server_usages"][0]["hours"] == pytest.approx(
        (half - started).total_seconds() / 3600, abs=1e-9)


def test_usage_is_per_project_and_every_project_is_for_admins(cloud):
    api = cloud.api
    since = _text(utcnow() - dt.timedelta(minutes=1))
    mine = {_boot(api, "demo-1", TINY), _boot(api, "demo-2", SMALL)}
    theirs = _boot(api, "other-1", MEDIUM, project="other")

    # Every project, in project order; servers only with detailed=1.
    response = api.get(USAGE, params={"start": since})
    assert response.status_code == 200, response.text
    tenants = response.json()["tenant_usages"]
    assert [t["tenant_id"] for t in tenants] == ["demo", "other"]
    assert all(set(t) == SUMMARY_KEYS for t in tenants)
    detailed = api.get(USAGE, params={"start": since, "detailed": "1"}).json()["tenant_usages"]
    servers = {t["tenant_id"]: {s["instance_id"] for s in t["server_usages"]} for t in detailed}
    assert servers == {"demo": mine, "other": {theirs}}
    for tenant in detailed:
        assert tenant["total_hours"] == pytest.approx(sum(s["hours"]
                                                          for s in tenant["server_usages"]))
        assert tenant["total_memory_mb_usage"] == pytest.approx(
            sum(s["memory_mb"] * s["hours"] for s in tenant["server_usages"]))

    # One project: only its own servers, whoever asks.
    other = _usage(api, "other", start=since)
    assert [s["instance_id"] for s in other["server_usages"]] == [theirs]
    _check_flavor(other["server_usages"][0], MEDIUM)
    demo = _usage(api, "demo", start=since)
    assert {s["instance_id"] for s in demo["server_usages"]} == mine
    assert _usage(api, "nobody", start=since) == {}

    # A member sees its own project's usage, and nobody else's.
    own = api.get(f"{USAGE}/other", params={"start": since}, headers=MEMBER_OF_OTHER)
    assert own.status_code == 200
    assert [s["instance_id"] for s in own.json()["tenant_usage"]["server_usages"]] == [theirs]
    for path in (f"{USAGE}/demo", USAGE):
        refused = api.get(path, params={"start": since}, headers=MEMBER_OF_OTHER)
        assert refused.status_code == 403, path
        body = refused.json()["forbidden"]
        assert body["code"] == 403 and "os-simple-tenant-usage" in body["message"]


BAD_TIMES = ["yesterday", "2024-13-01T00:00:00", "2024-02-30T00:00:00", "2024-01-01",
             "2024-01-01T00:00", "2024-01-01T25:00:00", "2024-01-01T00:00:00+1",
             "2024-01-01T00:00:00.1234567", "1714557600", "0000-01-01T00:00:00",
             "2024-01-01T00:00:00Zjunk", "9999-12-31T23:59:59-01:00"]


def test_bad_periods_are_refused_in_novas_shape_and_novas_forms_are_accepted(cloud):
    api = cloud.api
    _boot(api, "clock", TINY)
    for name in ("start", "end"):
        for bad in BAD_TIMES:
            for path in (USAGE, f"{USAGE}/demo"):
                response = api.get(path, params={name: bad})
                assert response.status_code == 400, (path, name, bad, response.text)
                body = response.json()["badRequest"]
                assert body["code"] == 400 and bad in body["message"]
    # The end before the start, or equal to it.
    for start, end in (("2024-05-02T00:00:00", "2024-05-01T00:00:00"),
                       ("2024-05-01T00:00:00", "2024-05-01T00:00:00")):
        response = api.get(f"{USAGE}/demo", params={"start": start, "end": end})
        assert response.status_code == 400
        assert "must come before the end time" in response.json()["badRequest"]["message"]
    # A start in the future (end defaulted to now) is after the end too.
    future = _text(utcnow() + dt.timedelta(hours=1))
    assert api.get(USAGE, params={"start": future}).status_code == 400

    # Nova's forms and ISO 8601's Z and offsets; times come back as naive UTC.
    since = utcnow() - dt.timedelta(hours=1)
    day, clock = since.strftime("%Y-%m-%d"), since.strftime("%H:%M:%S")
    plus_two = (since + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    for given in (f"{day}T{clock}", f"{day}T{clock}.000000", f"{day} {clock}.000000",
                  f"{day}T{clock}Z", f"{day}T{clock}.0Z", plus_two):
        usage = _usage(api, "demo", start=given)
        assert usage["start"] == f"{day}T{clock}.000000", given
        assert usage["total_hours"] > 0

    # Neither start nor end: Nova's default, a period that starts and ends now.
    response = api.get(USAGE, params={"detailed": "1"})
    assert response.status_code == 200
    (tenant,) = response.json()["tenant_usages"]
    assert tenant["start"] == tenant["stop"] and tenant["total_hours"] == 0
    # A period wholly in the future is cut at now: no hours, never negative ones.
    ahead = _usage(api, "demo", start=future, end=_text(utcnow() + dt.timedelta(hours=2)))
    assert ahead["total_hours"] == 0 and ahead["server_usages"][0]["hours"] == 0
