"""The membership tables `list_profiles` and `segment_profiles`: (group id, profile id,
`joined_group_at`) rows, merged on (group id, profile id).

A list's `updated` does not change when profiles join it, so membership cannot follow the
lists' incremental runs. Instead every run lists the ids of every list (segment) — one cheap
request per 10 — and reads each one's members with `joined_group_at` from that group's own
cursor (inclusive) to the run's start minus the safety margin, sorted by `joined_group_at`
and split into parallel windows like any report. The cursors, one ISO timestamp per group,
live in the resource state (a few hundred entries at most); a group that disappears loses its
cursor. A profile that leaves a group is not visible this way: its row stays.
"""

from collections.abc import Generator, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import quote

import dlt
from dlt.common.typing import TDataItems
from dlt.sources import DltResource

from .account import check_account
from .client import KlaviyoApi
from .cursors import cursor_window
from .extract import plan_jobs, read_jobs
from .ids import read_ids
from .options import SourceOptions
from .records import parse_datetime
from .settings import ChildReport, Report
from .windows import Window

STATE_KEY = "joined_group_at"  # resource state: {group id: last joined_group_at read (ISO 8601)}


def member_window(options: SourceOptions, report: Report, last: str | None, run_started: datetime) -> Window:
    """The `joined_group_at` range one group is read over in this run: custom dates as given
    (start exclusive, end inclusive); otherwise from the group's cursor (or `start_date`, or
    all time for a new group), minus the lookback, to the run's start minus the margin
    (`cursors.cursor_window`, the rule of every report)."""
    stored = None if options.custom_dates else parse_datetime(last)
    start = stored - options.lookback(report) if stored else options.start
    return cursor_window(start, options.end, run_started)


def member_resource(
    api: KlaviyoApi, child: ChildReport, options: SourceOptions, run_started: datetime
) -> DltResource:
    """The membership resource of one "members" child (lists or segments)."""
    groups = options.table.reports[child.parents[0]]

    def read() -> Iterator[TDataItems]:
        check_account(api)
        cursors: dict[str, str] = dlt.current.resource_state().setdefault(STATE_KEY, {})
        seen: set[str] = set()
        for ids in read_ids(api, groups):
            for group_id in ids:
                seen.add(group_id)
                last = cursors.get(group_id)
                window = member_window(options, child.report, last, run_started)
                newest = yield from _read_group(api, child, options, group_id, window)
                if newest is not None and not options.custom_dates:
                    cursors[group_id] = max(newest, parse_datetime(last) or newest).isoformat()
        if not options.custom_dates:
            for gone in set(cursors) - seen:
                del cursors[gone]

    return dlt.resource(
        read,
        name=child.name,
        primary_key=list(child.primary_key),
        write_disposition="merge",
        columns={
            child.parent_key: {"data_type": "text", "nullable": False},
            child.id_column: {"data_type": "text", "nullable": False},
            "joined_group_at": {"data_type": "timestamp"},
        },
    )()


def _read_group(
    api: KlaviyoApi, child: ChildReport, options: SourceOptions, group_id: str, window: Window
) -> Generator[TDataItems, None, datetime | None]:
    """Yields one group's member pages over `window`; returns the newest `joined_group_at`."""
    report = replace(child.report, path=child.report.path.format(id=quote(group_id, safe="")))
    jobs = plan_jobs(report, [window])
    newest: datetime | None = None
    min_window = timedelta(minutes=options.min_window_minutes) if options.min_window_minutes else report.min_split
    for page in read_jobs(api, report, jobs, options.workers, min_window=min_window):
        rows = []
        for row in page:
            joined = row.get("joined_group_at")
            rows.append({child.parent_key: group_id, child.id_column: row["id"], "joined_group_at": joined})
            if joined is not None and (newest is None or joined > newest):
                newest = joined
        yield rows
    return newest
