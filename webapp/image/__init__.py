"""The image service: a subset of Glance's v2 API at ``/image``.

The same image store as the compute API's read-only ``/v2.1/images``: records in
the ``images`` table, files under ``<data_dir>/images`` that compute hosts read
by path.  ``versions`` answers version discovery and the schemas, ``images``
the records (list, show, create, update, delete), ``data`` the files (upload,
checked with qemu-img, and download).  Errors use the compute API's body
(``{"badRequest": {"code": 400, "message": ...}}``), which openstacksdk and
openstackclient read the message from.
"""

from __future__ import annotations

from flask import Flask

from webapp.image import data, images, versions
from webapp.image.blueprint import bp

__all__ = ["bp", "init_app"]
_ROUTES = (data, images, versions)  # importing them registers their routes on bp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp, url_prefix="/image")
