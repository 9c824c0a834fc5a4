"""The image records' status changes (vmflow/db/images.py) on SQLite and PostgreSQL:
one upload at a time, a delete during an upload wins, a failed upload goes back
to queued; sizes above 2 GiB fit; a snapshot deleted while it was copied stays
deleted."""

from __future__ import annotations

import uuid

import pytest

from vmflow import exception
from vmflow.db import catalog
from vmflow.db import images as store
from vmflow.db.models import Image


def _queued(db, **fields) -> str:
    image_id = str(uuid.uuid4())
    with db.write() as session:
        store.create(session, id=image_id, name="img", disk_format="raw",
                     container_format="bare", visibility="private", owner="demo",
                     properties={}, **fields)
    return image_id


def _status(db, image_id: str) -> str:
    with db.read() as session:
        return session.get(Image, image_id).status


def test_one_upload_at_a_time_and_a_failed_one_goes_back_to_queued(db):
    image_id = _queued(db)
    with db.write() as session:
        store.begin_upload(session, session.get(Image, image_id))
    with pytest.raises(exception.Conflict, match="only be uploaded to a queued image"):
        with db.write() as session:
            store.begin_upload(session, session.get(Image, image_id))
    with db.write() as session:
        store.abort_upload(session, image_id)
    assert _status(db, image_id) == "queued"


def test_a_delete_during_an_upload_wins(db):
    image_id = _queued(db)
    with db.write() as session:
        store.begin_upload(session, session.get(Image, image_id))
    with db.write() as session:
        store.mark_deleted(session, session.get(Image, image_id))
    record = {"location": "/nowhere", "size": 5 * 1024**3, "checksum": "0" * 32,
              "os_hash_algo": "sha512", "os_hash_value": "0" * 128, "virtual_size": 1}
    with db.write() as session:
        assert store.finish_upload(session, image_id, record) is False
    assert _status(db, image_id) == "deleted"
    with db.read() as session, pytest.raises(exception.ImageNotFound):
        store.get(session, image_id, None)


def test_sizes_above_2_gib_are_kept(db):
    image_id = _queued(db)
    with db.write() as session:
        store.begin_upload(session, session.get(Image, image_id))
        assert store.finish_upload(session, image_id, {
            "location": "/x", "size": 5 * 1024**3, "checksum": "0" * 32,
            "os_hash_algo": "sha512", "os_hash_value": "0" * 128,
            "virtual_size": 6 * 1024**3})
    with db.read() as session:
        row = store.get(session, image_id, "demo")
        assert (row.status, row.size, row.virtual_size) == ("active", 5 * 1024**3, 6 * 1024**3)
    with db.read() as session, pytest.raises(exception.ImageNotFound):
        store.get(session, image_id, "other")  # private: another project does not see it


def test_a_snapshot_deleted_while_it_was_copied_stays_deleted(db, tmp_path):
    image_id = _queued(db)
    copied = tmp_path / image_id
    copied.write_bytes(b"QFI\xfb")
    with db.write() as session:
        store.mark_deleted(session, session.get(Image, image_id))
    with db.write() as session:
        catalog.activate_image(session, image_id, {"location": str(copied), "size": 4,
                                                   "checksum": "0" * 32})
    assert _status(db, image_id) == "deleted" and not copied.exists()
