"""Fixtures with real components: SQLite and PostgreSQL databases, libvirt test
hosts, an embedded cloud whose Celery workers consume real messages, and the
API served over HTTP on a loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy

from vmflow import config as config_mod
from vmflow import log
from vmflow.db import catalog, migrate
from vmflow.db.session import Database

POSTGRES_URL = os.environ.get("VMFLOW_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")

log.setup("INFO")


# -- databases ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server the suite uses (scripts/services.sh starts one)."""
    engine = sqlalchemy.create_engine(POSTGRES_URL.replace("postgresql://",
                                                           "postgresql+psycopg://"),
                                      isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as err:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} ({err}); "
                    "run `bash scripts/services.sh` or set VMFLOW_TEST_POSTGRES_URL")
    finally:
        engine.dispose()
    return POSTGRES_URL


def _fresh_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on the server; dropped afterwards."""
    name = f"vmflow_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server_url.replace("postgresql://", "postgresql+psycopg://"),
                                     isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vmflow.db'}"
    else:
        yield from _fresh_postgres(request.getfixturevalue("postgres_server"))


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """A migrated database with the default flavors and image."""
    database = Database(database_url)
    migrate.upgrade(database)
    with database.write() as session:
        catalog.seed_defaults(session, tmp_path / "images")
    yield database
    database.dispose()


# -- Redis -----------------------------------------------------------------------------

REDIS_URL = os.environ.get("VMFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """The Redis of scripts/services.sh, or one started here when none runs."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        yield REDIS_URL
        return
    except redis.RedisError:
        pass
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail(f"no Redis at {REDIS_URL} and no redis-server to start; "
                    "run `bash scripts/services.sh`")
    port = _free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


# -- an embedded cloud served over HTTP -----------------------------------------------

class Api:
    """A tiny client for the API under test (raw responses, no magic)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.base + path, timeout=30, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.http.post(self.base + path, json=body, timeout=60, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.http.delete(self.base + path, timeout=30, **kw)

    def image_id(self) -> str:
        return self.get("/v2.1/images?name=blank-qcow2").json()["images"][0]["id"]

    def create(self, name: str, flavor: str = "1", image: str | None = None) -> requests.Response:
        return self.post("/v2.1/servers", {"server": {"name": name, "flavorRef": flavor,
                                                      "imageRef": image or self.image_id()}})

    def server(self, server_id: str, version: str | None = None) -> dict[str, Any]:
        """The server's body, at compute microversion ``version`` (default 2.1)."""
        headers = {"OpenStack-API-Version": f"compute {version}"} if version else {}
        response = self.get(f"/v2.1/servers/{server_id}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["server"]

    def wait_status(self, server_id: str, statuses: tuple[str, ...] = ("ACTIVE", "ERROR"),
                    timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.server(server_id)
            if server["status"] in statuses and server["OS-EXT-STS:task_state"] is None:
                return server
            time.sleep(0.02)
        raise AssertionError(f"server {server_id} never reached {statuses}: {server}")

    def wait_gone(self, server_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get(f"/v2.1/servers/{server_id}").status_code == 404:
                return
            time.sleep(0.02)
        raise AssertionError(f"server {server_id} was never deleted")


class Running:
    """An embedded cloud plus its API on a loopback port."""

    def __init__(self, cfg: config_mod.Config, database: Database | None = None,
                 run_compute: bool = True, run_conductor: bool = True) -> None:
        from werkzeug.serving import make_server

        from vmflow.cloud import Cloud, prepare_database
        from webapp import create_app

        self.cfg = cfg
        db = database
        if db is None:
            db = prepare_database(cfg)
        else:
            with db.write() as session:
                catalog.seed_defaults(session, cfg.data_dir / "images")
        self.cloud = Cloud(cfg, db=db, run_compute=run_compute, run_conductor=run_conductor)
        self.cloud.start()
        self.app = create_app(cfg, db=db, celery_app=self.cloud.app)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.api = Api(f"http://127.0.0.1:{self.server.server_port}")

    @property
    def db(self) -> Database:
        return self.cloud.db

    def driver(self, host: str):
        return self.cloud.compute.managers[host].driver

    def stop(self) -> None:
        if self.cloud is None:
            return
        self.server.shutdown()
        self.cloud.stop()
        self.cloud = None


def make_config(tmp_path: Path, **overrides: Any) -> config_mod.Config:
    values = {"data_dir": tmp_path / "data", "host_count": 3, "queue_prefix":
              f"t{uuid.uuid4().hex[:8]}", "compute_rpc_timeout": 10.0,
              "report_interval": 2.0,
              # The identity tests opt in to "keystone"; everything else speaks no-auth.
              "auth_strategy": "noauth"}
    values.update(overrides)
    return config_mod.load(None, **values)


@pytest.fixture
def cloud_factory(tmp_path: Path):
    """Start embedded clouds with given settings; all are stopped afterwards."""
    started: list[Running] = []

    def start(database: Database | None = None, run_compute: bool = True,
              run_conductor: bool = True, **overrides: Any) -> Running:
        running = Running(make_config(tmp_path, **overrides), database, run_compute,
                          run_conductor)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.stop()


@pytest.fixture
def cloud(cloud_factory) -> Running:
    return cloud_factory()
