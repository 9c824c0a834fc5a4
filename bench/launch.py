"""Rally-style boot-and-delete benchmark of vmflow through its HTTP API.

Starts the embedded cloud (`python -m vmflow.cli up`) unless --url is given,
boots N servers with C concurrent workers (POST, then poll until ACTIVE),
deletes them again (DELETE, then poll until 404), and prints Rally-style tables.
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
READY_TIMEOUT = 120.0  # seconds for the started cloud to list every hypervisor


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


def start_cloud(args: argparse.Namespace) -> subprocess.Popen:
    """Run `vmflow up` as a subprocess and wait until all its hypervisors are listed."""
    log = Path(args.data_dir) / "vmflow-up.log"
    cmd = [sys.executable, "-m", "vmflow.cli", "up", "--hosts", str(args.hosts),
           "--data-dir", args.data_dir, "--port", str(args.port)]
    env = {**os.environ, "VMFLOW_LOG_LEVEL": "WARNING"}
    if not args.keep_quotas:  # like Rally's "quotas" context: -1 means unlimited
        env.update(VMFLOW_QUOTA_INSTANCES="-1", VMFLOW_QUOTA_CORES="-1", VMFLOW_QUOTA_RAM="-1")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            r = requests.get(f"{args.url}/v2.1/os-hypervisors", timeout=5)
            if r.ok and len(r.json()["hypervisors"]) >= args.hosts:
                return proc
        except requests.RequestException:
            pass
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
                   p90=percentile(values, 90), p95=percentile(values, 95), max=max(values),
                   avg=statistics.fmean(values))
    return row


def print_table(row: dict) -> None:
    """Print one Rally-style table."""
    cols = ["Action", "Min (sec)", "Median (sec)", "90%ile (sec)", "95%ile (sec)",
            "Max (sec)", "Avg (sec)", "Success", "Count"]
    nums = [f"{row[k]:.3f}" if k in row else "n/a"
            for k in ("min", "median", "p90", "p95", "max", "avg")]
    rate = f"{100 * row['success'] / row['count']:.1f}%" if row["count"] else "n/a"
    cells = [row["action"], *nums, rate, str(row["count"])]
    widths = [max(len(c), len(v)) for c, v in zip(cols, cells, strict=True)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    for text in (line, cols, line, cells, line):
        print(text if isinstance(text, str) else
              "| " + " | ".join(c.ljust(w) for c, w in zip(text, widths, strict=True)) + " |")


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
    p.add_argument("--hosts", type=int, default=100)
    p.add_argument("--flavor", default="m1.tiny", help="name or id")
    p.add_argument("--image", default="blank-qcow2", help="name")
    p.add_argument("--url", help="benchmark this running API (nothing is started)")
    p.add_argument("--data-dir", help="for the started cloud (default: a fresh temp dir)")
    p.add_argument("--port", type=int, help="for the started cloud (default: a free port)")
    p.add_argument("--timeout", type=float, default=120, help="per server, seconds")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--keep-quotas", action="store_true",
                   help="keep the started cloud's default quotas (10 instances per project)")
    args = p.parse_args()
    proc, start = None, not args.url
    if start:
        args.data_dir = args.data_dir or tempfile.mkdtemp(prefix="vmflow-bench-")
        Path(args.data_dir).mkdir(parents=True, exist_ok=True)
        args.port = args.port or free_port()
        args.url = f"http://127.0.0.1:{args.port}"
    api = args.url.rstrip("/") + "/v2.1"
    try:
        if start:
            t0 = time.monotonic()
            proc = start_cloud(args)
            print(f"cloud up in {time.monotonic() - t0:.1f} s (log: {args.data_dir}/vmflow-up.log)")
        images = requests.get(f"{api}/images", params={"name": args.image}, timeout=30).json()
        if not images["images"]:
            raise SystemExit(f"no image named {args.image!r}")
        image_id = images["images"][0]["id"]
        boots, boot_wall = run_phase(lambda i: boot(api, i, args.flavor, image_id, args.timeout),
                                     list(range(args.servers)), args.concurrency)
        deletes, delete_wall = run_phase(lambda sid: delete(api, sid, args.timeout),
                                         [s.server_id for s in boots if s.ok], args.concurrency)
        for s in boots:  # best-effort cleanup of servers that did not boot (not measured)
            if s.server_id and not s.ok:
                session().delete(f"{api}/servers/{s.server_id}", timeout=30)
    finally:
        if proc is not None:
            stop_cloud(proc)

    print("\nMachine:", ", ".join(f"{k}={v}" for k, v in machine().items()))
    print("Parameters:", ", ".join(f"{k}={getattr(args, k)}" for k in (
        "servers", "concurrency", "hosts", "flavor", "image", "url", "timeout", "keep_quotas")))
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
    errors = [s.error for s in boots + deletes if not s.ok]
    for err in errors[:10]:
        print("FAILED:", err)
    if len(errors) > 10:
        print(f"... and {len(errors) - 10} more failures")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "parameters": vars(args),
                                               "results": rows, "errors": errors}, indent=2))
    return 0 if boots and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
