"""Handset keywords (STOP, START, HELP), matched the way carriers and Twilio match them.

A keyword counts only as the whole message: "STOP" opts out, "Don't stop me now",
"stopwatch" and "STOP IT" do not. Before comparing, message and keywords are brought to one
canonical form, so that what a person clearly typed as the keyword matches:

1. Unicode NFKC, then casefold: full-width "STOP" (U+FF33...), "Stop" and "sToP" are "stop".
2. Diacritics and invisible format characters are dropped: "ARRÊT" and "ARRET" both match
   the keyword ARRÊT (whichever of the two is configured), and a zero-width space or a
   bidi mark inside or around a word is ignored. Letters that are not a base letter plus a
   mark (Ø, Æ, ß) stay as they are.
3. Everything but letters and digits is stripped from both ends: "Stop.", " stop ",
   "STOP!!", '"stop"', "¡stop!" and "STOP 🛑" are "stop".
4. Inside, each run of whitespace, hyphens and underscores becomes one space: "OPT OUT",
   "opt-out" and "Opt  _ out" are all "opt out". Letters are never joined: "S T O P" and
   "STOP ALL" are not "stop" or "stopall" (STOPALL must be typed as one word).

Default keywords (extend them per tenant with `KeywordSet.extended`):

* STOP: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT (the CTIA / Twilio set), OPTOUT,
  OPT OUT and REVOKE (added after the FCC's 2025 revocation-of-consent rules), and local
  forms: STOPP (Swedish, Norwegian, Danish, German), ARRÊT (French; Canadian carriers
  require it next to STOP), BAJA (Spanish, the usual opt-out word in Spain), SAIR
  (Portuguese, the usual opt-out word in Brazil).
* START: START, UNSTOP, YES (Twilio's set).
* HELP: HELP, INFO (Twilio's set), AIDE (French; Canadian carriers require it next to
  HELP).

Note that CANCEL, END and YES opt out or back in even when a person meant to answer an
appointment reminder; that is what carriers do, so a tenant that needs those words for
replies has to build its own `KeywordSet` (and keep the carrier-mandated STOP and HELP).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class KeywordKind(StrEnum):
    """What a keyword asks for; the values name the families in configuration."""

    STOP = "stop"
    START = "start"
    HELP = "help"


# Unicode categories dropped everywhere: Mn holds the combining diacritics NFD splits off
# (and variation selectors), Cf the zero-width and bidi format characters.
_DROPPED: Final = frozenset({"Mn", "Cf"})
_SEPARATORS: Final = re.compile(r"[\s_\-\u2010-\u2015\u2212]+")


def _canonical(text: str) -> str:
    """The canonical form described in the module docstring; linear in the text length."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if not text.isascii():
        decomposed = unicodedata.normalize("NFD", text)
        text = "".join(c for c in decomposed if unicodedata.category(c) not in _DROPPED)
    # A loop, not a "[\W_]+$" pattern, which backtracks quadratically on long punctuation.
    start, end = 0, len(text)
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    # str.split collapses whitespace several times faster than the regex, which is then
    # needed only for hyphens, underscores and non-ASCII dashes.
    core = " ".join(text[start:end].split())
    if "-" in core or "_" in core or not core.isascii():
        core = _SEPARATORS.sub(" ", core)
    return core


@dataclass(frozen=True, slots=True)
class KeywordSet:
    """The three keyword families, in canonical form.

    Words may be given in any spelling ("Opt-Out", "ARRÊT"); they are stored canonical
    ("opt out", "arret"). A word in two families raises ValueError, since a message must
    mean one thing. Field names match `KeywordKind` values, so a configuration table
    ``keywords = { stop = [...], start = [...], help = [...] }`` maps onto `extended`.
    """

    stop: frozenset[str]
    start: frozenset[str]
    help: frozenset[str]

    def __post_init__(self) -> None:
        owner: dict[str, KeywordKind] = {}
        for kind in KeywordKind:
            words = getattr(self, kind.value)
            if isinstance(words, str):
                raise TypeError(f"{kind.value} keywords must be a collection of words")
            canonical = frozenset(_canonical_keyword(word) for word in words)
            for word in canonical:
                if word in owner:
                    raise ValueError(f"keyword {word!r} is in both {owner[word]} and {kind}")
                owner[word] = kind
            object.__setattr__(self, kind.value, canonical)

    def extended(
        self, *, stop: Iterable[str] = (), start: Iterable[str] = (), help: Iterable[str] = ()
    ) -> KeywordSet:
        """This set plus a tenant's own words; extending, so no tenant loses STOP or HELP."""
        for words in (stop, start, help):
            if isinstance(words, str):
                raise TypeError("keywords must be a collection of words, not one string")
        return KeywordSet(
            stop=self.stop | frozenset(stop),
            start=self.start | frozenset(start),
            help=self.help | frozenset(help),
        )


def _canonical_keyword(word: str) -> str:
    canonical = _canonical(word)
    if not canonical:
        raise ValueError("a keyword needs at least one letter or digit")
    return canonical


DEFAULT_KEYWORDS: Final = KeywordSet(
    stop=frozenset(
        {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "OPT OUT", "REVOKE"}
        | {"STOPP", "ARRÊT", "BAJA", "SAIR"}  # local forms, see the module docstring
    ),
    start=frozenset({"START", "UNSTOP", "YES"}),
    help=frozenset({"HELP", "INFO", "AIDE"}),
)


def match(text: str, keywords: KeywordSet = DEFAULT_KEYWORDS) -> KeywordKind | None:
    """The keyword family a whole message belongs to, or None for any other message."""
    word = _canonical(text)
    if word in keywords.stop:
        return KeywordKind.STOP
    if word in keywords.start:
        return KeywordKind.START
    if word in keywords.help:
        return KeywordKind.HELP
    return None
