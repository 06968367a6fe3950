"""Every report against the emulator into DuckDB: loaded ids equal the emulator's (per API
revision), incremental runs, merges after mutations, custom dates, aggregates, campaigns
filters, events and their attributions in 2026-07-15, v1, the demo."""

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import pytest

from klaviyo import klaviyo_source
from klaviyo.settings import CURSOR_SAFETY_MARGIN, DEFAULT_REVISION, REVISIONS
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO, column, query

UTC = UTC
KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "campaigns_email": ("campaign", {"channel": "email"}),
    "campaigns_sms": ("campaign", {"channel": "sms"}),
    "campaigns_push": ("campaign", {"channel": "mobile_push"}),  # 2026-07-15 only
    "templates": ("template", {}),
    "profiles": ("profile", {}),
    "events": ("event", {}),
    "metrics": ("metric", {}),
    "segments": ("segment", {}),
    "lists": ("list", {}),
    "flows": ("flow", {}),
}
START = "2000-01-01T00:00:00Z"
NEW, OLD = "2026-07-15", "2023-10-15"
# (revision, report) for every report the revision has.
CASES = [(revision, report) for revision in REVISIONS for report in KINDS if report in REVISIONS[revision].reports]
# The rows of the revision the tests without a revision run under.
REPORTS = REVISIONS[DEFAULT_REVISION].reports


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(seed=11, profiles=250, events=3000, days=20, v1="live")
    with Emulator(config) as emu:
        yield emu


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def truth(emu: Emulator, report: str, start: datetime | None, end: datetime, revision: str = DEFAULT_REVISION) -> set[str]:
    """Ids the emulator serves in `revision` for a report with the cursor in [start, end)."""
    kind, filters = KINDS[report]
    cursor = REVISIONS[revision].reports[report].cursor
    ids = set()
    for resource in emu.account.records(kind, revision=revision, **filters):
        if cursor:
            value = _parse(resource["attributes"][cursor])
            if (start is not None and value < start) or value >= end:
                continue
        ids.add(resource["id"])
    return ids


def run(emu: Emulator, pipeline: dlt.Pipeline, **kwargs: Any) -> tuple[datetime, datetime]:
    """Runs the source; returns the wall-clock instants just before and after the run."""
    before = datetime.now(UTC)
    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, **kwargs)
    pipeline.run(source).raise_on_failed_jobs()
    return before, datetime.now(UTC)


def assert_loaded_equals_truth(
    emu: Emulator, pipeline: dlt.Pipeline, report: str, start: datetime | None, before: datetime, after: datetime,
    revision: str = DEFAULT_REVISION,
) -> list[str]:
    loaded = column(pipeline, report)
    assert len(loaded) == len(set(loaded)), "duplicate ids"
    surely = truth(emu, report, start, before - CURSOR_SAFETY_MARGIN, revision)
    at_most = truth(emu, report, start, after, revision)
    assert surely <= set(loaded) <= at_most
    assert loaded, "the emulator holds records for every report"
    return loaded


@pytest.mark.parametrize("revision, report", CASES)
def test_each_report_loads_exactly_the_emulators_records(emulator: Emulator, make_pipeline: Any, revision: str, report: str) -> None:
    pipeline = make_pipeline()
    before, after = run(emulator, pipeline, reports=[report], start_date=START, revision=revision)
    assert_loaded_equals_truth(emulator, pipeline, report, None, before, after, revision)


def test_default_windows_read_the_configured_backfill(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    before, after = run(emulator, pipeline, reports=["events"])
    loaded = set(column(pipeline, "events"))
    backfill = REPORTS["events"].backfill
    assert truth(emulator, "events", after - backfill, before - CURSOR_SAFETY_MARGIN) <= loaded
    assert loaded <= truth(emulator, "events", before - backfill, after)


def _cursor_state(pipeline: dlt.Pipeline, report: str) -> Any:
    resources = pipeline.state["sources"]["klaviyo"]["resources"]
    return resources[report]["incremental"][REPORTS[report].cursor]["last_value"]


def test_a_second_run_with_nothing_new_loads_nothing_and_keeps_cursors(emulator: Emulator, make_pipeline: Any) -> None:
    reports = ["events", "profiles", "lists", "templates", "campaigns_email"]
    pipeline = make_pipeline()
    run(emulator, pipeline, reports=reports, start_date=START)
    cursors = {r: _cursor_state(pipeline, r) for r in reports}
    ids = {r: sorted(column(pipeline, r)) for r in reports}
    run(emulator, pipeline, reports=reports, start_date=START)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    # only a report with a default lookback (events: late events) reads its lookback again
    assert {r: counts.get(r, 0) > 0 for r in reports} == {r: bool(REPORTS[r].lookback) for r in reports}
    assert {r: sorted(column(pipeline, r)) for r in reports} == ids, "re-read rows merged, none new"
    assert {r: _cursor_state(pipeline, r) for r in reports} == cursors
    run(emulator, pipeline, reports=reports, start_date=START, lookback_hours=0)
    counts = pipeline.last_trace.last_normalize_info.row_counts
    # without a lookback nothing is read again but the events on the cursor itself: the run
    # before (with dlt's lag) kept no boundary hashes to drop them with; the merge does
    on_cursor = [e for e in emulator.account.records("event", revision=DEFAULT_REVISION)
                 if _parse(e["attributes"]["datetime"]) == _parse(str(cursors["events"]))]
    assert {r: counts.get(r, 0) for r in reports} == {r: len(on_cursor) if r == "events" else 0 for r in reports}
    assert {r: sorted(column(pipeline, r)) for r in reports} == ids
    assert {r: _cursor_state(pipeline, r) for r in reports} == cursors


def test_the_cursor_never_passes_the_run_start(emulator: Emulator, make_pipeline: Any) -> None:
    future = [e for e in emulator.account.records("event") if _parse(e["attributes"]["datetime"]) > datetime.now(UTC) + timedelta(minutes=1)]
    assert future, "the emulator dates a few events in the future"
    pipeline = make_pipeline()
    before, after = run(emulator, pipeline, reports=["events"], start_date=START)
    assert _cursor_state(pipeline, "events") < after
    assert not set(column(pipeline, "events")) & {e["id"] for e in future}


def test_mutations_are_merged_on_the_next_run(make_pipeline: Any) -> None:
    # The account's "now" lies two days back, so that the events a mutation adds (dated after
    # the newest event, which may be dated up to a day ahead) are in the past of the run.
    account_now = datetime.now(UTC) - timedelta(days=2)
    with Emulator(EmulatorConfig(seed=5, profiles=120, events=800, days=10, now=account_now)) as emu:
        pipeline = make_pipeline()
        reports = ["profiles", "events", "templates", "campaigns_email", "campaigns_sms", "flows", "lists", "segments"]
        run(emu, pipeline, reports=reports, start_date=START)
        time.sleep(1.1)
        changes = emu.mutate(seed=3, create=5, update=5, delete=0)
        time.sleep(CURSOR_SAFETY_MARGIN.total_seconds() + 0.5)
        before, after = run(emu, pipeline, reports=reports, start_date=START)
        for report in reports:
            loaded = assert_loaded_equals_truth(emu, pipeline, report, None, before, after)
            assert len(loaded) == len(set(loaded))
        updated_profiles = changes["profile"]["updated"]
        assert updated_profiles
        served = {p["id"]: p["attributes"] for p in emu.account.records("profile") if p["id"] in updated_profiles}
        rows = query(pipeline, "SELECT id, first_name, updated FROM profiles WHERE id IN (" + ",".join(f"'{i}'" for i in updated_profiles) + ")")
        assert {r[0]: (r[1], r[2]) for r in rows} == {i: (a["first_name"], _parse(a["updated"])) for i, a in served.items()}
        assert changes["event"]["created"]
        assert set(changes["event"]["created"]) <= set(column(pipeline, "events"))


def test_custom_dates_exclude_the_start_include_the_end_and_leave_the_cursor(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    run(emulator, pipeline, reports=["events"], start_date=START)
    cursor = _cursor_state(pipeline, "events")
    events = sorted(emulator.account.records("event"), key=lambda e: e["attributes"]["datetime"])
    start_value = _parse(events[200]["attributes"]["datetime"])
    end_value = _parse(events[900]["attributes"]["datetime"])
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    custom = make_pipeline("klaviyo_custom")
    run(emulator, custom, reports=["events"], start_date=start_value.strftime(fmt), end_date=end_value.strftime(fmt))
    expected = {e["id"] for e in events if start_value < _parse(e["attributes"]["datetime"]) <= end_value}
    loaded = column(custom, "events")
    assert set(loaded) == expected and len(loaded) == len(expected)
    assert any(_parse(e["attributes"]["datetime"]) == end_value for e in events if e["id"] in expected)
    run(emulator, pipeline, reports=["events"], start_date=start_value.strftime(fmt), end_date=end_value.strftime(fmt))
    assert _cursor_state(pipeline, "events") == cursor


def _aggregate_body(metric_id: str, start: datetime, end: datetime, measurements: list[str], interval: str = "day") -> dict[str, Any]:
    return {"data": {"type": "metric-aggregate", "attributes": {
        "metric_id": metric_id, "measurements": measurements, "interval": interval, "timezone": "UTC",
        "filter": [f"greater-or-equal(datetime,{start:%Y-%m-%dT%H:%M:%S})", f"less-than(datetime,{end:%Y-%m-%dT%H:%M:%S})"]}}}


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_aggregates_equal_sql_over_the_loaded_events(emulator: Emulator, make_pipeline: Any, revision: str) -> None:
    metrics = {m["attributes"]["name"]: m["id"] for m in emulator.account.records("metric")}
    metric_id = metrics["Placed Order"]
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=10)
    pipeline = make_pipeline()
    run(emulator, pipeline, reports=["events", "metric_aggregates"], start_date=START, revision=revision,
        aggregate_queries={"orders": _aggregate_body(metric_id, start, end, ["count", "sum_value"])})
    # Klaviyo counts an event whose metric it cannot resolve under that metric; 2026-07-15 lists
    # such events with a null metric_id (2023-10-15 with their metric): they are the metric's too.
    unresolved = emulator.account.unresolved_event_ids() if revision == NEW else set()
    of_metric = {e["id"] for e in emulator.account.records("event", metric_id=metric_id) if e["id"] in unresolved}
    from_sql = query(pipeline, f"""
        SELECT date_trunc('day', datetime) AS day, count(*), round(sum(CAST(json_extract(event_properties, '$."$value"') AS DOUBLE)), 2)
        FROM events WHERE (metric_id = ? OR id IN ({",".join(f"'{i}'" for i in of_metric) or "NULL"}))
        AND datetime >= ? AND datetime < ? GROUP BY 1""", metric_id, start, end)
    expected = {(d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC), float(c), float(s or 0)) for d, c, s in from_sql}
    rows = query(pipeline, "SELECT date, measurement, value FROM metric_aggregates WHERE query_name = 'orders'")
    by_day: dict[datetime, dict[str, float]] = {}
    for day, measurement, value in rows:
        by_day.setdefault(day.astimezone(UTC), {})[measurement] = value
    got = {(d, v["count"], round(v["sum_value"], 2)) for d, v in by_day.items() if v["count"]}
    assert got == expected and len(got) >= 5


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_a_fourteen_month_aggregate_query_is_two_requests_and_a_rerun_replaces_buckets(emulator: Emulator, make_pipeline: Any, revision: str) -> None:
    metric_id = next(iter(emulator.account.records("metric")))["id"]
    end = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (end - timedelta(days=426)).replace(day=1)
    queries = {"long": _aggregate_body(metric_id, start, end, ["count"], interval="month")}
    pipeline = make_pipeline()
    emulator.clear_log()
    run(emulator, pipeline, reports=["metric_aggregates"], aggregate_queries=queries, revision=revision)
    posts = [r for r in emulator.request_log if r.method == "POST"]
    assert len(posts) == 2 and {r.headers["revision"] for r in posts} == {revision}
    first = query(pipeline, "SELECT count(*), count(DISTINCT date) FROM metric_aggregates")[0]
    run(emulator, pipeline, reports=["metric_aggregates"], aggregate_queries=queries, revision=revision)
    assert query(pipeline, "SELECT count(*), count(DISTINCT date) FROM metric_aggregates")[0] == first
    assert first[1] >= 14


def test_paged_aggregate_answers_are_all_followed_and_load_what_one_page_loads(emulator: Emulator, make_pipeline: Any) -> None:
    metrics = {m["attributes"]["name"]: m["id"] for m in emulator.account.records("metric")}
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    body = _aggregate_body(metrics["Opened Email"], end - timedelta(days=15), end, ["count"])
    body["data"]["attributes"]["by"] = ["$message"]
    paged = {"data": {**body["data"], "attributes": {**body["data"]["attributes"], "page_size": 1}}}
    loaded = []
    for queries in ({"q": body}, {"q": paged}):
        pipeline = make_pipeline()
        emulator.clear_log()
        run(emulator, pipeline, reports=["metric_aggregates"], aggregate_queries=queries)
        posts = [r.body["data"]["attributes"] for r in emulator.request_log if r.method == "POST"]
        loaded.append((sorted(query(pipeline, "SELECT date, dimension_key, value FROM metric_aggregates")), posts))
    (whole, one_post), (pages, page_posts) = loaded
    assert len(one_post) == 1 and "page_cursor" not in one_post[0]
    groups = len({key for _, key, _ in whole})
    assert groups >= 3 and len(page_posts) == groups, "one POST per page of one dimension group"
    assert [("page_cursor" in p) for p in page_posts] == [False] + [True] * (groups - 1)
    assert pages == whole


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_campaign_requests_carry_the_channel_filter_on_every_page(emulator: Emulator, make_pipeline: Any, revision: str) -> None:
    emulator.clear_log()
    table = REVISIONS[revision]
    channels = [name for name in table.reports if name.startswith("campaigns_")]
    # one worker: windows are not split, so the later pages follow links.next
    run(emulator, make_pipeline(), reports=channels, start_date=START, workers=1, revision=revision)
    requests = [r for r in emulator.request_log if r.path == table.reports["campaigns_email"].path]
    if revision == OLD:
        assert any("page[cursor]" in r.query for r in requests), "campaigns span several pages"
    else:  # 100 a page: one request per channel and archived flag
        assert len(requests) == 2 * len(channels) == 6 and all(r.query["page[size]"] == ["100"] for r in requests)
        assert {r.query["filter"][0].split(",")[1].split("'")[1] for r in requests} == {"email", "sms", "mobile_push"}
    for request in requests:
        assert request.status == 200
        assert "equals(messages.channel," in request.query["filter"][0]


@pytest.mark.parametrize("flatten", [False, True], ids=["arrow", "row dicts"])
def test_events_in_2026_come_1000_a_page_with_their_attributions_and_unresolved_metrics(
    emulator: Emulator, make_pipeline: Any, flatten: bool
) -> None:
    emulator.clear_log()
    pipeline = make_pipeline()
    # one worker: one window, so the pages are the endpoint's
    before, _ = run(emulator, pipeline, reports=["event_attributions"], start_date=START, workers=1, revision=NEW,
                    flatten_properties=flatten)
    events = dict(query(pipeline, "SELECT id, metric_id FROM events"))
    assert set(events) == truth(emulator, "events", None, before - CURSOR_SAFETY_MARGIN, NEW)
    requests = [r for r in emulator.request_log if r.path == "/api/events"]
    assert all(r.query["page[size]"] == ["1000"] and r.query["include"] == ["attributions"] for r in requests)
    assert len(requests) == -(-len(events) // 1000) and len(events) > 2000
    # events whose metric Klaviyo cannot resolve are kept, with a null metric_id
    served = {e["id"]: e["relationships"].get("metric") for e in emulator.account.records("event", revision=NEW)}
    assert {i for i, metric in events.items() if metric is None} == emulator.account.unresolved_event_ids() & set(events)
    assert all(metric == (served[i] or {"data": {}})["data"].get("id") for i, metric in events.items())
    assert None in events.values()
    # event_attributions: exactly the emulator's attributions of the loaded events
    rows = query(pipeline, "SELECT event_id, attribution_id, campaign_id, campaign_message_id, flow_id, flow_message_id,"
                           " attributed_event_id, flow_message_variation_id FROM event_attributions")
    expected = {(*(a[k] for k in ("event_id", "attribution_id", "campaign_id", "campaign_message_id", "flow_id", "flow_message_id")), None, None)
                for a in emulator.account.attribution_rows() if a["event_id"] in events}
    assert len(rows) == len(set(rows)) and set(rows) == expected
    assert any(r[2] for r in rows) and any(r[4] for r in rows), "campaign and flow attributions"


def test_v1_campaigns_load_from_the_live_legacy_api(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    run(emulator, pipeline, reports=["campaigns_v1"])
    loaded = column(pipeline, "campaigns_v1")
    assert loaded and len(loaded) == len(set(loaded))
    assert set(loaded) == {c["id"] for c in emulator.account.records("campaign")}


def test_v1_retired_ends_with_a_clear_message_and_no_key(tmp_path: Any) -> None:
    with Emulator(EmulatorConfig(seed=1, profiles=10, events=10, api_key="pk_secret_v1_key")) as emu:
        out = subprocess.run(
            [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--reports", "campaigns_v1", "--pipelines-dir", str(tmp_path / "p")],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SOURCES__KLAVIYO__API_KEY": emu.api_key, "SOURCES__KLAVIYO__BASE_URL": emu.base_url},
        )
    assert out.returncode == 1
    assert "retired the v1 API on 2024-06-30" in out.stderr and "campaigns_email" in out.stderr
    assert "pk_secret_v1_key" not in out.stderr + out.stdout


def test_the_demo_command_loads_every_report(tmp_path: Any) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--demo", "--pipelines-dir", str(tmp_path / "p")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    import duckdb

    from klaviyo_demo import DEMO_DATASET, DEMO_DUCKDB

    with duckdb.connect(str(tmp_path / DEMO_DUCKDB), read_only=True) as db:
        for report in [*KINDS, "metric_aggregates", "tags", "campaign_messages", "campaign_tags", "flow_actions",
                       "flow_messages", "list_profiles", "segment_profiles", "global_exclusions", "event_attributions"]:
            (rows,) = db.execute(f"SELECT count(*) FROM {DEMO_DATASET}.{report}").fetchone()
            assert rows > 0, report
            assert report in out.stdout
