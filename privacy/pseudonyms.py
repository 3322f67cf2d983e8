"""The one pseudonym function of the project: every pseudonym of a number comes from here.

Keeping a single function keeps every pseudonym of a number under a given key equal, so
opt-outs and traffic rows can be matched, and lets the scheme be changed in one place (the
"p1:" prefix versions it).
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Final

# 128 bits: by the birthday bound, even 10^10 distinct numbers under one key collide with
# probability about 10^20 / 2^129, i.e. never. Truncating an HMAC does not weaken the key:
# guessing the key stays 2^256 work; only the tag is shorter, and 2^128 is out of reach.
PSEUDONYM_BYTES: Final = 16
PREFIX: Final = "p1:"
MIN_KEY_BYTES: Final = 16  # KeyRing keys have 32

_BLOCK: Final = 64  # SHA-256 block size
_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")


def pseudonymise(key: bytes, e164: str, *, number: bool = True) -> str:
    """``"p1:"`` + hex of HMAC-SHA256(key, number) truncated to `PSEUDONYM_BYTES`.

    A plain hash is no pseudonym: a country's mobile range holds some 10^9 numbers and a
    GPU computes some 10^10 SHA-256 per second, so an unkeyed hash of a number is reversed
    by hashing every candidate. Keyed with a random per-tenant key, the pseudonym reveals
    nothing without the key, and destroying the key makes it unlinkable for good. The
    prefix keeps a pseudonym from ever passing as a number (it has no "+") and names the
    scheme.

    `e164` must be the output of `gateway.numbers.normalise_msisdn`: other spellings of the
    same number would give other pseudonyms, so they raise ValueError (the message never
    quotes the number). So do keys under `MIN_KEY_BYTES`: a guessable key is no key.
    With ``number=False`` any other identifier (a client_ref) is taken as it is.
    """
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a pseudonym key needs at least {MIN_KEY_BYTES} random bytes")
    if number and not _E164.fullmatch(e164):
        raise ValueError("not an E.164 number; normalise it with normalise_msisdn first")
    inner, outer = _keyed(key)
    digest = inner.copy()
    digest.update(e164.encode())
    tag = outer.copy()
    tag.update(digest.digest())
    return PREFIX + tag.digest()[:PSEUDONYM_BYTES].hex()


@functools.lru_cache(maxsize=64)
def _keyed(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states that have absorbed HMAC's inner and outer key blocks (RFC 2104).

    A pseudonym then costs two short hashes from copies of these, 1.8 us; hmac.digest
    sets OpenSSL's HMAC up anew on every call, 4.4 us, and releases the GIL while at it,
    which under load hands it to the store's writer thread for a while.
    """
    block = hashlib.sha256(key).digest() if len(key) > _BLOCK else key
    block = block.ljust(_BLOCK, b"\0")
    return (
        hashlib.sha256(bytes(b ^ 0x36 for b in block)),
        hashlib.sha256(bytes(b ^ 0x5C for b in block)),
    )


def forget_keys() -> None:
    """Drop every cached key state; called when keys are destroyed."""
    _keyed.cache_clear()
