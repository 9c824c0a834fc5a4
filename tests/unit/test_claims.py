"""Claims are atomic under concurrency and released exactly once (SQLite and PostgreSQL)."""

from __future__ import annotations

import concurrent.futures
import uuid

from vmflow.db import claims
from vmflow.db import hosts as hosts_db
from vmflow.db.models import ComputeNode

TINY = claims.Resources(vcpus=1, memory_mb=512, disk_gb=1)


def _node(db, host="h1", vcpus=5):
    with db.write() as session:
        hosts_db.report_node(session, host, {
            "hypervisor_hostname": host, "hypervisor_type": "QEMU", "vcpus": vcpus,
            "memory_mb": 65536, "local_gb": 1000}, {"cpu_allocation_ratio": 1.0,
                                                   "ram_allocation_ratio": 1.0,
                                                   "disk_allocation_ratio": 1.0})


def _used(db, host="h1"):
    with db.read() as session:
        node = session.query(ComputeNode).filter_by(host=host).one()
        return node.vcpus_used, node.memory_mb_used, node.local_gb_used, node.running_vms


def test_concurrent_claims_never_overcommit(db):
    _node(db, vcpus=5)

    def attempt(_):
        with db.write() as session:
            return claims.claim(session, str(uuid.uuid4()), "h1", TINY)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        won = list(pool.map(attempt, range(30)))
    assert won.count(True) == 5
    assert _used(db) == (5, 2560, 5, 5)


def test_claim_is_idempotent_and_release_runs_once(db):
    _node(db)
    uid = str(uuid.uuid4())
    for _ in range(2):
        with db.write() as session:
            assert claims.claim(session, uid, "h1", TINY)
    assert _used(db) == (1, 512, 1, 1)
    with db.write() as session:
        assert claims.release(session, uid) == ["h1"]
    with db.write() as session:
        assert claims.release(session, uid) == []
    assert _used(db) == (0, 0, 0, 0)


def test_claim_that_does_not_fit_changes_nothing(db):
    _node(db, vcpus=1)
    with db.write() as session:
        assert not claims.claim(session, "a", "h1", claims.Resources(2, 512, 1))
    assert _used(db) == (0, 0, 0, 0)
