"""E.164 normalisation of recipients and classification of sender ids."""

import re

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.numbers import InvalidNumber, is_numeric_address, normalise_msisdn

# Separators seen in the wild; NFKC folds the no-break and full-width ones.
SEPARATORS = ["", " ", "-", ".", "\u00a0", "\u2011", "\u3000", "\u2013"]
FULL_WIDTH_DIGITS = str.maketrans(
    "0123456789+", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff0b"
)

# (region, national significant number) of numbers that phonenumbers considers valid.
swedish_mobile = st.from_regex(r"7[02369][0-9]{7}", fullmatch=True).map(lambda n: ("SE", n))
us_number = st.tuples(
    st.sampled_from(["212", "312", "415", "617", "650", "718"]),
    st.from_regex(r"[2-9][0-9]{6}", fullmatch=True),
).map(lambda parts: ("US", "".join(parts)))
uk_mobile = st.from_regex(r"7[4-9][0-9]{8}", fullmatch=True).map(lambda n: ("GB", n))
valid_numbers = st.one_of(swedish_mobile, us_number, uk_mobile)


@st.composite
def spaced(draw: st.DrawFn, digits: str) -> str:
    """`digits` with a random separator after each character."""
    return "".join(char + draw(st.sampled_from(SEPARATORS)) for char in digits)


@settings(max_examples=50)  # each example checks 15 formats
@given(valid_numbers, st.data())
def test_every_form_of_a_number_normalises_alike(
    number: tuple[str, str], data: st.DataObject
) -> None:
    region, nsn = number
    parsed = phonenumbers.parse(nsn, region)
    assume(phonenumbers.is_valid_number(parsed))
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    idd = "00" + e164[1:]
    international_forms = [
        e164,
        international,
        idd,
        data.draw(spaced(e164)),
        data.draw(spaced(idd)),
        international.translate(FULL_WIDTH_DIGITS),
    ]
    for raw in international_forms:
        assert normalise_msisdn(raw) == e164, raw
        assert normalise_msisdn(raw, region) == e164, raw
    national_forms = [national, data.draw(spaced(national)), national.translate(FULL_WIDTH_DIGITS)]
    for raw in national_forms:
        assert normalise_msisdn(raw, region) == e164, raw


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+46 70-123 45 67", None, "+46701234567"),
        ("0046701234567", None, "+46701234567"),
        ("(070) 123 45 67", "SE", "+46701234567"),
        ("070-1234567", "SE", "+46701234567"),
        ("070-1234567", "se", "+46701234567"),
        ("+46 (0)70 123 45 67", None, "+46701234567"),  # stray trunk prefix
        ("+39 06 1234 5678", None, "+390612345678"),  # Italian leading zero is significant
        ("011 46 70 123 45 67", "US", "+46701234567"),  # the region's own IDD prefix
        ("(650) 253-0000", "US", "+16502530000"),
        ("07700 900123", "GB", "+447700900123"),
        # Possible but unassigned test ranges must pass: only the length is checked.
        ("+15005550006", None, "+15005550006"),
        ("+46709990000", None, "+46709990000"),
    ],
)
def test_normalise_examples(raw: str, country: str | None, expected: str) -> None:
    assert normalise_msisdn(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("", None),
        ("   ", "SE"),
        ("+", None),
        ("DemoApp", "SE"),
        ("+46 70 CALL ME", None),
        ("+46 70 123 45 67 ext 5", None),
        ("++46701234567", None),
        ("+46\n701234567", None),  # a newline is not a separator
        ("46701234567", None),  # bare digits: country unknown
        ("070-123 45 67", None),
        ("+46", None),
        ("+4612", None),
        ("+46 70 123 45 67 89 01 23", None),
        ("+999 123 456 789", None),  # unassigned country code
        ("123", "SE"),
        ("1" * 100, "SE"),
    ],
)
def test_invalid_numbers_are_rejected_without_quoting_them(raw: str, country: str | None) -> None:
    with pytest.raises(InvalidNumber) as excinfo:
        normalise_msisdn(raw, country)
    assert str(excinfo.value)
    assert not re.search(r"[0-9]", str(excinfo.value))


def test_unknown_default_country_is_rejected() -> None:
    with pytest.raises(InvalidNumber, match="default country"):
        normalise_msisdn("070-123 45 67", "XX")


@given(st.one_of(st.text(max_size=30), st.from_regex(r"(\+|00)?[0-9 ]{0,20}", fullmatch=True)))
def test_any_input_gives_e164_or_a_quiet_error(raw: str) -> None:
    try:
        result = normalise_msisdn(raw, "SE")
    except InvalidNumber as exc:
        assert not re.search(r"[0-9]", str(exc))
    else:
        assert re.fullmatch(r"\+[1-9][0-9]+", result)
        assert normalise_msisdn(result) == result  # idempotent


@pytest.mark.parametrize(
    ("sender", "numeric"),
    [
        ("DemoApp", False),
        ("Bank24", False),
        ("", False),
        ("+", False),
        ("12345", True),
        ("+46 70-123 45 67", True),
        ("(070) 123.45.67", True),
        ("\uff11\uff12\uff13", True),  # full-width digits
    ],
)
def test_is_numeric_address(sender: str, numeric: bool) -> None:
    assert is_numeric_address(sender) is numeric
