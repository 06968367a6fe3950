"""The one rule from a cursor to the range a run reads, shared by every incremental table.

A run reads from the cursor's start (inclusive: the stored cursor minus the lookback, or the
first-run start) to the moment the run started minus `CURSOR_SAFETY_MARGIN` (exclusive), so
a stored cursor never passes the time the run started; with custom dates it reads from the
start (exclusive) to the end (inclusive) and leaves the stored cursor alone. Reports and
`global_exclusions` keep their cursor in a dlt incremental (`incremental_cursor`), the
membership tables one timestamp per group in their resource state (`members.py`); all of
them read the window `cursor_window` gives.
"""

from datetime import datetime, timedelta
from typing import Any

import dlt

from .options import SourceOptions
from .records import parse_datetime
from .settings import CURSOR_SAFETY_MARGIN
from .windows import Window


def incremental_cursor(
    column: str, options: SourceOptions, initial: datetime | None, lag: timedelta
) -> dlt.sources.incremental[Any]:
    """dlt's cursor on `column`: with custom dates stateless over (start, end]; otherwise
    incremental from the stored cursor, or from `initial` on the first run.

    Args:
        column: The column the cursor follows (a top-level column of the rows).
        options: The validated source options (custom dates).
        initial: First-run start (inclusive, aware UTC); None reads all time.
        lag: How far before the stored cursor a run starts (the lookback, as dlt's `lag`:
            never before the initial value, and with no boundary hashes kept, so the merge
            on the primary key replaces what is read again); zero for none.
    """
    if options.custom_dates:
        return dlt.sources.incremental(
            column,
            initial_value=options.start,
            end_value=options.end,
            range_start="open",
            range_end="closed",
        )
    return dlt.sources.incremental(column, initial_value=initial, lag=lag.total_seconds() or None)


def cursor_window(start: Any, end: Any, run_started: datetime) -> Window:
    """The range a run reads: custom dates (an `end` given) from `start` (exclusive) to `end`
    (inclusive); otherwise from `start` (inclusive; None = all time) to the run's start
    minus the safety margin (exclusive).

    Args:
        start: The cursor's start: an aware datetime, ISO 8601 text (a dlt incremental's
            `start_value`) or None.
        end: The custom end (same forms), or None.
        run_started: When the run started (aware UTC).
    """
    if end is not None:
        return Window(_as_datetime(start), _as_datetime(end), start_open=True, end_closed=True)
    return Window(_as_datetime(start), run_started - CURSOR_SAFETY_MARGIN)


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(str(value))
