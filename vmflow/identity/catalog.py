"""The service catalog: where a token's holder finds compute, image and identity.

Every service lives on the API's public URL (``public_url``, else the address
the API listens on): compute at ``/v2.1``, image at ``/image``, identity at
``/identity/v3``.  Endpoint ids are derived from the URL, so they are the same
on every API process and across restarts.
"""

from __future__ import annotations

import uuid
from typing import Any

from vmflow.identity import REGION

# (type, name, path under the public URL)
SERVICES = (("compute", "nova", "/v2.1"), ("image", "glance", "/image"),
            ("identity", "keystone", "/identity/v3"))
INTERFACES = ("public", "internal", "admin")
_NAMESPACE = uuid.UUID("5f6c5d6e-3f1b-4a51-9d59-7c0b1e0a7f11")


def _id(*parts: str) -> str:
    return uuid.uuid5(_NAMESPACE, "|".join(parts)).hex


def catalog(base_url: str) -> list[dict[str, Any]]:
    """Keystone v3's catalog shape, every interface at the same URL."""
    base = base_url.rstrip("/")
    entries = []
    for kind, name, path in SERVICES:
        url = base + path
        entries.append({
            "type": kind, "name": name, "id": _id("service", kind),
            "endpoints": [{"id": _id("endpoint", kind, interface, url), "interface": interface,
                           "region": REGION, "region_id": REGION, "url": url}
                          for interface in INTERFACES],
        })
    return entries
