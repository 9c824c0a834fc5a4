"""Config drives: the instance's metadata and SSH keys on a small ISO 9660 disk.

vmflow has no metadata service, so a real guest learns its name and its key
pair from a config drive, as in OpenStack: an ISO 9660 image (Rock Ridge and
Joliet names) labelled ``config-2`` holding ``openstack/<version>/meta_data.json``
(cloud-init's ConfigDrive datasource reads it), attached as a read-only CD-ROM.
The image is written with ``genisoimage`` (or ``xorriso -as mkisofs``).

What goes into ``meta_data.json`` is decided by the conductor (it reads the
database, see ``flows.launch.config_drive_metadata``); this module only writes
the image, on the compute host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

LABEL = "config-2"
# The metadata versions written: "latest" and the first OpenStack version, which
# older cloud-init releases look for.
VERSIONS = ("latest", "2012-08-10")
FILE_NAME = "disk.config"


def _iso_tool() -> list[str]:
    if shutil.which("genisoimage"):
        return ["genisoimage"]
    if shutil.which("xorriso"):
        return ["xorriso", "-as", "mkisofs"]
    raise RuntimeError("neither genisoimage nor xorriso is installed: cannot make a config "
                       "drive (scripts/setup.sh installs genisoimage)")


def build(target: Path, metadata: dict[str, Any]) -> Path:
    """Write the config drive for ``metadata`` to ``target`` unless it exists.

    Written to a temporary name and renamed, so a crash leaves no partial image
    under the final name (the step that builds it can simply run again).
    """
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="configdrive-", dir=target.parent) as tmp:
        root = Path(tmp) / "root"
        for version in VERSIONS:
            folder = root / "openstack" / version
            folder.mkdir(parents=True)
            (folder / "meta_data.json").write_text(json.dumps(metadata, sort_keys=True))
            (folder / "vendor_data.json").write_text("{}")
        partial = Path(tmp) / FILE_NAME
        done = subprocess.run(
            [*_iso_tool(), "-o", str(partial), "-ldots", "-allow-lowercase",
             "-allow-multidot", "-l", "-V", LABEL, "-r", "-J", "-quiet", str(root)],
            capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"making the config drive failed: {done.stderr.strip()}")
        os.replace(partial, target)
    return target
