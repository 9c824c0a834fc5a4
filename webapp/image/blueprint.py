"""The image service's blueprint and its policy rules (Glance's names)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint

from vmflow import exception, policy
from webapp.api import common

bp = Blueprint("image", __name__)

policy.register({
    "image:get_images": policy.PROJECT_READER_OR_ADMIN,
    "image:get_image": policy.PROJECT_READER_OR_ADMIN,
    "image:download_image": policy.PROJECT_READER_OR_ADMIN,
    "image:add_image": policy.PROJECT_MEMBER_OR_ADMIN,
    "image:upload_image": policy.PROJECT_MEMBER_OR_ADMIN,
    "image:modify_image": policy.PROJECT_MEMBER_OR_ADMIN,
    "image:delete_image": policy.PROJECT_MEMBER_OR_ADMIN,
    "image:publicize_image": policy.ADMIN,
})


def image_dir() -> Path:
    """Where image files live (compute hosts read them by path)."""
    return common.config().data_dir / "images"


class UnsupportedMediaType(exception.VmflowError):
    code = 415
    kind = "badMediaType"
    message = "Unsupported Content-Type."


class TooLarge(exception.VmflowError):
    code = 413
    kind = "overLimit"
    message = "The image is larger than the upload limit of {limit} bytes."
