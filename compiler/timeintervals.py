"""Time interval fields parsed into plain data, with Alertmanager's rules.

The checker uses these parsers to report bad values; the router and the
Alertmanager target use the parsed ranges. Each parser takes the text of one
list entry (`"monday:friday"`, `"09:00-17:00"`, `"-7:-1"`) and returns
ranges, or raises `IntervalError` saying what is wrong and where in the text.

One rule is friendlier than Alertmanager's: a times entry whose start lies
after its end (`"22:00-06:00"`) crosses midnight and becomes two ranges,
`22:00-24:00` and `00:00-06:00`, and an end of `00:00` means midnight at the
end of the day.
"""

from __future__ import annotations

import calendar
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from compiler.suggest import closest

MINUTES_PER_DAY = 24 * 60

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)

# Alertmanager's clock format: two-digit hours and minutes, 24:00 as the end of the day.
_CLOCK = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class IntervalError(ValueError):
    """Error for a time interval entry that cannot be parsed. `start` and `end` are the culprit's offsets in the text."""

    def __init__(self, message: str, start: int = 0, end: int | None = None, *, help: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.start = start
        self.end = end
        self.help = help


@dataclass(frozen=True, slots=True)
class Range:
    """An inclusive range of weekdays (0 = Sunday), days of month, months (1 = January) or years."""

    begin: int
    end: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.begin <= value <= self.end


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Minutes of the day from `start_minute` (inclusive) to `end_minute` (exclusive), within 0..1440."""

    start_minute: int
    end_minute: int

    @staticmethod
    def clock(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}"

    def __str__(self) -> str:
        return f"{self.clock(self.start_minute)}-{self.clock(self.end_minute)}"


@dataclass(frozen=True, slots=True)
class Period:
    """One period of a time interval, in which an empty field places no restriction."""

    times: tuple[TimeRange, ...] = ()
    weekdays: tuple[Range, ...] = ()
    days_of_month: tuple[Range, ...] = ()
    months: tuple[Range, ...] = ()
    years: tuple[Range, ...] = ()
    location: str | None = None

    def contains(self, moment: datetime) -> bool:
        """Tell whether `moment` (timezone-aware) falls into this period, as Alertmanager decides it."""
        if self.location is not None:
            moment = moment.astimezone(zoneinfo.ZoneInfo(self.location))
        minute = moment.hour * 60 + moment.minute
        if self.times and not any(item.start_minute <= minute < item.end_minute for item in self.times):
            return False
        if self.days_of_month and not any(_day_in_range(moment, item) for item in self.days_of_month):
            return False
        if self.months and not any(moment.month in item for item in self.months):
            return False
        weekday = moment.isoweekday() % 7
        if self.weekdays and not any(weekday in item for item in self.weekdays):
            return False
        return not self.years or any(moment.year in item for item in self.years)


def _day_in_range(moment: datetime, item: Range) -> bool:
    length = calendar.monthrange(moment.year, moment.month)[1]
    begin = item.begin if item.begin > 0 else length + item.begin + 1
    end = item.end if item.end > 0 else length + item.end + 1
    if begin > length:
        return False
    return max(begin, -length) <= moment.day <= min(end, length)


# ---------------------------------------------------------------- fields


def parse_times(text: str) -> list[TimeRange]:
    """Parse `"HH:MM-HH:MM"` into time ranges, two when the range crosses midnight."""
    start_text, dash, end_text = text.partition("-")
    if not dash or not start_text.strip() or not end_text.strip():
        raise IntervalError(
            f"time range `{text}` needs a start and an end",
            help='write it as `"HH:MM-HH:MM"`, such as `"09:00-17:00"`',
        )
    end_offset = len(start_text) + 1
    start = _clock(start_text.strip(), _offset_of(text, start_text.strip()))
    end = _clock(end_text.strip(), end_offset + _offset_of(end_text, end_text.strip()))
    if start == MINUTES_PER_DAY:
        raise IntervalError(
            "a time range cannot start at `24:00`", 0, len(start_text), help="start it at `00:00` of the next day instead"
        )
    if end == 0:
        end = MINUTES_PER_DAY
    if start == end:
        raise IntervalError(f"time range `{text}` is empty: it starts where it ends", help="for the whole day omit `times`")
    if start < end:
        return [TimeRange(start, end)]
    return [TimeRange(start, MINUTES_PER_DAY), TimeRange(0, end)]


def _offset_of(text: str, part: str) -> int:
    return text.find(part) if part else 0


def _clock(text: str, offset: int) -> int:
    if not _CLOCK.fullmatch(text):
        padded = "0" + text
        hint = (
            f"write two-digit hours: `{padded}`"
            if _CLOCK.fullmatch(padded)
            else "write times as `HH:MM` with two-digit hours, from `00:00` to `24:00`"
        )
        raise IntervalError(f"`{text}` is not a time of day", offset, offset + len(text), help=hint)
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def parse_weekdays(text: str) -> Range:
    """Parse a weekday or a range such as `monday:friday` (full names, any case)."""
    found = _range(text, _weekday)
    if found.begin > found.end:
        later, earlier = _joined(WEEKDAYS, found.begin, 6), _joined(WEEKDAYS, 0, found.end)
        raise IntervalError(
            f"weekday range `{text}` runs backwards",
            help=f"weeks start on sunday; write two entries: `{later}` and `{earlier}`",
        )
    return found


def _weekday(text: str, offset: int) -> int:
    lowered = text.lower()
    if lowered in WEEKDAYS:
        return WEEKDAYS.index(lowered)
    expanded = [day for day in WEEKDAYS if lowered and day.startswith(lowered)]
    hint = f"write the full name: `{expanded[0]}`" if len(expanded) == 1 else "write a full weekday name such as `monday`"
    raise IntervalError(f"`{text}` is not a weekday", offset, offset + len(text), help=hint)


def parse_days_of_month(text: str) -> Range:
    """Parse a day of month or a range, where negative days count from the end of the month (-1 is the last)."""
    found = _range(text, _day_of_month)
    if found.begin < 0 < found.end:
        raise IntervalError(
            f"day range `{text}` starts counting from the end of the month but ends counting from its start",
            help="make the end day negative too, such as `-7:-1`",
        )
    # Alertmanager's own test: with the shortest month (28 days) the range must not run backwards.
    begin = found.begin if found.begin > 0 else 28 + found.begin
    end = found.end if found.end > 0 else 28 + found.end
    if begin > end:
        raise IntervalError(f"day range `{text}` ends before it starts", help="put the earlier day first")
    return found


def _day_of_month(text: str, offset: int) -> int:
    value = _integer(text, offset, "a day of the month")
    if value == 0 or not -31 <= value <= 31:
        raise IntervalError(
            f"`{text}` is not a day of the month",
            offset,
            offset + len(text),
            help="days run from 1 to 31, or from -1 (the last day) to -31",
        )
    return value


def parse_months(text: str) -> Range:
    """Parse a month or a range, by name (any case) or number 1..12."""
    found = _range(text, _month)
    if found.begin > found.end:
        later, earlier = _joined(MONTHS, found.begin - 1, 11), _joined(MONTHS, 0, found.end - 1)
        raise IntervalError(f"month range `{text}` ends before it starts", help=f"write two entries: `{later}` and `{earlier}`")
    return found


def _joined(names: tuple[str, ...], first: int, last: int) -> str:
    return names[first] if first == last else f"{names[first]}:{names[last]}"


def _month(text: str, offset: int) -> int:
    lowered = text.lower()
    if lowered in MONTHS:
        return MONTHS.index(lowered) + 1
    if _INTEGER.fullmatch(text) and 1 <= int(text) <= 12:
        return int(text)
    expanded = [month for month in MONTHS if lowered and month.startswith(lowered)]
    hint = f"write the full name: `{expanded[0]}`" if len(expanded) == 1 else "write a month name or a number from 1 to 12"
    raise IntervalError(f"`{text}` is not a month", offset, offset + len(text), help=hint)


def parse_years(text: str) -> Range:
    """Parse a year or a range of years such as `2024:2026`."""
    found = _range(text, _year)
    if found.begin > found.end:
        raise IntervalError(f"year range `{text}` ends before it starts", help="put the earlier year first")
    return found


def _year(text: str, offset: int) -> int:
    value = _integer(text, offset, "a year")
    if value < 1:
        raise IntervalError(f"`{text}` is not a year", offset, offset + len(text), help="write a year such as `2025`")
    return value


def _integer(text: str, offset: int, what: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise IntervalError(f"`{text}` is not {what}", offset, offset + len(text))
    return int(text)


def _range(text: str, member: Callable[[str, int], int]) -> Range:
    """Parse `a` or `a:b` with `member` turning each side into a number."""
    parts = text.split(":")
    if len(parts) > 2 or any(not part for part in parts):
        raise IntervalError(f"cannot read range `{text}`", help="write one value, or two values joined by `:`")
    begin = member(parts[0], 0)
    end = member(parts[-1], len(text) - len(parts[-1]))
    return Range(begin, end)


def check_location(text: str) -> str:
    """Return `text` when it names a time zone of the IANA database, and raise `IntervalError` otherwise."""
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise IntervalError(f"unknown time zone `{text}`", help=_zone_help(text)) from None
    return text


# Abbreviations people write for zones, although they name no zone of the IANA database.
_ABBREVIATIONS = {
    "KST": "Asia/Seoul",
    "JST": "Asia/Tokyo",
    "IST": "Asia/Kolkata",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "EDT": "America/New_York",
    "BST": "Europe/London",
    "CEST": "Europe/Berlin",
    "AEST": "Australia/Sydney",
    "AEDT": "Australia/Sydney",
    "SGT": "Asia/Singapore",
}


def _zone_help(text: str) -> str:
    if text.upper() in _ABBREVIATIONS:
        return f"zone abbreviations are ambiguous; name the zone, such as `{_ABBREVIATIONS[text.upper()]}`"
    if text == "Local":
        return "the host's local zone differs between machines; name the zone, such as `Europe/Berlin`"
    suggestion = closest(text, sorted(zoneinfo.available_timezones())) if "/" in text else None
    if suggestion:
        return f"a zone with a similar name exists: `{suggestion}`"
    return "name a zone of the IANA database, such as `Europe/Berlin` or `UTC`"


# The list fields of a period, by property name, with the parser of one entry.
FIELD_PARSERS: dict[str, Callable[[str], object]] = {
    "times": parse_times,
    "weekdays": parse_weekdays,
    "days_of_month": parse_days_of_month,
    "months": parse_months,
    "years": parse_years,
}


def build_period(fields: dict[str, list[str]], location: str | None = None) -> Period:
    """Parse the entries of each field into a `Period`, raising `IntervalError` on the first bad entry."""
    parsed: dict[str, list[object]] = {}
    for key, entries in fields.items():
        parser = FIELD_PARSERS[key]
        items: list[object] = []
        for entry in entries:
            result = parser(entry)
            items.extend(result if isinstance(result, list) else [result])
        parsed[key] = items
    return Period(
        times=tuple(parsed.get("times", ())),  # type: ignore[arg-type]
        weekdays=tuple(parsed.get("weekdays", ())),  # type: ignore[arg-type]
        days_of_month=tuple(parsed.get("days_of_month", ())),  # type: ignore[arg-type]
        months=tuple(parsed.get("months", ())),  # type: ignore[arg-type]
        years=tuple(parsed.get("years", ())),  # type: ignore[arg-type]
        location=check_location(location) if location is not None else None,
    )
