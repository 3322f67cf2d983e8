"""Handset keywords: whole-message matching after Unicode, case and punctuation folding."""

import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from privacy.keywords import DEFAULT_KEYWORDS, KeywordKind, KeywordSet, match

FAMILIES = {
    KeywordKind.STOP: DEFAULT_KEYWORDS.stop,
    KeywordKind.START: DEFAULT_KEYWORDS.start,
    KeywordKind.HELP: DEFAULT_KEYWORDS.help,
}
ALL_KEYWORDS = DEFAULT_KEYWORDS.stop | DEFAULT_KEYWORDS.start | DEFAULT_KEYWORDS.help
keyword_with_kind = st.sampled_from(
    sorted((word, kind) for kind, words in FAMILIES.items() for word in words)
)

# What people and phones put around a keyword: spaces of all widths, line breaks,
# punctuation, quotes, emoji (with a variation selector) and zero-width characters.
PADDING = [" ", "\t", "\n", "\r\n", "\u00a0", "\u3000", ".", "!", "?", "¡", "¿", ",", ";"]
PADDING += ['"', "'", "«", "»", "“", "”", "(", ")", "*", "-", "_", "…", "🛑", "🙏\ufe0f"]
PADDING += ["\u200b", "\u200d", "\ufeff", "\u200e", "\u00ad"]
padding = st.lists(st.sampled_from(PADDING), max_size=6).map("".join)
# Unicode punctuation, symbols and spaces whose NFKC form has no letter or digit in it
# ("™" becomes "TM", so "STOP™" is not a bare keyword and is left out here).
unicode_padding_char = st.characters(categories=("P", "S", "Zs")).filter(
    lambda c: not any(x.isalnum() for x in unicodedata.normalize("NFKC", c))
)
unicode_padding = st.lists(unicode_padding_char, max_size=4).map("".join)
# Runs that count as the single space inside a multi-word keyword such as "opt out".
inner_separator = st.lists(st.sampled_from([" ", "-", "_", "\t", "\u2010"]), min_size=1).map(
    "".join
)


@st.composite
def random_case(draw: st.DrawFn, word: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in word)


@st.composite
def typed(draw: st.DrawFn, keyword: str) -> str:
    """`keyword` in random case, its inner spaces replaced by random separator runs."""
    words = [draw(random_case(part)) for part in keyword.split(" ")]
    text = words[0]
    for part in words[1:]:
        text += draw(inner_separator) + part
    return text


@given(keyword_with_kind, st.data())
def test_a_keyword_matches_in_any_case_with_any_padding(
    keyword: tuple[str, KeywordKind], data: st.DataObject
) -> None:
    word, kind = keyword
    before = data.draw(st.one_of(padding, unicode_padding))
    after = data.draw(st.one_of(padding, unicode_padding))
    assert match(before + data.draw(typed(word)) + after) is kind


@given(
    keyword=st.sampled_from(sorted(ALL_KEYWORDS)),
    word=st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True),
    separator=st.sampled_from(["", " ", "  ", "\t", "\n", "-", "'", ", ", ". ", "/"]),
    word_first=st.booleans(),
    before=padding,
    after=padding,
)
def test_a_keyword_with_another_word_does_not_match(
    keyword: str, word: str, separator: str, word_first: bool, before: str, after: str
) -> None:
    # Separators of whitespace and hyphens fold to one space, others stay as they are.
    joiner = " " if separator and not separator.strip(" \t\n-") else separator
    parts = [word, keyword] if word_first else [keyword, word]
    # "STOP" + "ALL" is STOPALL and "UN" + "STOP" is UNSTOP: real keywords, not a sentence.
    assume(joiner.join(parts).casefold() not in ALL_KEYWORDS)
    assert match(before + separator.join(parts) + after) is None


@given(keyword_with_kind)
def test_the_full_width_form_matches(keyword: tuple[str, KeywordKind]) -> None:
    word, kind = keyword
    full_width = "".join("\u3000" if c == " " else chr(ord(c.upper()) + 0xFEE0) for c in word)
    assert match(full_width) is kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("STOP", KeywordKind.STOP),
        ("Stop.", KeywordKind.STOP),
        (" stop ", KeywordKind.STOP),
        ("STOP!!", KeywordKind.STOP),
        ('"stop"', KeywordKind.STOP),
        ("¡stop!", KeywordKind.STOP),
        ("\uff33\uff34\uff2f\uff30", KeywordKind.STOP),  # full-width
        ("S\u200bTOP", KeywordKind.STOP),  # zero-width space inside
        ("\u202estop\u202c", KeywordKind.STOP),  # bidi override around
        ("Opt-Out", KeywordKind.STOP),
        ("opt  out", KeywordKind.STOP),
        ("OPTOUT", KeywordKind.STOP),
        ("stopall", KeywordKind.STOP),
        ("Stopp", KeywordKind.STOP),
        ("ARRÊT", KeywordKind.STOP),
        ("Arret", KeywordKind.STOP),
        ("arre\u0302t", KeywordKind.STOP),  # decomposed ê
        ("Baja", KeywordKind.STOP),
        ("unstop", KeywordKind.START),
        ("Yes!", KeywordKind.START),
        ("help?", KeywordKind.HELP),
        ("İNFO", KeywordKind.HELP),  # Turkish capital dotted I casefolds to i + dot
        ("Aide", KeywordKind.HELP),
        ("Don't stop me now", None),
        ("stopwatch", None),
        ("STOP IT", None),
        ("please stop", None),
        ("stop stop", None),
        ("S T O P", None),  # letters are never joined
        ("STOP ALL", None),  # STOPALL is one word
        ("STOP\nSent from my iPhone", None),
        ("STOP™", None),  # NFKC makes it "STOPTM"
        ("STOP2", None),
        ("", None),
        ("!!!", None),
        ("\u200b", None),
    ],
)
def test_examples(text: str, kind: KeywordKind | None) -> None:
    assert match(text) is kind


def test_long_punctuation_runs_take_linear_time() -> None:
    text = "!" * 200_000 + "stop" + " ." * 100_000
    assert match(text) is KeywordKind.STOP
    assert match(text + "x") is None


def test_keywords_are_stored_canonical() -> None:
    assert {"stop", "opt out", "arret"} <= DEFAULT_KEYWORDS.stop
    assert "ARRÊT" not in DEFAULT_KEYWORDS.stop


def test_a_tenant_extends_the_defaults_in_any_spelling() -> None:
    keywords = DEFAULT_KEYWORDS.extended(stop=["Avsluta", "Hör upp"], help=["Hjälp"])
    assert match("AVSLUTA!", keywords) is KeywordKind.STOP
    assert match("hor-upp", keywords) is KeywordKind.STOP
    assert match("hjalp", keywords) is KeywordKind.HELP
    assert match("HJÄLP", keywords) is KeywordKind.HELP
    assert match("STOP", keywords) is KeywordKind.STOP  # the defaults stay
    assert match("avsluta", DEFAULT_KEYWORDS) is None  # the defaults are unchanged


def test_a_tenant_may_replace_the_defaults() -> None:
    keywords = KeywordSet(stop=frozenset({"STOP"}), start=frozenset(), help=frozenset({"HELP"}))
    assert match("stop", keywords) is KeywordKind.STOP
    assert match("yes", keywords) is None
    assert match("cancel", keywords) is None


def test_a_word_in_two_families_is_refused() -> None:
    with pytest.raises(ValueError, match="in both"):
        DEFAULT_KEYWORDS.extended(help=["Stop!"])
    with pytest.raises(ValueError, match="in both"):
        KeywordSet(stop=frozenset({"arret"}), start=frozenset({"ARRÊT"}), help=frozenset())


@pytest.mark.parametrize("word", ["", " ", "!?", "\u200b"])
def test_a_keyword_without_letters_is_refused(word: str) -> None:
    with pytest.raises(ValueError, match="letter or digit"):
        DEFAULT_KEYWORDS.extended(stop=[word])


def test_a_single_string_is_not_taken_for_a_list_of_letters() -> None:
    with pytest.raises(TypeError):
        DEFAULT_KEYWORDS.extended(stop="AVSLUTA")
    with pytest.raises(TypeError):
        KeywordSet(stop="STOP", start=frozenset(), help=frozenset())  # type: ignore[arg-type]
