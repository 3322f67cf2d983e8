"""SMPP time strings (section 7.1.1): round trips and every malformed shape refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp.times import (
    MAX_QUARTER_HOURS,
    RelativeTime,
    TimeFormatError,
    absolute_time,
    parse_time,
    relative_time,
)

NOW = datetime(2026, 12, 1, 13, 0, 0, tzinfo=UTC)
quarters = st.integers(-MAX_QUARTER_HOURS, MAX_QUARTER_HOURS)
# Moments whose local form stays in 2000-2099 at every offset (12 hours either side).
moments = st.datetimes(
    min_value=datetime(2000, 1, 1, 12), max_value=datetime(2099, 12, 31, 11), timezones=st.just(UTC)
)
counts = st.integers(0, 99)
relatives = st.builds(RelativeTime, counts, counts, counts, counts, counts, counts)
nows = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
)


def test_the_spec_examples() -> None:
    # 7.1.1.1: 1st June 2001, 14:30 local time, one hour (4 quarters) ahead of UTC.
    assert parse_time("010601143000004+", NOW) == datetime(2001, 6, 1, 13, 30, tzinfo=UTC)
    assert parse_time("010601143000004-", NOW) == datetime(2001, 6, 1, 15, 30, tzinfo=UTC)
    assert parse_time("261201130005100+", NOW) == datetime(2026, 12, 1, 13, 0, 5, 100_000, UTC)
    # 7.1.1.2: 2 years, 6 months, 10 days, 23:34:29 from now.
    assert parse_time("020610233429000R", NOW) == datetime(2029, 6, 12, 12, 34, 29, tzinfo=UTC)
    assert parse_time("000000000002000R", NOW) == NOW + timedelta(seconds=2)
    assert parse_time("", NOW) is None


def test_relative_months_clamp_to_the_last_day() -> None:
    january_31 = datetime(2027, 1, 31, tzinfo=UTC)
    assert parse_time("000100000000000R", january_31) == datetime(2027, 2, 28, tzinfo=UTC)


@given(moments, quarters)
def test_absolute_round_trip(moment: datetime, offset: int) -> None:
    written = absolute_time(moment, offset)
    assert len(written) == 16
    expected = moment.replace(microsecond=moment.microsecond // 100_000 * 100_000)
    assert parse_time(written, NOW) == expected


@given(relatives, nows)
def test_relative_round_trip(span: RelativeTime, now: datetime) -> None:
    moment = parse_time(relative_time(span), now)
    assert moment == span.after(now)
    assert moment is not None and moment >= now
    short = RelativeTime(0, 0, *span[2:])
    assert parse_time(relative_time(short), now) == now + timedelta(
        days=span.days, hours=span.hours, minutes=span.minutes, seconds=span.seconds
    )


# Sixteen characters of the format's own alphabet reach every check, not just the shape's.
near_misses = st.text(alphabet="0123456789+-R", min_size=16, max_size=16)


@given(st.text(max_size=20) | near_misses)
def test_anything_parses_or_is_refused_with_the_one_error(text: str) -> None:
    try:
        moment = parse_time(text, NOW)
    except TimeFormatError:
        return
    assert moment is None or moment.tzinfo is UTC
    assert text == "" or len(text) == 16


@given(moments, quarters, st.integers(0, 15), st.characters(exclude_characters="0123456789"))
def test_a_non_digit_anywhere_but_the_sign_is_refused(
    moment: datetime, offset: int, position: int, bad: str
) -> None:
    written = absolute_time(moment, offset)
    if position == 15 and bad in "+-R":
        return
    text = written[:position] + bad + written[position + 1 :]
    with pytest.raises(TimeFormatError):
        parse_time(text, NOW)


@given(moments, quarters, st.integers(1, 15))
def test_a_wrong_length_is_refused(moment: datetime, offset: int, cut: int) -> None:
    written = absolute_time(moment, offset)
    for text in (written[:cut], written + written[:cut]):
        with pytest.raises(TimeFormatError):
            parse_time(text, NOW)


@pytest.mark.parametrize(
    "text",
    [
        "261301120000000+",  # month 13
        "260001120000000+",  # month 0
        "260230120000000+",  # 30 February
        "261201240000000+",  # hour 24
        "261201126000000+",  # minute 60
        "261201120060000+",  # second 60
        "261201120000049+",  # 49 quarter hours
        "261201120000000X",  # no sign
        "000000000002100R",  # relative with tenths
        "000000000002001R",  # relative with an offset
        "\uff1261201120000000+",  # a digit, but not an ASCII one (full-width 2)
        "26120112000000 +",
    ],
)
def test_malformed_shapes(text: str) -> None:
    with pytest.raises(TimeFormatError):
        parse_time(text, NOW)
