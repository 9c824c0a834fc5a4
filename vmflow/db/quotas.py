"""Quotas: each project's hard limits, what it uses, and the checks on create paths.

A project's limit for a resource is its row in ``quota_overrides`` when an
admin set one, else the configured default (``quota_<resource>``); -1 means
unlimited.  Usage is never stored: it is counted from the live rows each time
(instances, cores and RAM of a project's instances that are not deleted; its
server groups; the members of one group; one user's key pairs), so it cannot
drift from what exists.

Checks that must hold under concurrency follow Nova's count-then-recheck: the
caller checks, inserts and commits its row, then counts again with its row
included (``extra=0``) and removes its row if the project is now over the
limit.  Of racing requests for the last unit some may both be refused, but
never more admitted than the limit allows: the last of them to commit sees
every other admitted row.

Resources reported but not counted: ``injected_files*`` (vmflow does not
inject files) and, below microversion 2.36, Nova's proxied network quotas
(``fixed_ips``, ``floating_ips``, ``security_groups``,
``security_group_rules``; networking is not part of vmflow), all with Nova's
defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.config import Config
from vmflow.db.models import Instance, KeyPair, QuotaOverride, ServerGroup, ServerGroupMember
from vmflow.db.session import Database

T = TypeVar("T")

# Resources whose default is a ``quota_<name>`` setting.
CONFIGURED = ("instances", "cores", "ram", "key_pairs", "server_groups",
              "server_group_members", "metadata_items", "injected_files",
              "injected_file_content_bytes", "injected_file_path_bytes")
# Nova's network quotas (proxies to Neutron, gone from the API at 2.36): fixed
# defaults, settable below 2.36, never enforced.
NETWORK = {"fixed_ips": -1, "floating_ips": 10, "security_groups": 10,
           "security_group_rules": 20}
INJECTED = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")
RESOURCES = CONFIGURED + tuple(NETWORK)
# The largest limit accepted (Nova's: a 32-bit signed integer).
MAX_LIMIT = 0x7FFFFFFF


def defaults(cfg: Config) -> dict[str, int]:
    """Every resource's default hard limit."""
    values = {name: int(getattr(cfg, f"quota_{name}")) for name in CONFIGURED}
    values.update(NETWORK)
    return values


def overrides(session: Session, project_id: str) -> dict[str, int]:
    rows = session.execute(select(QuotaOverride.resource, QuotaOverride.hard_limit)
                           .where(QuotaOverride.project_id == project_id))
    return {resource: limit for resource, limit in rows if resource in RESOURCES}


def limits(session: Session, cfg: Config, project_id: str) -> dict[str, int]:
    """The project's hard limits: the defaults overridden by its own rows."""
    return {**defaults(cfg), **overrides(session, project_id)}


def set_limits(session: Session, project_id: str, values: dict[str, int]) -> None:
    """Record the project's own limits for these resources (insert or update)."""
    existing = {row.resource: row for row in session.scalars(
        select(QuotaOverride).where(QuotaOverride.project_id == project_id,
                                    QuotaOverride.resource.in_(list(values))))}
    for resource, limit in values.items():
        if resource not in RESOURCES:
            raise ValueError(f"unknown quota resource {resource!r}")
        row = existing.get(resource)
        if row is None:
            session.add(QuotaOverride(project_id=project_id, resource=resource,
                                      hard_limit=int(limit)))
        else:
            row.hard_limit = int(limit)


def reset(session: Session, project_id: str) -> None:
    """Forget the project's own limits: it is back to the defaults."""
    session.execute(delete(QuotaOverride).where(QuotaOverride.project_id == project_id))


# -- usage ------------------------------------------------------------------------------

def instance_usage(session: Session, project_id: str) -> dict[str, int]:
    """Instances, cores and RAM of the project's live instances."""
    flavors = session.scalars(select(Instance.flavor).where(
        Instance.project_id == project_id, Instance.deleted.is_(False))).all()
    return {"instances": len(flavors),
            "cores": sum(int((f or {}).get("vcpus", 0)) for f in flavors),
            "ram": sum(int((f or {}).get("memory_mb", 0)) for f in flavors)}


def server_group_count(session: Session, project_id: str) -> int:
    return session.scalar(select(func.count()).select_from(ServerGroup).where(
        ServerGroup.project_id == project_id)) or 0


def group_member_count(session: Session, group_uuid: str) -> int:
    """Members of the group whose instance is not deleted."""
    return session.scalar(
        select(func.count()).select_from(ServerGroupMember)
        .join(Instance, Instance.uuid == ServerGroupMember.instance_uuid)
        .where(ServerGroupMember.group_uuid == group_uuid, Instance.deleted.is_(False))) or 0


def fullest_group(session: Session, project_id: str) -> int:
    """The live members of the project's fullest server group (0 without groups)."""
    counts = (select(func.count().label("n")).select_from(ServerGroupMember)
              .join(ServerGroup, ServerGroup.uuid == ServerGroupMember.group_uuid)
              .join(Instance, Instance.uuid == ServerGroupMember.instance_uuid)
              .where(ServerGroup.project_id == project_id, Instance.deleted.is_(False))
              .group_by(ServerGroupMember.group_uuid).subquery())
    return session.scalar(select(func.max(counts.c.n))) or 0


def key_pair_count(session: Session, user_id: str) -> int:
    return session.scalar(select(func.count()).select_from(KeyPair).where(
        KeyPair.user_id == user_id)) or 0


def usage(session: Session, project_id: str) -> dict[str, int]:
    """What the project uses of each resource (0 for those not counted).

    Key pairs belong to users, not projects: here they are the pairs made
    while working in this project.
    """
    used = dict.fromkeys(RESOURCES, 0)
    used.update(instance_usage(session, project_id))
    used["server_groups"] = server_group_count(session, project_id)
    used["key_pairs"] = session.scalar(select(func.count()).select_from(KeyPair).where(
        KeyPair.project_id == project_id)) or 0
    return used


# -- checks -----------------------------------------------------------------------------

def check(resource: str, requested: int, used: int, limit: int, *,
          recheck: bool = False) -> None:
    """403 naming the quota when ``requested`` more of ``resource`` do not fit.

    ``recheck``: the request's own rows are already counted in ``used`` (the
    check after the insert), so the project is over only if ``used`` is.
    """
    if limit < 0:
        return
    if recheck:
        if used > limit:
            raise exception.QuotaExceeded(resource=resource, requested=requested,
                                          used=used - requested, limit=limit)
    elif used + requested > limit:
        raise exception.QuotaExceeded(resource=resource, requested=requested, used=used,
                                      limit=limit)


def check_instances(session: Session, cfg: Config, project_id: str, flavor: dict[str, Any],
                    count: int = 1, *, recheck: bool = False) -> None:
    """Room for ``count`` instances of ``flavor`` (instances, cores, RAM)."""
    allowed = limits(session, cfg, project_id)
    used = instance_usage(session, project_id)
    asks = {"instances": count, "cores": count * int(flavor["vcpus"]),
            "ram": count * int(flavor["memory_mb"])}
    for resource, asked in asks.items():
        check(resource, asked, used[resource], allowed[resource], recheck=recheck)


def check_group_members(session: Session, cfg: Config, project_id: str, group_uuid: str,
                        count: int = 1, *, recheck: bool = False) -> None:
    """Room for ``count`` more members in the server group."""
    check("server_group_members", count, group_member_count(session, group_uuid),
          limits(session, cfg, project_id)["server_group_members"], recheck=recheck)


def check_server_groups(session: Session, cfg: Config, project_id: str, *,
                        recheck: bool = False) -> None:
    """Room for one more server group in the project."""
    check("server_groups", 1, server_group_count(session, project_id),
          limits(session, cfg, project_id)["server_groups"], recheck=recheck)


def check_key_pairs(session: Session, cfg: Config, project_id: str, user_id: str, *,
                    recheck: bool = False) -> None:
    """Room for one more key pair: counted per user, against the limit of the
    project the user works in."""
    check("key_pairs", 1, key_pair_count(session, user_id),
          limits(session, cfg, project_id)["key_pairs"], recheck=recheck)


def check_metadata(session: Session, cfg: Config, project_id: str,
                   metadata: dict[str, Any] | None) -> None:
    """A server's metadata may hold at most ``metadata_items`` items."""
    check("metadata_items", len(metadata or {}), 0,
          limits(session, cfg, project_id)["metadata_items"])


def guarded_insert(db: Database, check: Callable[..., None], insert: Callable[[Session], T],
                   undo: Callable[[Session, T], None]) -> T:
    """Create something a quota limits, so that concurrent creates cannot exceed it.

    ``check(session, recheck=...)`` raises QuotaExceeded; it runs before the
    insert, then again once ``insert``'s row is committed and counted; if that
    second check fails, ``undo`` removes the row again and the error is raised.
    """
    with db.read() as session:
        check(session, recheck=False)
    with db.write() as session:
        made = insert(session)
    problem = None
    with db.write() as session:
        try:
            check(session, recheck=True)
        except exception.QuotaExceeded as err:
            problem = err  # lost a race for the last of the quota
            undo(session, made)
    if problem is not None:
        raise problem
    return made
