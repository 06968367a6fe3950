"""Day windows of the reporting tables (`performance.py`), and the range of days a table holds.

Klaviyo's report timeframes are whole days of the account's timezone and include both end
days, so windows here are inclusive day ranges `Days(first, last)`, cut on day (or calendar
month) boundaries and never overlapping: the rows of any set of windows add up without
counting a day twice. What a table holds is one contiguous range per conversion metric (its
resource state), grown forward by the runs (new days, plus the lookback re-read) and backward
by the backfill.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Optional

from .settings import ReportPeriod

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Days:
    """The days from `first` to `last`, both included."""

    first: date
    last: date

    @property
    def count(self) -> int:
        """Number of days."""
        return (self.last - self.first).days + 1

    def to_state(self) -> dict[str, str]:
        """As stored in the resource state: ISO dates."""
        return {"first": self.first.isoformat(), "last": self.last.isoformat()}

    @classmethod
    def from_state(cls, value: Mapping[str, Any] | None) -> Optional["Days"]:
        """The range stored by `to_state`, or None."""
        if not value:
            return None
        return cls(date.fromisoformat(value["first"]), date.fromisoformat(value["last"]))

    def __str__(self) -> str:
        return f"{self.first}..{self.last}"


def month_start(day: date) -> date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def month_last(day: date) -> date:
    """The last day of `day`'s month."""
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - ONE_DAY


def align(day: date, period: ReportPeriod) -> date:
    """The first day of the row that holds `day`: itself, or its month's first day."""
    return month_start(day) if period == "month" else day


def forward(span: Days, period: ReportPeriod, window_days: int) -> list[Days]:
    """Windows covering `span` oldest first: calendar months ("month", clipped to the span), or
    `window_days` days each (the last one shorter)."""
    windows: list[Days] = []
    day = span.first
    while day <= span.last:
        last = month_last(day) if period == "month" else day + timedelta(days=window_days - 1)
        windows.append(Days(day, min(last, span.last)))
        day = windows[-1].last + ONE_DAY
    return windows


def backward(span: Days, period: ReportPeriod, window_days: int) -> list[Days]:
    """Windows covering `span` newest first, cut as `forward` would from its end."""
    windows: list[Days] = []
    day = span.last
    while day >= span.first:
        first = month_start(day) if period == "month" else day - timedelta(days=window_days - 1)
        windows.append(Days(max(first, span.first), day))
        day = windows[-1].first - ONE_DAY
    return windows


def plan(
    held: Days | None, today: date, first_day: date, lookback_days: int, period: ReportPeriod, window_days: int
) -> tuple[list[Days], list[Days]]:
    """The windows of one run: (recent, backfill).

    Recent: from `lookback_days` before today (or the day after the held range, if the runs
    left a gap; on the first run as far back as one request reads) to today, whose row is
    partial until the day is over; the days after the held range first, oldest first, then
    the re-read ones. Backfill,
    newest first: from the day before the held (or recent) range back to `first_day`. Month
    tables read whole months (today's month up to today).

    Args:
        held: The days the table holds contiguously for this metric (state), or None.
        today: The run's day (UTC).
        first_day: The earliest day wanted (backfill start; aligned to its month for months).
        lookback_days: Days before today re-read every run (attribution moves for days).
        period: "day" or "month" (see `PerformanceReport.period`).
        window_days: Most days one request covers (day rows).
    """
    first_day = align(first_day, period)
    if today < first_day:
        return [], []
    start = today - timedelta(days=lookback_days)
    if held is None:
        start = min(start, today - timedelta(days=window_days - 1))  # a first window as long as one request reads
    elif held.last < today and held.last + ONE_DAY < start:
        start = held.last + ONE_DAY  # runs were missed: catch up from where the table ends
    start = max(first_day, align(start, period))
    recent = forward(Days(start, today), period, window_days)
    if held is not None:  # days after the held range first: a run whose share ends early still moves on
        recent = [w for w in recent if w.first > held.last] + [w for w in recent if w.first <= held.last]
    if held is not None and held.first <= start and held.last + ONE_DAY >= start:
        start = held.first
    backfill = backward(Days(first_day, start - ONE_DAY), period, window_days) if start > first_day else []
    return recent, backfill


def extend(held: Days | None, window: Days) -> Days:
    """The held range after `window` was read: their union when they touch; otherwise the
    window, unless it lies before the held range (whose later days it cannot join)."""
    if held is None:
        return window
    if window.first <= held.last + ONE_DAY and window.last + ONE_DAY >= held.first:
        return Days(min(held.first, window.first), max(held.last, window.last))
    return held if window.last < held.first else window


def days_left(held: Days | None, first_day: date, today: date, period: ReportPeriod) -> int:
    """Days between `first_day` and today the table does not hold yet."""
    first_day = align(first_day, period)
    total = max(0, (today - first_day).days + 1)
    if held is None:
        return total
    covered = (min(held.last, today) - max(held.first, first_day)).days + 1
    return max(0, total - max(0, covered))
