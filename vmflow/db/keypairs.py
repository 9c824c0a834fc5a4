"""Key pairs: a user's public keys by name (os-keypairs), under the key_pairs quota.

A key pair belongs to a user (not a project): names are unique per user and
the quota counts per user.  A generated pair's private key is returned once by
:func:`create` and never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from vmflow import crypto, exception
from vmflow.config import Config
from vmflow.db import quotas
from vmflow.db.models import KeyPair
from vmflow.db.session import Database

TYPES = ("ssh", "x509")
_NAME_RE = re.compile(r"^[A-Za-z0-9 _.@-]{1,255}$")


class KeyPairNotFound(exception.NotFound):
    message = "Keypair {name} not found for user {user_id}"


class KeyPairExists(exception.Conflict):
    message = "Key pair '{name}' already exists."


@dataclass(frozen=True)
class Created:
    """A new key pair, and its private key when vmflow generated it."""

    row: KeyPair
    private_key: str | None


def check_name(name: object) -> str:
    """1-255 letters, digits, spaces, ``_ - . @`` (400 otherwise)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise crypto.InvalidKeypair(reason="the name must be a string of 1 to 255 characters")
    if not _NAME_RE.match(name) or not name.strip():
        raise crypto.InvalidKeypair(reason="the name may hold only letters, digits, spaces and "
                                           "the characters _ - . @")
    return name


def get(session, user_id: str, name: str) -> KeyPair:
    row = session.scalar(select(KeyPair).where(KeyPair.user_id == user_id,
                                               KeyPair.name == name))
    if row is None:
        raise KeyPairNotFound(name=name, user_id=user_id)
    return row


def list_(session, user_id: str, *, limit: int | None = None,
          marker: str | None = None) -> list[KeyPair]:
    """The user's key pairs in creation order; after the one named ``marker``."""
    query = select(KeyPair).where(KeyPair.user_id == user_id).order_by(KeyPair.id)
    if marker is not None:
        after = session.scalar(select(KeyPair.id).where(KeyPair.user_id == user_id,
                                                        KeyPair.name == marker))
        if after is None:
            raise exception.Invalid(f"marker [{marker}] not found")
        query = query.where(KeyPair.id > after)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def create(db: Database, cfg: Config, *, user_id: str, project_id: str, name: str,
           kind: str = "ssh", public_key: str | None = None) -> Created:
    """Import ``public_key`` or generate a pair; 400 bad key, 409 name taken, 403 quota.

    The quota is checked, the row committed, then checked again with the row
    counted (removed again if the user is now over): concurrent creates cannot
    take a user past the limit.
    """
    name = check_name(name)
    with db.read() as session:
        if session.scalar(select(KeyPair.id).where(KeyPair.user_id == user_id,
                                                   KeyPair.name == name)) is not None:
            raise KeyPairExists(name=name)
    private_key = None
    if public_key is None:
        if kind == "x509":
            private_key, public_key = crypto.generate_x509(user_id, project_id)
        else:
            private_key, public_key = crypto.generate_ssh()
    fingerprint = (crypto.x509_fingerprint(public_key) if kind == "x509"
                   else crypto.ssh_fingerprint(public_key))

    def insert(session) -> KeyPair:
        row = KeyPair(name=name, user_id=user_id, project_id=project_id, type=kind,
                      fingerprint=fingerprint, public_key=public_key)
        session.add(row)
        session.flush()
        return row

    try:
        row = quotas.guarded_insert(
            db, lambda session, recheck: quotas.check_key_pairs(
                session, cfg, project_id, user_id, recheck=recheck),
            insert, lambda session, made: session.execute(
                delete(KeyPair).where(KeyPair.id == made.id)))
    except IntegrityError:
        raise KeyPairExists(name=name) from None
    return Created(row, private_key)


def remove(session, user_id: str, name: str) -> None:
    session.delete(get(session, user_id, name))
