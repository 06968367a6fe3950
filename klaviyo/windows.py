"""The window planner: cursor ranges as exact windows, and the filters that request them.

A `Window` is a range of cursor values with explicit inclusivity. The filter asks Klaviyo for
the window as closely as the endpoint's operators allow (widening it where they cannot say
it exactly); `Window.contains` then keeps exactly the window's rows, so consecutive windows
neither lose nor duplicate a record sitting on a boundary.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .settings import GT_WIDEN

UTC = UTC


@dataclass(frozen=True)
class Window:
    """A range of cursor values (aware UTC datetimes; None = unbounded on that side).

    Attributes:
        start: Lower bound, inclusive unless `start_open`.
        end: Upper bound, exclusive unless `end_closed`.
        start_open: The lower bound excludes `start` (custom dates: start is exclusive).
        end_closed: The upper bound includes `end` (custom dates: end is inclusive).
    """

    start: datetime | None
    end: datetime | None
    start_open: bool = False
    end_closed: bool = False

    @property
    def empty(self) -> bool:
        """Whether no value can lie in the window (a bounded window of zero length, half-open)."""
        return self.start is not None and self.end is not None and (
            self.end < self.start or (self.end == self.start and not self.end_closed)
        )

    def contains(self, value: datetime | None) -> bool:
        """Whether a cursor value lies in the window (a missing value lies in no window
        that has a bound)."""
        if value is None:
            return self.start is None and self.end is None
        if self.start is not None and (value < self.start or (self.start_open and value == self.start)):
            return False
        if self.end is not None and (value > self.end or (not self.end_closed and value == self.end)):
            return False
        return True


def format_datetime(value: datetime) -> str:
    """Formats a datetime for a Klaviyo filter: ISO 8601 in UTC with `Z`, unquoted;
    microseconds only when present (e.g. `2024-01-02T23:20:49Z`)."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def bound_conditions(cursor: str, window: Window, ops: Sequence[str]) -> list[str]:
    """The filter conditions that request `window` on `cursor` with the allowed `ops`.

    Where an endpoint lacks the exact operator, the request is widened (by `GT_WIDEN` where a
    strict operator must stand in for an inclusive one) and the caller trims with `contains`.
    """
    conditions: list[str] = []
    if window.start is not None:
        if window.start_open and "greater-than" in ops:
            conditions.append(f"greater-than({cursor},{format_datetime(window.start)})")
        elif "greater-or-equal" in ops:
            conditions.append(f"greater-or-equal({cursor},{format_datetime(window.start)})")
        elif "greater-than" in ops:
            conditions.append(f"greater-than({cursor},{format_datetime(window.start - GT_WIDEN)})")
    if window.end is not None:
        if window.end_closed and "less-or-equal" in ops:
            conditions.append(f"less-or-equal({cursor},{format_datetime(window.end)})")
        elif not window.end_closed and "less-than" in ops:
            conditions.append(f"less-than({cursor},{format_datetime(window.end)})")
        elif "less-than" in ops:
            conditions.append(f"less-than({cursor},{format_datetime(window.end + GT_WIDEN)})")
        elif "less-or-equal" in ops:
            conditions.append(f"less-or-equal({cursor},{format_datetime(window.end)})")
    return conditions


def combine(conditions: Sequence[str]) -> str | None:
    """Joins conditions into one `filter` value (`and(...)` for several), None for none."""
    if not conditions:
        return None
    if len(conditions) == 1:
        return conditions[0]
    return f"and({','.join(conditions)})"


def split_into(window: Window, parts: int) -> list[Window]:
    """Splits a bounded window into `parts` consecutive windows of equal length: the first
    keeps the start's inclusivity, the last the end's, those between are `[start, end)`."""
    assert window.start is not None and window.end is not None
    step = (window.end - window.start) / parts
    edges = [window.start + step * i for i in range(parts)] + [window.end]
    return [
        Window(
            start=edges[i],
            end=edges[i + 1],
            start_open=window.start_open if i == 0 else False,
            end_closed=window.end_closed if i == parts - 1 else False,
        )
        for i in range(parts)
    ]
