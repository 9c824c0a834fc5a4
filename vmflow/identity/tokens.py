"""Tokens: issued for a password (or another token), validated, revoked.

A token is ``secrets.token_urlsafe(32)`` handed to its holder once; the
database keeps only its SHA-256, so a copy of the database holds no usable
token.  It expires ``token_expiration`` seconds after it was issued, and
revoking it records when.  A token is valid while its row exists, is neither
expired nor revoked, its user is enabled and, for a project-scoped token, the
project is enabled and the user still holds a role on it.  Roles are read at
validation: a role taken away takes effect at the next request.

Expired rows are deleted now and then (at most once a minute per process,
when a token is issued).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import threading
import time
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vmflow import exception
from vmflow.db.models import Project, Token, User, utcnow
from vmflow.db.session import Database
from vmflow.identity import DEFAULT_DOMAIN, DEFAULT_DOMAIN_ID, catalog, passwords, store

LOG = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# One message for every failed password authentication: it says nothing about
# which part (user, domain, password, enabled) was wrong.
AUTH_FAILED = "The request you have made requires authentication."
CLEANUP_EVERY = 60.0

_cleanup_lock = threading.Lock()
_last_cleanup = 0.0


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """What a token says about its holder (no secret in it)."""

    user_id: str
    user_name: str
    project_id: str | None
    project_name: str | None
    roles: tuple[tuple[str, str], ...]  # (id, name), implied roles included
    methods: tuple[str, ...]
    issued_at: dt.datetime
    expires_at: dt.datetime
    audit_id: str

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(name.lower() for _, name in self.roles)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _fail(message: str = AUTH_FAILED) -> exception.Unauthorized:
    return exception.Unauthorized(message)


def _invalid(message: str) -> exception.Invalid:
    return exception.Invalid(message)


# -- reading the request --------------------------------------------------------------

def _password_identity(identity: dict[str, Any]) -> tuple[dict[str, Any], str]:
    password = identity.get("password")
    user = password.get("user") if isinstance(password, dict) else None
    if not isinstance(user, dict):
        raise _invalid("Expecting to find user in auth.identity.password: "
                       "{\"user\": {\"name\"|\"id\": ..., \"password\": ...}}.")
    secret = user.get("password")
    if not isinstance(secret, str) or len(secret) > passwords.MAX_PASSWORD_LENGTH:
        raise _invalid("Expecting to find a password (a string) in "
                       "auth.identity.password.user.")
    if not isinstance(user.get("id"), str) and not isinstance(user.get("name"), str):
        raise _invalid("Expecting to find the user's id or name in "
                       "auth.identity.password.user.")
    return user, secret


def _scope(auth: dict[str, Any]) -> dict[str, Any] | None:
    """The project reference of the requested scope, or None (unscoped)."""
    scope = auth.get("scope")
    if scope is None or scope == "unscoped":
        return None
    if not isinstance(scope, dict):
        raise _invalid("auth.scope must be an object such as {\"project\": {\"id\": ...}}.")
    if "project" not in scope:
        kinds = ", ".join(sorted(scope)) or "nothing"
        raise _invalid(f"vmflow issues project-scoped and unscoped tokens only; the scope "
                       f"asked for {kinds}.")
    project = scope["project"]
    if not isinstance(project, dict) or not (isinstance(project.get("id"), str)
                                             or isinstance(project.get("name"), str)):
        raise _invalid("auth.scope.project needs an id, or a name and a domain.")
    if "id" not in project and "domain" not in project:
        raise _invalid("auth.scope.project names a project by name: it needs its domain "
                       "too ({\"domain\": {\"id\": \"default\"}}).")
    return project


# -- issuing --------------------------------------------------------------------------

def authenticate(db: Database, auth_body: Any, expiration: float) -> tuple[str, TokenInfo]:
    """Check a ``{"auth": {...}}`` request; return the new token and what it says.

    Raises Invalid (400) for a malformed request, Unauthorized (401) for wrong
    or unusable credentials or scope.
    """
    auth = auth_body.get("auth") if isinstance(auth_body, dict) else None
    identity = auth.get("identity") if isinstance(auth, dict) else None
    if not isinstance(identity, dict) or not isinstance(identity.get("methods"), list):
        raise _invalid("Expecting to find identity in auth: "
                       "{\"auth\": {\"identity\": {\"methods\": [...], ...}}}.")
    methods = identity["methods"]
    project_ref = _scope(auth)
    with db.read() as session:
        if "password" in methods:
            user_ref, secret = _password_identity(identity)
            user = _find_user(session, user_ref)
            # Always hash once, found or not: timing tells nothing.
            matches = passwords.verify_password(secret, user.password_hash if user else None)
            if user is None or not matches or not user.enabled:
                LOG.info("password authentication failed for user %s",
                         user.id if user is not None else "(unknown)")
                raise _fail()
            ceiling = None
        elif "token" in methods:
            token = identity.get("token")
            value = token.get("id") if isinstance(token, dict) else None
            if not isinstance(value, str):
                raise _invalid("Expecting to find auth.identity.token.id.")
            previous = _lookup(session, value)
            if previous is None:
                raise _fail("The token used to authenticate is invalid, expired or revoked.")
            user = session.get(User, previous.user_id)
            ceiling = previous.expires_at  # a token's token lives no longer than it
        else:
            raise _fail(f"vmflow accepts the password and token methods, not "
                        f"{', '.join(map(str, methods)) or 'none'}.")
        project, roles = None, []
        if project_ref is not None:
            project = _find_project(session, project_ref)
            if project is None or not project.enabled:
                raise _fail("The project asked for in auth.scope does not exist or is "
                            "disabled.")
            roles = store.effective_roles(session, user.id, project.id)
            if not roles:
                raise _fail(f"User {user.id} has no access to project {project.id}.")
        user_id, user_name = user.id, user.name
        role_pairs = tuple((r.id, r.name) for r in roles)
    value = secrets.token_urlsafe(32)
    issued = utcnow()
    expires = issued + dt.timedelta(seconds=expiration)
    if ceiling is not None:
        expires = min(expires, ceiling)
    audit_id = secrets.token_urlsafe(16)[:22]
    kinds = tuple(m for m in methods if m in ("password", "token"))
    with db.write() as session:
        session.add(Token(id_hash=digest(value), audit_id=audit_id, user_id=user_id,
                          project_id=project.id if project else None, methods=list(kinds),
                          issued_at=issued, expires_at=expires))
        _cleanup(session)
    LOG.info("issued token %s to user %s (project %s, expires %s)", audit_id, user_id,
             project.id if project else "-", expires.strftime(TIME_FORMAT))
    info = TokenInfo(user_id=user_id, user_name=user_name,
                     project_id=project.id if project else None,
                     project_name=project.name if project else None, roles=role_pairs,
                     methods=kinds, issued_at=issued, expires_at=expires, audit_id=audit_id)
    return value, info


def issue_for(db: Database, user_name: str, password: str, project_name: str | None,
              expiration: float) -> tuple[str, TokenInfo]:
    """A token for a user and project named in the default domain (the dashboard's login)."""
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": user_name, "domain": {"id": DEFAULT_DOMAIN_ID},
                 "password": password}}}}}
    if project_name:
        body["auth"]["scope"] = {"project": {"name": project_name,
                                             "domain": {"id": DEFAULT_DOMAIN_ID}}}
    return authenticate(db, body, expiration)


def _find_user(session: Session, ref: dict[str, Any]) -> User | None:
    if isinstance(ref.get("id"), str):
        return session.get(User, ref["id"])
    domain = store.domain_id_of(ref.get("domain"))
    return store.user_by_name(session, ref["name"], domain) if domain else None


def _find_project(session: Session, ref: dict[str, Any]) -> Project | None:
    if isinstance(ref.get("id"), str):
        return session.get(Project, ref["id"])
    domain = store.domain_id_of(ref.get("domain"))
    return store.project_by_name(session, ref["name"], domain) if domain else None


def _cleanup(session: Session) -> None:
    """Delete expired rows, at most once every CLEANUP_EVERY seconds per process."""
    global _last_cleanup
    now = time.monotonic()
    with _cleanup_lock:
        if now - _last_cleanup < CLEANUP_EVERY:
            return
        _last_cleanup = now
    session.execute(delete(Token).where(Token.expires_at < utcnow()))


# -- validating and revoking ----------------------------------------------------------

def _find(session: Session, value: str) -> tuple[Token, User, Project | None] | None:
    """The token's row, user and project if the token is usable now, else None."""
    if not value or len(value) > 512:
        return None
    row = session.execute(
        select(Token, User, Project)
        .join(User, User.id == Token.user_id)
        .outerjoin(Project, Project.id == Token.project_id)
        .where(Token.id_hash == digest(value))).first()
    if row is None:
        return None
    token, user, project = row
    if token.revoked_at is not None or token.expires_at <= utcnow() or not user.enabled:
        return None
    if token.project_id is not None and (project is None or not project.enabled):
        return None
    return token, user, project


def _lookup(session: Session, value: str) -> Token | None:
    found = _find(session, value)
    return found[0] if found else None


def validate(db: Database, value: str | None) -> TokenInfo | None:
    """What a token says, or None if it is not valid (now)."""
    if not value:
        return None
    with db.read() as session:
        found = _find(session, value)
        if found is None:
            return None
        token, user, project = found
        roles = []
        if project is not None:
            roles = store.effective_roles(session, user.id, project.id)
            if not roles:  # every role on the project was taken away
                return None
        return TokenInfo(user_id=user.id, user_name=user.name,
                         project_id=project.id if project else None,
                         project_name=project.name if project else None,
                         roles=tuple((r.id, r.name) for r in roles),
                         methods=tuple(token.methods or ()), issued_at=token.issued_at,
                         expires_at=token.expires_at, audit_id=token.audit_id)


def revoke(db: Database, value: str) -> bool:
    """Revoke a token; False if there was no valid token to revoke."""
    with db.write() as session:
        token = _lookup(session, value)
        if token is None:
            return False
        token.revoked_at = utcnow()
        LOG.info("revoked token %s of user %s", token.audit_id, token.user_id)
        return True


# -- the body -------------------------------------------------------------------------

def _domain() -> dict[str, str]:
    return dict(DEFAULT_DOMAIN)


def body(info: TokenInfo, base_url: str, with_catalog: bool = True) -> dict[str, Any]:
    """Keystone v3's token body (``{"token": {...}}``)."""
    token: dict[str, Any] = {
        "methods": list(info.methods),
        "user": {"id": info.user_id, "name": info.user_name, "domain": _domain(),
                 "password_expires_at": None},
        "audit_ids": [info.audit_id],
        "expires_at": info.expires_at.strftime(TIME_FORMAT),
        "issued_at": info.issued_at.strftime(TIME_FORMAT),
    }
    if info.project_id is not None:
        token["project"] = {"id": info.project_id, "name": info.project_name,
                            "domain": _domain()}
        token["is_domain"] = False
        token["roles"] = [{"id": role_id, "name": name} for role_id, name in info.roles]
        if with_catalog:
            token["catalog"] = catalog.catalog(base_url)
    return {"token": token}
