"""The one pseudonym function of the project: every pseudonym of a number comes from here.

Keeping a single function keeps every pseudonym of a number under a given key equal, so
opt-outs and traffic rows can be matched, and lets the scheme be changed in one place (the
"p1:" prefix versions it).
"""

import hmac
import re
from typing import Final

# 128 bits: by the birthday bound, even 10^10 distinct numbers under one key collide with
# probability about 10^20 / 2^129, i.e. never. Truncating an HMAC does not weaken the key:
# guessing the key stays 2^256 work; only the tag is shorter, and 2^128 is out of reach.
PSEUDONYM_BYTES: Final = 16
PREFIX: Final = "p1:"
MIN_KEY_BYTES: Final = 16  # KeyRing keys have 32

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
    return PREFIX + hmac.digest(key, e164.encode(), "sha256")[:PSEUDONYM_BYTES].hex()
