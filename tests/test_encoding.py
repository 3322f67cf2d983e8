"""GSM 03.38 / UCS-2 codecs and concatenated-SMS segmentation."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    BodyInfo,
    Encoding,
    analyse,
    decode_ucs2,
    decode_ucs2_part,
    encode_ucs2,
    gsm7_decode,
    gsm7_encode,
    is_gsm7,
    join_ucs2_halves,
    split_parts,
)

BASIC_CHARS = GSM7_BASIC.replace("\x1b", "")
EXTENSION_CHARS = "".join(GSM7_EXTENSION.values())
GSM_CHARS = BASIC_CHARS + EXTENSION_CHARS
GSM_PART, UCS2_PART = 153, 67

gsm_text = st.text(alphabet=GSM_CHARS)
# Half extension characters, long enough to need several parts: escape pairs then land on
# part boundaries in most examples.
long_gsm_text = st.text(
    alphabet=st.one_of(st.sampled_from(BASIC_CHARS), st.sampled_from(EXTENSION_CHARS)),
    min_size=150,
    max_size=480,
)
# Surrogates are excluded: a Python str holding one cannot be sent at all.
any_text = st.text(alphabet=st.one_of(st.sampled_from(GSM_CHARS), st.characters(codec="utf-8")))
long_ucs2_text = st.text(
    alphabet=st.one_of(st.sampled_from("жé😀🎉👍🏽𝄞"), st.characters(codec="utf-8")),
    min_size=60,
    max_size=300,
)


def septets(char: str) -> int:
    return 2 if char in EXTENSION_CHARS else 1


def utf16_units(text: str) -> int:
    return len(encode_ucs2(text)) // 2


# --- tables -------------------------------------------------------------------------------


def test_basic_table_layout() -> None:
    assert len(GSM7_BASIC) == 128
    assert len(set(BASIC_CHARS)) == 127
    assert GSM7_BASIC[0x1B] == "\x1b"
    landmarks = {0x00: "@", 0x02: "$", 0x09: "Ç", 0x0A: "\n", 0x0D: "\r", 0x11: "_", 0x20: " "}
    landmarks |= {0x24: "¤", 0x40: "¡", 0x5B: "Ä", 0x5F: "§", 0x60: "¿", 0x7F: "à"}
    for code, char in landmarks.items():
        assert GSM7_BASIC[code] == char, hex(code)


def test_greek_letters_are_greek_not_lookalikes() -> None:
    greek = GSM7_BASIC[0x10] + GSM7_BASIC[0x12:0x1B]
    names = [unicodedata.name(c) for c in greek]
    letters = ["DELTA", "PHI", "GAMMA", "LAMDA", "OMEGA", "PI", "PSI", "SIGMA", "THETA", "XI"]
    assert names == [f"GREEK CAPITAL LETTER {letter}" for letter in letters]


def test_extension_table() -> None:
    assert dict(GSM7_EXTENSION) == {
        0x0A: "\f",
        0x14: "^",
        0x28: "{",
        0x29: "}",
        0x2F: "\\",
        0x3C: "[",
        0x3D: "~",
        0x3E: "]",
        0x40: "|",
        0x65: "€",
    }
    assert not set(EXTENSION_CHARS) & set(BASIC_CHARS)


# --- GSM 7-bit codec ----------------------------------------------------------------------


@pytest.mark.parametrize("code", [c for c in range(128) if c != 0x1B])
def test_every_basic_char_round_trips(code: int) -> None:
    char = GSM7_BASIC[code]
    assert gsm7_encode(char) == bytes([code])
    assert gsm7_decode(bytes([code])) == char


@pytest.mark.parametrize(("code", "char"), GSM7_EXTENSION.items())
def test_every_extension_char_round_trips(code: int, char: str) -> None:
    assert gsm7_encode(char) == bytes([0x1B, code])
    assert gsm7_decode(bytes([0x1B, code])) == char


@given(gsm_text)
def test_gsm7_round_trip(text: str) -> None:
    encoded = gsm7_encode(text)
    assert gsm7_decode(encoded) == text
    assert len(encoded) == sum(map(septets, text))
    assert is_gsm7(text)


@given(any_text)
def test_is_gsm7_matches_alphabet(text: str) -> None:
    in_alphabet = all(c in GSM_CHARS for c in text)
    assert is_gsm7(text) is in_alphabet
    if in_alphabet:
        assert gsm7_decode(gsm7_encode(text)) == text
    else:
        with pytest.raises(ValueError, match=r"not in GSM 03\.38"):
            gsm7_encode(text)


# U+2126 OHM SIGN looks like the GSM Omega (U+03A9) but is not in the alphabet.
@pytest.mark.parametrize("char", ["`", "\x1b", "\x00", "\t", "ç", "\u2126", "😀"])
def test_gsm7_encode_rejects_outside_alphabet(char: str) -> None:
    with pytest.raises(ValueError, match=f"U\\+{ord(char):04X} at index 2"):
        gsm7_encode("ab" + char)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"\x1bA", "A"),  # unknown escape: basic-table character
        (b"\x1b\x1bA", " A"),  # ESC ESC is reserved: shown as a space
        (b"abc\x1b", "abc"),  # trailing lone ESC is dropped
        (b"\xc1\xe2", "Ab"),  # bit 7 is ignored
        (b"\x9b\xe5", "€"),  # ... also on an escape pair
    ],
)
def test_gsm7_decode_is_lenient(data: bytes, text: str) -> None:
    assert gsm7_decode(data) == text


# --- UCS-2 / UTF-16 -----------------------------------------------------------------------


@given(st.text())
def test_ucs2_round_trip(text: str) -> None:
    assert decode_ucs2(encode_ucs2(text)) == text


def test_ucs2_astral_chars_use_surrogate_pairs() -> None:
    assert encode_ucs2("a😀") == b"\x00a\xd8\x3d\xde\x00"
    assert decode_ucs2(b"\xd8\x3d\xde\x00") == "😀"


@pytest.mark.parametrize(
    "data",
    [
        b"\x00a\x00",  # odd trailing byte
        b"\xd8\x3d",  # high surrogate at the end
        b"\xd8\x3d\x00a",  # high surrogate without its low half
        b"\xde\x00\x00a",  # lone low surrogate
    ],
)
def test_decode_ucs2_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_ucs2(data)


def test_encode_ucs2_rejects_lone_surrogate() -> None:
    with pytest.raises(ValueError):
        encode_ucs2("a\ud800")


# --- analyse ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", BodyInfo(Encoding.GSM7, 0, 1)),
        ("a" * 160, BodyInfo(Encoding.GSM7, 160, 1)),
        ("a" * 161, BodyInfo(Encoding.GSM7, 161, 2)),
        ("a" * 306, BodyInfo(Encoding.GSM7, 306, 2)),
        ("a" * 307, BodyInfo(Encoding.GSM7, 307, 3)),
        ("€" * 80, BodyInfo(Encoding.GSM7, 160, 1)),
        ("€" * 81, BodyInfo(Encoding.GSM7, 162, 2)),  # 76 pairs (152 septets) per part
        ("a" * 152 + "€" + "b" * 8, BodyInfo(Encoding.GSM7, 162, 2)),
        ("a" * 152 + "€" * 77, BodyInfo(Encoding.GSM7, 306, 3)),  # > ceil(306 / 153)
        ("ж" * 70, BodyInfo(Encoding.UCS2, 70, 1)),
        ("ж" * 71, BodyInfo(Encoding.UCS2, 71, 2)),
        ("😀" * 35, BodyInfo(Encoding.UCS2, 70, 1)),
        ("😀" * 36, BodyInfo(Encoding.UCS2, 72, 2)),
        ("a" * 66 + "😀" * 34, BodyInfo(Encoding.UCS2, 134, 3)),  # > ceil(134 / 67)
        ("`", BodyInfo(Encoding.UCS2, 1, 1)),  # ASCII, yet not GSM
        ("Hej Åsa, 10 € [rabatt]", BodyInfo(Encoding.GSM7, 25, 1)),  # 3 extension chars
    ],
)
def test_analyse(body: str, expected: BodyInfo) -> None:
    assert analyse(body) == expected
    assert len(split_parts(body, expected.encoding)) == expected.segments


@given(any_text)
def test_analyse_counts_units(body: str) -> None:
    info = analyse(body)
    if is_gsm7(body):
        assert info.encoding == Encoding.GSM7
        assert info.units == sum(map(septets, body))
    else:
        assert info.encoding == Encoding.UCS2
        assert info.units == utf16_units(body)
    assert len(split_parts(body, info.encoding)) == info.segments


def test_analyse_rejects_lone_surrogate() -> None:
    with pytest.raises(ValueError):
        analyse("caf\udce9")


# --- split_parts --------------------------------------------------------------------------


def test_split_keeps_escape_pair_together_at_boundary() -> None:
    body = "a" * 152 + "€" + "b" * 8
    assert split_parts(body, Encoding.GSM7) == ["a" * 152, "€" + "b" * 8]


def test_split_keeps_surrogate_pair_together_at_boundary() -> None:
    body = "a" * 66 + "😀" + "b" * 8
    assert split_parts(body, Encoding.UCS2) == ["a" * 66, "😀" + "b" * 8]


def test_single_sms_is_one_part() -> None:
    assert split_parts("", Encoding.GSM7) == [""]
    assert split_parts("a" * 160, Encoding.GSM7) == ["a" * 160]
    assert split_parts("ж" * 70, Encoding.UCS2) == ["ж" * 70]


def test_split_gsm7_rejects_non_gsm_text() -> None:
    with pytest.raises(ValueError):
        split_parts("😀", Encoding.GSM7)


@given(long_gsm_text)
def test_split_gsm7_never_breaks_an_escape(body: str) -> None:
    parts = split_parts(body, Encoding.GSM7)
    assert "".join(parts) == body
    assert len(parts) == analyse(body).segments
    if len(parts) == 1:
        assert len(gsm7_encode(body)) <= 160
        return
    sizes = [len(gsm7_encode(part)) for part in parts]  # each part encodes on its own
    assert all(0 < size <= GSM_PART for size in sizes)
    # Greedy: no part could have taken the first character of the next one.
    for size, following in zip(sizes, parts[1:], strict=False):
        assert size + septets(following[0]) > GSM_PART


@given(long_ucs2_text)
def test_split_ucs2_never_breaks_a_surrogate_pair(body: str) -> None:
    parts = split_parts(body, Encoding.UCS2)
    assert "".join(parts) == body
    if analyse(body).encoding == Encoding.UCS2:
        assert len(parts) == analyse(body).segments
    if len(parts) == 1:
        assert utf16_units(body) <= 70
        return
    sizes = [utf16_units(part) for part in parts]  # encode_ucs2 fails on a split pair
    assert all(0 < size <= UCS2_PART for size in sizes)
    for size, following in zip(sizes, parts[1:], strict=False):
        assert size + utf16_units(following[0]) > UCS2_PART


def test_split_long_body() -> None:
    body = "abc€" * 50_000  # 250,000 septets, escape pairs throughout
    parts = split_parts(body, Encoding.GSM7)
    assert "".join(parts) == body
    assert len(parts) == analyse(body).segments


def test_a_surrogate_pair_split_between_parts_is_mended_only_when_joined() -> None:
    pair = "😀".encode("utf-16-be")
    first, second = decode_ucs2_part(b"\x00a" + pair[:2]), decode_ucs2_part(pair[2:] + b"\x00b")
    assert join_ucs2_halves([first, second]) == "a😀b"
    assert join_ucs2_halves([second, first]) == second + first  # halves in the wrong order
    with pytest.raises(ValueError):
        decode_ucs2_part(b"\x00a" + pair[:2] + b"\x00b")  # half a pair inside a part
