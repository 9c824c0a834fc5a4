"""A new cloud's first accounts: ``admin`` (role admin on project ``admin``) and
``demo`` (role member on project ``demo``).

Idempotent: what exists is kept.  A new user gets a generated password, kept
with the rest of an ``openrc`` file in the data directory (mode 0600:
``<data_dir>/admin-openrc``, ``<data_dir>/demo-openrc``); later runs read the
password back from that file and rewrite the file with the current auth URL.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shlex
from pathlib import Path

from vmflow.config import Config
from vmflow.db.session import Database
from vmflow.identity import DEFAULT_DOMAIN_NAME, REGION, passwords, store

# (project, user, role)
ACCOUNTS = (("admin", "admin", "admin"), ("demo", "demo", "member"))


@dataclasses.dataclass
class Account:
    project: str
    user: str
    role: str
    path: Path
    # None when the user existed before and its openrc file is gone or stale.
    password: str | None
    created: bool

    def openrc(self, auth_url: str) -> str:
        return openrc(auth_url, self.user, self.password or "", self.project)


def openrc(auth_url: str, user: str, password: str, project: str) -> str:
    """An openrc block for python-openstackclient and openstacksdk."""
    values = {
        "OS_AUTH_URL": auth_url, "OS_USERNAME": user, "OS_PASSWORD": password,
        "OS_PROJECT_NAME": project, "OS_USER_DOMAIN_NAME": DEFAULT_DOMAIN_NAME,
        "OS_PROJECT_DOMAIN_NAME": DEFAULT_DOMAIN_NAME, "OS_IDENTITY_API_VERSION": "3",
        "OS_REGION_NAME": REGION, "OS_INTERFACE": "public",
    }
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in values.items())


def auth_url(cfg: Config) -> str:
    return f"{cfg.base_url}/identity/v3"


def read_openrc(path: Path) -> dict[str, str]:
    """The ``export OS_...=...`` settings of an openrc file ({} if unreadable)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            values[key] = value
    return values


def read_password(path: Path) -> str | None:
    """OS_PASSWORD of an openrc file, or None."""
    return read_openrc(path).get("OS_PASSWORD")


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (created 0600, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_account(db: Database, project_name: str, user_name: str, role_name: str,
                   password: str | None = None) -> tuple[bool, str | None]:
    """The project, the user and the role assignment, each created if missing.

    Returns (whether the user was created, its password when it was).  An
    existing user's password is not changed.
    """
    with db.read() as session:
        exists = store.user_by_name(session, user_name) is not None
    new_password = None if exists else (password or secrets.token_urlsafe(18))
    hashed = passwords.hash_password(new_password) if new_password else None
    with db.write() as session:
        project = store.project_by_name(session, project_name)
        if project is None:
            project = store.create_project(session, project_name,
                                           description="created by vmflow bootstrap")
        user = store.user_by_name(session, user_name)
        created = user is None
        if created:
            user = store.create_user(session, user_name, hashed, default_project_id=project.id)
        role = store.role_by_ref(session, role_name)
        store.assign_role(session, user.id, project.id, role.id)
    return created, new_password if created else None


def bootstrap(db: Database, cfg: Config) -> list[Account]:
    """The admin and demo accounts, and their openrc files under the data directory."""
    accounts = []
    for project, user, role in ACCOUNTS:
        path = Path(cfg.data_dir) / f"{user}-openrc"
        created, password = ensure_account(db, project, user, role)
        if not created:
            password = read_password(path)
            if password is not None and not _still_valid(db, user, password):
                password = None
        account = Account(project, user, role, path, password, created)
        if password is not None:
            write_private(path, account.openrc(auth_url(cfg)))
        accounts.append(account)
    return accounts


def _still_valid(db: Database, user_name: str, password: str) -> bool:
    with db.read() as session:
        user = store.user_by_name(session, user_name)
        stored = user.password_hash if user is not None else None
    return passwords.verify_password(password, stored)


def announce(accounts: list[Account], cfg: Config) -> str:
    """What `vmflow up` prints: where each openrc is, and the admin's block."""
    lines = []
    for account in accounts:
        if account.password is None:
            lines.append(f"  {account.user}: the password is not in {account.path} (changed "
                         f"since, or the file is gone); set a new one with `vmflow identity "
                         f"user set-password {account.user}`")
        else:
            lines.append(f"  {account.user} (role {account.role} on project "
                         f"{account.project}): source {account.path}")
    admin = next((a for a in accounts if a.user == "admin" and a.password), None)
    text = "identity: " + auth_url(cfg) + "\n" + "\n".join(lines) + "\n"
    if admin is not None:
        text += admin.openrc(auth_url(cfg))
    return text


def on_start(db: Database, cfg: Config) -> str:
    """`vmflow up`: bootstrap (idempotent) and say how to log in."""
    text = announce(bootstrap(db, cfg), cfg)
    if cfg.auth_strategy == "noauth":
        return ("  authentication is off (auth_strategy = noauth): the X-Auth-Project-Id "
                "and X-Roles headers say who the caller is\n")
    return text
