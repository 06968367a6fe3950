"""Issue #4: windowed parallel extraction under one shared rate limiter.

Parallel and sequential runs load the same records and leave the same cursor; window
boundaries on shared datetimes lose and double nothing (incremental and custom-dates windows);
a burst of 16 workers stays within the tier and gets no 429; a 429's Retry-After is waited
out; the limiter paces bursts and steady windows and learns from 429 and `RateLimit-*`.
"""

import queue
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import pytest

from klaviyo import klaviyo_source
from klaviyo import ratelimit as ratelimit_module
from klaviyo.client import KlaviyoApi
from klaviyo.extract import ReadJob, _Splitter, read_job
from klaviyo.ratelimit import BURST_WINDOW_S, STEADY_WINDOW_S, WINDOW_MARGIN_S, RateLimiter
from klaviyo.records import resource_id
from klaviyo.settings import DEFAULT_REVISION, REPORTS, TIERS, Tier
from klaviyo.windows import Window
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import column, edit_pages, load_spec

UTC = UTC
START = "2000-01-01T00:00:00Z"
FMT = "%Y-%m-%dT%H:%M:%SZ"
# The account's "now" lies two days back: every event (some are dated up to a day after the
# account's now) is in the past of every run, so each run reads the whole account.
ACCOUNT_NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
KIND = {"events": "event", "profiles": "profile", "flows": "flow"}
# The reader's splits need many pages: these small accounts have them at 200 events a page
# (revision 2023-10-15), while at 1000 a page (2026-07-15) they fit in a few pages, which are
# rightly not split (parts of SPLIT_MIN_PAGES pages or more). 2026-07-15's parallel reads:
# test_events_of_2026_are_split_across_workers_in_pages_of_1000.
READER_REVISION = "2023-10-15"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    # latency long enough for parallel requests to overlap on a busy machine
    config = EmulatorConfig(seed=11, profiles=400, events=6000, days=20, now=ACCOUNT_NOW, latency_ms=30)
    with Emulator(config) as emu:
        yield emu


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _records(emu: Emulator, report: str) -> list[tuple[datetime, str]]:
    """(cursor value, id) of every record of a report, sorted."""
    cursor = REPORTS[report].cursor
    return sorted((_parse(r["attributes"][cursor]), r["id"]) for r in emu.account.records(KIND[report]))


def _shared(records: list[tuple[datetime, str]]) -> set[datetime]:
    """Cursor values held by two records or more."""
    return {value for value, n in Counter(v for v, _ in records).items() if n > 1}


def _run(emu: Emulator, pipeline: dlt.Pipeline, revision: str = READER_REVISION, **kwargs: Any) -> tuple[float, float]:
    """Runs the source; returns the emulator-log time span (time.time()) of the run."""
    started = _now()
    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, revision=revision, **kwargs)
    pipeline.run(source).raise_on_failed_jobs()
    return started, _now()


def _now() -> float:
    import time

    return time.time()


def _log(emu: Emulator, path: str, span: tuple[float, float]) -> list[Any]:
    return sorted(
        (e for e in emu.request_log if e.path.rstrip("/") == path.rstrip("/") and span[0] <= e.started <= span[1]),
        key=lambda e: e.started,
    )


def _max_in_flight(entries: list[Any]) -> int:
    """Most requests the server was answering at one instant."""
    edges = sorted([(e.started, 1) for e in entries] + [(e.finished, -1) for e in entries])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def _max_per_window(times: list[float], width: float) -> int:
    """Most timestamps in any sliding window of `width` seconds."""
    times = sorted(times)
    peak, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= width:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak


def _extracted(pipeline: dlt.Pipeline, table: str) -> int:
    """Rows the last run extracted into a table, before the merge on `id` could hide a
    duplicate."""
    return pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)


def _cursor_state(pipeline: dlt.Pipeline, report: str) -> Any:
    resources = pipeline.state["sources"]["klaviyo"]["resources"]
    return resources[report]["incremental"][REPORTS[report].cursor]["last_value"]


# ------------------------------------------------------------------ parallel == sequential


@pytest.mark.timing
def test_parallel_and_sequential_runs_load_the_same_records_and_cursor(emulator: Emulator, make_pipeline: Any) -> None:
    reports = ["events", "profiles"]
    loaded: dict[int, dict[str, list[str]]] = {}
    cursors: dict[int, dict[str, Any]] = {}
    in_flight: dict[int, int] = {}
    extracted: dict[int, dict[str, int]] = {}
    for workers in (16, 1):
        pipeline = make_pipeline(f"klaviyo_w{workers}")
        # Small windows: the parallel run splits its range many times.
        span = _run(emulator, pipeline, reports=reports, start_date=START, workers=workers, min_window_minutes=1)
        loaded[workers] = {r: column(pipeline, r) for r in reports}
        extracted[workers] = {r: _extracted(pipeline, r) for r in reports}
        cursors[workers] = {r: _cursor_state(pipeline, r) for r in reports}
        in_flight[workers] = max(_max_in_flight(_log(emulator, f"/api/{r}/", span)) for r in reports)
    # The parallel run was parallel: requests overlapped at the server (their started..finished
    # times, read off its clock). 1 is exact for one worker; 2 is the least overlap that shows
    # parallel reads, with margin: 4 were seen at once on the 2-vCPU test VM under load.
    assert in_flight[1] == 1 and in_flight[16] >= 2, in_flight
    for report in reports:
        records = _records(emulator, report)
        truth = sorted(i for _, i in records)
        for workers in (16, 1):
            assert sorted(loaded[workers][report]) == truth, (report, workers)  # all, each once
            assert extracted[workers][report] == len(truth), (report, workers)  # none read twice
        assert cursors[16][report] == cursors[1][report]
        assert _parse(str(cursors[16][report])) == max(v for v, _ in records)


def test_events_load_declared_deduplicated_and_a_record_repeated_at_a_page_edge_is_loaded_once(
    emulator: Emulator, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Events skip dlt's staging dedup (x-stage-data-deduplicated): the reader must then never
    # hand dlt an id twice, even if a cursor shifted and a page began with the previous
    # page's last record (as an offset cursor would after an insert mid-read).
    repeated: list[str] = []

    def shifting() -> Any:
        last: list[Any] = []  # the previous page's last record, within one read

        def edit(document: dict[str, Any]) -> dict[str, Any]:
            data = document.get("data") or []
            if last and data:
                repeated.append(resource_id(last[0]))
                document = {**document, "data": [last[0], *data]}
            last[:] = data[-1:]
            return document

        return edit

    edit_pages(monkeypatch, shifting)
    pipeline = make_pipeline()
    _run(emulator, pipeline, reports=["events", "profiles"], start_date=START, workers=4, min_window_minutes=60)
    hints = {t: pipeline.default_schema.tables[t].get("x-stage-data-deduplicated") for t in ("events", "profiles")}
    assert hints == {"events": True, "profiles": None}
    assert len(repeated) >= 20
    truth = sorted(i for _, i in _records(emulator, "events"))
    assert sorted(column(pipeline, "events")) == truth  # every event, each once in the table
    assert _extracted(pipeline, "events") == len(truth)


@pytest.mark.timing
def test_events_of_2026_are_split_across_workers_in_pages_of_1000(make_pipeline: Any) -> None:
    config = EmulatorConfig(seed=12, profiles=200, events=60_000, days=20, now=ACCOUNT_NOW, latency_ms=30)
    with Emulator(config) as emu:
        pipeline = make_pipeline()
        span = _run(emu, pipeline, revision=DEFAULT_REVISION, reports=["events"], start_date=START, workers=16)
        entries = _log(emu, "/api/events", span)
        assert DEFAULT_REVISION == "2026-07-15" and all(e.query["page[size]"] == ["1000"] for e in entries)
        assert _max_in_flight(entries) >= 2, "the range was split across workers"
        truth = sorted(i for _, i in _records(emu, "events"))
        assert sorted(column(pipeline, "events")) == truth and _extracted(pipeline, "events") == len(truth)
        # pages of 1000 (each window ends on one partial page): about 60 requests, not 300
        assert len(truth) / 1000 <= len(entries) <= len(truth) / 1000 + 16


# ------------------------------------------------------------------ boundaries


def _drive(api: KlaviyoApi, report: Any, job: ReadJob, idle: Any = None) -> tuple[list[str], list[datetime]]:
    """Reads a job to the end with the real splitter, one window after the other (no threads,
    so the splits are deterministic): a page that has a next page is split at its last cursor
    value while fewer than 4 windows are pending (or always, with `idle=1`: into two windows,
    `[at, middle)` and `[middle, end)`). Returns the ids read and the split points."""
    pending: queue.Queue[ReadJob] = queue.Queue()
    pending.put(job)
    splitter = _Splitter(4, pending, timedelta(seconds=1), min_pages=1)
    if idle is not None:
        splitter.idle_workers = lambda: idle  # type: ignore[method-assign]
    points: list[datetime] = []
    try_split = splitter.try_split

    def spy(job: ReadJob, at: datetime, pages_left: float) -> bool:
        split = try_split(job, at, pages_left)
        if split:
            points.append(at)
        return split

    splitter.try_split = spy  # type: ignore[method-assign]
    ids: list[str] = []
    while not pending.empty():
        for items in read_job(api, report, pending.get_nowait(), splitter):
            ids += items.column("id").to_pylist() if hasattr(items, "column") else [r["id"] for r in items]
    return ids, points


def _api(emu: Emulator) -> KlaviyoApi:
    return KlaviyoApi(emu.api_key, emu.base_url, READER_REVISION, RateLimiter())  # REPORTS are its rows


def test_a_split_on_a_datetime_shared_across_a_page_boundary_loses_and_doubles_nothing(emulator: Emulator) -> None:
    report = REPORTS["events"]  # 200 a page (fixed), all four comparison operators
    records = _records(emulator, "events")
    values = [v for v, _ in records]
    # A start whose first page (200 events) ends inside a pair sharing one datetime: the page's
    # last event and the next page's first have the same datetime.
    i = next(i for i in range(400, len(values) - 1) if values[i] == values[i + 1] and values[i - 200] < values[i - 199] and values[i] > values[i - 1])
    start, end = values[i - 199], values[i + 1200]
    ids, points = _drive(_api(emulator), report, ReadJob("", Window(start, end)))
    assert points[0] == values[i]  # the first split falls on the shared datetime
    assert Counter(ids) == Counter(i for v, i in records if start <= v < end)


def test_tiny_pages_split_on_shared_datetimes_with_widened_lower_bounds(emulator: Emulator) -> None:
    # Profiles allow only greater-than/less-than on `updated`: each window's inclusive lower
    # bound is asked as greater-than(start - 1 s) and trimmed; 7 a page makes many splits.
    report = replace(REPORTS["profiles"], page_size=7)
    records = _records(emulator, "profiles")
    ids, points = _drive(_api(emulator), report, ReadJob("", Window(records[0][0], records[-1][0], end_closed=True)), idle=1)
    assert len(points) >= 20 and len(_shared(records) & set(points)) >= 3
    assert Counter(ids) == Counter(i for _, i in records)


def test_a_run_with_one_second_windows_and_sixteen_workers_loads_every_event_once(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    _run(emulator, pipeline, reports=["events"], start_date=START, workers=16, min_window_minutes=1 / 60)
    loaded = column(pipeline, "events")
    assert Counter(loaded) == Counter(i for _, i in _records(emulator, "events"))
    assert _extracted(pipeline, "events") == len(loaded)


@pytest.mark.timing
def test_custom_dates_on_shared_datetimes_split_across_workers(emulator: Emulator, make_pipeline: Any) -> None:
    records = _records(emulator, "events")
    values = [v for v, _ in records]
    shared = sorted(_shared(records))
    start = next(v for v in shared if values.index(v) > 500)
    end = next(v for v in reversed(shared) if values.index(v) < len(values) - 500)
    pipeline = make_pipeline()
    span = _run(emulator, pipeline, reports=["events"], start_date=start.strftime(FMT), end_date=end.strftime(FMT), workers=16, min_window_minutes=1 / 60)
    loaded = column(pipeline, "events")
    expected = [i for v, i in records if start < v <= end]  # start exclusive, end inclusive
    assert Counter(loaded) == Counter(expected) and _extracted(pipeline, "events") == len(expected)
    on_end = {i for v, i in records if v == end}
    assert len(on_end) >= 2 and on_end <= set(loaded)
    assert not {i for v, i in records if v == start} & set(loaded)
    # It was split across workers: at least 2 requests overlapped at the server (3 seen here).
    assert _max_in_flight(_log(emulator, "/api/events/", span)) >= 2
    with pytest.raises(KeyError):  # custom dates leave no cursor behind
        _cursor_state(pipeline, "events")


# ------------------------------------------------------------------ the limiter against the server


def _spec_limits(path: str) -> Tier:
    """Klaviyo's limits of GET `path` (its OpenAPI spec's `x-klaviyo-ratelimit`, e.g. 3/s, 60/m)."""
    limits = load_spec()["paths"][path]["get"]["x-klaviyo-ratelimit"]
    return Tier(int(limits["burst"].removesuffix("/s")), int(limits["steady"].removesuffix("/m")))


@pytest.mark.timing
def test_sixteen_workers_stay_within_the_burst_of_tier_s_and_get_no_429(make_pipeline: Any) -> None:
    # GET /api/flows/ is tier S in Klaviyo's spec (3 requests a second, 60 a minute), enforced by
    # the emulator; the source must pace its 16 workers under it from its own report table.
    tier_s = _spec_limits(REPORTS["flows"].path)
    assert tier_s == Tier(3, 60), "the spec's tier S"
    assert TIERS[REPORTS["flows"].tier] == tier_s, "the source paces flows at the limits Klaviyo gives /api/flows/"
    config = EmulatorConfig(seed=3, flows=1200, events=10, profiles=10, rate_limits=True, latency_ms=5)
    with Emulator(config) as emu:
        limiter = RateLimiter.for_account(emu.base_url, emu.api_key)
        pipeline = make_pipeline()
        span = _run(emu, pipeline, reports=["flows"], start_date=START, workers=16, min_window_minutes=1 / 60)
        entries = _log(emu, "/api/flows/", span)
        assert [e.status for e in entries].count(429) == 0
        assert limiter.throttled() == 0
        assert 24 <= len(entries) <= 45
        started = [e.started for e in entries]
        # Read off the server's clock. Tolerance: the limiter spaces bursts 1.0 + WINDOW_MARGIN_S
        # = 1.5 s apart, so requests may arrive up to 0.5 s late at the server and still fit.
        assert _max_per_window(started, 1.0) <= tier_s.burst_per_second
        assert _max_per_window(started, 60.0) <= tier_s.steady_per_minute
        # The workers asked for more than the tier allows: >= 24 requests at 3 per 1.5 s need
        # >= 10 s of pacing (~15 s of waits summed over the workers here); 2 s is far below that.
        assert limiter.waited_s > 2
        flows = sorted(r["id"] for r in emu.account.records("flow"))
        assert sorted(column(pipeline, "flows")) == flows and _extracted(pipeline, "flows") == len(flows)


@pytest.mark.timing
def test_a_429_is_waited_out_for_its_retry_after_and_the_data_is_complete(make_pipeline: Any) -> None:
    config = EmulatorConfig(seed=4, events=2000, profiles=10, days=10, now=ACCOUNT_NOW, rate_limits=True)
    with Emulator(config) as emu:
        # the source asks which account the key belongs to once per process: done here first
        _run(emu, make_pipeline("klaviyo_account_asked"), reports=["metrics"])
        emu.force_429(1, retry_after=2)  # the run's first request
        pipeline = make_pipeline()
        span = _run(emu, pipeline, reports=["events"], start_date=START, workers=16)
        entries = _log(emu, "/api/events/", span)
        throttled = [e for e in entries if e.status == 429]
        assert len(throttled) == 1 and throttled[0] is entries[0]
        retry = entries[1]
        assert retry.query == throttled[0].query and retry.status == 200
        # A lower bound, exact (server clock): Retry-After is 2 s and dlt waits at least that;
        # load can only lengthen the wait (2.01 s here).
        assert retry.started - throttled[0].finished >= 2.0
        assert RateLimiter.for_account(emu.base_url, emu.api_key).throttled("XL") == 1
        events = [r["id"] for r in emu.account.records("event")]
        assert Counter(column(pipeline, "events")) == Counter(events) and _extracted(pipeline, "events") == len(events)


@pytest.mark.timing
def test_a_429_in_the_middle_of_a_burst_pauses_every_worker_of_the_tier(make_pipeline: Any) -> None:
    # 16 workers read windows at once; one of their requests is answered 429 with
    # Retry-After: 2. dlt retries that request after 2 s; the shared limiter must also hold
    # back the 15 other workers for those 2 s.
    import threading
    import time

    config = EmulatorConfig(seed=4, events=20_000, profiles=10, days=10, now=ACCOUNT_NOW, rate_limits=True, latency_ms=100)
    with Emulator(config) as emu:
        done = threading.Event()

        def force_when_busy() -> None:
            while not done.is_set() and sum(e.path.rstrip("/") == "/api/events" for e in emu.request_log) < 20:
                time.sleep(0.002)
            emu.force_429(1, retry_after=2)

        watcher = threading.Thread(target=force_when_busy, daemon=True)
        watcher.start()
        pipeline = make_pipeline()
        try:
            span = _run(emu, pipeline, reports=["events"], start_date=START, workers=16, min_window_minutes=1)
        finally:
            done.set()
            watcher.join()
        entries = _log(emu, "/api/events/", span)
        throttled = [e for e in entries if e.status == 429]
        assert len(throttled) == 1
        answered = throttled[0].finished
        # Other workers were waiting on the tier: they all went as soon as the pause ended.
        # Tolerance (server clock): released within 0.5 s after the 2 s pause (~2 ms after it here).
        released = {e.query["filter"][0] for e in entries if answered + 2.0 <= e.started < answered + 2.5}
        assert len(released - {throttled[0].query["filter"][0]}) >= 3, released
        # Requests already on their way when the 429 was answered may arrive a moment later
        # (tolerance 0.3 s); after that, nothing of the tier until Retry-After has passed.
        early = [e.started - answered for e in entries if answered + 0.3 < e.started < answered + 2.0]
        assert not early, early
        assert sum(e.started >= answered + 2.0 for e in entries) >= 10  # the run went on
        events = [r["id"] for r in emu.account.records("event")]
        assert Counter(column(pipeline, "events")) == Counter(events) and _extracted(pipeline, "events") == len(events)


# ------------------------------------------------------------------ the limiter, unit


class _FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _FakeTime:
    fake = _FakeTime()
    monkeypatch.setattr(ratelimit_module, "time", fake)
    return fake


def _send_times(limiter: RateLimiter, clock: _FakeTime, tier: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        limiter.acquire(tier)
        times.append(round(clock.now - 1000.0, 6))
    return times


def test_the_limiter_paces_a_burst_per_sliding_second(clock: _FakeTime) -> None:
    limiter = RateLimiter(tiers={"T": Tier(3, 100)})
    gap = BURST_WINDOW_S + WINDOW_MARGIN_S
    assert _send_times(limiter, clock, "T", 9) == [0, 0, 0, gap, gap, gap, 2 * gap, 2 * gap, 2 * gap]


def test_the_limiter_paces_the_steady_minute(clock: _FakeTime) -> None:
    limiter = RateLimiter(tiers={"T": Tier(100, 5)})
    minute = STEADY_WINDOW_S + WINDOW_MARGIN_S
    assert _send_times(limiter, clock, "T", 7) == [0, 0, 0, 0, 0, minute, minute]


def test_the_limiter_learns_from_a_429(clock: _FakeTime) -> None:
    limiter = RateLimiter(tiers={"T": Tier(100, 1000), "U": Tier(100, 1000)})
    limiter.acquire("T")
    limiter.observe("T", 429, {"Retry-After": "2"})
    assert _send_times(limiter, clock, "U", 1) == [0]  # other tiers are not paused
    assert _send_times(limiter, clock, "T", 2) == [2, 2]
    assert limiter.throttled() == 1 and limiter.throttled("U") == 0
    limiter.observe("T", 429, {})  # no Retry-After: one second
    assert _send_times(limiter, clock, "T", 1) == [3]


def test_the_limiter_learns_from_ratelimit_remaining_and_reset(clock: _FakeTime) -> None:
    limiter = RateLimiter(tiers={"T": Tier(100, 1000)})
    limiter.acquire("T")
    limiter.observe("T", 200, {"RateLimit-Remaining": "4", "RateLimit-Reset": "30"})
    assert _send_times(limiter, clock, "T", 1) == [0]  # requests left: no pause
    limiter.observe("T", 200, {"RateLimit-Remaining": "0", "RateLimit-Reset": "7"})
    assert _send_times(limiter, clock, "T", 2) == [7, 7]
    assert limiter.throttled() == 0  # a pause, not a 429


@pytest.mark.timing
def test_sixteen_threads_share_one_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real threads and real time, with a shortened burst window: 16 threads asking at once
    # for 32 requests of a tier of 4 per window send at most 4 in any window.
    import threading
    import time

    monkeypatch.setattr(ratelimit_module, "BURST_WINDOW_S", 0.2)
    monkeypatch.setattr(ratelimit_module, "WINDOW_MARGIN_S", 0.05)
    limiter = RateLimiter(tiers={"T": Tier(4, 10_000)})
    sent: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(2):
            limiter.acquire("T")
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 32
    # Tolerance: the limiter spaces bursts 0.2 + 0.05 s apart, so a thread may note its send up to
    # 0.05 s after acquiring it and still fit one 0.2 s window.
    assert _max_per_window(sent, 0.2) <= 4
    # 8 bursts of 4, 0.25 s apart: a lower bound load can only lengthen; 0.01 s for clock rounding.
    assert max(sent) - min(sent) >= 7 * 0.25 - 0.01


def test_the_limiter_says_when_a_tier_is_saturated(clock: _FakeTime) -> None:
    limiter = RateLimiter(tiers={"T": Tier(100, 3)})
    assert _send_times(limiter, clock, "T", 2) == [0, 0] and not limiter.saturated("T")
    limiter.acquire("T")
    assert limiter.saturated("T")  # the steady window is full
    clock.sleep(STEADY_WINDOW_S + WINDOW_MARGIN_S)
    assert not limiter.saturated("T")
    limiter.observe("T", 429, {"Retry-After": "2"})
    assert limiter.saturated("T")  # paused by the server


# ------------------------------------------------------------------ the splitter, unit


def _splits(saturated: bool, pages_left: float, idle: int = 15) -> list[Window]:
    """The windows a 10-day job hands out when split at its 1st day, with `idle` workers."""
    pending: queue.Queue[ReadJob] = queue.Queue()
    splitter = _Splitter(idle + 1, pending, timedelta(minutes=5), lambda: saturated)
    splitter.busy = 1
    day = datetime(2026, 1, 1, tzinfo=UTC)
    job = ReadJob("", Window(day, day + timedelta(days=10)))
    assert splitter.try_split(job, day + timedelta(days=1), pages_left) == (not pending.empty())
    return [pending.get_nowait().window for _ in range(pending.qsize())]


def test_windows_are_split_only_into_parts_of_eight_pages_and_only_while_the_tier_has_room() -> None:
    parts = _splits(saturated=False, pages_left=1000)
    assert len(parts) == 16 and parts[0].start == datetime(2026, 1, 2, tzinfo=UTC)
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert parts[-1].end == datetime(2026, 1, 11, tzinfo=UTC)  # the rest of the window, once
    assert len(_splits(saturated=False, pages_left=40)) == 5  # 40 pages: 5 parts of 8
    assert _splits(saturated=False, pages_left=15) == []  # two parts would hold < 8 pages each
    assert _splits(saturated=True, pages_left=1000) == []  # more windows would only wait
    assert _splits(saturated=False, pages_left=1000, idle=0) == []
