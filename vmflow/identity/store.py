"""Projects, users, roles and role assignments in the database.

Functions take an open session (``Database.write()`` to change, ``read()`` to
look) and raise ``vmflow.exception`` errors with Keystone's wording.  Passwords
arrive here already hashed (``passwords.hash_password``): hashing takes tens of
milliseconds, which a caller spends before it opens a write transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.db.models import ImpliedRole, Project, Role, RoleAssignment, Token, User, utcnow
from vmflow.identity import DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME

PROJECT_NAME_MAX = 64
USER_NAME_MAX = 255


def new_id() -> str:
    return uuid.uuid4().hex


# -- domains: only "default" exists --------------------------------------------------

def domain_id_of(ref: Any) -> str | None:
    """The id of the domain a ``{"id": ...}`` or ``{"name": ...}`` names, or None."""
    if not isinstance(ref, dict):
        return None
    if "id" in ref:
        return DEFAULT_DOMAIN_ID if ref["id"] == DEFAULT_DOMAIN_ID else None
    if "name" in ref:
        return DEFAULT_DOMAIN_ID if ref["name"] == DEFAULT_DOMAIN_NAME else None
    return None


def check_domain(domain_id: Any) -> str:
    if domain_id is None or domain_id == DEFAULT_DOMAIN_ID:
        return DEFAULT_DOMAIN_ID
    raise exception.Invalid(f"Could not find domain: {domain_id}. Only the "
                            f"'{DEFAULT_DOMAIN_ID}' domain exists.")


def check_name(value: Any, what: str, maximum: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise exception.Invalid(f"A {what} needs a name: a non-empty string.")
    if len(value) > maximum:
        raise exception.Invalid(f"A {what} name is at most {maximum} characters long.")
    return value


# -- projects -------------------------------------------------------------------------

def get_project(session: Session, project_id: str) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise exception.NotFound(f"Could not find project: {project_id}.")
    return project


def project_by_name(session: Session, name: str,
                    domain_id: str = DEFAULT_DOMAIN_ID) -> Project | None:
    return session.scalars(select(Project).where(Project.name == name,
                                                 Project.domain_id == domain_id)).first()


def project_by_ref(session: Session, ref: str) -> Project:
    """A project by id, else by name (for the CLI)."""
    project = session.get(Project, ref) or project_by_name(session, ref)
    if project is None:
        raise exception.NotFound(f"Could not find project: {ref}.")
    return project


def list_projects(session: Session, name: str | None = None,
                  enabled: bool | None = None) -> list[Project]:
    query = select(Project).order_by(Project.name)
    if name is not None:
        query = query.where(Project.name == name)
    if enabled is not None:
        query = query.where(Project.enabled == enabled)
    return list(session.scalars(query))


def create_project(session: Session, name: str, description: str = "", enabled: bool = True,
                   domain_id: str = DEFAULT_DOMAIN_ID, project_id: str | None = None) -> Project:
    check_name(name, "project", PROJECT_NAME_MAX)
    if project_by_name(session, name, domain_id) is not None:
        raise exception.Conflict(f"Conflict occurred attempting to store project: a project "
                                 f"named {name} already exists in domain {domain_id}.")
    project = Project(id=project_id or new_id(), name=name, domain_id=domain_id,
                      description=description or "", enabled=enabled, created_at=utcnow())
    session.add(project)
    _flush(session, "project", name)
    return project


def update_project(session: Session, project: Project, changes: dict[str, Any]) -> Project:
    if "name" in changes and changes["name"] != project.name:
        check_name(changes["name"], "project", PROJECT_NAME_MAX)
        if project_by_name(session, changes["name"], project.domain_id) is not None:
            raise exception.Conflict(f"Conflict occurred attempting to update project: a "
                                     f"project named {changes['name']} already exists.")
        project.name = changes["name"]
    if "description" in changes:
        project.description = changes["description"] or ""
    if "enabled" in changes:
        project.enabled = changes["enabled"]
    _flush(session, "project", project.name)
    return project


def delete_project(session: Session, project: Project) -> None:
    """The project, its role assignments and tokens scoped to it."""
    session.execute(delete(Token).where(Token.project_id == project.id))
    session.execute(delete(RoleAssignment).where(RoleAssignment.project_id == project.id))
    session.delete(project)


# -- users ----------------------------------------------------------------------------

def get_user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise exception.NotFound(f"Could not find user: {user_id}.")
    return user


def user_by_name(session: Session, name: str, domain_id: str = DEFAULT_DOMAIN_ID) -> User | None:
    return session.scalars(select(User).where(User.name == name,
                                              User.domain_id == domain_id)).first()


def user_by_ref(session: Session, ref: str) -> User:
    """A user by id, else by name (for the CLI)."""
    user = session.get(User, ref) or user_by_name(session, ref)
    if user is None:
        raise exception.NotFound(f"Could not find user: {ref}.")
    return user


def list_users(session: Session, name: str | None = None,
               enabled: bool | None = None) -> list[User]:
    query = select(User).order_by(User.name)
    if name is not None:
        query = query.where(User.name == name)
    if enabled is not None:
        query = query.where(User.enabled == enabled)
    return list(session.scalars(query))


def create_user(session: Session, name: str, password_hash: str | None,
                default_project_id: str | None = None, enabled: bool = True,
                description: str = "", domain_id: str = DEFAULT_DOMAIN_ID) -> User:
    check_name(name, "user", USER_NAME_MAX)
    if user_by_name(session, name, domain_id) is not None:
        raise exception.Conflict(f"Conflict occurred attempting to store user: a user named "
                                 f"{name} already exists in domain {domain_id}.")
    user = User(id=new_id(), name=name, domain_id=domain_id, password_hash=password_hash,
                 enabled=enabled, default_project_id=default_project_id,
                 description=description or "", created_at=utcnow())
    session.add(user)
    _flush(session, "user", name)
    return user


def update_user(session: Session, user: User, changes: dict[str, Any]) -> User:
    """Apply ``changes`` (``password_hash`` already hashed).  A new password or a
    disabled user revokes the user's tokens, as Keystone does."""
    if "name" in changes and changes["name"] != user.name:
        check_name(changes["name"], "user", USER_NAME_MAX)
        if user_by_name(session, changes["name"], user.domain_id) is not None:
            raise exception.Conflict(f"Conflict occurred attempting to update user: a user "
                                     f"named {changes['name']} already exists.")
        user.name = changes["name"]
    for key in ("default_project_id", "enabled", "description"):
        if key in changes:
            setattr(user, key, changes[key] if key != "description" else changes[key] or "")
    if "password_hash" in changes:
        user.password_hash = changes["password_hash"]
    if "password_hash" in changes or changes.get("enabled") is False:
        revoke_user_tokens(session, user.id)
    _flush(session, "user", user.name)
    return user


def delete_user(session: Session, user: User) -> None:
    session.execute(delete(Token).where(Token.user_id == user.id))
    session.execute(delete(RoleAssignment).where(RoleAssignment.user_id == user.id))
    session.delete(user)


def revoke_user_tokens(session: Session, user_id: str) -> None:
    for token in session.scalars(select(Token).where(Token.user_id == user_id,
                                                     Token.revoked_at.is_(None))):
        token.revoked_at = utcnow()


# -- roles and assignments ------------------------------------------------------------

def list_roles(session: Session, name: str | None = None) -> list[Role]:
    query = select(Role).order_by(Role.name)
    if name is not None:
        query = query.where(Role.name == name)
    return list(session.scalars(query))


def get_role(session: Session, role_id: str) -> Role:
    role = session.get(Role, role_id)
    if role is None:
        raise exception.NotFound(f"Could not find role: {role_id}.")
    return role


def role_by_ref(session: Session, ref: str) -> Role:
    """A role by id, else by name."""
    role = session.get(Role, ref) or session.scalars(select(Role).where(Role.name == ref)).first()
    if role is None:
        names = ", ".join(r.name for r in list_roles(session))
        raise exception.NotFound(f"Could not find role: {ref} (the roles are {names}).")
    return role


def implications(session: Session) -> dict[str, set[str]]:
    """role id -> every role id it implies, directly or through others."""
    direct: dict[str, set[str]] = {}
    for row in session.scalars(select(ImpliedRole)):
        direct.setdefault(row.prior_role_id, set()).add(row.implied_role_id)
    closure: dict[str, set[str]] = {}
    for prior in direct:
        seen: set[str] = set()
        todo = list(direct[prior])
        while todo:
            role = todo.pop()
            if role not in seen:
                seen.add(role)
                todo.extend(direct.get(role, ()))
        closure[prior] = seen
    return closure


def expand(role_ids: Iterable[str], implied: dict[str, set[str]]) -> set[str]:
    result = set(role_ids)
    for role_id in list(result):
        result |= implied.get(role_id, set())
    return result


def effective_roles(session: Session, user_id: str, project_id: str) -> list[Role]:
    """The roles a user holds on a project: assigned ones and those they imply."""
    assigned = session.scalars(select(RoleAssignment.role_id).where(
        RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id)).all()
    if not assigned:
        return []
    ids = expand(assigned, implications(session))
    return list(session.scalars(select(Role).where(Role.id.in_(ids)).order_by(Role.name)))


def has_assignment(session: Session, user_id: str, project_id: str, role_id: str) -> bool:
    return session.get(RoleAssignment, (user_id, project_id, role_id)) is not None


def assign_role(session: Session, user_id: str, project_id: str, role_id: str) -> bool:
    """Grant; False when it was already granted (granting is idempotent)."""
    if has_assignment(session, user_id, project_id, role_id):
        return False
    session.add(RoleAssignment(user_id=user_id, project_id=project_id, role_id=role_id))
    session.flush()
    return True


def unassign_role(session: Session, user_id: str, project_id: str, role_id: str) -> None:
    row = session.get(RoleAssignment, (user_id, project_id, role_id))
    if row is None:
        raise exception.NotFound(f"Could not find role assignment with role: {role_id}, "
                                 f"user: {user_id}, project: {project_id}.")
    session.delete(row)


def list_assignments(session: Session, user_id: str | None = None,
                     project_id: str | None = None, role_id: str | None = None,
                     effective: bool = False) -> list[tuple[str, str, str]]:
    """(user id, project id, role id) triples; ``effective`` adds implied roles."""
    query = select(RoleAssignment).order_by(RoleAssignment.user_id, RoleAssignment.project_id)
    if user_id is not None:
        query = query.where(RoleAssignment.user_id == user_id)
    if project_id is not None:
        query = query.where(RoleAssignment.project_id == project_id)
    rows = [(a.user_id, a.project_id, a.role_id) for a in session.scalars(query)]
    if effective:
        implied = implications(session)
        grouped: dict[tuple[str, str], set[str]] = {}
        for user, project, role in rows:
            grouped.setdefault((user, project), set()).add(role)
        rows = [(user, project, role) for (user, project), roles in grouped.items()
                for role in sorted(expand(roles, implied))]
    if role_id is not None:
        rows = [row for row in rows if row[2] == role_id]
    return rows


def user_projects(session: Session, user_id: str) -> list[Project]:
    """The projects a user holds any role on."""
    return list(session.scalars(
        select(Project).where(Project.id.in_(
            select(RoleAssignment.project_id).where(RoleAssignment.user_id == user_id)))
        .order_by(Project.name)))


def _flush(session: Session, what: str, name: str) -> None:
    try:
        session.flush()
    except IntegrityError:  # a concurrent create of the same name won the race
        raise exception.Conflict(f"Conflict occurred attempting to store {what}: "
                                 f"{name} already exists.") from None
