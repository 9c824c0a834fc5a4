"""/image/v2/images/{id}/file: upload (streamed to disk, checked) and download.

An upload is streamed to a temporary file in the image directory, hashed on
the way (md5 for ``checksum``, sha512 for ``os_hash_value``), then inspected
with ``qemu-img info``: the format it detects must be the declared
``disk_format``, and a qcow2 may name no backing file and no external data
file (either would let a guest read a file of the host).  Only then is the
file moved to its place and the image made active.  Any failure removes the
file and puts the image back to ``queued``.  The app-wide body limit
(``max_body_bytes``) does not apply here; ``max_image_upload_bytes`` does.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from flask import request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from vmflow import exception
from vmflow.db import images as store
from webapp.api import common
from webapp.image.blueprint import TooLarge, UnsupportedMediaType, bp, image_dir
from webapp.image.images import _own, visible_image

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# qemu-img reads untrusted headers: bound its memory and CPU time, as Nova does
# (prlimit is util-linux's, present wherever qemu-img is packaged).
QEMU_IMG_LIMITS = ("prlimit", "--as=1073741824", "--cpu=30") if shutil.which("prlimit") else ()
QEMU_IMG_TIMEOUT = 60


class StoreFull(exception.VmflowError):
    code = 413
    kind = "overLimit"
    message = "The image store has no space left for this image."


class _Upload:
    """A temporary file being written, with its size and hashes."""

    def __init__(self, directory: Path, image_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f".upload-{image_id}-{uuid.uuid4().hex[:8]}.part"
        self.size = 0
        self.md5 = hashlib.md5()
        self.sha512 = hashlib.sha512()

    def receive(self, stream, limit: int) -> None:
        with open(self.path, "xb") as out:
            while True:
                try:
                    chunk = stream.read(CHUNK)
                except RequestEntityTooLarge:
                    raise TooLarge(limit=limit) from None
                if not chunk:
                    break
                self.size += len(chunk)
                if self.size > limit:
                    raise TooLarge(limit=limit)
                self.md5.update(chunk)
                self.sha512.update(chunk)
                try:
                    out.write(chunk)
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    raise StoreFull() from None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def inspect(path: Path, declared: str) -> dict[str, Any]:
    """What ``qemu-img info`` reads of the file; 400 unless it is a ``declared``
    image without a backing file or an external data file."""
    command = ["qemu-img", "info", "--output=json", str(path)]
    try:
        done = subprocess.run([*QEMU_IMG_LIMITS, *command], capture_output=True, text=True,
                              timeout=QEMU_IMG_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise exception.Invalid("The uploaded data could not be inspected in time.") from None
    if done.returncode:
        LOG.info("qemu-img info refused an upload: %s", done.stderr.strip())
        raise exception.Invalid(f"The uploaded data is not a {declared} image.")
    try:
        info = json.loads(done.stdout)
    except ValueError:
        raise exception.Invalid(f"The uploaded data is not a {declared} image.") from None
    if info.get("format") != declared:
        raise exception.Invalid(f"The uploaded data is not a {declared} image "
                                f"(it reads as {info.get('format')}).")
    if "backing-filename" in info or "full-backing-filename" in info:
        raise exception.Invalid("The uploaded image has a backing file, which is not "
                                "allowed: upload a self-contained image.")
    specific = (info.get("format-specific") or {}).get("data") or {}
    if "data-file" in specific:
        raise exception.Invalid("The uploaded image has an external data file, which is "
                                "not allowed: upload a self-contained image.")
    if specific.get("corrupt"):
        raise exception.Invalid("The uploaded image is marked corrupt.")
    return info


@bp.put("/v2/images/<image_id>/file")
def upload(image_id: str):
    cfg = common.config()
    # The app-wide body limit is for JSON; an image upload has its own.
    request.max_content_length = cfg.max_image_upload_bytes
    if request.mimetype != "application/octet-stream":
        raise UnsupportedMediaType(f"Unsupported Content-Type {request.mimetype or '(none)'}: "
                                   "send application/octet-stream.")
    with common.db().write() as session:
        row = visible_image(session, image_id)
        _own("image:upload_image", row)
        if (request.content_length or 0) > cfg.max_image_upload_bytes:
            raise TooLarge(limit=cfg.max_image_upload_bytes)
        store.begin_upload(session, row)
        declared = row.disk_format
    received = _Upload(image_dir(), image_id)
    try:
        received.receive(request.stream, cfg.max_image_upload_bytes)
        if received.size == 0:
            raise exception.Invalid("The upload is empty: send the image's data.")
        info = inspect(received.path, declared)
        target = image_dir() / image_id
        os.replace(received.path, target)
    except BaseException:
        received.discard()
        with common.db().write() as session:
            store.abort_upload(session, image_id)
        raise
    record = {"location": str(target), "size": received.size,
              "checksum": received.md5.hexdigest(), "os_hash_algo": "sha512",
              "os_hash_value": received.sha512.hexdigest(),
              "virtual_size": int(info.get("virtual-size") or 0)}
    with common.db().write() as session:
        finished = store.finish_upload(session, image_id, record)
    if not finished:  # deleted while it was being uploaded
        target.unlink(missing_ok=True)
        raise exception.Conflict(f"Image {image_id} was deleted during the upload.")
    LOG.info("image %s uploaded: %d bytes, %s", image_id, received.size, declared)
    return "", 204


@bp.get("/v2/images/<image_id>/file")
def download(image_id: str):
    common.authorize("image:download_image")
    with common.db().read() as session:
        row = visible_image(session, image_id)
        location, checksum, active = row.location, row.checksum, row.status == store.ACTIVE
    if not active or not location or not Path(location).is_file():
        return "", 204
    response = send_file(location, mimetype="application/octet-stream", conditional=False,
                         etag=False)
    if checksum:
        response.headers["Content-MD5"] = checksum
    return response
