"""Fixtures of the multi-process tests: a PostgreSQL database per test, the API
and compute hosts in the test process with conductors as separate processes
(``distributed``), and a Redis of the test's own that it can kill and restart
(``own_redis``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

from vmflow.db import migrate
from vmflow.db.session import Database

LEASE = "1.0"


@pytest.fixture
def pg_url(postgres_server):
    from tests.conftest import _fresh_postgres

    yield from _fresh_postgres(postgres_server)


class RedisServer:
    """A redis-server on a port of its own, without persistence (as a Redis
    that loses its queues on restart)."""

    def __init__(self, directory: Path) -> None:
        from tests.conftest import _free_port

        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("no redis-server to start; run `bash scripts/services.sh`")
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: everything queued or in flight is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()


class PostgresServer:
    """A PostgreSQL cluster of the test's own (initdb in a temporary directory,
    run as the postgres user when the tests run as root), which the test may
    restart: an immediate stop, as a crash, then a start."""

    def __init__(self, directory: Path) -> None:
        from tests.conftest import _free_port

        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            pytest.fail("no PostgreSQL server binaries; run `bash scripts/services.sh`")
        self.bin = found[-1].parent
        self.port = _free_port()
        self.directory = directory
        self.data = directory / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + list(command), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync")
        self.start()

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                  str(self.directory / "log"), "-o",
                  f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-m", mode, "stop")

    def restart(self) -> None:
        """Crash it (immediate stop: connections cut, no clean shutdown), start it."""
        self.stop("immediate")
        self.start()


@pytest.fixture
def own_postgres() -> PostgresServer:
    # Not under pytest's temporary directory: that one is private to root, and
    # the server runs as the postgres user.
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="vmflow-pg-")))
    server.create()
    yield server
    try:
        server.stop("immediate")
    except subprocess.CalledProcessError:
        pass
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path) -> RedisServer:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


def _distributed(cloud_factory, broker: str, pg_url: str, tmp_path: Path, **overrides):
    db = Database(pg_url)
    migrate.upgrade(db)
    overrides.setdefault("host_count", 2)
    running = cloud_factory(database=db, run_conductor=False, database_url=pg_url,
                            broker_url=broker, result_backend=broker,
                            flow_lease_seconds=float(LEASE), report_interval=1.0, **overrides)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMFLOW_")}
    env.update(VMFLOW_DATABASE_URL=pg_url, VMFLOW_BROKER_URL=broker,
               VMFLOW_RESULT_BACKEND=broker, VMFLOW_QUEUE_PREFIX=running.cfg.queue_prefix,
               VMFLOW_FLOW_LEASE_SECONDS=LEASE, VMFLOW_DATA_DIR=str(running.cfg.data_dir),
               VMFLOW_LOG_DIR=str(tmp_path / "logs"), VMFLOW_REPORT_INTERVAL="1",
               VMFLOW_SPAWN_POLL_ATTEMPTS="10", VMFLOW_MAX_FLOW_ATTEMPTS="2",
               VMFLOW_SHUTDOWN_TIMEOUT=str(running.cfg.shutdown_timeout),
               VMFLOW_COMPUTE_RPC_TIMEOUT=str(running.cfg.compute_rpc_timeout),
               VMFLOW_AUTH_STRATEGY=running.cfg.auth_strategy)
    procs: list[subprocess.Popen] = []

    def conductor(crash: str = "", **more_env: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "vmflow.cli", "conductor"],
                                env={**env, "VMFLOW_INJECT_CRASH": crash, **more_env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    def stop_conductors() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(20)

    running.conductor = conductor
    running.conductors = procs
    running.stop_conductors = stop_conductors
    yield running
    stop_conductors()
    db.dispose()


@pytest.fixture
def distributed(cloud_factory, redis_url, pg_url, tmp_path):
    """API and two compute hosts here; conductors are started by the test."""
    yield from _distributed(cloud_factory, redis_url, pg_url, tmp_path)


@pytest.fixture
def distributed_own_redis(cloud_factory, own_redis, pg_url, tmp_path):
    """As ``distributed``, over a Redis the test may kill and restart
    (``running.redis``)."""
    # Guests that ignore ACPI: a stop waits (up to shutdown_timeout) before it
    # powers them off, which leaves time to restart Redis in the middle.
    deaf = [{"name": f"compute-{i}", "acpi_shutdown": False} for i in (1, 2)]
    for running in _distributed(cloud_factory, own_redis.url, pg_url, tmp_path, hosts=deaf,
                                shutdown_timeout=4.0, compute_rpc_timeout=8.0):
        running.redis = own_redis
        yield running


@pytest.fixture
def distributed_own_postgres(cloud_factory, redis_url, own_postgres, tmp_path):
    """As ``distributed``, over a PostgreSQL the test may restart
    (``running.postgres``), with guests that ignore ACPI (stops take a while)."""
    deaf = [{"name": f"compute-{i}", "acpi_shutdown": False} for i in (1, 2)]
    for running in _distributed(cloud_factory, redis_url, own_postgres.url, tmp_path,
                                hosts=deaf, shutdown_timeout=4.0):
        running.postgres = own_postgres
        yield running


@pytest.fixture
def hosts_apart(cloud_factory, redis_url, pg_url, tmp_path):
    """API and conductor here; each compute host a `vmflow compute` process whose
    simulated hypervisor is a daemon of its own (virt/hostd.py)."""
    from virt import hostd

    db = Database(pg_url)
    migrate.upgrade(db)
    running = cloud_factory(database=db, run_compute=False, database_url=pg_url,
                            broker_url=redis_url, result_backend=redis_url,
                            compute_rpc_timeout=4.0, report_interval=1.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMFLOW_")}
    env.update(VMFLOW_BROKER_URL=redis_url, VMFLOW_RESULT_BACKEND=redis_url,
               VMFLOW_QUEUE_PREFIX=running.cfg.queue_prefix, VMFLOW_REPORT_INTERVAL="1",
               VMFLOW_LOG_DIR=str(tmp_path / "logs"), VMFLOW_AUTH_STRATEGY="noauth")
    data = tmp_path / "compute-data"
    procs: dict[str, subprocess.Popen] = {}

    def compute(host: str, crash: str = "") -> subprocess.Popen:
        procs[host] = subprocess.Popen(
            [sys.executable, "-m", "vmflow.cli", "compute", "--host", host, "--data-dir",
             str(data), "--vcpus", "8"], env={**env, "VMFLOW_INJECT_CRASH": crash},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return procs[host]

    def hypervisor(host: str):
        import libvirt

        return libvirt.open(hostd.uri(data / "hosts" / host))

    running.compute = compute
    running.hypervisor = hypervisor
    running.log_dir = tmp_path / "logs"
    yield running
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        proc.wait(20)
    for state_dir in (data / "hosts").glob("*"):
        hostd.stop(state_dir)
    db.dispose()
