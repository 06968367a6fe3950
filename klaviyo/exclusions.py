"""The `global_exclusions` table: profiles suppressed from email marketing.

Klaviyo has no exclusions endpoint in this revision; the profiles endpoint filters and sorts
on `subscriptions.email.marketing.suppression.timestamp`, so the table is incremental on that
timestamp (kept as the top-level column `suppression_timestamp`), read through the same
client, limiter and reader as every report. A profile whose suppression is lifted stays in
the table (with `detect_deletes` it is flagged, or removed with `hard_deletes`).
"""

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import dlt
from dlt.common.typing import TDataItems
from dlt.sources import DltResource

from .account import check_account
from .client import KlaviyoApi
from .cursors import cursor_window, incremental_cursor
from .extract import plan_jobs, read_jobs
from .options import SourceOptions
from .records import parse_datetime
from .settings import ChildReport
from .windows import UTC, Window, bound_conditions

CURSOR_COLUMN = "suppression_timestamp"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def exclusion_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A suppressed profile's row: its identifiers, its latest suppression (reason and
    timestamp) and every suppression as JSON."""
    marketing = ((row.get("subscriptions") or {}).get("email") or {}).get("marketing") or {}
    suppressions = [s for s in marketing.get("suppression") or [] if isinstance(s, Mapping)]
    latest: Mapping[str, Any] = max(suppressions, key=lambda s: str(s.get("timestamp") or ""), default={})
    return {
        "id": row["id"],
        "email": row.get("email"),
        "phone_number": row.get("phone_number"),
        "external_id": row.get("external_id"),
        "suppression_reason": latest.get("reason"),
        CURSOR_COLUMN: parse_datetime(latest.get("timestamp")),
        "suppressions": suppressions,
        "created": row.get("created"),
        "updated": row.get("updated"),
    }


def exclusions_resource(
    api: KlaviyoApi, child: ChildReport, options: SourceOptions, run_started: datetime
) -> DltResource:
    """The `global_exclusions` resource, incremental on the suppression timestamp.

    The first run reads every suppression (or from `start_date`); custom dates read their
    range and leave the cursor alone, as for every report.
    """
    report = child.report
    cursor = incremental_cursor(CURSOR_COLUMN, options, options.start or EPOCH, options.lookback(report))

    def read(suppressed: dlt.sources.incremental[Any] = cursor) -> Iterator[TDataItems]:
        check_account(api)
        window = cursor_window(suppressed.start_value, suppressed.end_value, run_started)
        # The cursor is nested in a list, so rows are trimmed here, not by the reader.
        bounds = tuple(bound_conditions(report.cursor or "", window, report.cursor_ops))
        scan = replace(report, cursor=None, filters=report.filters + bounds)
        for page in read_jobs(api, scan, plan_jobs(scan, [Window(None, None)]), workers=1):
            rows: list[dict[str, Any]] = [exclusion_row(row) for row in page]
            rows = [row for row in rows if window.contains(row[CURSOR_COLUMN])]
            if rows:
                yield rows

    return dlt.resource(
        read,
        name=child.name,
        primary_key="id",
        write_disposition="merge",
        columns={
            "id": {"data_type": "text", "nullable": False},
            CURSOR_COLUMN: {"data_type": "timestamp"},
            "created": {"data_type": "timestamp"},
            "updated": {"data_type": "timestamp"},
            "suppressions": {"data_type": "json"},
        },
    )()

