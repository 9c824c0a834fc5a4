"""`vmflow up --distributed`: every service as a process of its own, for a
one-command multi-process cloud on one machine.

One conductor, `vmflow compute` processes for the simulated hosts (each host
with its own hypervisor daemon, see virt/hostd.py) and the API, over the local
Redis and PostgreSQL (from configuration, else the usual local addresses).  Up to
MAX_COMPUTE_PROCESSES hosts each get a process of their own; more hosts are
spread evenly over that many processes (a compute process serves several hosts,
each on its own queue).  When Redis or PostgreSQL is missing it says so in one
line, with how to start it.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import sqlalchemy

from virt import hostd
from vmflow import config as config_mod
from vmflow.cloud import prepare_database
from vmflow.identity import bootstrap

LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/vmflow"
START_SERVICES = "start them with `bash scripts/services.sh`"
# Each compute process costs about 65 MB and a Celery consumer of its own that
# polls Redis (about 1 % of a core while idle, on the 2-core machine of
# docs/benchmarks.md): a hundred of them for a hundred simulated hosts would
# weigh more than the hosts.
MAX_COMPUTE_PROCESSES = 10


def host_groups(hosts: list[config_mod.HostConfig], processes: int = MAX_COMPUTE_PROCESSES
                ) -> list[list[config_mod.HostConfig]]:
    """``hosts`` in at most ``processes`` contiguous groups whose sizes differ by at
    most one (one host per group when there are few)."""
    n, count = len(hosts), min(len(hosts), processes)
    return [hosts[i * n // count:(i + 1) * n // count] for i in range(count)]


def _urls(cfg: config_mod.Config) -> tuple[str, str, str]:
    """Broker, result backend and database URLs for a distributed cloud."""
    broker = cfg.broker_url if cfg.broker_url.startswith("redis") else LOCAL_REDIS
    backend = cfg.result_backend if cfg.result_backend.startswith("redis") else broker
    database = cfg.database_url if cfg.database_url.startswith("postgresql") else LOCAL_POSTGRES
    return broker, backend, database


def _problem(broker: str, database: str) -> str | None:
    """What is missing, in one line, or None."""
    try:
        redis.Redis.from_url(broker, socket_connect_timeout=2).ping()
    except redis.RedisError as err:
        return f"Redis does not answer at {broker} ({err}); {START_SERVICES}."
    server, name = database.rsplit("/", 1)
    admin = sqlalchemy.create_engine(
        f"{server}/postgres".replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s",
                                          (name,)).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sqlalchemy.exc.SQLAlchemyError as err:
        return (f"PostgreSQL does not answer at {server} "
                f"({str(err).splitlines()[0]}); {START_SERVICES}.")
    finally:
        admin.dispose()
    return None


def run(cfg: config_mod.Config, config_file: str | None) -> int:
    """Start every service as its own process; stop them all on SIGINT/SIGTERM."""
    broker, backend, database = _urls(cfg)
    problem = _problem(broker, database)
    if problem:
        print(f"vmflow up --distributed: {problem}", file=sys.stderr)
        return 1
    # Schema, seed data and the first accounts once, before the services start
    # (they would race).
    db = prepare_database(dataclasses.replace(cfg, database_url=database))
    try:
        accounts = bootstrap.on_start(db, cfg)
    finally:
        db.dispose()
    log_dir = cfg.log_dir or str(Path(cfg.data_dir) / "logs")
    env = dict(os.environ, VMFLOW_DATABASE_URL=database, VMFLOW_BROKER_URL=broker,
               VMFLOW_RESULT_BACKEND=backend, VMFLOW_DATA_DIR=str(cfg.data_dir),
               VMFLOW_LOG_DIR=log_dir, VMFLOW_QUEUE_PREFIX=cfg.queue_prefix,
               VMFLOW_API_PORT=str(cfg.api_port), VMFLOW_API_HOST=cfg.api_host)
    if config_file:
        env["VMFLOW_CONFIG"] = config_file
    vmflow = [sys.executable, "-m", "vmflow.cli"]
    hosts = cfg.compute_hosts()
    # A process's hosts share its --vcpus/--memory-mb/--disk-gb: group hosts of
    # the same capacity (generated hosts all have the same).
    groups = []
    for capacity in dict.fromkeys((h.vcpus, h.memory_mb, h.disk_gb) for h in hosts):
        same = [h for h in hosts if (h.vcpus, h.memory_mb, h.disk_gb) == capacity]
        groups += host_groups(same, max(1, MAX_COMPUTE_PROCESSES * len(same) // len(hosts)))
    commands = [vmflow + ["conductor"]] + [
        vmflow + ["compute", *[f"--host={h.name}" for h in group], "--vcpus",
                  str(group[0].vcpus), "--memory-mb", str(group[0].memory_mb), "--disk-gb",
                  str(group[0].disk_gb)] for group in groups
    ] + [vmflow + ["api"]]
    procs = [subprocess.Popen(command, env=env) for command in commands]
    stopping: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: stopping.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"vmflow is up (distributed): API at http://{cfg.api_host}:{cfg.api_port}/v2.1 "
          f"(dashboard at /dashboard/), "
          f"1 conductor, {len(groups)} compute processes for {len(hosts)} hosts; "
          f"logs in {log_dir}", flush=True)
    print(accounts, end="", flush=True)
    try:
        while not stopping:
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                print(f"vmflow up --distributed: {' '.join(dead[0].args[3:])} exited "
                      f"({dead[0].returncode}); stopping everything", file=sys.stderr)
                break
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for host in hosts:  # the demo's simulated hypervisors go with it
            hostd.stop(Path(cfg.data_dir) / "hosts" / host.name)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping else 1
