"""Engines and transactions for SQLite (embedded) and PostgreSQL.

``Database.write()`` opens a transaction that takes the write lock at once
(``BEGIN IMMEDIATE`` on SQLite, so a transaction never has to upgrade a read
lock and fail with "database is locked"); ``Database.read()`` opens a read-only
one that never blocks writers (WAL).  PostgreSQL needs neither trick.

SQLite has one writer at a time, and a connection that finds the lock taken
sleeps in SQLite's busy handler (1 ms, 2 ms, ... up to 100 ms per try) before it
looks again.  Under many threads that turns into convoys of sleeping writers, so
the writers of one process queue on a Python lock instead and SQLite's busy
handler only arbitrates between processes.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30000


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _json(value: object) -> str:
    """JSON for JSON columns; anything that is not JSON becomes its text."""
    return json.dumps(value, default=str)


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    path = url.split("sqlite:///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=20,
                           max_overflow=40, json_serializer=_json)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no cover - driver hook
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # pragma: no cover - driver hook
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """The two engines (write, read) of one database URL."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self.write_engine = _sqlite_engine(self.url, immediate=True)
            self.read_engine = _sqlite_engine(self.url, immediate=False)
        else:
            self.write_engine = create_engine(self.url, pool_size=20, max_overflow=40,
                                              pool_pre_ping=True, json_serializer=_json)
            self.read_engine = self.write_engine
        self._write_lock = threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session in a write transaction, committed on success."""
        with self._write_lock, self._write() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; nothing it does is committed.

        Closing (not rolling back) keeps loaded rows readable after the block.
        """
        with self._read() as session:
            yield session

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
