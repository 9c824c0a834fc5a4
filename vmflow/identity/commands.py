"""`vmflow identity ...`: manage projects, users and roles in the database
directly (as keystone-manage does), with the configuration's database.

    vmflow identity bootstrap
    vmflow identity project create NAME [--description TEXT] | list
    vmflow identity user create NAME (--password-prompt | --password-file F)
                                     [--project P [--role ROLE]]
    vmflow identity user set-password NAME (--password-prompt | --password-file F)
    vmflow identity user list
    vmflow identity role add --user U --project P ROLE | list
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
from collections.abc import Callable, Iterator

from vmflow import exception
from vmflow.config import Config
from vmflow.db.session import Database
from vmflow.identity import bootstrap, passwords, store


@contextlib.contextmanager
def _database(cfg: Config) -> Iterator[Database]:
    from vmflow.db import migrate

    db = Database(cfg.database_url)
    try:
        migrate.upgrade(db)
        yield db
    finally:
        db.dispose()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as fh:
            password = fh.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat the password: ") != password:
            raise exception.Invalid("The passwords do not match.")
    if not password:
        raise exception.Invalid("The password is empty.")
    if len(password) > passwords.MAX_PASSWORD_LENGTH:
        raise exception.Invalid(f"A password is at most {passwords.MAX_PASSWORD_LENGTH} "
                                f"characters long.")
    return password


def cmd_bootstrap(cfg: Config, args: argparse.Namespace) -> None:
    with _database(cfg) as db:
        print(bootstrap.announce(bootstrap.bootstrap(db, cfg), cfg), end="")


def cmd_project_create(cfg: Config, args: argparse.Namespace) -> None:
    with _database(cfg) as db, db.write() as session:
        project = store.create_project(session, args.name, args.description or "")
    print(f"project {project.name} created: {project.id}")


def cmd_project_list(cfg: Config, args: argparse.Namespace) -> None:
    with _database(cfg) as db, db.read() as session:
        projects = store.list_projects(session)
    print(f"{'ID':32}  {'NAME':24} ENABLED")
    for p in projects:
        print(f"{p.id:32}  {p.name:24} {p.enabled}")


def cmd_user_create(cfg: Config, args: argparse.Namespace) -> None:
    if args.role and not args.project:
        raise exception.Invalid("--role needs --project: a role is held on a project.")
    hashed = passwords.hash_password(_read_password(args))
    with _database(cfg) as db, db.write() as session:
        project = store.project_by_ref(session, args.project) if args.project else None
        role = store.role_by_ref(session, args.role or "member") if project else None
        user = store.create_user(session, args.name, hashed,
                                 default_project_id=project.id if project else None)
        if project is not None:
            store.assign_role(session, user.id, project.id, role.id)
    print(f"user {user.name} created: {user.id}"
          + (f" (role {role.name} on project {project.name})" if project else ""))


def cmd_user_set_password(cfg: Config, args: argparse.Namespace) -> None:
    hashed = passwords.hash_password(_read_password(args))
    with _database(cfg) as db, db.write() as session:
        user = store.update_user(session, store.user_by_ref(session, args.name),
                                 {"password_hash": hashed})
    print(f"password of user {user.name} changed; its tokens are revoked")


def cmd_user_list(cfg: Config, args: argparse.Namespace) -> None:
    with _database(cfg) as db, db.read() as session:
        users = store.list_users(session)
        projects = {p.id: p.name for p in store.list_projects(session)}
        roles = {r.id: r.name for r in store.list_roles(session)}
        grants: dict[str, list[str]] = {}
        for user_id, project_id, role_id in store.list_assignments(session):
            grants.setdefault(user_id, []).append(f"{roles[role_id]}@{projects[project_id]}")
    print(f"{'ID':32}  {'NAME':20} {'ENABLED':7}  ROLES")
    for u in users:
        print(f"{u.id:32}  {u.name:20} {str(u.enabled):7}  {' '.join(grants.get(u.id, []))}")


def cmd_role_add(cfg: Config, args: argparse.Namespace) -> None:
    with _database(cfg) as db, db.write() as session:
        user = store.user_by_ref(session, args.user)
        project = store.project_by_ref(session, args.project)
        role = store.role_by_ref(session, args.role)
        added = store.assign_role(session, user.id, project.id, role.id)
    print(f"role {role.name} {'granted to' if added else 'already held by'} user {user.name} "
          f"on project {project.name}")


def cmd_role_list(cfg: Config, args: argparse.Namespace) -> None:
    with _database(cfg) as db, db.read() as session:
        implied = store.implications(session)
        roles = store.list_roles(session)
    names = {r.id: r.name for r in roles}
    for r in roles:
        also = sorted(names[i] for i in implied.get(r.id, ()))
        print(f"{r.id:32}  {r.name:10} {'implies ' + ', '.join(also) if also else ''}")


def add_parser(sub, service_args: Callable[[argparse.ArgumentParser], None],
               load_config: Callable[[argparse.Namespace], Config]) -> None:
    """Add `identity` and its commands to the `vmflow` parser."""
    identity = sub.add_parser("identity", help="projects, users and roles (in the database)")
    kinds = identity.add_subparsers(dest="identity_kind", required=True)

    def command(parent, name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text)
        service_args(p)
        p.set_defaults(func=lambda args: _run(func, load_config(args), args))
        return p

    command(kinds, "bootstrap", cmd_bootstrap,
            "create the admin and demo projects and users (idempotent); print an openrc")

    project = kinds.add_parser("project", help="projects").add_subparsers(
        dest="identity_action", required=True)
    create = command(project, "create", cmd_project_create, "create a project")
    create.add_argument("name")
    create.add_argument("--description")
    command(project, "list", cmd_project_list, "list projects")

    user = kinds.add_parser("user", help="users").add_subparsers(
        dest="identity_action", required=True)

    def password_args(p: argparse.ArgumentParser) -> None:
        how = p.add_mutually_exclusive_group(required=True)
        how.add_argument("--password-prompt", action="store_true",
                         help="ask for the password (twice)")
        how.add_argument("--password-file", metavar="FILE",
                         help="read the password from FILE (its first line)")

    create = command(user, "create", cmd_user_create, "create a user")
    create.add_argument("name")
    password_args(create)
    create.add_argument("--project", help="grant a role on this project (name or id)")
    create.add_argument("--role", help="the role to grant (default: member)")
    setpw = command(user, "set-password", cmd_user_set_password, "change a user's password")
    setpw.add_argument("name")
    password_args(setpw)
    command(user, "list", cmd_user_list, "list users and their roles")

    role = kinds.add_parser("role", help="roles").add_subparsers(
        dest="identity_action", required=True)
    add = command(role, "add", cmd_role_add, "grant a role to a user on a project")
    add.add_argument("--user", required=True, help="name or id")
    add.add_argument("--project", required=True, help="name or id")
    add.add_argument("role", help="admin, member or reader")
    command(role, "list", cmd_role_list, "list roles")


def _run(func, cfg: Config, args: argparse.Namespace) -> int:
    try:
        func(cfg, args)
    except exception.VmflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
