"""The identity service (/identity/v3) and token authentication of the compute
and image APIs, on an embedded cloud in keystone mode served over HTTP."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
import requests

from vmflow.identity import bootstrap, tokens

TIME_FORMAT = tokens.TIME_FORMAT


# -- helpers ---------------------------------------------------------------------------

def password_auth(user: str, password: str, project: str | None = None, *,
                  by_id: bool = False) -> dict[str, Any]:
    user_ref = {"id": user} if by_id else {"name": user, "domain": {"name": "Default"}}
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {
        "user": {**user_ref, "password": password}}}}
    if project is not None:
        auth["scope"] = {"project": {"id": project} if by_id else
                         {"name": project, "domain": {"id": "default"}}}
    return {"auth": auth}


class Keystone:
    """An embedded cloud in keystone mode with the bootstrap accounts."""

    def __init__(self, running) -> None:
        self.running = running
        self.base = running.api.base
        self.accounts = {a.user: a for a in bootstrap.bootstrap(running.db, running.cfg)}
        self.admin_token = self.token("admin", self.accounts["admin"].password, "admin")
        self._image: str | None = None

    def issue(self, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.base}/identity/v3/auth/tokens", json=body, timeout=30)

    def token(self, user: str, password: str, project: str | None = None) -> str:
        response = self.issue(password_auth(user, password, project))
        assert response.status_code == 201, response.text
        return response.headers["X-Subject-Token"]

    def call(self, method: str, path: str, token: str | None = None, **kw: Any
             ) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["X-Auth-Token"] = token
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kw)

    def admin(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.call(method, path, self.admin_token, **kw)

    def member(self, name: str, project: str, password: str = "pw-" + "x" * 12,
               role: str = "member") -> tuple[str, str, str]:
        """A new user with a role on a new (or existing) project: (user id, project id, token)."""
        found = self.admin("GET", f"/identity/v3/projects?name={project}").json()["projects"]
        if found:
            project_id = found[0]["id"]
        else:
            created = self.admin("POST", "/identity/v3/projects", json={"project": {
                "name": project}})
            assert created.status_code == 201, created.text
            project_id = created.json()["project"]["id"]
        user = self.admin("POST", "/identity/v3/users", json={"user": {
            "name": name, "password": password, "default_project_id": project_id}})
        assert user.status_code == 201, user.text
        user_id = user.json()["user"]["id"]
        role_id = self.role_id(role)
        granted = self.admin("PUT", f"/identity/v3/projects/{project_id}/users/{user_id}/roles/"
                                    f"{role_id}")
        assert granted.status_code == 204, granted.text
        return user_id, project_id, self.token(name, password, project)

    def role_id(self, name: str) -> str:
        roles = self.admin("GET", "/identity/v3/roles").json()["roles"]
        return next(r["id"] for r in roles if r["name"] == name)

    def image(self) -> str:
        if self._image is None:
            images = self.admin("GET", "/v2.1/images?name=blank-qcow2").json()["images"]
            self._image = images[0]["id"]
        return self._image

    def create_server(self, token: str, name: str) -> dict[str, Any]:
        response = self.call("POST", "/v2.1/servers", token, json={"server": {
            "name": name, "flavorRef": "1", "imageRef": self.image()}})
        assert response.status_code == 202, response.text
        return response.json()["server"]


@pytest.fixture
def keystone(cloud_factory) -> Keystone:
    return Keystone(cloud_factory(auth_strategy="keystone", host_count=1))


def assert_keystone_error(response: requests.Response, code: int) -> str:
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["title"] and error["message"]
    return error["message"]


# -- discovery -------------------------------------------------------------------------

def test_version_discovery(keystone):
    for path in ("/identity", "/identity/"):
        response = requests.get(keystone.base + path, timeout=10)
        assert response.status_code == 300
        (version,) = response.json()["versions"]["values"]
        assert version["id"].startswith("v3.") and version["status"] == "stable"
        self_link = next(link["href"] for link in version["links"] if link["rel"] == "self")
        assert self_link == f"{keystone.base}/identity/v3/"
        assert requests.get(self_link, timeout=10).json()["version"]["id"] == version["id"]
    for path in ("/identity/v3", "/identity/v3/"):
        response = requests.get(keystone.base + path, timeout=10)
        assert response.status_code == 200
        assert response.json()["version"]["media-types"][0]["base"] == "application/json"
    assert_keystone_error(requests.get(keystone.base + "/identity/v3/nothing", timeout=10), 404)


# -- tokens ----------------------------------------------------------------------------

def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, TIME_FORMAT)


def test_token_by_names_and_by_ids_and_what_it_says(cloud_factory, db):
    keystone = Keystone(cloud_factory(database=db, auth_strategy="keystone", host_count=1))
    admin = keystone.accounts["admin"]
    response = keystone.issue(password_auth("admin", admin.password, "admin"))
    assert response.status_code == 201
    value = response.headers["X-Subject-Token"]
    assert len(value) >= 40
    token = response.json()["token"]
    assert token["methods"] == ["password"]
    assert token["user"]["name"] == "admin"
    assert token["user"]["domain"] == {"id": "default", "name": "Default"}
    assert token["project"]["name"] == "admin"
    assert token["project"]["domain"] == {"id": "default", "name": "Default"}
    assert sorted(r["name"] for r in token["roles"]) == ["admin", "member", "reader"]
    assert all(r["id"] for r in token["roles"])
    lifetime = _parse(token["expires_at"]) - _parse(token["issued_at"])
    assert lifetime == dt.timedelta(seconds=3600)
    assert token["expires_at"].endswith("Z")
    services = {entry["type"]: entry for entry in token["catalog"]}
    assert set(services) >= {"compute", "image", "identity"}
    urls = {kind: next(e["url"] for e in entry["endpoints"] if e["interface"] == "public")
            for kind, entry in services.items()}
    assert urls == {"compute": f"{keystone.base}/v2.1", "image": f"{keystone.base}/image",
                    "identity": f"{keystone.base}/identity/v3"}
    for entry in services.values():
        assert entry["id"] and entry["name"]
        for endpoint in entry["endpoints"]:
            assert endpoint["region"] == endpoint["region_id"] == "RegionOne"
            assert endpoint["id"]

    # The same by ids.
    by_id = keystone.issue(password_auth(token["user"]["id"], admin.password,
                                         token["project"]["id"], by_id=True))
    assert by_id.status_code == 201
    assert by_id.json()["token"]["project"]["id"] == token["project"]["id"]
    assert by_id.headers["X-Subject-Token"] != value

    # Unscoped: no project, no roles, no catalog; refused by compute.
    unscoped = keystone.issue(password_auth("demo", keystone.accounts["demo"].password))
    assert unscoped.status_code == 201
    body = unscoped.json()["token"]
    assert "project" not in body and "catalog" not in body and "roles" not in body
    refused = keystone.call("GET", "/v2.1/servers", unscoped.headers["X-Subject-Token"])
    assert refused.status_code == 403
    assert "not scoped" in refused.json()["forbidden"]["message"]

    # The token works on compute, and a server belongs to the token's project and user.
    server = keystone.create_server(value, "mine")
    shown = keystone.call("GET", f"/v2.1/servers/{server['id']}", value).json()["server"]
    assert shown["tenant_id"] == token["project"]["id"]
    assert shown["user_id"] == token["user"]["id"]

    # Only the hash is stored.
    from sqlalchemy import select

    from vmflow.db.models import Token
    with keystone.running.db.read() as session:
        stored = session.scalars(select(Token.id_hash)).all()
    assert value not in stored and tokens.digest(value) in stored


def test_validate_and_revoke(keystone):
    demo_password = keystone.accounts["demo"].password
    demo = keystone.token("demo", demo_password, "demo")
    other = keystone.token("demo", demo_password, "demo")

    validated = keystone.admin("GET", "/identity/v3/auth/tokens",
                               headers={"X-Subject-Token": demo})
    assert validated.status_code == 200
    assert validated.headers["X-Subject-Token"] == demo
    body = validated.json()["token"]
    assert body["user"]["name"] == "demo"
    assert sorted(r["name"] for r in body["roles"]) == ["member", "reader"]
    assert keystone.admin("HEAD", "/identity/v3/auth/tokens",
                          headers={"X-Subject-Token": demo}).status_code == 200
    # A user may look at its own tokens, not at others'.
    assert keystone.call("GET", "/identity/v3/auth/tokens", demo,
                         headers={"X-Subject-Token": other}).status_code == 200
    assert_keystone_error(keystone.call("GET", "/identity/v3/auth/tokens", demo,
                                        headers={"X-Subject-Token": keystone.admin_token}),
                          403)
    assert_keystone_error(keystone.admin("GET", "/identity/v3/auth/tokens",
                                         headers={"X-Subject-Token": "not-a-token"}), 404)
    assert keystone.admin("HEAD", "/identity/v3/auth/tokens",
                          headers={"X-Subject-Token": "not-a-token"}).status_code == 404

    assert keystone.call("GET", "/v2.1/servers", demo).status_code == 200
    assert keystone.call("DELETE", "/identity/v3/auth/tokens", demo,
                         headers={"X-Subject-Token": demo}).status_code == 204
    assert_keystone_error(keystone.admin("GET", "/identity/v3/auth/tokens",
                                         headers={"X-Subject-Token": demo}), 404)
    refused = keystone.call("GET", "/v2.1/servers", demo)
    assert refused.status_code == 401
    assert refused.json()["unauthorized"]["code"] == 401
    assert refused.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.base}/identity"'
    # Revoking one token leaves the user's others alone.
    assert keystone.call("GET", "/v2.1/servers", other).status_code == 200
    # The identity API refuses the revoked token too.
    assert_keystone_error(keystone.call("GET", "/identity/v3/auth/projects", demo), 401)


def test_expired_token_is_refused(cloud_factory):
    keystone = Keystone(cloud_factory(auth_strategy="keystone", host_count=1,
                                      token_expiration=2))
    demo = keystone.token("demo", keystone.accounts["demo"].password, "demo")
    assert keystone.call("GET", "/v2.1/flavors", demo).status_code == 200
    time.sleep(2.2)
    refused = keystone.call("GET", "/v2.1/flavors", demo)
    assert refused.status_code == 401
    assert "expired" in refused.json()["unauthorized"]["message"]
    # The admin token is just as old: get a fresh one to look.
    keystone.admin_token = keystone.token("admin", keystone.accounts["admin"].password, "admin")
    assert keystone.admin("GET", "/identity/v3/auth/tokens",
                          headers={"X-Subject-Token": demo}).status_code == 404


def test_wrong_password_and_unknown_user_say_the_same(keystone):
    wrong = keystone.issue(password_auth("demo", "not-the-password", "demo"))
    unknown = keystone.issue(password_auth("nobody", "not-the-password", "demo"))
    wrong_domain = keystone.issue({"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": "demo", "domain": {"name": "Elsewhere"},
                 "password": keystone.accounts["demo"].password}}}}})
    messages = {assert_keystone_error(r, 401) for r in (wrong, unknown, wrong_domain)}
    assert len(messages) == 1
    (message,) = messages
    assert "password" not in message.lower() and "demo" not in message
    assert all("X-Subject-Token" not in r.headers for r in (wrong, unknown, wrong_domain))
    assert wrong.headers["WWW-Authenticate"].startswith("Keystone uri=")
    # A right password for a project the user has no role on.
    no_role = keystone.issue(password_auth("demo", keystone.accounts["demo"].password, "admin"))
    assert_keystone_error(no_role, 401)
    # Malformed requests are 400s that say what is missing.
    for body in ({}, {"auth": {}}, {"auth": {"identity": {"methods": ["password"]}}},
                 {"auth": {"identity": {"methods": ["password"], "password": {
                     "user": {"name": "demo"}}}}},
                 {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                     "name": "demo", "password": "x"}}}, "scope": {"project": {
                         "name": "demo"}}}},
                 {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                     "name": "demo", "password": "x"}}}, "scope": {"domain": {
                         "id": "default"}}}}):
        assert_keystone_error(keystone.issue(body), 400)
    garbage = requests.post(f"{keystone.base}/identity/v3/auth/tokens", data="{not json",
                            timeout=10)
    assert_keystone_error(garbage, 400)


def test_every_compute_and_image_call_needs_a_token(keystone):
    for path in ("/v2.1/servers", "/v2.1/servers/detail", "/v2.1/flavors", "/v2.1/os-services",
                 "/image/v2/images", "/v2.1/no-such-thing"):
        response = requests.get(keystone.base + path, timeout=10)
        assert response.status_code == 401, path
        assert response.json()["unauthorized"]["code"] == 401
        assert response.headers["WWW-Authenticate"] == \
            f'Keystone uri="{keystone.base}/identity"'
        assert response.headers["X-OpenStack-Request-Id"].startswith("req-")
        garbage = keystone.call("GET", path, "garbage-token")
        assert garbage.status_code == 401, path
    refused = requests.post(keystone.base + "/v2.1/servers", json={"server": {
        "name": "x", "flavorRef": "1", "imageRef": keystone.image()}}, timeout=10)
    assert refused.status_code == 401
    assert keystone.admin("GET", "/v2.1/servers").json()["servers"] == []
    # The documents a client reads before it has a token stay open.
    for path in ("/", "/v2.1", "/v2.1/", "/image", "/image/versions"):
        response = requests.get(keystone.base + path, timeout=10)
        assert response.status_code in (200, 300), (path, response.status_code)
    # The dashboard's token counts only with the dashboard's header (see the browser test).
    assert requests.get(keystone.base + "/v2.1/servers", headers={"X-Vmflow-Dashboard": "1"},
                        timeout=10).status_code == 401


def test_a_token_for_one_project_does_not_reach_another(keystone):
    _, project_x, token_x = keystone.member("alice", "project-x")
    _, project_y, token_y = keystone.member("bob", "project-y")
    server = keystone.create_server(token_x, "x-only")
    assert keystone.call("GET", f"/v2.1/servers/{server['id']}", token_x).status_code == 200
    hidden = keystone.call("GET", f"/v2.1/servers/{server['id']}", token_y)
    assert hidden.status_code == 404
    assert hidden.json()["itemNotFound"]["code"] == 404
    assert keystone.call("GET", "/v2.1/servers", token_y).json()["servers"] == []
    assert keystone.call("DELETE", f"/v2.1/servers/{server['id']}", token_y).status_code == 404
    # all_tenants is the admin's: the member still sees only its own.
    listed = keystone.call("GET", "/v2.1/servers?all_tenants=1", token_y)
    assert listed.status_code in (200, 403)
    if listed.status_code == 200:
        assert listed.json()["servers"] == []
    everyone = keystone.admin("GET", "/v2.1/servers/detail?all_tenants=1").json()["servers"]
    assert [(s["id"], s["tenant_id"]) for s in everyone] == [(server["id"], project_x)]
    assert project_x != project_y


def test_a_member_is_refused_the_identity_admin_api(keystone):
    user_id, project_id, token = keystone.member("carol", "project-c")
    admin_project = keystone.admin("GET", "/identity/v3/projects?name=admin").json()[
        "projects"][0]["id"]
    role = keystone.role_id("admin")
    refused = [
        ("GET", "/identity/v3/projects", None), ("GET", "/identity/v3/users", None),
        ("GET", "/identity/v3/roles", None), ("GET", "/identity/v3/role_assignments", None),
        ("POST", "/identity/v3/projects", {"project": {"name": "mine"}}),
        ("POST", "/identity/v3/users", {"user": {"name": "eve", "password": "x"}}),
        ("PATCH", f"/identity/v3/projects/{project_id}", {"project": {"enabled": False}}),
        ("DELETE", f"/identity/v3/projects/{project_id}", None),
        ("PATCH", f"/identity/v3/users/{user_id}", {"user": {"enabled": False}}),
        ("DELETE", f"/identity/v3/users/{user_id}", None),
        ("GET", f"/identity/v3/projects/{admin_project}", None),
        ("PUT", f"/identity/v3/projects/{project_id}/users/{user_id}/roles/{role}", None),
        ("PUT", f"/identity/v3/projects/{admin_project}/users/{user_id}/roles/{role}", None),
        ("HEAD", f"/identity/v3/projects/{project_id}/users/{user_id}/roles/{role}", None),
    ]
    for method, path, body in refused:
        response = keystone.call(method, path, token, json=body)
        assert response.status_code == 403, (method, path, response.text)
        if method != "HEAD":
            message = assert_keystone_error(response, 403)
            assert message.startswith("Policy doesn't allow identity:")
    # Nothing was changed by the refused calls.
    assert keystone.call("GET", "/v2.1/servers", token).status_code == 200
    assert keystone.admin("GET", f"/identity/v3/users/{user_id}").json()["user"]["enabled"]
    assignments = keystone.admin("GET", f"/identity/v3/role_assignments?user.id={user_id}")
    assert [a["role"]["id"] for a in assignments.json()["role_assignments"]] == \
        [keystone.role_id("member")]
    # What a member may see: itself, its project, its projects, its catalog.
    assert keystone.call("GET", f"/identity/v3/users/{user_id}", token).status_code == 200
    assert keystone.call("GET", f"/identity/v3/projects/{project_id}", token).status_code == 200
    mine = keystone.call("GET", f"/identity/v3/users/{user_id}/projects", token)
    assert [p["id"] for p in mine.json()["projects"]] == [project_id]
    assert [p["id"] for p in keystone.call("GET", "/identity/v3/auth/projects", token).json()[
        "projects"]] == [project_id]
    catalog = keystone.call("GET", "/identity/v3/auth/catalog", token).json()["catalog"]
    assert {c["type"] for c in catalog} >= {"compute", "image"}
    admin_user = keystone.admin("GET", "/identity/v3/users?name=admin").json()["users"][0]["id"]
    assert keystone.call("GET", f"/identity/v3/users/{admin_user}/projects",
                         token).status_code == 403


def test_identity_admin_api(keystone):
    created = keystone.admin("POST", "/identity/v3/projects", json={"project": {
        "name": "team", "description": "a team"}})
    assert created.status_code == 201
    project = created.json()["project"]
    assert project["domain_id"] == "default" and project["enabled"] is True
    assert keystone.admin("GET", f"/identity/v3/projects/{project['id']}").json()[
        "project"] == project
    duplicate = keystone.admin("POST", "/identity/v3/projects", json={"project": {
        "name": "team"}})
    assert_keystone_error(duplicate, 409)

    user = keystone.admin("POST", "/identity/v3/users", json={"user": {
        "name": "dave", "password": "first-secret", "default_project_id": project["id"]}})
    assert user.status_code == 201
    user = user.json()["user"]
    assert "password" not in user and "password_hash" not in user
    listing = keystone.admin("GET", "/identity/v3/users").json()["users"]
    assert {"admin", "demo", "dave"} <= {u["name"] for u in listing}
    assert all("password" not in u and "password_hash" not in u for u in listing)
    # No role yet: a scoped token is refused, an unscoped one is fine.
    assert_keystone_error(keystone.issue(password_auth("dave", "first-secret", "team")), 401)
    assert keystone.issue(password_auth("dave", "first-secret")).status_code == 201

    reader = keystone.role_id("reader")
    grant = f"/identity/v3/projects/{project['id']}/users/{user['id']}/roles/{reader}"
    assert keystone.admin("HEAD", grant).status_code == 404
    assert keystone.admin("PUT", grant).status_code == 204
    assert keystone.admin("PUT", grant).status_code == 204  # idempotent
    assert keystone.admin("HEAD", grant).status_code == 204
    roles = keystone.admin("GET", f"/identity/v3/projects/{project['id']}/users/"
                                  f"{user['id']}/roles").json()["roles"]
    assert [r["name"] for r in roles] == ["reader"]
    token = keystone.token("dave", "first-secret", "team")
    assert keystone.call("GET", "/v2.1/servers", token).status_code == 200

    assignments = keystone.admin(
        "GET", f"/identity/v3/role_assignments?scope.project.id={project['id']}"
               "&include_names=true").json()["role_assignments"]
    assert [(a["user"]["name"], a["role"]["name"], a["scope"]["project"]["name"])
            for a in assignments] == [("dave", "reader", "team")]
    demo_id = keystone.admin("GET", "/identity/v3/users?name=demo").json()["users"][0]["id"]
    effective = keystone.admin("GET", f"/identity/v3/role_assignments?user.id={demo_id}"
                                      "&effective").json()["role_assignments"]
    names = {r["name"]: r["id"] for r in keystone.admin("GET", "/identity/v3/roles").json()[
        "roles"]}
    assert set(names) == {"admin", "member", "reader"}
    assert sorted(a["role"]["id"] for a in effective) == sorted([names["member"],
                                                                 names["reader"]])

    # A new password revokes the user's tokens; the old password stops working.
    changed = keystone.admin("PATCH", f"/identity/v3/users/{user['id']}", json={"user": {
        "password": "second-secret"}})
    assert changed.status_code == 200 and "password" not in changed.json()["user"]
    assert keystone.call("GET", "/v2.1/servers", token).status_code == 401
    assert_keystone_error(keystone.issue(password_auth("dave", "first-secret", "team")), 401)
    token = keystone.token("dave", "second-secret", "team")
    # The user changes its own password (knowing the old one).
    wrong = keystone.call("POST", f"/identity/v3/users/{user['id']}/password", token, json={
        "user": {"password": "third-secret", "original_password": "nope"}})
    assert_keystone_error(wrong, 401)
    own = keystone.call("POST", f"/identity/v3/users/{user['id']}/password", token, json={
        "user": {"password": "third-secret", "original_password": "second-secret"}})
    assert own.status_code == 204
    token = keystone.token("dave", "third-secret", "team")

    # Taking the role away takes effect at once.
    assert keystone.admin("DELETE", grant).status_code == 204
    assert keystone.call("GET", "/v2.1/servers", token).status_code == 401
    assert_keystone_error(keystone.admin("DELETE", grant), 404)

    # A disabled project refuses its tokens; a deleted user is gone.
    keystone.admin("PUT", grant)
    token = keystone.token("dave", "third-secret", "team")
    disabled = keystone.admin("PATCH", f"/identity/v3/projects/{project['id']}", json={
        "project": {"enabled": False}})
    assert disabled.status_code == 200 and disabled.json()["project"]["enabled"] is False
    assert keystone.call("GET", "/v2.1/servers", token).status_code == 401
    assert keystone.admin("DELETE", f"/identity/v3/users/{user['id']}").status_code == 204
    assert_keystone_error(keystone.admin("GET", f"/identity/v3/users/{user['id']}"), 404)
    assert keystone.admin("DELETE", f"/identity/v3/projects/{project['id']}").status_code == 204
    assert_keystone_error(keystone.admin("GET", f"/identity/v3/projects/{project['id']}"), 404)

    # Bad input: 400s with a reason, and nothing recorded.
    for path, body in (("/identity/v3/projects", {"project": {"name": ""}}),
                       ("/identity/v3/projects", {"project": {"name": "p", "colour": "red"}}),
                       ("/identity/v3/projects", {"project": {"name": "p", "enabled": "yes"}}),
                       ("/identity/v3/projects", {"project": {"name": "p",
                                                              "domain_id": "other"}}),
                       ("/identity/v3/projects", {"name": "p"}),
                       ("/identity/v3/users", {"user": {"name": "u", "password": 42}}),
                       ("/identity/v3/users", {"user": {"name": "u" * 300}})):
        assert_keystone_error(keystone.admin("POST", path, json=body), 400)
    assert {p["name"] for p in keystone.admin("GET", "/identity/v3/projects").json()[
        "projects"]} == {"admin", "demo"}
    assert {u["name"] for u in keystone.admin("GET", "/identity/v3/users").json()[
        "users"]} == {"admin", "demo"}
    unknown_role = f"/identity/v3/projects/{project['id']}/users/{demo_id}/roles/nope"
    assert_keystone_error(keystone.admin("PUT", unknown_role), 404)


def test_noauth_mode_when_configured(cloud_factory):
    running = cloud_factory(auth_strategy="noauth", host_count=1)
    assert requests.get(f"{running.api.base}/v2.1/servers", timeout=10).status_code == 200
    as_member = requests.get(f"{running.api.base}/v2.1/os-services", timeout=10,
                             headers={"X-Auth-Project-Id": "p1", "X-Roles": "member"})
    assert as_member.status_code == 403


def test_keystoneauth_session_finds_compute_in_the_catalog(keystone):
    session_mod = pytest.importorskip("keystoneauth1.session")
    from keystoneauth1.identity import v3

    auth = v3.Password(auth_url=f"{keystone.base}/identity", username="demo",
                       password=keystone.accounts["demo"].password, project_name="demo",
                       user_domain_name="Default", project_domain_name="Default")
    session = session_mod.Session(auth=auth)
    assert session.get_token()
    endpoint = session.get_endpoint(service_type="compute", interface="public",
                                    region_name="RegionOne")
    assert endpoint == f"{keystone.base}/v2.1"
    assert session.get_endpoint(service_type="image", interface="public") == \
        f"{keystone.base}/image"
    servers = session.get(f"{endpoint}/servers")
    assert servers.status_code == 200 and servers.json() == {"servers": []}
    assert session.get_project_id() == keystone.admin(
        "GET", "/identity/v3/projects?name=demo").json()["projects"][0]["id"]


# -- the command line ------------------------------------------------------------------

def test_identity_commands_act_on_the_database(cloud_factory, tmp_path, capsys):
    from vmflow import cli

    running = cloud_factory(auth_strategy="keystone", host_count=1)
    base = running.api.base
    where = ["--database-url", running.cfg.database_url, "--data-dir",
             str(running.cfg.data_dir)]
    assert cli.main(["identity", "bootstrap", *where]) == 0
    out = capsys.readouterr().out
    assert "export OS_USERNAME=admin" in out and "export OS_PASSWORD=" in out
    assert cli.main(["identity", "bootstrap", *where]) == 0  # again: nothing new
    assert capsys.readouterr().out.split("export OS_PASSWORD=")[1].split()[0] == \
        out.split("export OS_PASSWORD=")[1].split()[0]

    password = tmp_path / "password"
    password.write_text("olgas-password\n")
    assert cli.main(["identity", "project", "create", "ops", "--description", "operators",
                     *where]) == 0
    assert "project ops created" in capsys.readouterr().out
    assert cli.main(["identity", "user", "create", "olga", "--password-file", str(password),
                     "--project", "ops", "--role", "reader", *where]) == 0
    assert "role reader on project ops" in capsys.readouterr().out
    assert cli.main(["identity", "user", "list", *where]) == 0
    listing = capsys.readouterr().out
    assert "olga" in listing and "reader@ops" in listing and "admin@admin" in listing
    assert "olgas-password" not in listing

    def olga_roles() -> list[str]:
        response = requests.post(f"{base}/identity/v3/auth/tokens", timeout=30,
                                 json=password_auth("olga", "olgas-password", "ops"))
        assert response.status_code == 201, response.text
        return sorted(r["name"] for r in response.json()["token"]["roles"])

    assert olga_roles() == ["reader"]
    assert cli.main(["identity", "role", "add", "--user", "olga", "--project", "ops",
                     "member", *where]) == 0
    assert "role member granted to user olga on project ops" in capsys.readouterr().out
    assert olga_roles() == ["member", "reader"]

    # Errors are one line on stderr, exit status 1, nothing changed.
    for argv, message in (
            (["identity", "user", "create", "olga", "--password-file", str(password)],
             "already exists"),
            (["identity", "role", "add", "--user", "olga", "--project", "ops", "owner"],
             "Could not find role: owner"),
            (["identity", "role", "add", "--user", "nobody", "--project", "ops", "member"],
             "Could not find user: nobody"),
            (["identity", "user", "create", "pat", "--password-file", str(password),
              "--role", "member"], "--role needs --project"),
            (["identity", "user", "create", "pat", "--password-file",
              str(tmp_path / "missing")], "No such file")):
        assert cli.main([*argv, *where]) == 1, argv
        assert message in capsys.readouterr().err, argv
    assert cli.main(["identity", "user", "list", *where]) == 0
    assert "pat" not in capsys.readouterr().out

    token = requests.post(f"{base}/identity/v3/auth/tokens", timeout=30, json=password_auth(
        "olga", "olgas-password", "ops")).headers["X-Subject-Token"]
    password.write_text("a-new-one\n")
    assert cli.main(["identity", "user", "set-password", "olga", "--password-file",
                     str(password), *where]) == 0
    assert requests.get(f"{base}/v2.1/servers", headers={"X-Auth-Token": token},
                        timeout=10).status_code == 401
    assert requests.post(f"{base}/identity/v3/auth/tokens", timeout=30, json=password_auth(
        "olga", "a-new-one", "ops")).status_code == 201


def test_server_commands_authenticate_with_the_openrc_environment(cloud_factory, capsys,
                                                                  monkeypatch):
    from vmflow import cli

    keystone = Keystone(cloud_factory(auth_strategy="keystone", host_count=1))
    for key, value in bootstrap.read_openrc(keystone.accounts["demo"].path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OS_AUTH_URL", f"{keystone.base}/identity/v3")
    assert cli.main(["server", "--url", keystone.base, "create", "cli-auth", "--flavor",
                     "m1.tiny", "--image", "blank-qcow2", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "ACTIVE" in out
    server_id = out.split("accepted ", 1)[1].split()[0]
    monkeypatch.setenv("OS_PASSWORD", "wrong")
    assert cli.main(["server", "--url", keystone.base, "list"]) == 1
    assert "authentication as demo failed (HTTP 401)" in capsys.readouterr().err
    # Without OS_* settings: the admin openrc `vmflow up` left in the data directory.
    for key in bootstrap.read_openrc(keystone.accounts["demo"].path):
        monkeypatch.delenv(key)
    monkeypatch.setenv("VMFLOW_DATA_DIR", str(keystone.running.cfg.data_dir))
    assert cli.main(["server", "--url", keystone.base, "show", server_id]) == 0
    assert "cli-auth" in capsys.readouterr().out  # the admin sees the demo's server


def _read_until(proc, marker: str, timeout: float = 60) -> str:
    """stdout of ``proc`` up to and including the line holding ``marker``."""
    import queue
    import threading

    lines: list[str] = []
    got: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [got.put(line) for line in iter(proc.stdout.readline, "")],
                     daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = got.get(timeout=0.5)
        except queue.Empty:
            assert proc.poll() is None, "vmflow up ended: " + "".join(lines)
            continue
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError(f"no {marker!r} in {''.join(lines)!r}")


def _exports(text: str) -> dict[str, str]:
    import shlex

    values = {}
    for line in text.splitlines():
        words = shlex.split(line) if line.startswith("export ") else []
        if len(words) == 2:
            key, value = words[1].split("=", 1)
            values[key] = value
    return values


def test_up_bootstraps_once_and_prints_a_working_openrc(tmp_path):
    import os
    import signal
    import stat
    import subprocess
    import sys

    from tests.conftest import _free_port

    port = _free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VMFLOW_", "OS_"))}
    command = [sys.executable, "-m", "vmflow.cli", "up", "--hosts", "1", "--port", str(port),
               "--data-dir", str(data)]

    def up() -> tuple[subprocess.Popen, dict[str, str]]:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        return proc, _exports(_read_until(proc, "export OS_INTERFACE="))

    def down(proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0

    proc, openrc = up()
    try:
        assert openrc["OS_AUTH_URL"] == f"http://127.0.0.1:{port}/identity/v3"
        assert openrc["OS_USERNAME"] == "admin" and openrc["OS_PROJECT_NAME"] == "admin"
        assert openrc["OS_USER_DOMAIN_NAME"] == openrc["OS_PROJECT_DOMAIN_NAME"] == "Default"
        assert openrc["OS_IDENTITY_API_VERSION"] == "3"
        assert openrc["OS_REGION_NAME"] == "RegionOne" and openrc["OS_INTERFACE"] == "public"
        issued = requests.post(f"{openrc['OS_AUTH_URL']}/auth/tokens", timeout=30,
                               json=password_auth(openrc["OS_USERNAME"], openrc["OS_PASSWORD"],
                                                  openrc["OS_PROJECT_NAME"]))
        assert issued.status_code == 201, issued.text
        token = issued.headers["X-Subject-Token"]
        compute = next(e["url"] for c in issued.json()["token"]["catalog"] if c["type"] ==
                       "compute" for e in c["endpoints"] if e["interface"] == "public")
        assert requests.get(f"{compute}/servers", timeout=10).status_code == 401
        assert requests.get(f"{compute}/os-hypervisors", headers={"X-Auth-Token": token},
                            timeout=10).json()["hypervisors"]
        # Secrets where a careless client might put them: the logs must not keep them.
        requests.post(f"{openrc['OS_AUTH_URL']}/auth/tokens", timeout=30,
                      json=password_auth("admin", "wrong-" + openrc["OS_PASSWORD"], "admin"))
        requests.get(f"{compute}/servers?password={openrc['OS_PASSWORD']}&token={token}",
                     headers={"X-Auth-Token": token}, timeout=10)
        demo = bootstrap.read_openrc(data / "demo-openrc")
        assert demo["OS_USERNAME"] == "demo" and demo["OS_PROJECT_NAME"] == "demo"
        assert requests.post(f"{openrc['OS_AUTH_URL']}/auth/tokens", timeout=30, json=
                             password_auth("demo", demo["OS_PASSWORD"], "demo")
                             ).status_code == 201
    finally:
        down(proc)
    for name in ("admin-openrc", "demo-openrc", "dashboard-secret-key"):
        mode = stat.S_IMODE((data / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert bootstrap.read_openrc(data / "admin-openrc") == openrc

    # A second start changes nothing: same users, same passwords.
    proc, again = up()
    try:
        assert again == openrc
        users = requests.get(f"http://127.0.0.1:{port}/identity/v3/users", timeout=10,
                             headers={"X-Auth-Token": requests.post(
                                 f"{again['OS_AUTH_URL']}/auth/tokens", timeout=30,
                                 json=password_auth("admin", again["OS_PASSWORD"], "admin")
                             ).headers["X-Subject-Token"]}).json()["users"]
        assert sorted(u["name"] for u in users) == ["admin", "demo"]
    finally:
        down(proc)

    logs = list((data / "logs").glob("*.log"))
    assert logs
    text = "".join(path.read_text() for path in logs)
    assert "POST /identity/v3/auth/tokens" in text  # the log is there...
    for secret in (openrc["OS_PASSWORD"], demo["OS_PASSWORD"], token):
        assert secret not in text  # ...without a password or token in it
    assert "password=***" in text


def test_tokens_on_the_database_expire_are_revoked_and_are_cleaned_up(db):
    from sqlalchemy import select

    from vmflow.db.models import Token

    created, password = bootstrap.ensure_account(db, "p1", "u1", "member")
    assert created and password
    assert bootstrap.ensure_account(db, "p1", "u1", "member") == (False, None)
    short, _ = tokens.authenticate(db, password_auth("u1", password, "p1"), expiration=0.5)
    long, info = tokens.authenticate(db, password_auth("u1", password, "p1"), expiration=60)
    assert info.role_names == ("member", "reader")
    assert tokens.validate(db, short) is not None
    assert tokens.revoke(db, long) and not tokens.revoke(db, long)
    assert tokens.validate(db, long) is None
    time.sleep(0.6)
    assert tokens.validate(db, short) is None
    with db.read() as session:
        rows = {t.id_hash: t for t in session.scalars(select(Token))}
    assert rows[tokens.digest(long)].revoked_at is not None
    assert set(rows) == {tokens.digest(short), tokens.digest(long)}
    # The next token issued after CLEANUP_EVERY seconds deletes the expired rows.
    tokens._last_cleanup = time.monotonic() - tokens.CLEANUP_EVERY - 1
    fresh, _ = tokens.authenticate(db, password_auth("u1", password, "p1"), expiration=60)
    with db.read() as session:
        left = set(session.scalars(select(Token.id_hash)))
    assert left == {tokens.digest(long), tokens.digest(fresh)}
