"""Rally-style boot-and-delete benchmark of vmflow through its HTTP API.

Starts a cloud unless --url is given, boots N servers with C concurrent
workers (POST, then poll until ACTIVE), deletes them again (DELETE, then poll
until 404), and prints Rally-style tables, the CPU each kind of process used
during each phase, and one JSON line with the figures.

* embedded (default): `python -m vmflow.cli up --hosts H` (one process, SQLite);
* --distributed: one `vmflow api`, --conductors `vmflow conductor` and
  --compute-processes `vmflow compute` processes serving the H hosts between
  them, over the local Redis and PostgreSQL, with a database and a queue prefix
  of their own that are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

# Status polls are 10 ms apart for the first half second, then back off to
# 250 ms: fast boots are timed to 10 ms and the polling of slow ones does not
# become the load (Rally polls every second; 20 workers polling every 20 ms
# would be 1,000 GETs a second).
POLL_FIRST, POLL_FINE_FOR, POLL_MAX = 0.01, 0.5, 0.25
READY_TIMEOUT = 180.0  # seconds for the started cloud to list every hypervisor
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Sample:
    """One iteration: wall duration, outcome, POST latency and server id (boots only)."""

    duration: float
    ok: bool
    error: str = ""
    accept: float | None = None
    server_id: str = ""


_local = threading.local()


def session() -> requests.Session:
    """One requests.Session per worker thread."""
    if not hasattr(_local, "s"):
        _local.s = requests.Session()
    return _local.s


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_env(args: argparse.Namespace) -> dict[str, str]:
    """The started services' environment: this one, quieter, quotas lifted."""
    # The benchmark measures the compute path, not authentication: no-auth mode.
    env = {**os.environ, "VMFLOW_LOG_LEVEL": "WARNING", "VMFLOW_AUTH_STRATEGY": "noauth"}
    if not args.keep_quotas:  # like Rally's "quotas" context: -1 means unlimited
        env.update(VMFLOW_QUOTA_INSTANCES="-1", VMFLOW_QUOTA_CORES="-1", VMFLOW_QUOTA_RAM="-1")
    return env


def hypervisor_count(args: argparse.Namespace) -> int:
    try:
        r = requests.get(f"{args.url}/v2.1/os-hypervisors", timeout=5)
        return len(r.json()["hypervisors"]) if r.ok else 0
    except (requests.RequestException, ValueError):
        return 0


def start_cloud(args: argparse.Namespace) -> subprocess.Popen:
    """Run `vmflow up` as a subprocess and wait until all its hypervisors are listed."""
    log = Path(args.data_dir) / "vmflow-up.log"
    cmd = [sys.executable, "-m", "vmflow.cli", "up", "--hosts", str(args.hosts),
           "--data-dir", args.data_dir, "--port", str(args.port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=bench_env(args))
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if hypervisor_count(args) >= args.hosts:
            return proc
        time.sleep(0.5)
    stop_cloud(proc)
    tail = "\n  ".join(log.read_text(errors="replace").splitlines()[-5:])
    raise SystemExit(f"vmflow up not ready (exit code {proc.returncode}); {log} ends:\n  {tail}")


def stop_cloud(proc: subprocess.Popen) -> None:
    """SIGTERM the cloud, SIGKILL it if it is still there after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spread(hosts: list[str], processes: int) -> list[list[str]]:
    """``hosts`` in ``processes`` contiguous groups whose sizes differ by at most one."""
    n = len(hosts)
    return [hosts[i * n // processes:(i + 1) * n // processes] for i in range(processes)]


@dataclass
class Service:
    role: str  # "api", "conductor" or "compute"
    name: str
    proc: subprocess.Popen
    log: Path


class DistributedCloud:
    """One `vmflow api`, some `vmflow conductor` and `vmflow compute` processes over
    the local Redis and PostgreSQL.  A database and a queue prefix of its own, so
    nothing of an earlier run interferes; :meth:`stop` removes both."""

    def __init__(self, args: argparse.Namespace) -> None:
        token = uuid.uuid4().hex[:10]
        self.args = args
        self.prefix = f"bench{token}"
        self.database = f"vmflow_bench_{token}"
        self.database_url = f"{args.postgres_url.rsplit('/', 1)[0]}/{self.database}"
        self.hosts = [f"compute-{i}" for i in range(1, args.hosts + 1)]
        self.groups = spread(self.hosts, args.compute_processes)
        self.services: list[Service] = []
        self.log_dir = Path(args.data_dir) / "logs"
        self._created = False

    def _admin(self, sql: str) -> None:
        import psycopg  # the project's PostgreSQL driver

        with psycopg.connect(self.args.postgres_url, autocommit=True, connect_timeout=10) as c:
            c.execute(sql)

    def _spawn(self, role: str, name: str, argv: list[str], env: dict[str, str]) -> Service:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "vmflow.cli", *argv], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        service = Service(role, name, proc, log)
        self.services.append(service)
        return service

    def _check_alive(self) -> None:
        for s in self.services:
            if s.proc.poll() is not None:
                tail = "\n  ".join(s.log.read_text(errors="replace").splitlines()[-5:])
                raise SystemExit(f"{s.name} exited ({s.proc.returncode}); {s.log} ends:\n  {tail}")

    def start(self) -> None:
        args = self.args
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._admin(f'CREATE DATABASE "{self.database}"')
        self._created = True
        env = {k: v for k, v in bench_env(args).items()
               if k not in ("VMFLOW_DATABASE_URL", "VMFLOW_LOG_DIR")}
        env.update(VMFLOW_BROKER_URL=args.redis_url, VMFLOW_RESULT_BACKEND=args.redis_url,
                   VMFLOW_QUEUE_PREFIX=self.prefix, VMFLOW_DATA_DIR=args.data_dir,
                   VMFLOW_SIMULATED_HYPERVISOR=args.hypervisor)
        with_db = {**env, "VMFLOW_DATABASE_URL": self.database_url}
        deadline = time.monotonic() + READY_TIMEOUT
        # The API first: it migrates and seeds the new database, which the
        # conductors would otherwise race for.
        self._spawn("api", "vmflow-api", ["api", "--port", str(args.port)], with_db)
        while not self._api_answers():
            self._check_alive()
            if time.monotonic() > deadline:
                raise SystemExit("the API did not answer")
            time.sleep(0.2)
        for i in range(1, args.conductors + 1):
            self._spawn("conductor", f"vmflow-conductor-{i}", ["conductor"], with_db)
        for group in self.groups:  # compute processes get no database settings
            argv = ["compute"] + [f"--host={h}" for h in group]
            self._spawn("compute", f"vmflow-compute-{group[0]}", argv, env)
        while not (all(b"running" in s.log.read_bytes() for s in self.services[1:])
                   and hypervisor_count(args) >= args.hosts):
            self._check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"not every service was running after {READY_TIMEOUT:.0f} s;"
                                 f" logs in {self.log_dir}")
            time.sleep(0.5)

    def _api_answers(self) -> bool:
        try:
            return requests.get(f"{self.args.url}/v2.1/flavors", timeout=5).ok
        except requests.RequestException:
            return False

    def pids(self) -> dict[str, list[int]]:
        """The processes to account CPU to, by kind."""
        groups: dict[str, list[int]] = {}
        for s in self.services:
            groups.setdefault(f"vmflow {s.role}", []).append(s.proc.pid)
        return groups

    def stop(self) -> None:
        for s in self.services:
            if s.proc.poll() is None:
                s.proc.terminate()
        for s in self.services:
            try:
                s.proc.wait(20)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait()
        if self.args.hypervisor == "daemon":  # the hosts' libvirtds outlive their workers
            from virt import hostd

            with ThreadPoolExecutor(max_workers=16) as pool:  # about 1 s each
                list(pool.map(hostd.stop, [Path(self.args.data_dir) / "hosts" / host
                                           for host in self.hosts]))
        if self._created:
            self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        import redis

        client = redis.Redis.from_url(self.args.redis_url)
        for pattern in (f"{self.prefix}.*", f"_kombu.binding.{self.prefix}.*",
                        f"_kombu.binding_permanent.{self.prefix}.*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        client.close()


def describe(r: requests.Response) -> str:
    """An HTTP failure with its request id, for the report."""
    rid = r.headers.get("X-OpenStack-Request-Id", "-")
    return f"HTTP {r.status_code} [request {rid}]: {r.text[:300].strip()}"


def wait_for(api: str, sid: str, t0: float, timeout: float, gone: bool) -> tuple[bool, str]:
    """Poll GET /servers/<sid> until ACTIVE (or 404 if gone); returns (ok, error)."""
    pause = POLL_FIRST
    while time.monotonic() - t0 < timeout:
        r = session().get(f"{api}/servers/{sid}", timeout=timeout)
        if gone and r.status_code == 404:
            return True, ""
        if r.status_code != 200:
            return False, f"GET {sid} {describe(r)}"
        server = r.json()["server"]
        if server["status"] == "ACTIVE" and not gone:
            return True, ""
        if server["status"] == "ERROR":
            return False, f"{sid} ERROR: {server.get('fault', {}).get('message', '')}"
        time.sleep(pause)
        if time.monotonic() - t0 > POLL_FINE_FOR:
            pause = min(pause * 1.5, POLL_MAX)
    return False, f"{sid} not {'gone' if gone else 'ACTIVE'} after {timeout:.0f} s"


def boot(api: str, i: int, flavor: str, image_id: str, timeout: float) -> Sample:
    """POST a server and poll until ACTIVE (success), ERROR or timeout (failure)."""
    body = {"server": {"name": f"bench-{i}", "flavorRef": flavor, "imageRef": image_id}}
    t0 = time.monotonic()
    try:
        r = session().post(f"{api}/servers", json=body, timeout=timeout)
        accept = time.monotonic() - t0
        if r.status_code != 202:
            return Sample(accept, False, f"POST {describe(r)}")
        sid = r.json()["server"]["id"]
        ok, error = wait_for(api, sid, t0, timeout, gone=False)
    except requests.RequestException as err:
        return Sample(time.monotonic() - t0, False, f"bench-{i}: {err}")
    return Sample(time.monotonic() - t0, ok, error, accept, sid)


def delete(api: str, sid: str, timeout: float) -> Sample:
    """DELETE a server and poll until its GET answers 404."""
    t0 = time.monotonic()
    try:
        r = session().delete(f"{api}/servers/{sid}", timeout=timeout)
        if r.status_code not in (202, 204):
            return Sample(time.monotonic() - t0, False, f"DELETE {sid} {describe(r)}")
        ok, error = wait_for(api, sid, t0, timeout, gone=True)
    except requests.RequestException as err:
        return Sample(time.monotonic() - t0, False, f"DELETE {sid}: {err}")
    return Sample(time.monotonic() - t0, ok, error)


def run_phase(fn: Callable, items: list, concurrency: int) -> tuple[list[Sample], float]:
    """Run fn over items with `concurrency` threads; returns samples and wall time."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        samples = list(pool.map(fn, items))
    return samples, time.monotonic() - t0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of values <= it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(p/100 * n), at least 1
    return ordered[int(rank) - 1]


def stats(action: str, values: list[float], success: int, count: int) -> dict:
    """Rally's row for one action (figures over the successful iterations)."""
    row = {"action": action, "success": success, "count": count}
    if values:
        row.update(min=min(values), median=statistics.median(values),
                   p90=percentile(values, 90), p95=percentile(values, 95),
                   p99=percentile(values, 99), max=max(values), avg=statistics.fmean(values))
    return row


def print_table(row: dict) -> None:
    """Print one Rally-style table."""
    cols = ["Action", "Min (sec)", "Median (sec)", "90%ile (sec)", "95%ile (sec)",
            "99%ile (sec)", "Max (sec)", "Avg (sec)", "Success", "Count"]
    nums = [f"{row[k]:.3f}" if k in row else "n/a"
            for k in ("min", "median", "p90", "p95", "p99", "max", "avg")]
    rate = f"{100 * row['success'] / row['count']:.1f}%" if row["count"] else "n/a"
    cells = [row["action"], *nums, rate, str(row["count"])]
    widths = [max(len(c), len(v)) for c, v in zip(cols, cells, strict=True)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    for text in (line, cols, line, cells, line):
        print(text if isinstance(text, str) else
              "| " + " | ".join(c.ljust(w) for c, w in zip(text, widths, strict=True)) + " |")


# -- where the CPU goes ---------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, command line)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        table[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline.strip())
    return table


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])  # guest time is already in user
    return total - values[3] - values[4], total  # minus idle and iowait


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


class CpuMeter:
    """CPU used by each kind of process between two snapshots.

    ``groups`` names the benchmark's own processes; the hosts' hypervisor
    daemons (found by their state directory), the PostgreSQL backends of the
    run's database and the Redis server are found by command line.  Redis and
    the machine total include whatever else runs on the machine."""

    def __init__(self, groups: dict[str, list[int]], data_dir: str | None = None,
                 database: str | None = None, redis: bool = False) -> None:
        self.groups = {**groups, "benchmark client": [os.getpid()]}
        self.data_dir, self.database, self.redis = data_dir, database, redis

    def _members(self) -> dict[str, list[int]]:
        groups = {k: list(v) for k, v in self.groups.items()}
        if not (self.data_dir or self.database or self.redis):
            return groups
        table = _proc_table()
        daemons = {pid for pid, (_, cmd) in table.items()
                   if self.data_dir and "virt.hostd" in cmd and self.data_dir in cmd}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = list(daemons)
        while todo:  # their libvirtds (and runuser, when root)
            for child in children.get(todo.pop(), []):
                if child not in daemons:
                    daemons.add(child)
                    todo.append(child)
        if daemons:
            groups["hypervisor daemons"] = sorted(daemons)
        if self.database:
            groups["postgres (this database)"] = [
                pid for pid, (_, cmd) in table.items()
                if cmd.startswith("postgres:") and f" {self.database} " in cmd]
        if self.redis:
            groups["redis-server (shared)"] = [pid for pid, (_, cmd) in table.items()
                                               if "redis-server" in cmd.split(" ", 1)[0]]
        return groups

    def snapshot(self) -> dict:
        return {"t": time.monotonic(), "machine": _machine_jiffies(),
                "cpu": {g: {pid: _cpu_seconds(pid) for pid in pids}
                        for g, pids in self._members().items()}}

    @staticmethod
    def usage(before: dict, after: dict) -> dict:
        """Per kind: processes, CPU seconds, share of one core, busiest process's share."""
        wall = after["t"] - before["t"]
        rows = {}
        for group, now in after["cpu"].items():
            then = before["cpu"].get(group, {})
            deltas = [cpu - (then.get(pid) or 0.0) for pid, cpu in now.items()
                      if cpu is not None]
            if deltas:
                rows[group] = {"processes": len(deltas), "cpu_s": round(sum(deltas), 2),
                               "core_pct": round(100 * sum(deltas) / wall, 1),
                               "busiest_pct": round(100 * max(deltas) / wall, 1)}
        busy = after["machine"][0] - before["machine"][0]
        total = after["machine"][1] - before["machine"][1]
        return {"wall_s": round(wall, 2), "machine_busy_pct": round(100 * busy / total, 1)
                if total else 0.0, "nproc": os.cpu_count(), "processes": rows}


def print_cpu(phase: str, usage: dict) -> None:
    print(f"\nCPU during the {phase} phase ({usage['wall_s']:.1f} s; the machine's "
          f"{usage['nproc']} cores {usage['machine_busy_pct']:.0f} % busy, everything "
          f"included):")
    width = max(len(g) for g in usage["processes"])
    for group, row in sorted(usage["processes"].items(), key=lambda kv: -kv[1]["cpu_s"]):
        busiest = (f", busiest {row['busiest_pct']:.0f} %" if row["processes"] > 1 else "")
        print(f"  {group:{width}}  {row['processes']:3} proc  {row['cpu_s']:7.1f} CPU-s  "
              f"{row['core_pct']:5.0f} % of a core{busiest}")


def machine() -> dict:
    """CPU count and model, memory and Python version of this machine."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")),
                 platform.processor() or "unknown")
    meminfo = Path("/proc/meminfo").read_text().split()
    mem_gb = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024 / 1024
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {"nproc": nproc, "cpu": model, "memory_gb": round(mem_gb, 1),
            "python": platform.python_version()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--servers", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--hosts", type=int, default=100, help="simulated compute hosts")
    p.add_argument("--flavor", default="m1.tiny", help="name or id")
    p.add_argument("--image", default="blank-qcow2", help="name")
    p.add_argument("--url", help="benchmark this running API (nothing is started)")
    p.add_argument("--data-dir", help="for the started cloud (default: a fresh temp dir)")
    p.add_argument("--port", type=int, help="for the started cloud (default: a free port)")
    p.add_argument("--timeout", type=float, default=120, help="per server, seconds")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--keep-quotas", action="store_true",
                   help="keep the started cloud's default quotas (10 instances per project)")
    d = p.add_argument_group("distributed mode")
    d.add_argument("--distributed", action="store_true",
                   help="API, conductors and compute workers as separate processes over "
                        "Redis and PostgreSQL, instead of `vmflow up`")
    d.add_argument("--conductors", type=int, default=1, help="conductor processes")
    d.add_argument("--compute-processes", dest="compute_processes", type=int, default=10,
                   help="compute processes; the hosts are spread evenly over them")
    d.add_argument("--hypervisor", choices=("in-process", "daemon"), default="in-process",
                   help="each simulated host's hypervisor: libvirt's test driver inside its "
                        "compute process, or a libvirtd of its own (see docs/benchmarks.md)")
    d.add_argument("--postgres-url", default=POSTGRES_URL,
                   help="a database on the server to create and drop the run's database from")
    d.add_argument("--redis-url", default=REDIS_URL, help="broker and result backend")
    args = p.parse_args()
    if args.distributed and not 1 <= args.compute_processes <= args.hosts:
        p.error("--compute-processes must be between 1 and --hosts")
    if args.distributed and args.url:
        p.error("--distributed starts a cloud; --url benchmarks a running one")
    mode = "distributed" if args.distributed else "url" if args.url else "embedded"
    date = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_at_start = load_average()
    proc, cloud, start = None, None, not args.url
    if start:
        args.data_dir = args.data_dir or tempfile.mkdtemp(prefix="vmflow-bench-")
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
        args.port = args.port or free_port()
        args.url = f"http://127.0.0.1:{args.port}"
    api = args.url.rstrip("/") + "/v2.1"
    try:
        meter = CpuMeter({})
        if start:
            t0 = time.monotonic()
            if args.distributed:
                cloud = DistributedCloud(args)
                cloud.start()
                meter = CpuMeter(cloud.pids(), data_dir=str(Path(args.data_dir).resolve()),
                                 database=cloud.database, redis=True)
                print(f"cloud up in {time.monotonic() - t0:.1f} s: 1 API, {args.conductors} "
                      f"conductor(s), {args.compute_processes} compute processes for "
                      f"{args.hosts} hosts ({args.hypervisor} hypervisors); database "
                      f"{cloud.database}, queue prefix {cloud.prefix}, logs in {cloud.log_dir}")
            else:
                proc = start_cloud(args)
                meter = CpuMeter({"vmflow up": [proc.pid]})
                print(f"cloud up in {time.monotonic() - t0:.1f} s "
                      f"(log: {args.data_dir}/vmflow-up.log)")
        images = requests.get(f"{api}/images", params={"name": args.image}, timeout=30).json()
        if not images["images"]:
            raise SystemExit(f"no image named {args.image!r}")
        image_id = images["images"][0]["id"]
        load_at_boot = load_average()
        before = meter.snapshot()
        boots, boot_wall = run_phase(lambda i: boot(api, i, args.flavor, image_id, args.timeout),
                                     list(range(args.servers)), args.concurrency)
        between = meter.snapshot()
        deletes, delete_wall = run_phase(lambda sid: delete(api, sid, args.timeout),
                                         [s.server_id for s in boots if s.ok], args.concurrency)
        after = meter.snapshot()
        cpu = {"boot": CpuMeter.usage(before, between), "delete": CpuMeter.usage(between, after)}
        for s in boots:  # best-effort cleanup of servers that did not boot (not measured)
            if s.server_id and not s.ok:
                session().delete(f"{api}/servers/{s.server_id}", timeout=30)
    finally:
        if proc is not None:
            stop_cloud(proc)
        if cloud is not None:
            cloud.stop()

    info = machine()
    print(f"\nDate: {date}; mode: {mode}")
    print("Machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    keys = ["servers", "concurrency", "hosts", "flavor", "image", "url", "timeout",
            "keep_quotas"]
    if args.distributed:
        keys += ["conductors", "compute_processes", "hypervisor"]
    print("Parameters:", ", ".join(f"{k}={getattr(args, k)}" for k in keys))
    print("Load average (1, 5, 15 min): "
          f"{' '.join(f'{v:.2f}' for v in load_at_start)} before the cloud started, "
          f"{' '.join(f'{v:.2f}' for v in load_at_boot)} before the boots")
    accepted = [s.accept for s in boots if s.accept is not None and s.server_id]
    rows = [stats("vmflow.boot_server (POST->ACTIVE)", [s.duration for s in boots if s.ok],
                  sum(s.ok for s in boots), len(boots)),
            stats("vmflow.api_accept (POST)", accepted, len(accepted), len(boots)),
            stats("vmflow.delete_server (DELETE->404)", [s.duration for s in deletes if s.ok],
                  sum(s.ok for s in deletes), len(deletes))]
    rows[0]["wall"], rows[2]["wall"] = boot_wall, delete_wall
    for row in rows:
        print()
        print_table(row)
        if "wall" in row:
            row["ips"] = row["success"] / row["wall"] if row["wall"] else 0.0
            print(f"  phase wall time {row['wall']:.2f} s, {row['ips']:.2f} iterations/s")
    for phase, usage in cpu.items():
        print_cpu(phase, usage)
    errors = [s.error for s in boots + deletes if not s.ok]
    for err in errors[:10]:
        print("FAILED:", err)
    if len(errors) > 10:
        print(f"... and {len(errors) - 10} more failures")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": date, "mode": mode, "machine": info, "parameters": vars(args),
            "load_average": {"start": load_at_start, "boot": load_at_boot},
            "results": rows, "cpu": cpu, "errors": errors}, indent=2))
    # The figures on one line, for collecting runs.
    line = {"date": date, "mode": mode, **{k: getattr(args, k) for k in keys[:3]}}
    if args.distributed:
        line.update({k: getattr(args, k) for k in keys[-3:]})
    for name, row in zip(("boot", "accept", "delete"), rows, strict=True):
        line.update({f"{name}_{k}": round(row[v], 4) for k, v in
                     (("p50", "median"), ("p95", "p95"), ("p99", "p99")) if v in row})
        line[f"{name}_success"] = f"{row['success']}/{row['count']}"
    line.update(boots_per_s=round(rows[0]["ips"], 2), deletes_per_s=round(rows[2]["ips"], 2),
                load_1min=load_at_boot[0], nproc=info["nproc"], python=info["python"],
                cpu_core_pct={phase: {g: r["core_pct"] for g, r in u["processes"].items()}
                              for phase, u in cpu.items()})
    print("\n" + json.dumps(line))
    return 0 if boots and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
