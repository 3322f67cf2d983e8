"""SMPP time strings (SMPP 3.4 section 7.1.1), read and written: pure, stdlib only.

schedule_delivery_time, validity_period and final_date are 16 characters:

* absolute ``YYMMDDhhmmsstnnp``: a local time (``t`` tenths of a second), ``nn``
  quarter hours (00-48) ahead of (``p`` = ``+``) or behind (``-``) UTC;
* relative ``YYMMDDhhmmss000R``: that many years, months, days, hours, minutes and
  seconds after the SMSC's current time.

The empty string means "none given". Every other string is refused with
`TimeFormatError` and nothing else, so a front end can answer with one status.
Years are 20YY: the spec leaves the century open, and every SMSC in use reads
them so.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple

TIME_LENGTH = 16
MAX_QUARTER_HOURS = 48
_DIGITS = frozenset("0123456789")


class TimeFormatError(ValueError):
    """Not an SMPP time: the front end answers ESME_RINVSCHED or ESME_RINVEXPIRY."""


class RelativeTime(NamedTuple):
    """The six counts of a relative time, each 0-99."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def after(self, now: datetime) -> datetime:
        """The moment this long after ``now``: years and months on the calendar (the
        day clamped to the month's last), the rest as a duration."""
        months = now.month - 1 + self.months + 12 * self.years
        year, month = now.year + months // 12, months % 12 + 1
        day = min(now.day, calendar.monthrange(year, month)[1])
        moved = now.replace(year=year, month=month, day=day)
        return moved + timedelta(
            days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds
        )


def parse_time(text: str, now: datetime) -> datetime | None:
    """The moment an SMPP time names, aware and in UTC; None for "" (none given).

    A relative time counts from ``now`` (aware). Raises `TimeFormatError` only.
    """
    if text == "":
        return None
    if len(text) != TIME_LENGTH or not _DIGITS.issuperset(text[:15]):
        raise TimeFormatError("not 15 digits and a sign")
    fields = [int(text[i : i + 2]) for i in range(0, 12, 2)]
    sign = text[15]
    if sign == "R":
        if text[12:15] != "000":
            raise TimeFormatError("a relative time ends in 000R")
        return RelativeTime(*fields).after(now.astimezone(UTC))
    if sign not in "+-":
        raise TimeFormatError("the last character is +, - or R")
    quarters = int(text[13:15])
    if quarters > MAX_QUARTER_HOURS:
        raise TimeFormatError("the UTC offset is more than 48 quarter hours")
    offset = timedelta(minutes=15 * quarters) * (1 if sign == "+" else -1)
    year, month, day, hour, minute, second = fields
    try:
        local = datetime(
            2000 + year,
            month,
            day,
            hour,
            minute,
            second,
            int(text[12]) * 100_000,
            tzinfo=timezone(offset),
        )
    except ValueError:
        raise TimeFormatError("not a date and time of day") from None
    return local.astimezone(UTC)


def absolute_time(moment: datetime, quarter_hours: int = 0) -> str:
    """``moment`` (aware, years 2000-2099 in that zone) in the absolute form, written
    in the local time ``quarter_hours`` (-48 to 48) quarter hours ahead of UTC."""
    local = moment.astimezone(timezone(timedelta(minutes=15 * quarter_hours)))
    sign = "-" if quarter_hours < 0 else "+"
    tenths = local.microsecond // 100_000
    return f"{local:%y%m%d%H%M%S}{tenths}{abs(quarter_hours):02d}{sign}"


def relative_time(span: RelativeTime) -> str:
    """``span`` in the relative form."""
    return "".join(f"{count:02d}" for count in span) + "000R"
