"""A dlt source for Klaviyo (REST API revision 2026-07-15 by default; 2023-10-15 on request).

`klaviyo_source` validates its arguments and wires one resource per selected report of the
report table of the configured API revision (`settings.REVISIONS`; the resources are built in
`resources.py`, the child tables in `children.py`, delete detection in `deletes.py`); every
table merges on its primary key, and reports with a cursor load incrementally. Typical use:

    pipeline = dlt.pipeline("klaviyo", destination="duckdb", dataset_name="klaviyo_data")
    pipeline.run(klaviyo_source())   # key from SOURCES__KLAVIYO__API_KEY or .dlt/secrets.toml
"""

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import dlt
from dlt.sources import DltResource

from .aggregates import load_queries
from .auth import TOKEN_PATH, Credentials, OAuthToken, PrivateKey
from .checkpoint import backfill_pending
from .children import related_resources, with_parents
from .client import KlaviyoApi
from .deletes import delete_resources
from .errors import KlaviyoApiError, KlaviyoConfigError
from .hints import report_for_run
from .options import validate_oauth, validate_options
from .performance import DEFAULT_BACKFILL_DAYS, DEFAULT_DAILY_SHARE, DEFAULT_LOOKBACK_DAYS, performance_resources, validate_reporting
from .ratelimit import RateLimiter
from .resources import aggregates_resource, report_resource, v1_resource
from .revisions import warn_if_retired
from .settings import DEFAULT_BASE_URL, DEFAULT_REVISION, REPORTING_DAILY_LIMIT, SOURCE_NAME
from .windows import UTC

__all__ = ["klaviyo_source", "backfill_pending", "KlaviyoConfigError", "KlaviyoApiError"]


@dlt.source(name=SOURCE_NAME)
def klaviyo_source(
    api_key: str | None = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    revision: str = DEFAULT_REVISION,
    reports: str | Sequence[str] | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    aggregate_queries: Any | None = None,
    predictive_analytics: bool = False,
    lookback_hours: float | None = None,
    workers: int = 16,
    min_window_minutes: float | None = None,
    chunk_records: int | None = None,
    flatten_properties: bool = False,
    detect_deletes: bool = False,
    hard_deletes: bool = False,
    access_token: str | None = dlt.secrets.value,
    refresh_token: str | None = dlt.secrets.value,
    client_id: str | None = dlt.secrets.value,
    client_secret: str | None = dlt.secrets.value,
    on_refresh_token: Callable[[str], None] | None = None,
    conversion_metric_id: str | Sequence[str] | None = None,
    report_statistics: dict[str, Any] | None = None,
    report_lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    report_backfill_days: int = DEFAULT_BACKFILL_DAYS,
    report_daily_limit: int = REPORTING_DAILY_LIMIT,
    report_daily_share: float = DEFAULT_DAILY_SHARE,
) -> Iterator[DltResource]:
    """Klaviyo reports as dlt resources.

    Args:
        api_key: Private API key (`pk_...`), from `[sources.klaviyo] api_key` or
            `SOURCES__KLAVIYO__API_KEY`. Or, instead of a key, OAuth (a partner app installed
            in the account): `refresh_token` with `client_id` and `client_secret`, or
            `access_token` (the same section, `SOURCES__KLAVIYO__REFRESH_TOKEN`, ...).
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
            POST /api/metric-aggregates, a JSON text of one, or a JSON file's path.
        predictive_analytics: Also read profiles' predictive analytics (Klaviyo then limits the
            profiles endpoint to 10 requests/s instead of 75/s).
        lookback_hours: Hours re-read before each cursor on incremental runs, for every report;
            None uses each report's default: `events` 168 (7 days: Klaviyo lists events
            late, see `settings.EVENTS_LOOKBACK`; each run then re-reads the last 7 days of
            events, one request per 1000 under 2026-07-15, per 200 under 2023-10-15), the
            others 0. Re-read rows are merged, not
            duplicated; custom dates have no lookback.
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
        access_token: OAuth access token, sent as `Authorization: Bearer ...`; alone it serves
            until Klaviyo rejects it (an hour after it was issued), with `refresh_token` it is
            the first one used.
        refresh_token: OAuth refresh token of the app's installation in the account; access
            tokens are obtained from `{base_url}/oauth/token` with it and renewed before they
            expire or on a 401, for every thread of the run.
        client_id: The OAuth app's client id (with `refresh_token`).
        client_secret: The OAuth app's client secret (with `refresh_token`).
        on_refresh_token: Called with the new refresh token if Klaviyo's token answer carries
            one (store it where the next run reads its refresh_token).
        conversion_metric_id: For the performance tables of campaigns and flows (revision
            2026-07-15; README "Performance reports"): the id(s) of the metric conversions
            are counted on (a list or comma-separated; one set of rows each); None: the
            account's `Placed Order` metric, when it has exactly one.
        report_statistics: Performance table -> the statistics to ask (a list); None: all
            the report allows.
        report_lookback_days: Days before today every run reads again from the reporting API
            (Klaviyo revises attribution for days), 0..30; re-read days replace their rows.
        report_backfill_days: Days before today the performance tables load on their first
            runs (`start_date` overrides it).
        report_daily_limit: Requests a day the reporting API allows the account (Klaviyo:
            225), counted across runs in the source state.
        report_daily_share: Most of that limit one performance table spends in one run
            (0..1); a backfill that needs more goes on in the next runs.

    Raises:
        KlaviyoConfigError: Bad input, before any request is sent.
    """
    oauth = validate_oauth(
        api_key, access_token=access_token, refresh_token=refresh_token, client_id=client_id, client_secret=client_secret
    )
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
        oauth=oauth is not None,
    )
    if oauth is not None and "campaigns_v1" in options.reports:
        raise KlaviyoConfigError(
            "The report campaigns_v1 (the legacy v1 API) reads only with a private API key, not OAuth;"
            " drop it from the reports or use api_key"
        )
    credentials: Credentials = (
        PrivateKey(options.api_key)
        if oauth is None
        else OAuthToken(
            oauth.access_token, oauth.refresh_token, oauth.client_id, oauth.client_secret,
            token_url=options.base_url + TOKEN_PATH, on_refresh_token=on_refresh_token,
        )
    )
    reporting = validate_reporting(
        options.reports, options.table, conversion_metric_id, report_statistics,
        report_lookback_days, report_backfill_days, report_daily_limit, report_daily_share,
    )
    queries = load_queries(aggregate_queries)
    if "metric_aggregates" in options.reports and not queries and reports is not None:
        raise KlaviyoConfigError(
            "The report metric_aggregates needs at least one query; set aggregate_queries"
            " (or --aggregate-query FILE) or drop metric_aggregates from the reports"
        )
    table = options.table
    warn_if_retired(table, options.base_url)
    # one limiter per account credential (OAuth installations have their own quota), paced at
    # the tiers of the run's revision
    api = KlaviyoApi(
        credentials, options.base_url, options.revision,
        RateLimiter.for_identity(options.base_url, credentials.identity, table.tiers),
    )
    run_started = datetime.now(tz=UTC)
    parents: dict[str, DltResource] = {}
    for name in with_parents(options.reports, table):
        if name in table.reports:
            report = report_for_run(table.reports[name], predictive_analytics, flatten_properties)
            parents[name] = report_resource(api, report, options, run_started)
            yield parents[name]
        elif name in table.others and table.others[name].pagination == "v1":
            yield v1_resource(api, table.others[name])
        elif name in table.others and table.others[name].pagination == "post" and queries:
            yield aggregates_resource(api, table.others[name], queries)
    yield from related_resources(api, options, parents, run_started)
    yield from performance_resources(api, reporting, options, run_started)
    dimensions = [n for n in with_parents(options.reports, table) if n not in table.performance]  # no ids to scan
    yield from delete_resources(api, dimensions, detect_deletes, hard_deletes, run_started, options.workers, table)
