"""Keys wrapped under a key-encryption key (KEK), for keys kept in a shared database.

With several instances on one PostgreSQL store the pseudonym keys live in a table, and
the table lives in the database's files, WAL and backups. Each key is sealed there with
AES-256-GCM under a KEK that only the instances hold (a 0600 file each, given out of
band, never in the database): a row, a WAL segment or a backup is useless without it,
and re-wrapping every row under a new KEK (`smsgw keys rotate-kek`) then destroying the
old KEK makes every copy made before unreadable.

The associated data binds each sealed key to its tenant, kind and epoch, so a row moved
to another tenant or epoch (by a bug or by someone with write access to the table) fails
to unwrap instead of silently lending its key to other data. The AEAD is the
`cryptography` package's, never a hand-written one.

KEK file format: the 32 random bytes in standard base64 on one line, e.g.
``head -c 32 /dev/urandom | base64 > kek && chmod 600 kek``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.keys import KeyFileError, read_private_file

KEK_BYTES: Final = 32  # AES-256
NONCE_BYTES: Final = 12  # GCM's standard nonce; random, and a KEK seals far below 2^32 keys
_SCHEME: Final = "smsgw-wrapped-key-v1"


class UnwrapError(Exception):
    """A sealed key does not open under this KEK with this tenant, kind and epoch."""


@dataclass(frozen=True, slots=True)
class Kek:
    """A key-encryption key and where it came from; ``secret`` never shows in a repr."""

    path: Path
    secret: bytes = field(repr=False)

    @property
    def id(self) -> str:
        """A public fingerprint (a PRF of the KEK): which KEK sealed a row, revealing nothing."""
        return hmac.new(self.secret, b"smsgw kek id", hashlib.sha256).hexdigest()[:16]


def read_kek(path: Path | str) -> Kek:
    """Load a KEK file, checked as the key file is (regular file, mode 0600, no symlink).

    Errors (KeyFileError) name the file and the problem, never its content.
    """
    path = Path(path)
    raw = read_private_file(path, "KEK file")
    if raw is None:
        raise KeyFileError(
            f"KEK file {path} does not exist; make one with:"
            f" head -c 32 /dev/urandom | base64 > {path} && chmod 600 {path}"
        )
    try:
        secret = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"KEK file {path} is not one line of base64") from None
    if len(secret) != KEK_BYTES:
        raise KeyFileError(f"KEK file {path} must hold {KEK_BYTES} bytes, it holds {len(secret)}")
    return Kek(path, secret)


def _associated_data(tenant_id: str, kind: str, epoch: str) -> bytes:
    # JSON, not a separator: no tenant id can make two different bindings encode alike.
    return json.dumps([_SCHEME, tenant_id, kind, epoch]).encode()


def wrap(kek: Kek, tenant_id: str, kind: str, epoch: str, key: bytes) -> tuple[bytes, bytes]:
    """Seal ``key`` for this tenant, kind and epoch: ``(nonce, ciphertext and tag)``."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(kek.secret).encrypt(nonce, key, _associated_data(tenant_id, kind, epoch))
    return nonce, sealed


def unwrap(kek: Kek, tenant_id: str, kind: str, epoch: str, nonce: bytes, sealed: bytes) -> bytes:
    """Open a sealed key; UnwrapError if the KEK, the binding or a byte is not as sealed."""
    try:
        return AESGCM(kek.secret).decrypt(nonce, sealed, _associated_data(tenant_id, kind, epoch))
    except (InvalidTag, ValueError):
        raise UnwrapError(f"the {kind} key of tenant {tenant_id!r} does not open") from None


@dataclass(frozen=True, slots=True)
class SealedBodies:
    """Bodies that must cross the instances' bus (a replace_sm's new text), sealed under the
    KEK and bound to their tenant and message: whoever may LISTEN on the database reads
    no text, and a sealed body replayed for another message does not open."""

    kek: Kek

    def seal(self, tenant: str, message_id: str, body: str) -> str:
        nonce, sealed = wrap(self.kek, tenant, "body", message_id, body.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, tenant: str, message_id: str, sealed: str) -> str | None:
        """The body, or None if it does not open (another KEK, message or a bad byte)."""
        try:
            raw = base64.b64decode(sealed, validate=True)
            opened = unwrap(
                self.kek, tenant, "body", message_id, raw[:NONCE_BYTES], raw[NONCE_BYTES:]
            )
            return opened.decode()
        except (binascii.Error, ValueError, UnwrapError):
            return None
