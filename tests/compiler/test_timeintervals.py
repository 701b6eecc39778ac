"""Time interval parsing: Alertmanager's formats into plain ranges, and matching moments against them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from compiler.timeintervals import (
    IntervalError,
    Period,
    Range,
    TimeRange,
    build_period,
    parse_days_of_month,
    parse_months,
    parse_times,
    parse_weekdays,
    parse_years,
)


def test_day_range_is_one_time_range():
    assert parse_times("09:00-17:00") == [TimeRange(540, 1020)]


def test_night_range_splits_at_midnight():
    assert parse_times("22:00-06:00") == [TimeRange(1320, 1440), TimeRange(0, 360)]


def test_end_at_midnight_means_end_of_day():
    assert parse_times("18:00-00:00") == [TimeRange(1080, 1440)]


def test_whole_day_range_is_kept():
    assert parse_times("00:00-24:00") == [TimeRange(0, 1440)]


def test_empty_time_range_is_rejected():
    with pytest.raises(IntervalError, match="empty"):
        parse_times("08:00-08:00")


def test_bad_end_time_error_locates_the_end():
    with pytest.raises(IntervalError) as caught:
        parse_times("09:00-24:01")
    assert (caught.value.start, caught.value.end) == (6, 11)


def test_time_range_prints_as_clock_times():
    assert str(TimeRange(1320, 1440)) == "22:00-24:00"


def test_weekday_range_uses_sunday_as_zero():
    assert parse_weekdays("Monday:Friday") == Range(1, 5)
    assert parse_weekdays("sunday") == Range(0, 0)


def test_weekday_abbreviation_error_locates_the_word():
    with pytest.raises(IntervalError) as caught:
        parse_weekdays("monday:fri")
    assert (caught.value.start, caught.value.end) == (7, 10)


def test_range_with_two_colons_is_rejected():
    with pytest.raises(IntervalError, match="cannot read range"):
        parse_weekdays("monday:tuesday:friday")


def test_negative_days_of_month_count_from_the_end():
    assert parse_days_of_month("-7:-1") == Range(-7, -1)


def test_day_range_that_always_runs_backwards_is_rejected():
    with pytest.raises(IntervalError, match="ends before it starts"):
        parse_days_of_month("5:-25")


def test_months_by_name_or_number():
    assert parse_months("March:6") == Range(3, 6)


def test_years_range():
    assert parse_years("2024:2026") == Range(2024, 2026)


def test_night_period_contains_early_morning_in_its_zone():
    period = build_period({"times": ["22:00-06:00"]}, "Asia/Seoul")
    # 20:30 UTC is 05:30 the next morning in Seoul.
    assert period.contains(datetime(2024, 3, 8, 20, 30, tzinfo=UTC))
    assert not period.contains(datetime(2024, 3, 8, 3, 0, tzinfo=UTC))


def test_last_day_of_month_follows_the_month_length():
    period = Period(days_of_month=(Range(-1, -1),))
    assert period.contains(datetime(2024, 2, 29, 12, 0, tzinfo=UTC))
    assert not period.contains(datetime(2024, 2, 28, 12, 0, tzinfo=UTC))


def test_weekday_period_excludes_weekend():
    period = build_period({"weekdays": ["monday:friday"]})
    assert period.contains(datetime(2024, 3, 8, 12, 0, tzinfo=UTC))  # a Friday
    assert not period.contains(datetime(2024, 3, 9, 12, 0, tzinfo=UTC))  # a Saturday


def test_unknown_location_is_rejected_when_building():
    with pytest.raises(IntervalError, match="unknown time zone `KST`"):
        build_period({}, "KST")
