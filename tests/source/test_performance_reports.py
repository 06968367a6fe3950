"""The reporting tables (campaign, flow, form and segment performance; `klaviyo/performance.py`)
against the emulator's reporting API (revision 2026-07-15).

What is loaded is compared with the emulator's own answer (`emu.report`, the code its HTTP
handler runs) twice: row by row, each day (month) against the report over that day (month),
every statistic; and summed, the additive statistics of all rows of a table against one
values report over all the days loaded. Runs are repeated to show a re-read replaces its rows,
that a revised attribution inside the lookback is corrected, and that a backfill larger than
the daily quota completes over several runs, nothing missing or doubled.

Klaviyo paces the reporting API at 1 request/s and 2/min; at that pace each test would take
minutes, so both sides' reporting tier is widened here (`fast_tier`); that the source paces
at the spec's limits is `test_each_row_agrees_with_the_spec`.
"""

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import dlt
import pytest

import klaviyo.quota
from klaviyo import KlaviyoConfigError, klaviyo_source
from klaviyo.performance import EMPTY_MARKER, rows_of
from klaviyo.report_days import Days, backward, days_left, extend, forward, plan
from klaviyo.settings import PERFORMANCE_REPORTS, REPORTING_DAILY_LIMIT, SERIES_DAILY_MAX_DAYS, TIERS_2026, PerformanceReport, Tier
from klaviyo_emulator import Emulator, EmulatorConfig
from klaviyo_emulator.reports import ADDITIVE
from klaviyo_emulator.revision_endpoints import TIER_LIMITS_2026 as EMULATOR_LIMITS_2026
from tests.conftest import REPO, Document, edit_pages, load_spec, query

REV = "2026-07-15"
UTC = UTC
ALL = ",".join(PERFORMANCE_REPORTS)
Key = tuple[Any, ...]
SOURCE_TIERS = dict(TIERS_2026)  # as the source has them (`fast_tier` widens the reporting tier in the tests)


@pytest.fixture(autouse=True)
def fast_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widens the reporting tier's 1/s and 2/min on both sides (the daily limit stays)."""
    monkeypatch.setitem(TIERS_2026, "REPORTING", Tier(100, 10_000))
    monkeypatch.setitem(EMULATOR_LIMITS_2026, "REPORTING", (100, 10_000))


def config(**overrides: Any) -> EmulatorConfig:
    """A small account whose data ends now (the source cuts its days from the clock); 6 results
    a page, so campaign and flow answers come in several pages."""
    base: dict[str, Any] = dict(seed=7, profiles=300, events=4000, days=30, report_page_size=6)
    base.update(overrides)
    return EmulatorConfig(**base)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(config()) as emulator:
        yield emulator


def source(emu: Emulator, reports: str, **kwargs: Any) -> Any:
    return klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, revision=REV, reports=reports, **kwargs)


def placed(emu: Emulator) -> str:
    return next(m["id"] for m in emu.account.records("metric", revision=REV) if m["attributes"]["name"] == "Placed Order")


def today() -> date:
    return datetime.now(tz=UTC).date()


def report_name(table: PerformanceReport, kind: str | None = None) -> str:
    """The emulator's name of the report (e.g. "flow-series"), or of its `kind` sibling."""
    return f"{table.family}-{kind or ('series' if table.interval else 'values')}"


def timeframe(first: date, last: date) -> dict[str, str]:
    return {"start": f"{first}T00:00:00", "end": f"{last}T00:00:00"}


def windows_of(table: PerformanceReport, first: date, last: date) -> list[tuple[date, date]]:
    """The truth's own cut of [first, last]: one day, one calendar month, or at most 60 days of
    a daily series (independent of `report_days.py`)."""
    out: list[tuple[date, date]] = []
    day = first.replace(day=1) if table.period == "month" else first
    while day <= last:
        if table.period == "month":
            end = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        else:
            end = day + timedelta(days=(SERIES_DAILY_MAX_DAYS if table.interval else 1) - 1)
        out.append((day, min(end, last)))
        day = min(end, last) + timedelta(days=1)
    return out


def expected(emu: Emulator, table: PerformanceReport, first: date, last: date, metric: str | None, statistics: Sequence[str] = ()) -> dict[Key, dict[str, Any]]:
    """(date, groupings..., metric) -> statistics the emulator reports for each day (month) of
    [first, last], rows whose statistics are all zero left out."""
    statistics = list(statistics or table.statistics)
    out: dict[Key, dict[str, Any]] = {}
    for start, end in windows_of(table, first, last):
        attributes: dict[str, Any] = {"statistics": statistics, "timeframe": timeframe(start, end)}
        if table.interval:
            attributes["interval"] = table.interval
        if table.group_by:
            attributes["group_by"] = list(table.group_by)
        if metric:
            attributes["conversion_metric_id"] = metric
        answer = emu.report(report_name(table), **attributes)
        days = [date.fromisoformat(d[:10]) for d in answer.get("date_times", [])] or [start]
        for result in answer["results"]:
            key = tuple("" if result["groupings"].get(g) is None else result["groupings"][g] for g in table.groupings)
            for i, day in enumerate(days):
                values = {s: (v[i] if table.interval else v) for s, v in result["statistics"].items()}
                if any(values.values()):
                    out[(day, *key, *((metric,) if metric else ()))] = values
    return out


def loaded(pipeline: dlt.Pipeline, table: PerformanceReport, statistics: Sequence[str] = ()) -> dict[Key, dict[str, Any]]:
    """The table's rows, keyed like `expected`; a key loaded twice fails."""
    statistics = list(statistics or table.statistics)
    keys = list(table.primary_key)
    rows = query(pipeline, f"SELECT {', '.join(keys + statistics)} FROM {table.name}")
    out: dict[Key, dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[: len(keys)])
        assert key not in out, f"{table.name}: {key} loaded twice"
        out[key] = dict(zip(statistics, row[len(keys):], strict=False))
    return out


def same(a: Any, b: Any) -> bool:
    """Values equal as loaded: money is decimal (cents), rates doubles."""
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return round(Decimal(str(a or 0)), 2) == round(Decimal(str(b or 0)), 2)
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a or 0) - float(b or 0)) < 1e-9
    return a == b


def differences(got: Mapping[Key, Mapping[str, Any]], want: Mapping[Key, Mapping[str, Any]]) -> list[str]:
    out = [f"missing {k}" for k in want if k not in got] + [f"extra {k}" for k in got if k not in want]
    for key in set(got) & set(want):
        out += [f"{key} {s}: {got[key][s]!r} != {v!r}" for s, v in want[key].items() if not same(got[key][s], v)]
    return out


def assert_sums(emu: Emulator, pipeline: dlt.Pipeline, table: PerformanceReport, first: date, last: date, metric: str | None) -> None:
    """The additive statistics summed over every row equal one values report over the days
    (two halves when the days are longer than the one year a timeframe may span)."""
    additive = [s for s in table.statistics if s in ADDITIVE]
    groupings = [g for g in table.groupings if g in ("campaign_message_id", "flow_message_id", "form_id", "segment_id")]
    middle = first + (last - first) / 2
    halves = [(first, last)] if (last - first).days < 364 else [(first, middle), (middle + timedelta(days=1), last)]
    want: dict[str, dict[str, Any]] = {}
    for start, end in halves:
        attributes: dict[str, Any] = {"statistics": additive, "timeframe": timeframe(start, end)}
        if table.group_by:
            attributes["group_by"] = list(table.group_by)
        if metric:
            attributes["conversion_metric_id"] = metric
        for result in emu.report(report_name(table, "values"), **attributes)["results"]:
            sums = want.setdefault(result["groupings"][groupings[0]], {s: 0 for s in additive})
            for s in additive:
                sums[s] += result["statistics"][s]
    sql = f"SELECT {groupings[0]}, {', '.join(f'SUM({s})' for s in additive)} FROM {table.name} GROUP BY 1"
    got = {row[0]: dict(zip(additive, row[1:], strict=False)) for row in query(pipeline, sql)}
    want = {k: v for k, v in want.items() if any(v.values())}
    assert not differences({(k,): v for k, v in got.items()}, {(k,): v for k, v in want.items()}), table.name


def report_requests(emu: Emulator, table: PerformanceReport, since: int = 0) -> list[dict[str, Any]]:
    """Bodies of the table's POSTs logged from index `since` (first pages only)."""
    return [
        r.body for r in emu.request_log[since:]
        if r.method == "POST" and r.path == table.path and "page_cursor" not in r.query and r.status == 200
    ]


def days_asked(bodies: Sequence[Mapping[str, Any]]) -> list[date]:
    """Every day the bodies' timeframes cover (a day twice if asked twice)."""
    out: list[date] = []
    for body in bodies:
        frame = body["data"]["attributes"]["timeframe"]
        first, last = date.fromisoformat(frame["start"][:10]), date.fromisoformat(frame["end"][:10])
        out += [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return out


def first_day(table: PerformanceReport, backfill_days: int) -> date:
    first = today() - timedelta(days=backfill_days)
    return first.replace(day=1) if table.period == "month" else first


# ------------------------------------------------------------------------------ the tables
def test_every_table_holds_what_klaviyo_reports_per_day_and_in_sum(emu: Emulator, make_pipeline: Callable[..., dlt.Pipeline]) -> None:
    pipeline = make_pipeline()
    pipeline.run(source(emu, ALL, report_backfill_days=20, report_lookback_days=3, report_daily_limit=5000)).raise_on_failed_jobs()
    metric = placed(emu)
    for table in PERFORMANCE_REPORTS.values():
        first, m = first_day(table, 20), metric if table.conversion_metric else None
        got, want = loaded(pipeline, table), expected(emu, table, first, today(), m)
        assert want and not differences(got, want), (table.name, differences(got, want)[:5])
        assert_sums(emu, pipeline, table, first, today(), m)
        asked = days_asked(report_requests(emu, table))
        assert sorted(asked) == [first + timedelta(days=i) for i in range((today() - first).days + 1)], (
            f"{table.name}: the windows are whole days, none asked twice, none left out"
        )
    campaign = PERFORMANCE_REPORTS["campaign_values"]
    assert any(r.path == campaign.path and "page_cursor" in r.query for r in emu.request_log), "paged answers are followed"
    assert len(report_requests(emu, campaign)) == 21, "campaign values: one request a day"
    assert len(report_requests(emu, PERFORMANCE_REPORTS["flow_series"])) == 1, "a daily series: 60 days a request"


def test_a_second_run_rereads_the_lookback_and_replaces_its_rows(emu: Emulator, make_pipeline: Callable[..., dlt.Pipeline]) -> None:
    pipeline = make_pipeline()
    reports = "campaign_values,flow_series,segment_series"
    pipeline.run(source(emu, reports, report_backfill_days=10, report_lookback_days=2))
    before = {t: loaded(pipeline, PERFORMANCE_REPORTS[t]) for t in reports.split(",")}
    since = len(emu.request_log)
    pipeline.run(source(emu, reports, report_backfill_days=10, report_lookback_days=2))
    for name in reports.split(","):
        table = PERFORMANCE_REPORTS[name]
        assert loaded(pipeline, table) == before[name], f"{name}: a re-read of unchanged days changes nothing"
        assert sorted(set(days_asked(report_requests(emu, table, since)))) == [today() - timedelta(days=i) for i in (2, 1, 0)]


def test_a_revised_attribution_inside_the_lookback_is_corrected(make_pipeline: Callable[..., dlt.Pipeline]) -> None:
    with Emulator(config()) as emu:
        pipeline = make_pipeline()
        reports = "campaign_values,flow_values,flow_series"
        pipeline.run(source(emu, reports, report_backfill_days=12))  # lookback: 7 days, the default
        emu.mutate(create=0, update=0, delete=0, revise_attribution=40, revise_days=5)
        metric = placed(emu)
        for name in reports.split(","):
            table = PERFORMANCE_REPORTS[name]
            assert differences(loaded(pipeline, table), expected(emu, table, first_day(table, 12), today(), metric)), (
                f"{name}: the revision moved conversions of loaded days (else this test could not fail)"
            )
        pipeline.run(source(emu, reports, report_backfill_days=12))
        for name in reports.split(","):
            table = PERFORMANCE_REPORTS[name]
            want = expected(emu, table, first_day(table, 12), today(), metric)
            assert not differences(loaded(pipeline, table), want), (name, differences(loaded(pipeline, table), want)[:5])


def test_a_reread_day_without_any_result_loses_its_old_rows(emu: Emulator, make_pipeline: Callable[..., dlt.Pipeline]) -> None:
    """The empty-day marker: a re-read that finds nothing replaces the day's rows with none."""
    pipeline = make_pipeline()
    table = PERFORMANCE_REPORTS["campaign_values"]
    pipeline.run(source(emu, table.name, report_backfill_days=6, report_statistics={table.name: ["delivered"]}))
    assert {k[0] for k in loaded(pipeline, table, ["delivered"])} >= {today() - timedelta(days=i) for i in (0, 1, 2)}
    # spam complaints are 0 in the emulator: every day re-read now answers no result
    pipeline.run(source(emu, table.name, report_backfill_days=6, report_lookback_days=2, report_statistics={table.name: ["spam_complaints"]}))
    dates = {k[0] for k in loaded(pipeline, table, ["delivered"])}
    assert not dates & {today() - timedelta(days=i) for i in (0, 1, 2)}, "the re-read days are cleared"
    assert today() - timedelta(days=3) in dates, "the days not re-read keep their rows"
    assert query(pipeline, f"SELECT COUNT(*) FROM {table.name} WHERE {EMPTY_MARKER}")[0][0] == 0, "markers are not stored"


def test_custom_dates_read_exactly_their_days_and_leave_the_state(emu: Emulator, make_pipeline: Callable[..., dlt.Pipeline]) -> None:
    pipeline = make_pipeline()
    table = PERFORMANCE_REPORTS["campaign_values"]
    start, end = today() - timedelta(days=9), today() - timedelta(days=6)
    pipeline.run(source(emu, table.name, start_date=f"{start}T00:00:00Z", end_date=f"{end}T00:00:00Z"))
    assert sorted(days_asked(report_requests(emu, table))) == [start + timedelta(days=i) for i in range(4)]
    assert not differences(loaded(pipeline, table), expected(emu, table, start, end, placed(emu)))
    assert not pipeline.state["sources"]["klaviyo"].get("resources", {}).get(table.name, {}).get("held")
    months = PERFORMANCE_REPORTS["flow_values"]  # a month table reads the whole months the dates touch
    pipeline.run(source(emu, months.name, start_date=f"{end}T00:00:00Z", end_date=f"{end + timedelta(days=1)}T00:00:00Z"))
    asked = sorted(days_asked(report_requests(emu, months)))
    assert asked[0] == end.replace(day=1) and (asked[-1] == today() or (asked[-1] + timedelta(days=1)).day == 1)
    assert {end, end + timedelta(days=1)} <= set(asked)
    assert not differences(loaded(pipeline, months), expected(emu, months, asked[0], asked[-1], placed(emu)))


def test_grouping_ids_join_the_loaded_campaigns_flows_and_segments(emu: Emulator, make_pipeline: Callable[..., dlt.Pipeline]) -> None:
    pipeline = make_pipeline()
    dimensions = "campaigns_email,campaigns_sms,campaigns_push,campaign_messages,flows,flow_actions,flow_messages,segments,metrics"
    pipeline.run(source(emu, f"{dimensions},campaign_values,flow_series,segment_series", report_backfill_days=10)).raise_on_failed_jobs()
    joins = [
        ("campaign_values", "campaign_id", "(SELECT id FROM campaigns_email UNION ALL SELECT id FROM campaigns_sms UNION ALL SELECT id FROM campaigns_push)"),
        ("campaign_values", "campaign_message_id", "campaign_messages"),
        ("flow_series", "flow_id", "flows"),
        ("flow_series", "flow_message_id", "flow_messages"),
        ("segment_series", "segment_id", "segments"),
        ("campaign_values", "conversion_metric_id", "metrics"),
    ]
    for table, column, target in joins:
        total, joined = query(
            pipeline, f"SELECT count(*), count(t.id) FROM {table} AS r LEFT JOIN {target} AS t ON t.id = r.{column}"
        )[0]
        assert total and joined == total, f"{table}.{column}: {total - joined} of {total} rows join no row of {target}"


# ------------------------------------------------------------------------------ the budget
def test_a_backfill_larger_than_the_daily_quota_completes_over_runs(
    make_pipeline: Callable[..., dlt.Pipeline], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """31 days of campaign values need 31 requests (one page a day here; each run re-reads 8):
    with 40 a day and half of it per table and run, they take three runs, the third a day later."""
    clock = {"shift": 0.0}
    real_now = klaviyo.quota.now
    monkeypatch.setattr(klaviyo.quota, "now", lambda: real_now() + clock["shift"])
    with Emulator(config(report_page_size=500)) as emu:
        pipeline = make_pipeline()
        campaign, segments = PERFORMANCE_REPORTS["campaign_values"], PERFORMANCE_REPORTS["segment_series"]
        settings = dict(report_backfill_days=30, report_daily_limit=40, report_daily_share=0.5)
        spent: list[int] = []
        for run in range(6):
            since = len(emu.request_log)
            with caplog.at_level(logging.WARNING, logger="klaviyo.performance"):
                pipeline.run(source(emu, "campaign_values,segment_series", **settings)).raise_on_failed_jobs()
            spent.append(len(report_requests(emu, campaign, since)) + len(report_requests(emu, segments, since)))
            assert len(report_requests(emu, campaign, since)) <= 20, "a table spends at most its share of a run"
            if run == 0:
                assert not differences(loaded(pipeline, segments), expected(emu, segments, today() - timedelta(days=30), today(), None)), (
                    "the other table is complete in the first run"
                )
            held = pipeline.state["sources"]["klaviyo"]["resources"]["campaign_values"]["held"][placed(emu)]
            if held["first"] <= str(today() - timedelta(days=30)):
                break
            if run == 1:
                clock["shift"] += 86_400  # a day passes: the quota frees
        assert run == 2, f"three runs (two the first day, quota {spent}); the backfill ended after {run + 1}"
        assert sum(spent[:2]) <= 40, "the first day's runs stay inside the daily quota"
        lines = [r.getMessage() for r in caplog.records if r.name == "klaviyo.performance"]
        assert any("share of 20 requests" in line and "next run continues" in line for line in lines), lines
        assert any("daily quota of 40 reporting requests is spent until" in line for line in lines), lines
        assert all(len(line.splitlines()) == 1 for line in lines)
        want = expected(emu, campaign, today() - timedelta(days=30), today(), placed(emu))
        assert not differences(loaded(pipeline, campaign), want), "nothing missing, nothing doubled"


def windows_read(emu: Emulator, table: PerformanceReport, since: int, until: int) -> list[Days]:
    """The windows of the table whose every page was answered between log indexes `since` and
    `until` (a window the quota stopped after its first pages is not read); its pages are
    counted from the emulator's own answer to the same body (`report_page_size` results each)."""
    groups: list[list[Any]] = []
    for r in emu.request_log[since:until]:
        if r.method == "POST" and r.path == table.path:
            if "page_cursor" not in r.query or not groups:
                groups.append([])
            groups[-1].append(r)
    out: list[Days] = []
    for pages in groups:
        attributes = pages[0].body["data"]["attributes"]
        results = len(emu.report(report_name(table), **attributes)["results"])
        needed = max(1, -(-results // emu.config.report_page_size)) if table.paged else 1
        if len(pages) == needed and all(p.status == 200 for p in pages):
            frame = attributes["timeframe"]
            out.append(Days(date.fromisoformat(frame["start"][:10]), date.fromisoformat(frame["end"][:10])))
    return out


def test_a_twelve_month_backfill_over_several_days_of_quota_loses_and_doubles_nothing(
    make_pipeline: Callable[..., dlt.Pipeline], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The default backfill (`report_backfill_days` 365: 366 days with today) of an account
    with 400 days of history, with 100 reporting requests a day on both sides (the source's
    budget, half of it per table and run, the default share; Klaviyo's daily limit per
    endpoint) and 6 results a page: campaign values need about 400 requests (one window a day,
    some of two pages), flow series about 21 (60 days a window, 3 pages each), segment series
    7. Two runs a day, then a day passes (the quota's clock and the emulator's daily windows),
    until every table holds the year."""
    clock = {"shift": 0.0}
    real_now = klaviyo.quota.now
    monkeypatch.setattr(klaviyo.quota, "now", lambda: real_now() + clock["shift"])
    limit, lookback = 100, 7
    names = ("campaign_values", "flow_series", "segment_series")
    tables = [PERFORMANCE_REPORTS[n] for n in names]
    paths = {t.path for t in tables}
    with Emulator(config(days=400, rate_limits=True, report_daily_limit=limit)) as emu:
        pipeline = make_pipeline()
        first, metric = today() - timedelta(days=365), placed(emu)
        marks: list[tuple[int, int]] = []  # (day, log index before the run)
        lines: list[list[str]] = []
        day = 0
        for run in range(20):
            since = len(emu.request_log)
            marks.append((day, since))
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="klaviyo"):
                pipeline.run(source(emu, ",".join(names), report_daily_limit=limit)).raise_on_failed_jobs()
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no run fails"
            lines.append([r.getMessage() for r in caplog.records if r.name == "klaviyo.performance"])
            held = pipeline.state["sources"]["klaviyo"]["resources"]
            if all(held[t.name]["held"][metric if t.conversion_metric else "-"]["first"] <= str(first) for t in tables):
                break  # the source holds the year: the backfill is done
            stopped = [line for line in lines[-1] if line.startswith("campaign_values: stopped for this run")]
            assert stopped and "the next run continues where it stopped" in stopped[0], lines[-1]
            if run % 2:
                day += 1
                clock["shift"] += 86_400  # a day passes: the source's quota frees, and Klaviyo's
                emu.reset_rate_limits()
        runs = run + 1
        log_end = len(emu.request_log)
        assert 4 <= runs < 20, f"the year took {runs} runs"
        assert not lines[-1] or all("0 days to" in line for line in lines[-1]), f"the last run has the year: {lines[-1]}"
        said = [line for ls in lines[:-1] for line in ls if line.startswith("campaign_values")]
        left = [int(re.search(r"(\d+) days to", line).group(1)) for line in said]  # type: ignore[union-attr]
        assert left == sorted(left, reverse=True) and len(set(left)) == len(left), f"each run goes on where the last stopped: {left}"
        assert any("daily quota of 100 reporting requests is spent until" in line for line in said), "the budget of the day stopped runs"

        # what was sent: no 429, each table at most its share of a run, each day at most its quota
        log = emu.request_log
        assert not [r for r in log if r.path in paths and r.status != 200], "Klaviyo's daily limit was never hit"
        bounds = [m[1] for m in marks] + [log_end]
        per_day: dict[int, int] = {}
        for (d, start), end in zip(marks, bounds[1:], strict=True):
            for table in tables:
                sent = [r for r in log[start:end] if r.method == "POST" and r.path == table.path]
                assert len(sent) <= limit // 2, f"{table.name} sent {len(sent)} requests in a run, more than its share"
                per_day[d] = per_day.get(d, 0) + len(sent)
        assert max(per_day.values()) <= limit and len(per_day) > 1, f"requests a day: {per_day}"

        # every day read, once (the lookback at most once a run); the table holds each day once, as Klaviyo reports it
        year = [first + timedelta(days=i) for i in range((today() - first).days + 1)]
        for table in tables:
            asked: dict[date, int] = {}
            for start, end in zip(bounds, bounds[1:], strict=False):
                for window in windows_read(emu, table, start, end):
                    for d in (window.first + timedelta(days=i) for i in range(window.count)):
                        asked[d] = asked.get(d, 0) + 1
            assert sorted(asked) == year, f"{table.name}: days not read: {sorted(set(year) - set(asked))[:5]}"
            twice = {d: n for d, n in asked.items() if (n > runs if d >= today() - timedelta(days=lookback) else n > 1)}
            assert not twice, f"{table.name}: days read more than once (the lookback more than once a run): {sorted(twice.items())[:5]}"
            m = metric if table.conversion_metric else None
            want = expected(emu, table, first, today(), m)
            assert min(k[0] for k in want) < first + timedelta(days=31), f"{table.name}: the account has data in the year's first month"
            got = loaded(pipeline, table)  # fails on a primary key loaded twice
            assert not differences(got, want), (table.name, differences(got, want)[:5])
            assert_sums(emu, pipeline, table, first, today(), m)


def test_klaviyos_daily_429_stops_the_report_until_the_next_day(
    make_pipeline: Callable[..., dlt.Pipeline], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Klaviyo's own daily limit (4 a day per endpoint here; the source believes 225): the 429
    ends the report for the run at once (its Retry-After is an hour), the next run that day
    does not ask, and the runs of the next days finish the backfill."""
    clock = {"shift": 0.0}
    real_now = klaviyo.quota.now
    monkeypatch.setattr(klaviyo.quota, "now", lambda: real_now() + clock["shift"])
    with Emulator(config(rate_limits=True, report_daily_limit=4, report_day_seconds=3600, report_page_size=500)) as emu:
        pipeline = make_pipeline()
        campaign = PERFORMANCE_REPORTS["campaign_values"]
        settings = dict(report_backfill_days=8, report_lookback_days=1)
        started = datetime.now(tz=UTC)
        with caplog.at_level(logging.WARNING, logger="klaviyo.performance"):
            pipeline.run(source(emu, "campaign_values,segment_series", **settings)).raise_on_failed_jobs()
        assert (datetime.now(tz=UTC) - started).total_seconds() < 30, "the 429 is not waited for"
        statuses = [r.status for r in emu.request_log if r.path == campaign.path]
        assert statuses[-1] == 429 and statuses.count(429) == 1, "the daily 429 is not retried"
        assert any("429 for its daily limit" in r.getMessage() for r in caplog.records), "the stop is said"
        assert loaded(pipeline, PERFORMANCE_REPORTS["segment_series"]), "the other endpoint is not refused"
        since = len(emu.request_log)
        pipeline.run(source(emu, "campaign_values", **settings)).raise_on_failed_jobs()
        assert not [r for r in emu.request_log[since:] if r.path == campaign.path], "refused today: not asked again"
        for _ in range(5):
            clock["shift"] += 3601
            emu.reset_rate_limits()
            pipeline.run(source(emu, "campaign_values", **settings)).raise_on_failed_jobs()
            if pipeline.state["sources"]["klaviyo"]["resources"]["campaign_values"]["held"][placed(emu)]["first"] <= str(today() - timedelta(days=8)):
                break
        want = expected(emu, campaign, today() - timedelta(days=8), today(), placed(emu))
        assert not differences(loaded(pipeline, campaign), want)


# ------------------------------------------------------------------------- bad settings
BAD = [
    ("revision", dict(revision="2023-10-15"), "needs revision 2026-07-15 (this run uses 2023-10-15)"),
    ("statistic", dict(report_statistics={"campaign_values": ["opens", "openz"]}), "'openz' is not a statistic"),
    ("statistics of no table", dict(report_statistics={"campaigns": ["opens"]}), "not a reporting table"),
    ("metric name", dict(conversion_metric_id="Placed Order"), "is not a metric id"),
    ("lookback", dict(report_lookback_days=45), "report_lookback_days 45"),
    ("backfill", dict(report_backfill_days="a year"), "report_backfill_days 'a year'"),
    ("share", dict(report_daily_share=0), "report_daily_share 0"),
    ("limit", dict(report_daily_limit=0), "report_daily_limit 0"),
    ("share below the lookback", dict(report_daily_share=0.02), "leaves campaign_values 4 requests a run, fewer than the 8 days"),
]


@pytest.mark.parametrize(("case", "settings", "says"), BAD, ids=[b[0] for b in BAD])
def test_bad_settings_are_one_line_errors_before_any_request(emu: Emulator, case: str, settings: dict[str, Any], says: str) -> None:
    arguments: dict[str, Any] = dict(api_key=emu.api_key, base_url=emu.base_url, revision=REV, reports="campaign_values,flow_series")
    arguments.update(settings)
    with pytest.raises(KlaviyoConfigError) as error:
        klaviyo_source(**arguments)
    assert says in str(error.value) and "\n" not in str(error.value)
    assert not emu.request_log, "nothing was asked"


def test_an_unknown_metric_id_is_refused_before_any_report_is_asked(emu: Emulator, make_pipeline: Callable[..., dlt.Pipeline]) -> None:
    with pytest.raises(Exception) as error:
        make_pipeline().run(source(emu, "campaign_values", conversion_metric_id="ZZZZZZ"))
    assert "conversion_metric_id 'ZZZZZZ' is not a metric of this account" in str(error.value)
    assert f"Placed Order {placed(emu)}" in str(error.value), "the candidates are named"
    assert not [r for r in emu.request_log if r.method == "POST"], "no report was asked"


def test_the_conversion_metric_is_the_one_placed_order_or_those_configured(emu: Emulator, make_pipeline: Callable[..., dlt.Pipeline]) -> None:
    pipeline = make_pipeline()
    table = PERFORMANCE_REPORTS["flow_series"]
    pipeline.run(source(emu, table.name, report_backfill_days=3))
    assert {r[0] for r in query(pipeline, "SELECT DISTINCT conversion_metric_id FROM flow_series")} == {placed(emu)}
    other = next(m["id"] for m in emu.account.records("metric", revision=REV) if m["attributes"]["name"] == "Opened Email")
    pipeline.run(source(emu, table.name, report_backfill_days=3, conversion_metric_id=f"{placed(emu)},{other}"))
    for metric in (placed(emu), other):
        want = expected(emu, table, today() - timedelta(days=3), today(), metric)
        got = {k: v for k, v in loaded(pipeline, table).items() if k[-1] == metric}
        assert want and not differences(got, want), metric


def test_several_placed_order_metrics_are_a_one_line_error_naming_them(
    emu: Emulator, make_pipeline: Callable[..., dlt.Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    def twice(document: Document) -> Document:  # a second store integration's Placed Order
        orders = [m for m in document.get("data", []) if m.get("attributes", {}).get("name") == "Placed Order"]
        return {**document, "data": document["data"] + [{**m, "id": "SeCoNd"} for m in orders]}

    edit_pages(monkeypatch, lambda: twice)
    with pytest.raises(Exception) as error:
        make_pipeline().run(source(emu, "campaign_values"))
    message = str(error.value)
    assert "has 2 named Placed Order" in message and placed(emu) in message and "SeCoNd" in message
    assert "conversion_metric_id" in message
    assert not [r for r in emu.request_log if r.method == "POST"]


# ----------------------------------------------------------------- the rows against the spec
@pytest.mark.parametrize("name", list(PERFORMANCE_REPORTS))
def test_each_row_agrees_with_the_spec(name: str) -> None:
    table = PERFORMANCE_REPORTS[name]
    operation = load_spec(REV)["paths"][table.path]["post"]
    limits = operation["x-klaviyo-ratelimit"]
    assert (limits["burst"], limits["steady"], limits["daily"]) == ("1/s", "2/m", f"{REPORTING_DAILY_LIMIT}/d")
    assert SOURCE_TIERS[table.tier] == Tier(1, 2), "the source paces the reporting API at the spec's limits"
    assert operation["x-klaviyo-scopes"] == [table.scope]
    schema = _request_attributes(operation)
    assert schema["properties"]["statistics"]["items"]["enum"] == list(table.statistics), "every statistic the spec allows"
    group_by = schema["properties"].get("group_by")
    if table.group_by:
        assert set(table.group_by) <= set(group_by["items"]["enum"])
    else:
        assert group_by is None
    assert ("interval" in schema["properties"]) == (table.interval is not None)
    if table.interval:
        assert table.interval in schema["properties"]["interval"]["enum"]
    assert ("conversion_metric_id" in schema.get("required", [])) == table.conversion_metric
    cursors = [p for p in operation.get("parameters", []) if p.get("name") == "page_cursor"]
    assert bool(cursors) == table.paged


def _request_attributes(operation: Mapping[str, Any]) -> dict[str, Any]:
    spec = load_spec(REV)

    def resolve(node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    body = resolve(operation["requestBody"]["content"]["application/vnd.api+json"]["schema"])
    return resolve(resolve(resolve(body["properties"]["data"])["properties"]["attributes"]))  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ day windows
def test_windows_cover_days_once_and_months_whole() -> None:
    span = Days(date(2025, 1, 30), date(2025, 4, 2))
    for period, size in (("day", 1), ("day", 60), ("month", 1)):
        for cut in (forward(span, period, size), backward(span, period, size)):  # type: ignore[arg-type]
            days = [w.first + timedelta(days=i) for w in cut for i in range(w.count)]
            assert sorted(days) == [span.first + timedelta(days=i) for i in range(span.count)]
    assert forward(span, "month", 1)[1] == Days(date(2025, 2, 1), date(2025, 2, 28))


def test_the_plan_rereads_the_lookback_catches_up_gaps_and_backfills_newest_first() -> None:
    now = date(2025, 6, 30)
    recent, backfill = plan(None, now, date(2025, 6, 1), 7, "day", 1)
    assert recent[0].first == date(2025, 6, 23) and recent[-1].last == now
    assert backfill[0].last == date(2025, 6, 22) and backfill[-1].first == date(2025, 6, 1)
    held = Days(date(2025, 6, 10), date(2025, 6, 20))  # runs stopped ten days ago
    recent, backfill = plan(held, now, date(2025, 6, 1), 7, "day", 60)
    assert recent == [Days(date(2025, 6, 21), now)] and backfill == [Days(date(2025, 6, 1), date(2025, 6, 9))]
    recent, backfill = plan(Days(date(2025, 3, 1), now), now, date(2025, 3, 5), 3, "month", 1)
    assert recent == [Days(date(2025, 6, 1), now)] and backfill == []
    assert extend(held, Days(date(2025, 6, 21), now)) == Days(date(2025, 6, 10), now)
    assert extend(held, Days(date(2025, 6, 1), date(2025, 6, 5))) == held, "a window not touching the range is not held"
    assert days_left(held, date(2025, 6, 1), date(2025, 6, 20), "day") == 9


def test_rows_leave_out_zero_rows_and_mark_empty_days() -> None:
    table = PERFORMANCE_REPORTS["segment_series"]
    window = Days(date(2025, 1, 1), date(2025, 1, 3))
    answer = {"data": {"attributes": {"date_times": [f"2025-01-0{d}T00:00:00+00:00" for d in (1, 2, 3)], "results": [
        {"groupings": {"segment_id": "S1"}, "statistics": {"members_added": [2, 0, 0], "total_members": [5, 0, 0]}},
    ]}}}
    rows = rows_of(table, [answer], window, ["members_added", "total_members"], None)
    assert [r for r in rows if not r.get(EMPTY_MARKER)] == [{"date": date(2025, 1, 1), "segment_id": "S1", "members_added": 2, "total_members": 5}]
    assert sorted(r["date"] for r in rows if r.get(EMPTY_MARKER)) == [date(2025, 1, 2), date(2025, 1, 3)]


def test_the_request_body_asks_whole_days() -> None:
    from klaviyo.performance import request_body

    body = request_body(PERFORMANCE_REPORTS["flow_series"], Days(date(2025, 1, 1), date(2025, 1, 31)), ["opens"], "AbC123")
    assert json.loads(json.dumps(body))["data"]["attributes"] == {
        "statistics": ["opens"], "timeframe": {"start": "2025-01-01T00:00:00", "end": "2025-01-31T23:59:59"},
        "interval": "daily", "group_by": list(PERFORMANCE_REPORTS["flow_series"].group_by), "conversion_metric_id": "AbC123",
    }


# ------------------------------------------------------------------ the guide's queries
def guide_queries() -> dict[str, str]:
    """docs/data-model.md's performance queries: ```sql blocks opening `-- performance of <what>`."""
    text = (REPO / "docs" / "data-model.md").read_text(encoding="utf-8")
    found = {}
    for block in re.findall(r"```sql\n(.*?)```", text, re.S):
        named = re.match(r"-- performance of (\w+)", block)
        if named:
            found[named.group(1)] = block
    return found


def test_the_guides_performance_queries_answer_what_klaviyo_reports(emu: Emulator, make_pipeline: Callable[..., dlt.Pipeline]) -> None:
    queries = guide_queries()
    assert set(queries) == {"campaign", "flows", "flow", "forms", "segments"}, "one query per report family"
    pipeline = make_pipeline()
    pipeline.run(source(emu, "campaign_values,flow_series,flow_values,form_series,segment_series", report_backfill_days=35, report_daily_limit=5000))
    metric, now = placed(emu), today()

    def rows(name: str) -> list[dict[str, Any]]:
        with pipeline.sql_client() as client, client.execute_query(queries[name]) as cursor:
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, r, strict=False)) for r in cursor.fetchall()]

    def report(kind: str, first: date, last: date, statistics: list[str], **extra: Any) -> list[dict[str, Any]]:
        return emu.report(kind, statistics=statistics, timeframe=timeframe(first, last), **extra)["results"]  # type: ignore[no-any-return]

    campaigns = {r["campaign_message_id"]: r for r in rows("campaign")}
    want = report("campaign-values", now - timedelta(days=29), now, ["delivered", "clicks", "conversion_value"], conversion_metric_id=metric)
    sent = {r["groupings"]["campaign_message_id"]: r["statistics"] for r in want if any(r["statistics"].values())}
    assert set(campaigns) == set(sent)
    assert all(campaigns[m]["delivered"] == s["delivered"] and same(campaigns[m]["revenue"], Decimal(str(s["conversion_value"]))) for m, s in sent.items())

    daily = report("flow-series", now - timedelta(days=13), now, ["conversion_value"], interval="daily",
                   conversion_metric_id=metric, group_by=["flow_id", "flow_message_id"])
    revenue: dict[tuple[date, str], float] = {}
    for result in daily:
        for i, value in enumerate(result["statistics"]["conversion_value"]):
            key = (now - timedelta(days=13 - i), result["groupings"]["flow_id"])
            revenue[key] = revenue.get(key, 0.0) + value
    got = {(r["date"], r["flow_id"]): r["revenue"] for r in rows("flows")}
    assert got and all(same(v, Decimal(str(revenue[k]))) for k, v in got.items())

    month = now.replace(day=1)
    monthly = report("flow-values", month, now, ["open_rate"], conversion_metric_id=metric, filter='equals(send_channel,"email")')
    rates = {r["groupings"]["flow_message_id"]: r["statistics"]["open_rate"] for r in monthly}
    this_month = [r for r in rows("flow") if r["month"] == month]
    assert this_month and all(same(r["open_rate"], rates[r["flow_message_id"]]) for r in this_month)

    forms = {r["form_id"]: r for r in rows("forms") if r["month"].date() == month}
    for result in report("form-values", month, now, ["viewed_form", "submits"], group_by=["form_id"]):
        assert forms[result["groupings"]["form_id"]]["submits"] == result["statistics"]["submits"]

    segments = {r["segment_id"]: r for r in rows("segments")}
    for result in report("segment-values", now - timedelta(days=29), now, ["net_members_changed", "total_members"]):
        stats = result["statistics"]
        if result["groupings"]["segment_id"] in segments:
            row = segments[result["groupings"]["segment_id"]]
            assert (row["net"], row["members_at_end"]) == (stats["net_members_changed"], stats["total_members"])
