"""Flavors and images: lookups, and the defaults a fresh cloud starts with."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.db.models import Flavor, Image

# name, flavorid, vcpus, memory_mb, root_gb (Nova's classic defaults)
DEFAULT_FLAVORS = [
    ("m1.tiny", "1", 1, 512, 1),
    ("m1.small", "2", 1, 2048, 20),
    ("m1.medium", "3", 2, 4096, 40),
    ("m1.large", "4", 4, 8192, 80),
    ("m1.xlarge", "5", 8, 16384, 160),
]
DEFAULT_IMAGE_NAME = "blank-qcow2"


def flavor_dict(flavor: Flavor) -> dict[str, Any]:
    """The flavor as stored on an instance (what it was at boot)."""
    return {
        "id": flavor.id, "flavorid": flavor.flavorid, "name": flavor.name,
        "vcpus": flavor.vcpus, "memory_mb": flavor.memory_mb, "root_gb": flavor.root_gb,
        "ephemeral_gb": flavor.ephemeral_gb, "swap": flavor.swap,
        "extra_specs": dict(flavor.extra_specs or {}),
    }


def image_dict(image: Image) -> dict[str, Any]:
    """What a compute host needs to know of an image to cache and boot it."""
    return {
        "id": image.id, "name": image.name, "disk_format": image.disk_format,
        "size": image.size, "checksum": image.checksum, "location": image.location,
        "min_disk": image.min_disk, "min_ram": image.min_ram,
        "properties": dict(image.properties or {}),
    }


def get_flavor(session: Session, flavor_ref: str) -> Flavor:
    """A flavor by its public id (or, as the clients also try, its name)."""
    row = session.scalar(select(Flavor).where(Flavor.flavorid == str(flavor_ref)))
    if row is None:
        row = session.scalar(select(Flavor).where(Flavor.name == str(flavor_ref)))
    if row is None or row.disabled:
        raise exception.FlavorNotFound(flavor_id=flavor_ref)
    return row


def list_flavors(session: Session) -> list[Flavor]:
    return list(session.scalars(select(Flavor).where(Flavor.disabled.is_(False))
                                .order_by(Flavor.memory_mb, Flavor.flavorid)))


def check_usable(image: Image, *, root_gb: int | None = None,
                 memory_mb: int | None = None) -> None:
    """Invalid unless ``image`` is active and, when a flavor's sizes are given,
    fits them (a root disk of 0 GB means "the image's size", as in Nova)."""
    if image.status != "active":
        raise exception.Invalid(f"Image {image.id} is not active.")
    if root_gb and image.min_disk > root_gb:
        raise exception.Invalid(f"Flavor's disk is too small for requested image "
                                f"(needs {image.min_disk} GB).")
    if root_gb and (image.virtual_size or 0) > root_gb * 1024**3:
        raise exception.Invalid(f"Flavor's disk is too small for requested image "
                                f"(its virtual size is {image.virtual_size} bytes).")
    if memory_mb is not None and image.min_ram > memory_mb:
        raise exception.Invalid(f"Flavor's memory is too small for requested image "
                                f"(needs {image.min_ram} MB).")


def get_image(session: Session, image_id: str, project_id: str | None = None) -> Image:
    row = session.get(Image, image_id)
    if row is None or row.status == "deleted" or not _visible(row, project_id):
        raise exception.ImageNotFound(image_id=image_id)
    return row


def _visible(image: Image, project_id: str | None) -> bool:
    return project_id is None or image.visibility == "public" or image.owner == project_id


def list_images(session: Session, project_id: str | None = None,
                name: str | None = None) -> list[Image]:
    query = select(Image).where(Image.status != "deleted")
    if project_id is not None:
        query = query.where(or_(Image.visibility == "public", Image.owner == project_id))
    if name:
        query = query.where(Image.name == name)
    return list(session.scalars(query.order_by(Image.created_at, Image.id)))


def _make_blank_qcow2(path: Path, virtual_gb: int = 1) -> None:
    """A real, empty qcow2 disk (qemu-img), or a sparse raw file without it."""
    qemu_img = shutil.which("qemu-img")
    if qemu_img:
        subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), f"{virtual_gb}G"],
                       check=True)
    else:  # pragma: no cover - setup installs qemu-utils
        with open(path, "wb") as fh:
            fh.truncate(virtual_gb * 1024**3)


def seed_defaults(session: Session, image_dir: Path) -> None:
    """Create the default flavors and image if the cloud has none."""
    if session.scalar(select(Flavor.id).limit(1)) is None:
        for name, flavorid, vcpus, ram, disk in DEFAULT_FLAVORS:
            session.add(Flavor(name=name, flavorid=flavorid, vcpus=vcpus, memory_mb=ram,
                               root_gb=disk, ephemeral_gb=0, swap=0, extra_specs={}))
    if session.scalar(select(Image.id).limit(1)) is None:
        image_dir.mkdir(parents=True, exist_ok=True)
        image_id = str(uuid.uuid4())
        path = image_dir / image_id
        _make_blank_qcow2(path)
        data = path.read_bytes()
        session.add(Image(
            id=image_id, name=DEFAULT_IMAGE_NAME, disk_format="qcow2" if data[:4] == b"QFI\xfb"
            else "raw", size=len(data), checksum=hashlib.md5(data).hexdigest(),
            os_hash_algo="sha512", os_hash_value=hashlib.sha512(data).hexdigest(),
            virtual_size=1024**3, location=str(path), properties={"hw_architecture": "x86_64"},
        ))


def create_snapshot_image(session: Session, image_id: str, name: str, instance: Any,
                          metadata: dict[str, str]) -> Image:
    """A new image (queued, private to the instance's project) for a snapshot of
    ``instance``: the source image's properties, then the snapshot's own."""
    source = session.get(Image, instance.image_ref)
    properties = dict(source.properties or {}) if source is not None else {}
    properties.update(metadata)
    properties.update({"image_type": "snapshot", "instance_uuid": instance.uuid,
                       "base_image_ref": instance.image_ref, "owner_user_name": instance.user_id})
    image = Image(id=image_id, name=name, status="queued", visibility="private",
                  owner=instance.project_id, disk_format="qcow2", container_format="bare",
                  min_disk=int((instance.flavor or {}).get("root_gb", 0)),
                  min_ram=source.min_ram if source is not None else 0, properties=properties)
    session.add(image)
    return image


def activate_image(session: Session, image_id: str, upload: dict[str, Any]) -> None:
    """The image's file is in the store: record it and make the image usable."""
    image = session.get(Image, image_id)
    if image.status == "deleted":  # deleted through the image API while it was copied
        Path(upload["location"]).unlink(missing_ok=True)
        return
    image.location = upload["location"]
    image.size = int(upload["size"])
    image.checksum = upload["checksum"]
    image.disk_format = upload.get("disk_format", image.disk_format)
    if upload.get("os_hash_value"):
        image.os_hash_algo, image.os_hash_value = "sha512", upload["os_hash_value"]
    image.virtual_size = upload.get("virtual_size", image.virtual_size)
    image.status = "active"


def discard_image(session: Session, image_id: str) -> None:
    """Mark an image deleted (a failed snapshot's); absent is fine."""
    image = session.get(Image, image_id)
    if image is not None:
        image.status = "deleted"
