"""A dlt source for Klaviyo (REST API revision 2026-07-15 by default; 2023-10-15 on request).

`klaviyo_source` yields one resource per report of the revision's report table
(`settings.REVISIONS`); every table merges on its primary key, and reports with a cursor load
incrementally. Typical use:

    pipeline = dlt.pipeline("klaviyo", destination="duckdb", dataset_name="klaviyo_data")
    pipeline.run(klaviyo_source())   # key from SOURCES__KLAVIYO__API_KEY or .dlt/secrets.toml
"""

from datetime import datetime, timedelta
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import dlt
from dlt.common.typing import TDataItems
from dlt.sources import DltResource

from .aggregates import AggregateQuery, load_queries, next_cursor, request_body, split_windows, to_long_rows
from .checkpoint import backfill_pending, checkpoint, plan_chunk, resume_window
from .children import related_resources, with_parents
from .client import KlaviyoApi
from .deletes import delete_resources
from .errors import KlaviyoApiError, KlaviyoConfigError
from .extract import batched_tables, plan_jobs, read_jobs
from .hints import dimension_columns, report_columns, report_for_run
from .options import SourceOptions, validate_options
from .ratelimit import RateLimiter
from .records import parse_datetime, with_load_id
from .revisions import warn_if_retired
from .settings import (
    AGGREGATES_PATH,
    ARROW_BATCH_ROWS,
    AGGREGATES_TIER,
    CURSOR_SAFETY_MARGIN,
    DEFAULT_BASE_URL,
    DEFAULT_REVISION,
    SOURCE_NAME,
    STAGE_DEDUPLICATED,
    V1_CAMPAIGNS_PATH,
    V1_PAGE_SIZE,
    V1_RETIRED_MESSAGE,
    Report,
)
from .windows import UTC, Window

__all__ = ["klaviyo_source", "backfill_pending", "KlaviyoConfigError", "KlaviyoApiError"]


@dlt.source(name=SOURCE_NAME)
def klaviyo_source(
    api_key: str = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    revision: str = DEFAULT_REVISION,
    reports: Optional[Union[str, Sequence[str]]] = None,
    start_date: Optional[str] = None,
    end_date: Optional[str] = None,
    aggregate_queries: Optional[Any] = None,
    predictive_analytics: bool = False,
    lookback_hours: float = 0.0,
    workers: int = 16,
    min_window_minutes: Optional[float] = None,
    chunk_records: Optional[int] = None,
    flatten_properties: bool = False,
    detect_deletes: bool = False,
    hard_deletes: bool = False,
) -> Iterator[DltResource]:
    """Klaviyo reports as dlt resources.

    Args:
        api_key: Private API key (`pk_...`), from `[sources.klaviyo] api_key` or
            `SOURCES__KLAVIYO__API_KEY`.
        base_url: API base URL (http or https); the default is Klaviyo's.
        revision: API revision sent in the `revision` header: "2026-07-15" (the default) or
            "2023-10-15" (retired by Klaviyo, which answers it as a later revision); it
            chooses the report table (paths, page sizes, tiers, columns; README, Revisions).
        reports: Report names (a list or a comma-separated string); None = the default
            selection (every report but `campaigns_v1` and `segment_profiles`). A child table
            (e.g. `flow_actions`) brings the reports it follows (`flows`).
        start_date: With `end_date`: custom dates, `YYYY-MM-DDTHH:MM:SSZ`, start exclusive and
            end inclusive; the run loads that range and leaves the incremental cursors alone.
            Alone: the first-run start of every report with a cursor (inclusive).
        end_date: End of the custom dates (inclusive), `YYYY-MM-DDTHH:MM:SSZ`; needs start_date.
        aggregate_queries: Custom metric-aggregate queries: a mapping of name -> body of
            POST /api/metric-aggregates/, a JSON text of one, or a JSON file's path.
        predictive_analytics: Also read profiles' predictive analytics (Klaviyo then limits the
            profiles endpoint to 10 requests/s instead of 75/s).
        lookback_hours: Hours re-read before each cursor on incremental runs (Klaviyo keeps
            revising attribution for days); re-read rows are merged, not duplicated.
        workers: Windows of one report read at the same time (the rate limiter sets the pace).
        min_window_minutes: Smallest window a report's range is split into for parallel reads
            (minutes); None uses each report's default (events 5 min, profiles 1 h). Windows
            adapt to the data's density above that size.
        chunk_records: Resumable backfills: read a long range in chunks of about this many
            records, one chunk per run, each committed with its rows (see `checkpoint.py`;
            `backfill_pending(pipeline)` says whether another run is needed). None reads the
            whole range in one run.
        flatten_properties: Flatten the free-form `profiles.properties` and
            `events.event_properties` into columns (and child tables) instead of keeping
            them as JSON columns; events are then read as row dicts, several times slower.
        detect_deletes: Also re-read the ids of the selected dimension tables (profiles,
            campaigns, flows, lists, segments, templates, metrics, global exclusions; never
            events) and mark the loaded rows Klaviyo no longer returns (`_klaviyo_deleted`,
            `_klaviyo_deleted_at`); costs one request per page of ids (see README).
        hard_deletes: With `detect_deletes`, remove those rows instead of marking them.

    Raises:
        KlaviyoConfigError: Bad input, before any request is sent.
    """
    options = validate_options(
        api_key=api_key,
        base_url=base_url,
        revision=revision,
        reports=reports,
        start_date=start_date,
        end_date=end_date,
        lookback_hours=lookback_hours,
        workers=workers,
        min_window_minutes=min_window_minutes,
        chunk_records=chunk_records,
    )
    queries = load_queries(aggregate_queries)
    if "metric_aggregates" in options.reports and not queries and reports is not None:
        raise KlaviyoConfigError(
            "The report metric_aggregates needs at least one query; set aggregate_queries"
            " (or --aggregate-query FILE) or drop metric_aggregates from the reports"
        )
    table = options.table
    warn_if_retired(table, options.base_url)
    api = KlaviyoApi(
        options.api_key,
        options.base_url,
        options.revision,
        RateLimiter.for_account(options.base_url, options.api_key, table.tiers),
    )
    run_started = datetime.now(tz=UTC)
    parents: Dict[str, DltResource] = {}
    for name in with_parents(options.reports, table):
        if name in table.reports:
            report = report_for_run(table.reports[name], predictive_analytics, flatten_properties)
            parents[name] = _report_resource(api, report, options, run_started)
            yield parents[name]
        elif name == "campaigns_v1":
            yield dlt.resource(
                _read_v1_campaigns, name="campaigns_v1", primary_key="id", write_disposition="merge",
                columns={"created": {"data_type": "timestamp"}, "updated": {"data_type": "timestamp"}},
            )(api)
        elif name == "metric_aggregates" and queries:
            yield _aggregates_resource(api, queries)
    yield from related_resources(api, options, parents, run_started)
    yield from delete_resources(api, with_parents(options.reports, table), detect_deletes, hard_deletes, run_started, options.workers, table)


def _incremental(report: Report, options: SourceOptions) -> Optional[dlt.sources.incremental[Any]]:
    """The report's cursor: custom dates (stateless), or incremental from the default
    backfill (or `start_date`) with the lookback as dlt's `lag`."""
    if not report.cursor:
        return None
    if options.custom_dates:
        return dlt.sources.incremental(
            report.cursor,
            initial_value=options.start,
            end_value=options.end,
            range_start="open",
            range_end="closed",
        )
    initial = options.start
    if initial is None and report.backfill is not None:
        initial = datetime.now(tz=UTC) - report.backfill
    return dlt.sources.incremental(
        report.cursor, initial_value=initial, lag=options.lookback_seconds or None
    )


def _report_resource(
    api: KlaviyoApi, report: Report, options: SourceOptions, run_started: datetime
) -> DltResource:
    min_window = timedelta(minutes=options.min_window_minutes) if options.min_window_minutes else report.window

    def read(cursor: Optional[dlt.sources.incremental[Any]] = _incremental(report, options)) -> Iterator[TDataItems]:
        full = window = _cursor_window(report, cursor, run_started)
        resumable = cursor is not None and cursor.end_value is None  # not custom dates
        state = dlt.current.resource_state()
        if resumable:
            window = resume_window(full, state)
            if options.chunk_records:
                window = plan_chunk(api, report, window, report.tier, options.chunk_records)
        if not window.empty:
            jobs = plan_jobs(report, [window])
            pages = read_jobs(api, report, jobs, report.tier, options.workers, min_window=min_window)
            if report.row_format == "arrow":
                load_id = dlt.current.load_package_state()["load_id"]
                yield from (with_load_id(t, load_id) for t in batched_tables(pages, ARROW_BATCH_ROWS))
            else:
                yield from pages
        if resumable:
            checkpoint(state, window, full)  # reached only when every page was read

    resource = dlt.resource(
        read,
        name=report.name,
        primary_key="id",
        write_disposition="merge",
        columns=report_columns(report),
    )()
    if report.immutable:
        resource.apply_hints(additional_table_hints={STAGE_DEDUPLICATED: True})
    return resource


def _cursor_window(
    report: Report, cursor: Optional[dlt.sources.incremental[Any]], run_started: datetime
) -> Window:
    """The range this run reads: from the cursor's start value (inclusive) to the custom end
    (inclusive) or to the run's start minus the safety margin (exclusive), so the stored
    cursor never passes the time the run started."""
    if cursor is None:
        return Window(None, None)
    start = _as_datetime(cursor.start_value)
    if cursor.end_value is not None:
        return Window(start, _as_datetime(cursor.end_value), start_open=True, end_closed=True)
    return Window(start, run_started - CURSOR_SAFETY_MARGIN)


def _as_datetime(value: Any) -> Optional[datetime]:
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(str(value))


def _read_v1_campaigns(api: KlaviyoApi) -> Iterator[TDataItems]:
    """The legacy v1 campaigns list (full read; Klaviyo retired it on 2024-06-30)."""
    try:
        for page in api.paginate_v1(V1_CAMPAIGNS_PATH, V1_PAGE_SIZE):
            for row in page:
                for column in ("created", "updated", "sent_at", "send_time"):
                    if row.get(column):
                        row[column] = parse_datetime(row[column])
            yield page
    except KlaviyoApiError as error:
        if error.status == 410:
            raise KlaviyoApiError(V1_RETIRED_MESSAGE, error.response, 410, error.endpoint) from None
        raise


def _aggregates_resource(api: KlaviyoApi, queries: List[AggregateQuery]) -> DltResource:
    """Responses of every query window and page, turned into long rows by a transformer."""

    def metric_aggregate_answers() -> Iterator[Any]:
        for query in queries:
            for start, end in split_windows(query):
                cursor: Optional[str] = None
                while True:
                    document = api.post(
                        AGGREGATES_PATH, request_body(query, start, end, cursor),
                        AGGREGATES_TIER, "metrics:read", "metric_aggregates",
                    )
                    yield {"query": query, "document": document}
                    cursor = next_cursor(document)
                    if not cursor:
                        break

    def metric_aggregates(answer: Dict[str, Any]) -> Iterator[TDataItems]:
        yield list(to_long_rows(answer["query"], answer["document"]))

    answers = dlt.resource(metric_aggregate_answers, name="metric_aggregate_answers", selected=False)
    return answers | dlt.transformer(
        metric_aggregates,
        name="metric_aggregates",
        primary_key=("query_name", "metric_id", "date", "dimension_key", "measurement"),
        write_disposition="merge",
        columns={
            "date": {"data_type": "timestamp"}, "value": {"data_type": "double"},
            **dimension_columns(dim for query in queries for dim in query.by),
        },
    )
