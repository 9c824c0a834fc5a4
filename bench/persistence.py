"""Cost of persisting one flow run: TaskFlow's bundled SQLAlchemy backend vs vmflow's.

Runs the same 8-task linear flow (tasks that do nothing) N times with each
persistence backend on a fresh SQLite file, all runs sharing one logbook for the
bundled backend (as a service would), and prints per-run wall time.

    python bench/persistence.py [--runs 200] [--tasks 8]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from taskflow import engines, task
from taskflow.patterns import linear_flow
from taskflow.persistence import backends, models

from vmflow.db import migrate
from vmflow.db.flowstore import FlowStore
from vmflow.db.session import Database


class Noop(task.Task):
    def execute(self) -> int:
        return 1


def make_flow(tasks: int) -> linear_flow.Flow:
    return linear_flow.Flow("bench").add(*(Noop(f"step-{i}", provides=f"r{i}")
                                           for i in range(tasks)))


def run_bundled(path: Path, runs: int, tasks: int) -> list[float]:
    backend = backends.fetch({"connection": f"sqlite:///{path}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    book = models.LogBook("bench")
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        detail = models.FlowDetail("bench", uuid=str(uuid.uuid4()))
        book.add(detail)
        with contextlib.closing(backend.get_connection()) as conn:
            conn.save_logbook(book)
        engines.load(make_flow(tasks), flow_detail=detail, book=book, backend=backend,
                     engine="serial").run()
        times.append(time.perf_counter() - t0)
    return times


def run_flowstore(path: Path, runs: int, tasks: int) -> list[float]:
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    store = FlowStore(db)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        detail = store.create_run(name="bench", operation="bench", request_id="req-bench",
                                  instance_uuid=None, params={})
        engines.load(make_flow(tasks), flow_detail=detail, backend=store, engine="serial").run()
        times.append(time.perf_counter() - t0)
    return times


def run_memory(runs: int, tasks: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engines.load(make_flow(tasks), engine="serial").run()
        times.append(time.perf_counter() - t0)
    return times


def report(name: str, times: list[float]) -> None:
    ordered = sorted(times)
    first, last = times[: len(times) // 10], times[-(len(times) // 10):]
    print(f"{name:34} median {statistics.median(ordered) * 1000:7.1f} ms   "
          f"p90 {ordered[int(len(ordered) * 0.9)] * 1000:7.1f} ms   "
          f"first 10% {statistics.mean(first) * 1000:7.1f} ms   "
          f"last 10% {statistics.mean(last) * 1000:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report("engine only (in-memory storage)", run_memory(args.runs, args.tasks))
        report("vmflow FlowStore (SQLite)", run_flowstore(Path(tmp) / "v.db", args.runs,
                                                            args.tasks))
        report("TaskFlow SQLAlchemy backend (SQLite)", run_bundled(Path(tmp) / "t.db",
                                                                  args.runs, args.tasks))


if __name__ == "__main__":
    main()
