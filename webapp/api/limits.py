"""/limits: the caller's project's absolute limits and what it uses (no rate limits).

An admin may ask for another project's with ``tenant_id``.  Which figures the
body holds follows the microversion, as in Nova: the network ones
(``maxTotalFloatingIps``, ``maxSecurityGroups``, ``maxSecurityGroupRules``,
``totalFloatingIpsUsed``, ``totalSecurityGroupsUsed``) go at 2.36,
``maxImageMeta`` at 2.39, ``maxPersonality`` and ``maxPersonalitySize`` at 2.57.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from vmflow import policy
from vmflow.db import quotas as quotas_db
from webapp.api import common, microversion

bp = Blueprint("limits", __name__)

policy.register({
    "os_compute_api:limits": "@",
    "os_compute_api:limits:other_project": policy.ADMIN,
})

# Each absolute maximum and the quota it shows, and from which version it is gone.
_MAXIMA = (
    ("maxTotalInstances", "instances", None),
    ("maxTotalCores", "cores", None),
    ("maxTotalRAMSize", "ram", None),
    ("maxTotalKeypairs", "key_pairs", None),
    ("maxServerMeta", "metadata_items", None),
    ("maxServerGroups", "server_groups", None),
    ("maxServerGroupMembers", "server_group_members", None),
    ("maxImageMeta", "metadata_items", "2.39"),
    ("maxPersonality", "injected_files", "2.57"),
    ("maxPersonalitySize", "injected_file_content_bytes", "2.57"),
    ("maxTotalFloatingIps", "floating_ips", "2.36"),
    ("maxSecurityGroups", "security_groups", "2.36"),
    ("maxSecurityGroupRules", "security_group_rules", "2.36"),
)
_USED = (
    ("totalInstancesUsed", "instances", None),
    ("totalCoresUsed", "cores", None),
    ("totalRAMUsed", "ram", None),
    ("totalServerGroupsUsed", "server_groups", None),
    ("totalFloatingIpsUsed", "floating_ips", "2.36"),
    ("totalSecurityGroupsUsed", "security_groups", "2.36"),
)


def _project() -> str:
    ctx = common.authorize("os_compute_api:limits")
    wanted = request.args.get("tenant_id")
    if not wanted or wanted == ctx.project_id:
        return ctx.project_id
    common.authorize("os_compute_api:limits:other_project", {"project_id": wanted})
    return wanted


@bp.get("/limits")
def show():
    project_id = _project()
    with common.db().read() as session:
        limits = quotas_db.limits(session, common.config(), project_id)
        used = quotas_db.usage(session, project_id)
    absolute = {}
    for table, values in ((_MAXIMA, limits), (_USED, used)):
        for key, resource, gone_at in table:
            if gone_at is None or not microversion.at_least(gone_at):
                absolute[key] = values[resource]
    return jsonify({"limits": {"rate": [], "absolute": absolute}})
