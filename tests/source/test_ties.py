"""Issue #11: accounts whose records share one cursor value over whole pages.

A CSV import or a bulk API write gives thousands of profiles one `updated`, a bulk event import
gives events one `datetime`. The emulator's `ties` knob serves such accounts (runs of one
value over several pages, at window edges and at the stored cursor); every report the
windowed reader splits is loaded from one, first run and incremental run, and must hold
exactly the emulator's records: none lost, none doubled, and the reader really split. Lists
and segments (not split; `greater-than` only) are checked for the stored cursor's ties too.

Both API revisions are tested, each with its own table (paths, page sizes). A run of ties is
"over a page" by the revision's page size: under 2026-07-15 the account's runs of tied events
(450-1000 each, the emulator's `TIE_BLOCK`) and of tied campaigns (~50 a channel) fit on one
page of 1000 and 100, which the reader rightly reads without a split; there the first test
checks the load is exact and that those runs really fit a page (`ONE_PAGE_TIES`), and the
splitter test leaves them out.
"""

import queue
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import pytest

from klaviyo import klaviyo_source
from klaviyo.client import KlaviyoApi
from klaviyo.extract import ReadJob, _Splitter, read_job
from klaviyo.ratelimit import RateLimiter
from klaviyo.settings import DEFAULT_REVISION, REVISIONS, Report, RevisionTable
from klaviyo.windows import Window
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import query

UTC = UTC
START = "2000-01-01T00:00:00Z"
# The account's "now" lies two days back: every record (events are dated up to a day after
# the account's now, mutations after that) is in the past of every run.
ACCOUNT_NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
CONFIG = dict(seed=31, profiles=1500, events=5000, days=20, campaigns=160, flows=200, templates=60,
              lists=3, segments=3, now=ACCOUNT_NOW, ties=0.7)
WORKERS = 8
MIN_WINDOW_MINUTES = 1.0



def splittable(table: RevisionTable) -> list[str]:
    """Every report of a revision the windowed reader splits: sorted by its cursor (see `read_job`)."""
    return [name for name, r in table.reports.items() if r.cursor and r.sort == r.cursor] + [
        name for name, c in table.children.items() if c.report.cursor and c.report.sort == c.report.cursor
    ]


SPLITTABLE = {revision: splittable(table) for revision, table in REVISIONS.items()}
# Reports whose runs of ties on this account fit on one page of the revision (see the docstring).
ONE_PAGE_TIES = {"2023-10-15": set(), "2026-07-15": {"campaigns_email", "campaigns_sms", "campaigns_push", "events"}}
CHANNELS = {"campaigns_email": "email", "campaigns_sms": "sms", "campaigns_push": "mobile_push"}
# Reports with a cursor the reader does not split, checked for ids on the tied account too:
# global_exclusions is read as one window (its cursor lies in a list, so the reader cannot
# see it); lists and segments cannot be sorted and filter only with greater-than (their
# windows' inclusive starts are widened by GT_WIDEN and trimmed).
NOT_SPLIT = {"global_exclusions", "lists", "segments"}
KIND = {"templates": "template", "profiles": "profile", "events": "event", "flows": "flow", "lists": "list",
        "segments": "segment"}
# What each report's incremental test creates: tied with the stored cursor, then at the
# mutation time (also tied: a mutation writes all its records at one second), then tied again.
CREATES = {
    "campaigns_email": {"campaign": 40}, "campaigns_sms": {"campaign": 40}, "campaigns_push": {"campaign": 40},
    "templates": {"template": 25}, "profiles": {"profile": 250}, "events": {"event": 450},
    "flows": {"flow": 60}, "list_profiles": {"profile": 250}, "segment_profiles": {"segment": 2},
    "global_exclusions": {"profile": 250}, "lists": {"list": 4}, "segments": {"segment": 4},
}


def _parse(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _keys(report: str) -> tuple[str, ...]:
    return REVISIONS[DEFAULT_REVISION].row(report).primary_key  # the same in every revision


def _truth(emu: Emulator, report: str, revision: str = DEFAULT_REVISION) -> Counter:
    """The report's primary keys in the emulator as `revision` serves them, each once."""
    acc = emu.account
    if report in CHANNELS:
        return Counter((r["id"],) for r in acc.records("campaign", revision=revision, channel=CHANNELS[report]))
    if report in KIND:
        return Counter((r["id"],) for r in acc.records(KIND[report], revision=revision))
    if report in ("list_profiles", "segment_profiles"):
        kind = report.split("_")[0]
        members = acc.list_members if kind == "list" else acc.segment_members
        return Counter((gid, pid) for gid in list(acc.small[kind]) for pid, _ in members(gid))
    if report == "global_exclusions":
        return Counter(
            (p["id"],) for p in acc.records("profile") if p["attributes"]["subscriptions"]["email"]["marketing"]["suppression"]
        )
    raise AssertionError(f"no ground truth for the splittable report {report}: add it here")


def _cursor_values(emu: Emulator, report: str, revision: str) -> list[datetime]:
    """Cursor value of every record of a report (members: of every membership)."""
    acc = emu.account
    if report in ("list_profiles", "segment_profiles"):
        kind = report.split("_")[0]
        members = acc.list_members if kind == "list" else acc.segment_members
        return [joined for gid in list(acc.small[kind]) for _, joined in members(gid)]
    if report == "global_exclusions":
        return [
            _parse(s["timestamp"]) for p in acc.records("profile")
            for s in p["attributes"]["subscriptions"]["email"]["marketing"]["suppression"][-1:]
        ]
    kind = "campaign" if report in CHANNELS else KIND[report]
    channel = {"channel": CHANNELS[report]} if kind == "campaign" else {}
    cursor = REVISIONS[revision].reports[report].cursor or ""
    return [_parse(r["attributes"][cursor]) for r in acc.records(kind, revision=revision, **channel)]


def _page_size(report: str, revision: str) -> int:
    """Records a page of the report holds in `revision` (its `page[size]`, else the endpoint's fixed size)."""
    return REVISIONS[revision].row(report).page_size or {"events": 200}.get(report, 10)


def _loaded(pipeline: dlt.Pipeline, report: str) -> Counter:
    return Counter(query(pipeline, f"SELECT {', '.join(_keys(report))} FROM {report}"))


def _run(emu: Emulator, pipeline: dlt.Pipeline, report: str, revision: str) -> tuple[tuple[float, float], Counter]:
    """Loads one report; returns the time span (time.time()) of the run and the keys the
    source handed to dlt (before the merge on the key could hide a record read twice)."""
    keys = _keys(report)
    extracted: Counter = Counter()

    def count(item: Any) -> Any:
        if hasattr(item, "column"):  # an Arrow table
            extracted.update(zip(*(item.column(k).to_pylist() for k in keys), strict=False))
        else:
            extracted[tuple(item[k] for k in keys)] += 1
        return item

    started = time.time()
    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports=[report], start_date=START,
                            workers=WORKERS, min_window_minutes=MIN_WINDOW_MINUTES, revision=revision)
    source.resources[report].add_map(count)
    pipeline.run(source).raise_on_failed_jobs()
    return (started, time.time()), extracted


def _splits(emu: Emulator, report: str, span: tuple[float, float], revision: str) -> int:
    """Windows the run's reader made beyond those it planned, from the request log (on the
    revision's path): each window's first request is the one without `page[cursor]`; a run
    plans one window per variant (and per group, for the membership tables)."""
    read = REVISIONS[revision].row(report)
    path = re.compile("^" + re.escape(read.path).replace(r"\{id\}", "([^/]+)") + "$")
    firsts: Counter = Counter()
    for entry in emu.request_log:
        match = path.match(entry.path)
        if match and span[0] <= entry.started <= span[1] and entry.status == 200 and "page[cursor]" not in entry.query:
            firsts[match.groups()] += 1
    return sum(firsts.values()) - len(firsts) * len(read.variants)


def _assert_exact(emu: Emulator, pipeline: dlt.Pipeline, report: str, revision: str = DEFAULT_REVISION) -> None:
    truth, loaded = _truth(emu, report, revision), _loaded(pipeline, report)
    assert loaded == truth, (report, len(truth), len(loaded), "lost:", len(truth - loaded), "doubled:", len(loaded - truth))


def _multi_page_ties(emu: Emulator, report: str, revision: str) -> set[datetime]:
    """Cursor values held by more records than fit on one page of the revision."""
    return {v for v, n in Counter(_cursor_values(emu, report, revision)).items() if n > _page_size(report, revision)}


# campaigns_push (2026-07-15) is left out: the emulator's push campaigns are a fixed few (one per
# 8 campaigns), neither bulk-edited nor made by mutations, so the account has no ties to test.
CASES = [
    (revision, report) for revision, reports in SPLITTABLE.items() for report in reports + ["lists", "segments"]
    if report != "campaigns_push"
]


@pytest.mark.parametrize(("revision", "report"), CASES)
def test_a_tied_account_loads_exactly_first_run_and_incremental(revision: str, report: str, make_pipeline: Any) -> None:
    splits = report not in NOT_SPLIT | ONE_PAGE_TIES[revision]
    with Emulator(EmulatorConfig(**CONFIG)) as emu:
        if report in SPLITTABLE[revision]:  # lists and segments are too few
            ties = _multi_page_ties(emu, report, revision)
            assert bool(ties) == (report not in ONE_PAGE_TIES[revision]), f"{report}: runs of ties over a page: {len(ties)}"
        pipeline = make_pipeline()
        span, extracted = _run(emu, pipeline, report, revision)
        _assert_exact(emu, pipeline, report, revision)
        assert extracted == _truth(emu, report, revision)  # each record read once
        first_run = _loaded(pipeline, report)
        if splits:
            assert _splits(emu, report, span, revision) > 0, f"{report}: the first run was not split"

        # New records on the stored cursor value, new and updated records at the mutation
        # time, then new records tied on the newest value again.
        emu.mutate(seed=1, create=CREATES[report], update=0, delete=0, tie=True)
        emu.mutate(seed=2, create=CREATES[report], update=150 if report == "profiles" else 2, delete=0)
        emu.mutate(seed=3, create=CREATES[report], update=0, delete=0, tie=True)
        span, extracted = _run(emu, pipeline, report, revision)
        _assert_exact(emu, pipeline, report, revision)
        assert max(extracted.values()) == 1 and set(extracted) <= set(_truth(emu, report, revision))  # none read twice
        new = set(_truth(emu, report, revision)) - set(first_run)
        assert len(new) >= min(CREATES[report].values()), len(new)  # the mutations made records to load
        if splits and report != "segment_profiles":  # mutations add no members to old segments
            assert _splits(emu, report, span, revision) > 0, f"{report}: the incremental run was not split"


# ------------------------------------------------------------------ the splitter on ties, no threads


def _drive(api: KlaviyoApi, report: Report, job: ReadJob) -> tuple[list[str], list[datetime]]:
    """Reads a job to the end with the real splitter, one window after the other (no threads:
    deterministic), one idle worker always waiting: every page that has a next page hands
    out the rest of its window where the splitter allows. Returns the ids read and the
    cursor values the new windows began at (or after)."""
    pending: queue.Queue[ReadJob] = queue.Queue()
    pending.put(job)
    splitter = _Splitter(2, pending, timedelta(seconds=1), min_pages=1)
    splitter.idle_workers = lambda: 1  # type: ignore[method-assign]
    put = pending.put
    edges: list[datetime] = []

    def spy(new: ReadJob, *args: Any, **kwargs: Any) -> None:
        if new.window.start is not None and new.window.start != job.window.start:
            edges.append(new.window.start)
        put(new, *args, **kwargs)

    pending.put = spy  # type: ignore[method-assign]
    ids: list[str] = []
    while not pending.empty():
        for items in read_job(api, report, pending.get_nowait(), splitter):
            ids += items.column("id").to_pylist() if hasattr(items, "column") else [r["id"] for r in items]
    return ids, edges


@pytest.fixture(scope="module")
def tied() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(**CONFIG)) as emu:
        yield emu


SPLITTER_CASES = [
    (revision, report) for revision, reports in SPLITTABLE.items() for report in reports
    if report not in NOT_SPLIT | ONE_PAGE_TIES[revision]
]


@pytest.mark.parametrize(("revision", "report"), SPLITTER_CASES)
def test_the_splitter_hands_out_windows_on_ties_and_reads_every_record_once(tied: Emulator, revision: str, report: str) -> None:
    api = KlaviyoApi(tied.api_key, tied.base_url, revision, RateLimiter())
    table = REVISIONS[revision]
    if report in table.children:  # the group with the most members
        kind = report.split("_")[0]
        members = tied.account.list_members if kind == "list" else tied.account.segment_members
        group = max(tied.account.small[kind], key=lambda g: len(members(g)))
        read = replace(table.children[report].report, path=table.children[report].report.path.format(id=group))
        records = [(joined, pid) for pid, joined in members(group)]
    else:
        read = table.reports[report]
        cursor = read.cursor or ""
        kind = "campaign" if report in CHANNELS else KIND[report]
        channel = {"channel": CHANNELS[report]} if kind == "campaign" else {}
        records = [(_parse(r["attributes"][cursor]), r["id"]) for r in tied.account.records(kind, revision=revision, **channel)]
    ties = {v for v, n in Counter(v for v, _ in records).items() if n > _page_size(report, revision)}
    first, last = min(v for v, _ in records), max(v for v, _ in records)
    ids: list[str] = []
    edges: list[datetime] = []
    for variant in read.variants:
        got, at = _drive(api, read, ReadJob(variant, Window(first - timedelta(days=1), last, end_closed=True)))
        ids += got
        edges += at
    assert Counter(ids) == Counter(i for _, i in records)  # none lost, none doubled
    assert ties & set(edges), f"no window began on (or after) a run of ties: {edges}"


def test_a_page_of_one_value_keeps_its_run_and_hands_out_what_lies_after_it() -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    job = ReadJob("", Window(day, day + timedelta(days=10)))
    splitter = _Splitter(4, queue.Queue(), timedelta(minutes=5))
    splitter.busy = 1
    assert splitter.try_hand_off(job, day + timedelta(days=1))
    parts = [splitter.pending.get_nowait().window for _ in range(splitter.pending.qsize())]
    assert len(parts) == 3  # one per idle worker: the caller goes on reading the run
    assert parts[0].start == day + timedelta(days=1) and parts[0].start_open  # after the run
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False)) and parts[-1].end == job.window.end
    # an unknown density (a page of one value) no longer fails a split: only the idle workers
    # and the smallest window bound it
    splitter = _Splitter(4, queue.Queue(), timedelta(minutes=5))
    splitter.busy = 1
    assert splitter.try_split(job, day + timedelta(days=1), float("inf")) and splitter.pending.qsize() == 4


def test_a_chunked_backfill_of_a_tied_account_loads_every_record_once(tied: Emulator, make_pipeline: Any) -> None:
    # Chunks are planned from the density of a range's first page, which a run of ties makes
    # a single instant; chunk edges are exclusive ends and inclusive starts.
    from klaviyo import backfill_pending

    pipeline = make_pipeline()
    runs = 0
    while True:
        runs += 1
        source = klaviyo_source(api_key=tied.api_key, base_url=tied.base_url, reports=["events", "profiles"],
                                start_date=START, workers=WORKERS, min_window_minutes=MIN_WINDOW_MINUTES, chunk_records=700)
        pipeline.run(source).raise_on_failed_jobs()
        if not backfill_pending(pipeline):
            break
        assert runs < 40
    assert runs >= 3, "the backfill was cut into chunks"
    for report in ("events", "profiles"):
        _assert_exact(tied, pipeline, report)
