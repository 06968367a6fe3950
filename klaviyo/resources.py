"""The resources of the report table's top-level rows (a revision's `reports` and `others`; for
2023-10-15 `REPORTS` and `OTHER_REPORTS`).

- `report_resource`: a JSON:API collection ("jsonapi" rows), incremental on its cursor, read
  in parallel windows (`extract.py`), in resumable chunks (`checkpoint.py`);
- `v1_resource`: the legacy v1 list ("v1"), a full read;
- `aggregates_resource`: the metric-aggregate queries ("post"), one POST per query window
  and page, as long rows.

The child tables are wired in `children.py`, delete detection in `deletes.py`.
"""

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import dlt
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.common.typing import TDataItems
from dlt.sources import DltResource

from .account import check_account
from .aggregates import AggregateQuery, request_body, split_windows, to_long_rows
from .checkpoint import checkpoint, plan_chunk, resume_window
from .client import KlaviyoApi
from .cursors import cursor_window, incremental_cursor
from .errors import KlaviyoApiError
from .extract import batched_tables, plan_jobs, read_jobs
from .hints import dimension_columns, report_columns
from .options import SourceOptions
from .records import parse_datetime, quiet_arrow_json_hints, with_load_id
from .settings import ARROW_BATCH_ROWS, IMMUTABLE, STAGE_DEDUPLICATED, Report
from .windows import UTC, Window


def _incremental(report: Report, options: SourceOptions) -> dlt.sources.incremental[Any] | None:
    """The report's cursor: custom dates (stateless), or incremental from the default
    backfill (or `start_date`) with the lookback as dlt's `lag`."""
    if not report.cursor:
        return None
    initial = options.start
    if initial is None and report.backfill is not None:
        initial = datetime.now(tz=UTC) - report.backfill
    return incremental_cursor(report.cursor, options, initial, options.lookback(report))


def report_resource(
    api: KlaviyoApi, report: Report, options: SourceOptions, run_started: datetime
) -> DltResource:
    """The resource of a JSON:API collection report, merged on its primary key."""
    min_window = timedelta(minutes=options.min_window_minutes) if options.min_window_minutes else report.min_split

    def read(cursor: dlt.sources.incremental[Any] | None = _incremental(report, options)) -> Iterator[TDataItems]:  # noqa: B008 (dlt reads the incremental from the default)
        check_account(api)
        full = window = (
            Window(None, None) if cursor is None else cursor_window(cursor.start_value, cursor.end_value, run_started)
        )
        resumable = cursor is not None and cursor.end_value is None  # not custom dates
        state = dlt.current.resource_state()
        if resumable:
            window = resume_window(full, state)
            if options.chunk_records:
                window = plan_chunk(api, report, window, options.chunk_records)
        if not window.empty:
            jobs = plan_jobs(report, [window])
            pages = read_jobs(api, report, jobs, options.workers, min_window=min_window)
            if report.row_format == "arrow":
                load_id = _load_id()
                tables = batched_tables(pages, ARROW_BATCH_ROWS)
                yield from (with_load_id(t, load_id) for t in tables) if load_id else tables
            else:
                yield from pages
        if resumable:
            checkpoint(state, window, full)  # reached only when every page was read

    resource = dlt.resource(
        read,
        name=report.name,
        primary_key=list(report.primary_key),
        write_disposition="merge",
        columns=report_columns(report),
    )()
    if report.immutable:
        resource.apply_hints(additional_table_hints={STAGE_DEDUPLICATED: True, IMMUTABLE: True})
    if report.row_format == "arrow":
        quiet_arrow_json_hints(report.name)
    return resource


def _load_id() -> str | None:
    """The id of the load package being extracted; None when the resource is iterated outside
    a pipeline (e.g. `list(source.with_resources("events").add_limit(2))` to peek), where no
    package exists: the rows then come without `_dlt_load_id`."""
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except CurrentLoadPackageStateNotAvailable:
        return None


def v1_resource(api: KlaviyoApi, report: Report) -> DltResource:
    """A legacy v1 list (full read), merged on its key."""
    return dlt.resource(
        _read_v1_campaigns, name=report.name, primary_key=list(report.primary_key), write_disposition="merge",
        columns=report_columns(report, keys=()),
    )(api, report)


def _read_v1_campaigns(api: KlaviyoApi, report: Report) -> Iterator[TDataItems]:
    """The legacy v1 campaigns list (full read; Klaviyo retired it on 2024-06-30)."""
    check_account(api)
    try:
        for page in api.paginate_v1(report.path, report.page_size, report.tier, report.name):
            for row in page:
                for column in report.timestamps:
                    if row.get(column):
                        row[column] = parse_datetime(row[column])
            yield page
    except KlaviyoApiError as error:
        if error.status == 410 and report.retired:
            raise KlaviyoApiError(report.retired, error.response, 410, error.endpoint) from None
        raise


def aggregates_resource(api: KlaviyoApi, report: Report, queries: list[AggregateQuery]) -> DltResource:
    """Responses of every query window and page, turned into long rows by a transformer."""

    def metric_aggregate_answers() -> Iterator[Any]:
        check_account(api)
        for query in queries:
            for start, end in split_windows(query):
                body = request_body(query, start, end)
                for document in api.paginate_post(report.path, body, report.tier, report.scope, report.name):
                    yield {"query": query, "document": document}

    def metric_aggregates(answer: dict[str, Any]) -> Iterator[TDataItems]:
        yield list(to_long_rows(answer["query"], answer["document"]))

    answers = dlt.resource(metric_aggregate_answers, name="metric_aggregate_answers", selected=False)
    return answers | dlt.transformer(
        metric_aggregates,
        name=report.name,
        primary_key=report.primary_key,
        write_disposition="merge",
        columns={
            **report_columns(report, keys=()),
            **dimension_columns(dim for query in queries for dim in query.by),
        },
    )
