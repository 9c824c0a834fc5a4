"""An image as Glance v2 shows it: core attributes with custom properties
flattened beside them; sizes and hashes are null until the image has data."""

from __future__ import annotations

from typing import Any

from vmflow.db.models import Image
from webapp.api.common import isotime

# Attributes the server sets; a request may not (403, as in Glance).
READ_ONLY = frozenset({
    "status", "size", "virtual_size", "checksum", "os_hash_algo", "os_hash_value",
    "created_at", "updated_at", "self", "file", "schema", "direct_url", "locations",
    "location", "stores",
})
# Attributes a request may set, each with its own rule (not a custom property).
CORE = frozenset({"id", "name", "visibility", "protected", "os_hidden", "owner",
                  "disk_format", "container_format", "min_disk", "min_ram", "tags"})


def image(row: Image) -> dict[str, Any]:
    has_data = bool(row.checksum)
    body: dict[str, Any] = {key: value for key, value in (row.properties or {}).items()
                            if key not in READ_ONLY and key not in CORE}
    body.update({
        "id": row.id, "name": row.name, "status": row.status,
        "visibility": row.visibility, "protected": bool(row.protected), "os_hidden": False,
        "owner": row.owner, "disk_format": row.disk_format,
        "container_format": row.container_format,
        "size": row.size if has_data else None,
        "virtual_size": row.virtual_size if has_data else None,
        "checksum": row.checksum, "os_hash_algo": row.os_hash_algo if has_data else None,
        "os_hash_value": row.os_hash_value if has_data else None,
        "min_disk": row.min_disk, "min_ram": row.min_ram, "tags": list(row.tags or []),
        "created_at": isotime(row.created_at), "updated_at": isotime(row.updated_at),
        "self": f"/v2/images/{row.id}", "file": f"/v2/images/{row.id}/file",
        "schema": "/v2/schemas/image",
    })
    return body
