"""Password hashing: scrypt (``hashlib.scrypt``) with a random salt per password.

A hash is stored as ``scrypt$<n>$<r>$<p>$<salt>$<digest>`` (salt and digest in
URL-safe base64), so the cost parameters can grow later without invalidating
existing hashes: each hash is checked with the parameters it was made with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# 2**15 * 8 * 128 bytes = 32 MiB and some tens of milliseconds per hash: slow for
# someone guessing, fast enough for a login.
N, R, P = 2 ** 15, 8, 1
SALT_BYTES = 16
DIGEST_BYTES = 32
_MAXMEM = 256 * 1024 * 1024
# Longer inputs are refused (scrypt would take them, but nobody types 4 KiB).
MAX_PASSWORD_LENGTH = 4096


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=_MAXMEM, dklen=DIGEST_BYTES)


def hash_password(password: str) -> str:
    """The storable hash of ``password``."""
    salt = secrets.token_bytes(SALT_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(_scrypt(password, salt, N, R, P))}"


# Checked against when there is no user, so that "no such user" costs the same
# time as "wrong password" (no way to learn which names exist from timing).
_DUMMY = hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison).

    ``stored`` None (no user, or a user without a password) is checked against
    a throw-away hash and is never a match.
    """
    try:
        scheme, n, r, p, salt, digest = (stored or _DUMMY).split("$")
        if scheme != "scrypt":
            return False
        candidate = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, _unb64(digest)) and stored is not None
