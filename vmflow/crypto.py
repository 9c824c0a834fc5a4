"""Key pairs' keys: generate, check an imported public key, compute fingerprints.

SSH public keys are the OpenSSH one-line form ``<type> <base64 blob> [comment]``;
their fingerprint is Nova's: the MD5 of the decoded blob as colon-separated hex.
X.509 key pairs hold a PEM certificate; their fingerprint is the SHA-1 of the
certificate (DER), also colon-separated hex, as Nova computes it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from vmflow import exception

SSH_TYPES = frozenset({"ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                       "ecdsa-sha2-nistp521"})
RSA_BITS = 2048


class InvalidKeypair(exception.Invalid):
    message = "Keypair data is invalid: {reason}"


def _colon_hex(digest: bytes) -> str:
    hexed = digest.hex()
    return ":".join(hexed[i:i + 2] for i in range(0, len(hexed), 2))


def ssh_fingerprint(public_key: str) -> str:
    """Check an OpenSSH public key line and return its MD5 fingerprint.

    400 unless the line is ``<type> <base64>`` of a supported type whose blob
    decodes, names the same type and is a key ``cryptography`` can load.
    """
    parts = public_key.strip().split()
    if len(parts) < 2:
        raise InvalidKeypair(reason="the public key is not of the form '<type> <base64 key> "
                                    "[comment]' (an OpenSSH public key)")
    kind, encoded = parts[0], parts[1]
    if kind not in SSH_TYPES:
        raise InvalidKeypair(reason=f"public key type {kind[:40]!r} is not supported (use one "
                                    f"of {', '.join(sorted(SSH_TYPES))})")
    try:
        blob = base64.b64decode(encoded, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        named = blob[4:4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        raise InvalidKeypair(reason="the public key's base64 data does not decode") from None
    if named != kind:
        raise InvalidKeypair(reason=f"the public key says {kind!r} but holds a {named[:40]!r} "
                                    "key")
    try:
        serialization.load_ssh_public_key(f"{kind} {encoded}".encode())
    except (ValueError, TypeError) as err:
        raise InvalidKeypair(reason=f"the public key cannot be loaded ({err})") from None
    return _colon_hex(hashlib.md5(blob, usedforsecurity=False).digest())


def x509_fingerprint(certificate: str) -> str:
    """Check a PEM certificate and return its SHA-1 fingerprint; 400 if it is not one."""
    try:
        cert = x509.load_pem_x509_certificate(certificate.encode())
    except ValueError:
        raise InvalidKeypair(reason="the public key is not a PEM X.509 certificate") from None
    return _colon_hex(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - Nova's fingerprint


def _new_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def generate_ssh(comment: str = "Generated-by-vmflow") -> tuple[str, str]:
    """A new RSA key pair: (private key PEM, OpenSSH public key line)."""
    key = _new_rsa()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return _private_pem(key), f"{public} {comment}"


def generate_x509(user_id: str, project_id: str) -> tuple[str, str]:
    """A new RSA key and a self-signed certificate for it: (private PEM, cert PEM)."""
    key = _new_rsa()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, project_id[:64] or "-"),
                      x509.NameAttribute(NameOID.COMMON_NAME, user_id[:64] or "-")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return _private_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode()
