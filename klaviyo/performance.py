"""Klaviyo's performance reports (its reporting API) as tables: campaign, flow, form, segment.

Each selected row of `settings.PERFORMANCE_REPORTS` becomes one resource. A run reads, per
conversion metric, the recent days (`report_lookback_days` before today, re-read every run
since Klaviyo revises attribution for days, up to today) and then continues the backfill
(`report_backfill_days`, newest first) while the daily quota allows (`quota.py`); windows and
the range held are `report_days.py`'s. A window's pages are all read before its rows are
yielded, and its rows replace every row of its days (dlt's delete-insert merge on `date` and
`conversion_metric_id`; a day that now has no result sends a marker that deletes the old
rows, `EMPTY_MARKER`): a re-read never doubles nor leaves a stale row. When the quota, this
run's share of it, or a daily 429 stops a report, it logs one line saying what it holds and
when it goes on, and the next run resumes; the other reports are unaffected.
"""

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

import dlt
from dlt.common.schema.typing import TDataType, TDeleteInsertStrategyDict
from dlt.common.typing import TDataItems
from dlt.sources import DltResource

from .account import check_account
from .client import KlaviyoApi
from .errors import KlaviyoConfigError, KlaviyoDailyLimit
from .hints import TColumns
from .options import SourceOptions
from .quota import DailyQuota
from .report_days import Days, align, days_left, extend, forward, month_last, plan
from .settings import PERFORMANCE_REPORTS, REPORTING_DAILY_LIMIT, PerformanceReport, Report, RevisionTable, statistic_type

logger = logging.getLogger(__name__)

DEFAULT_LOOKBACK_DAYS = 7
# Klaviyo's attribution windows are days long (5 by default; UNCONFIRMED: at most 30 days as
# configured per account); re-reading more than this buys nothing.
MAX_LOOKBACK_DAYS = 30
DEFAULT_BACKFILL_DAYS = 365
DEFAULT_DAILY_SHARE = 0.5
ORDER_METRIC = "Placed Order"  # the default conversion metric, by name
# Klaviyo's metric ids are short letters-and-digits (`RESQ6t` in the spec).
_METRIC_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
# The hard-delete column of the marker rows a re-read sends for a day without result.
EMPTY_MARKER = "_klaviyo_empty"
# Each re-read replaces all rows of the days it read (`PerformanceReport.merge_key`).
DELETE_INSERT: TDeleteInsertStrategyDict = {"disposition": "merge", "strategy": "delete-insert"}
STATE_KEY = "held"  # in a reporting table's resource state: {metric or "-": {"first", "last"}}
_NO_METRIC = "-"


@dataclass(frozen=True)
class ReportingOptions:
    """The reporting settings, validated.

    Attributes:
        tables: The selected reporting tables.
        statistics: Table -> statistics asked (every statistic of the report by default).
        conversion_metric_ids: Metric ids set by the user; () = the account's Placed Order.
        lookback_days: Days before today re-read every run.
        backfill_days: Days before today the first runs load.
        daily_limit: Reporting requests allowed a day (Klaviyo: 225).
        daily_share: Most of the daily limit one table may spend in one run.
    """

    tables: tuple[PerformanceReport, ...]
    statistics: Mapping[str, tuple[str, ...]]
    conversion_metric_ids: tuple[str, ...] = ()
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    backfill_days: int = DEFAULT_BACKFILL_DAYS
    daily_limit: int = REPORTING_DAILY_LIMIT
    daily_share: float = DEFAULT_DAILY_SHARE


def validate_reporting(
    names: Sequence[str],
    table: RevisionTable,
    conversion_metric_id: Any = None,
    report_statistics: Any = None,
    report_lookback_days: Any = DEFAULT_LOOKBACK_DAYS,
    report_backfill_days: Any = DEFAULT_BACKFILL_DAYS,
    report_daily_limit: Any = REPORTING_DAILY_LIMIT,
    report_daily_share: Any = DEFAULT_DAILY_SHARE,
) -> ReportingOptions:
    """Checks the reporting settings before any request; a `KlaviyoConfigError` (one line) for
    the first bad one.

    Args:
        names: The selected report names (the performance tables among them are read).
        table: The report table of the run's revision (its `performance` rows).
        conversion_metric_id: Metric id(s) conversions are counted on (a list or a
            comma-separated string); None: the account's one `Placed Order` metric.
        report_statistics: Table -> statistics (a list or comma-separated string) to ask
            instead of all of them.
        report_lookback_days: Days before today re-read every run (0..30).
        report_backfill_days: Days before today the first runs load (>= 1).
        report_daily_limit: Reporting requests a day (Klaviyo allows 225).
        report_daily_share: Most of the daily limit one table may spend in one run (0 < x <= 1).
    """
    # a performance table of another revision was refused with the revisions that have it (options.py)
    tables = tuple(table.performance[n] for n in names if n in table.performance)
    statistics = {t.name: t.statistics for t in tables}
    for name, value in _mapping(report_statistics, "report_statistics").items():
        if name not in PERFORMANCE_REPORTS:
            raise KlaviyoConfigError(
                f"report_statistics names {name!r}, which is not a reporting table; use one of: {', '.join(PERFORMANCE_REPORTS)}"
            )
        asked = _names(value)
        allowed = PERFORMANCE_REPORTS[name].statistics
        unknown = [s for s in asked if s not in allowed]
        if unknown or not asked:
            what = f"{unknown[0]!r} is not a statistic of" if unknown else "names no statistic of"
            raise KlaviyoConfigError(f"report_statistics.{name}: {what} {PERFORMANCE_REPORTS[name].path}; choose from: {', '.join(allowed)}")
        if name in statistics:
            statistics[name] = asked
    metrics = _names(conversion_metric_id)
    for metric in metrics:
        if not _METRIC_ID.match(metric):
            raise KlaviyoConfigError(
                f"conversion_metric_id {metric!r} is not a metric id (letters and digits, like RESQ6t; a metric's name"
                f" does not do); set the id of the metric from /api/metrics, or leave it unset for the account's {ORDER_METRIC}"
            )
    lookback = _whole(report_lookback_days, "report_lookback_days", 0, MAX_LOOKBACK_DAYS)
    backfill = _whole(report_backfill_days, "report_backfill_days", 1, 100 * 365)
    limit = _whole(report_daily_limit, "report_daily_limit", 1, 1_000_000)
    try:
        share = float(report_daily_share)
    except (TypeError, ValueError):
        share = -1.0
    if not 0 < share <= 1:
        raise KlaviyoConfigError(
            f"report_daily_share {report_daily_share!r} is not a share of the daily quota; set a number above 0 and at most 1 (e.g. 0.5)"
        )
    options = ReportingOptions(tables, statistics, metrics, lookback, backfill, limit, share)
    per_run = DailyQuota(limit, share).per_report
    for row in tables:
        if row.window_days == 1 and row.period == "day" and per_run < lookback + 1:
            raise KlaviyoConfigError(
                f"report_daily_share {share:g} of report_daily_limit {limit} leaves {row.name} {per_run} requests a run, fewer than"
                f" the {lookback + 1} days it reads every run (report_lookback_days {lookback} and today); raise either or lower the lookback"
            )
    return options


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise KlaviyoConfigError(f"{name} is not a table of report -> statistics; write it like {{campaign_values = [\"opens\", \"clicks\"]}}")
    return value


def _names(value: Any) -> tuple[str, ...]:
    """A list or comma-separated string as names, stripped, once each."""
    if value in (None, ""):
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))


def _whole(value: Any, name: str, least: int, most: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (number == int(number) if number == number else False) or not least <= number <= most:
        raise KlaviyoConfigError(f"{name} {value!r} is not a whole number from {least} to {most}; set one in [sources.klaviyo]")
    return int(number)


# ------------------------------------------------------------------------- conversion metric
@dataclass
class ConversionMetrics:
    """The conversion metric ids of the run, checked against the account's metrics once (the
    first reporting table that needs them lists `/api/metrics`)."""

    api: KlaviyoApi
    configured: tuple[str, ...]
    metrics: Report  # the revision's `metrics` row: how /api/metrics is read
    _ids: tuple[str, ...] | None = None

    def ids(self, table: str) -> tuple[str, ...]:
        """The metric ids; a `KlaviyoConfigError` when the setting names no metric of the
        account, or when it is unset and the account has no or several `Placed Order`."""
        if self._ids is None:
            self._ids = self._resolve(table)
        return self._ids

    def _resolve(self, table: str) -> tuple[str, ...]:
        metrics = self.metrics
        found: list[tuple[str, str, str]] = []  # (id, name, integration)
        for document in self.api.paginate(metrics.path, {}, metrics.tier, metrics.scope, table):
            for record in document.get("data") or []:
                attributes = record.get("attributes") or {}
                integration = (attributes.get("integration") or {}).get("name") or ""
                found.append((str(record["id"]), str(attributes.get("name") or ""), str(integration)))
        known = {m[0] for m in found}
        for metric in self.configured:
            if metric not in known:
                raise KlaviyoConfigError(
                    f"conversion_metric_id {metric!r} is not a metric of this account; set it to one of: {_candidates(found)}"
                )
        if self.configured:
            return self.configured
        orders = [m for m in found if m[1] == ORDER_METRIC]
        if len(orders) == 1:
            return (orders[0][0],)
        if not orders:
            raise KlaviyoConfigError(
                f"{table} needs a conversion metric and the account has no {ORDER_METRIC} metric; set conversion_metric_id"
                f" in [sources.klaviyo] to the id of the metric that counts a conversion, e.g. one of: {_candidates(found)}"
            )
        raise KlaviyoConfigError(
            f"{table} needs one conversion metric and the account has {len(orders)} named {ORDER_METRIC}"
            f" ({', '.join(_label(m) for m in orders)}); set conversion_metric_id in [sources.klaviyo] to one of them (or several, comma-separated)"
        )


def _label(metric: tuple[str, str, str]) -> str:
    return f"{metric[1]} {metric[0]}" + (f" from {metric[2]}" if metric[2] else "")


def _candidates(found: Sequence[tuple[str, str, str]]) -> str:
    """Metrics that look like orders (else the first ten), as `name id`."""
    likely = [m for m in found if re.search(r"order|purchase|checkout|revenue", m[1], re.I)] or list(found)[:10]
    return ", ".join(_label(m) for m in likely) or "(the account has no metric)"


# ------------------------------------------------------------------------------- requests
class _Stopped(Exception):
    """The report stops for this run: the reason, and when the quota frees (if known)."""


def request_body(table: PerformanceReport, window: Days, statistics: Sequence[str], metric: str | None) -> dict[str, Any]:
    """The JSON:API body asking `table` for the days of `window` (both included; the end is
    sent as the day's last second, so a Klaviyo that read it as a datetime still counts it)."""
    attributes: dict[str, Any] = {
        "statistics": list(statistics),
        "timeframe": {"start": f"{window.first}T00:00:00", "end": f"{window.last}T23:59:59"},
    }
    if table.interval:
        attributes["interval"] = table.interval
    if table.group_by:
        attributes["group_by"] = list(table.group_by)
    if metric is not None:
        attributes["conversion_metric_id"] = metric
    return {"data": {"type": table.body_type, "attributes": attributes}}


def rows_of(
    table: PerformanceReport, documents: Sequence[Mapping[str, Any]], window: Days, statistics: Sequence[str], metric: str | None
) -> list[dict[str, Any]]:
    """The rows of a window's answer pages: one per grouping and day (or month), statistics
    as columns, rows whose statistics are all zero left out; plus an `EMPTY_MARKER` row for
    each day (month) of the window left without a row, so that the merge clears it."""
    rows: list[dict[str, Any]] = []
    for document in documents:
        attributes = (document.get("data") or {}).get("attributes") or {}
        days = [date.fromisoformat(str(d)[:10]) for d in attributes.get("date_times") or []]
        for result in attributes.get("results") or []:
            groupings = result.get("groupings") or {}
            key: dict[str, Any] = {g: "" if groupings.get(g) is None else str(groupings[g]) for g in table.groupings}
            if metric is not None:
                key["conversion_metric_id"] = metric
            values = result.get("statistics") or {}
            if table.interval:
                for i, day in enumerate(days):
                    rows.append({"date": day, **key, **{s: _at(values.get(s), i) for s in statistics}})
            else:
                rows.append({"date": window.first, **_end(table, window), **key, **{s: values.get(s) for s in statistics}})
    rows = [r for r in rows if any(r.get(s) for s in statistics)]
    starts = [w.first for w in forward(window, table.period, 1)] if table.interval or table.period == "month" else [window.first]
    seen = {r["date"] for r in rows}
    for day in starts:
        if day not in seen:
            marker: dict[str, Any] = {"date": day, **{g: "" for g in table.groupings}, EMPTY_MARKER: True}
            if metric is not None:
                marker["conversion_metric_id"] = metric
            rows.append(marker)
    return rows


def _at(values: Any, index: int) -> Any:
    return values[index] if isinstance(values, list) and index < len(values) else None


def _end(table: PerformanceReport, window: Days) -> dict[str, date]:
    """`end_date` (the row's last day) of month rows."""
    return {"end_date": window.last} if table.period == "month" else {}


def read_window(
    api: KlaviyoApi, table: PerformanceReport, body: dict[str, Any], quota: DailyQuota, state: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every answer page of one window (each page a request of the quota); `_Stopped` when
    the quota, the run's share or Klaviyo's daily limit refuses a page."""
    documents: list[dict[str, Any]] = []
    url: str | None = table.path
    while url:
        refused = quota.take(state, table.name, table.path)
        if refused:
            raise _Stopped(refused)
        try:
            document = api.post(url, body, table.tier, table.scope, table.name)
        except KlaviyoDailyLimit as error:
            raise _Stopped(quota.refused(state, error)) from None
        documents.append(document)
        url = ((document.get("links") or {}).get("next") or None) if table.paged else None
    return documents


# ------------------------------------------------------------------------------ resources
@dataclass
class _Plan:
    """One metric's windows of the run and the range its table holds."""

    metric: str | None
    held: Days | None
    recent: list[Days] = field(default_factory=list)
    backfill: list[Days] = field(default_factory=list)


def performance_resources(api: KlaviyoApi, reporting: ReportingOptions, options: SourceOptions, run_started: datetime) -> Iterator[DltResource]:
    """One resource per selected reporting table, sharing the quota and the metric lookup."""
    if not reporting.tables:
        return
    quota = DailyQuota(reporting.daily_limit, reporting.daily_share)
    metrics = ConversionMetrics(api, reporting.conversion_metric_ids, options.table.reports["metrics"])
    for table in reporting.tables:
        yield performance_resource(api, table, reporting, options, quota, metrics, run_started)


def performance_resource(
    api: KlaviyoApi,
    table: PerformanceReport,
    reporting: ReportingOptions,
    options: SourceOptions,
    quota: DailyQuota,
    metrics: ConversionMetrics,
    run_started: datetime,
) -> DltResource:
    """The resource of one reporting table: merged (delete-insert) on its days."""
    statistics = reporting.statistics[table.name]

    def read() -> Iterator[TDataItems]:
        check_account(api)
        source_state = dlt.current.source_state()
        held_state: dict[str, Any] = dlt.current.resource_state().setdefault(STATE_KEY, {})
        today = run_started.date()
        first_day = options.start.date() if options.start else today - timedelta(days=reporting.backfill_days)
        if table.data_since:
            first_day = max(first_day, table.data_since)
        plans = _plans(table, metrics.ids(table.name) if table.conversion_metric else (None,), held_state, options, today, first_day, reporting)
        try:
            for phase in ("recent", "backfill"):
                for p in plans:
                    for window in getattr(p, phase):
                        body = request_body(table, window, statistics, p.metric)
                        rows = rows_of(table, read_window(api, table, body, quota, source_state), window, statistics, p.metric)
                        yield rows
                        if not options.custom_dates:
                            p.held = extend(p.held, window)
                            held_state[p.metric or _NO_METRIC] = p.held.to_state()
        except _Stopped as stop:
            logger.warning(_stop_line(table, plans, first_day, today, quota, source_state, str(stop), options.custom_dates))

    return dlt.resource(
        read,
        name=table.name,
        primary_key=list(table.primary_key),
        merge_key=list(table.merge_key),
        write_disposition=DELETE_INSERT,
        columns=_columns(table, statistics),
    )()


def _plans(
    table: PerformanceReport,
    metric_ids: Sequence[str | None],
    held_state: Mapping[str, Any],
    options: SourceOptions,
    today: date,
    first_day: date,
    reporting: ReportingOptions,
) -> list[_Plan]:
    """Per metric: custom dates read exactly their days (stateless); runs read the recent
    days and go on with the backfill."""
    plans = []
    for metric in metric_ids:
        held = Days.from_state(held_state.get(metric or _NO_METRIC))
        p = _Plan(metric, held)
        if options.custom_dates and options.start and options.end:
            # whole rows only: a month table reads the months the dates touch (to today)
            first, last = align(max(first_day, options.start.date()), table.period), min(options.end.date(), today)
            last = min(month_last(last), today) if table.period == "month" else last
            p.recent = forward(Days(first, last), table.period, table.window_days) if first <= last else []
        else:
            p.recent, p.backfill = plan(held, today, first_day, reporting.lookback_days, table.period, table.window_days)
        plans.append(p)
    return plans


def _stop_line(
    table: PerformanceReport,
    plans: Sequence[_Plan],
    first_day: date,
    today: date,
    quota: DailyQuota,
    source_state: Mapping[str, Any],
    reason: str,
    custom: bool,
) -> str:
    """The one line a stopped report logs: why, what it holds, what is left, when it goes on."""
    spent = f"{quota.spent_in_run(table.name)} requests by it in this run, {quota.spent(source_state)} of {quota.limit} in 24 h"
    if custom:
        return f"{table.name}: stopped before the end of the custom dates, {reason} ({spent}); run them again later"
    held = "; ".join(
        (f"{p.metric}: " if p.metric else "")
        + (f"holds {p.held} ({p.held.count} days)" if p.held else "holds nothing yet")
        + f", {days_left(p.held, first_day, today, table.period)} days to {first_day} left"
        for p in plans
    )
    return f"{table.name}: stopped for this run, {reason} ({spent}); {held}; the next run continues where it stopped"


def _columns(table: PerformanceReport, statistics: Sequence[str]) -> TColumns:
    """Column hints: the day(s), the groupings and metric as text, each statistic typed, the
    marker column."""
    columns: TColumns = {"date": {"data_type": "date", "nullable": False}}
    if table.period == "month":
        columns["end_date"] = {"data_type": "date"}
    for name in table.groupings:
        columns[name] = {"data_type": "text", "nullable": False}
    if table.conversion_metric:
        columns["conversion_metric_id"] = {"data_type": "text", "nullable": False}
    for name in statistics:
        columns[name] = {"data_type": cast(TDataType, statistic_type(name))}
    columns[EMPTY_MARKER] = {"data_type": "bool", "hard_delete": True}
    return columns

