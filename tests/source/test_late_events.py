"""Late events: Klaviyo's events listing is eventually consistent and events may be written with
a past datetime, so an event can appear after a run whose cursor has passed its datetime. With
the defaults the next run re-reads the events' lookback and loads it, once. The first test runs
under both API revisions (2023-10-15: 200 events a page, 2026-07-15: 1000), the others under the
default."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import pytest

from klaviyo import backfill_pending, klaviyo_source
from klaviyo.settings import CURSOR_SAFETY_MARGIN, DEFAULT_REVISION, REVISIONS
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import column

UTC = UTC
LATE_BY = timedelta(hours=30)  # beyond the 110 minutes a peer measured, inside Klaviyo's days


def _dt(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=31, profiles=150, events=2500, days=12)) as emu:
        yield emu


def _run(emu: Emulator, pipeline: dlt.Pipeline, revision: str = DEFAULT_REVISION, **kwargs: Any) -> datetime:
    """Runs the events report with the defaults (plus kwargs); returns the instant after it."""
    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports=["events"], revision=revision, **kwargs)
    pipeline.run(source).raise_on_failed_jobs()
    return datetime.now(UTC)


def _cursor(pipeline: dlt.Pipeline) -> datetime:
    return _dt(str(pipeline.state["sources"]["klaviyo"]["resources"]["events"]["incremental"]["datetime"]["last_value"]))


def _lower_bounds(emu: Emulator, revision: str = DEFAULT_REVISION) -> list[datetime]:
    """The datetime lower bounds of the logged events requests (the revision's path)."""
    path = REVISIONS[revision].reports["events"].path
    bounds = []
    for r in emu.request_log:
        text = (r.query.get("filter") or [""])[0] if r.path == path else ""
        match = re.search(r"greater-(?:or-equal|than)\(datetime,([^),]+)\)", text)
        if match:
            bounds.append(_dt(match.group(1)))
    return bounds


def _truth(emu: Emulator, start: datetime, end: datetime, revision: str = DEFAULT_REVISION) -> list[str]:
    events = emu.account.records("event", revision=revision)
    return [e["id"] for e in events if start <= _dt(e["attributes"]["datetime"]) < end]


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_events_that_appear_after_a_run_dated_before_its_cursor_are_loaded_by_the_next_run(
    emulator: Emulator, make_pipeline: Any, revision: str
) -> None:
    pipeline = make_pipeline()
    _run(emulator, pipeline, revision)
    cursor = _cursor(pipeline)
    late = emulator.mutate(seed=1, create=0, update=0, delete=0, late=5, late_seconds=int(LATE_BY.total_seconds()))["event"]["late"]
    dated = [_dt(next(emulator.account.records("event", id=i))["attributes"]["datetime"]) for i in late]
    assert len(late) == 5 and max(dated) < cursor, "the late events are dated before the run's cursor"
    assert not set(late) & set(column(pipeline, "events"))

    emulator.clear_log()
    started = datetime.now(UTC)
    after = _run(emulator, pipeline, revision)
    loaded = column(pipeline, "events")
    assert set(late) <= set(loaded), "the next run with the defaults loads them"
    assert len(loaded) == len(set(loaded)), "nothing doubled: the re-read lookback is merged on id"
    report = REVISIONS[revision].reports["events"]
    lookback = report.lookback
    assert min(_lower_bounds(emulator, revision)) == cursor - lookback
    sizes = {(r.query.get("page[size]") or [None])[0] for r in emulator.request_log if r.path == report.path}
    assert sizes == {report.page_size and str(report.page_size)}, "the revision's page size (2023-10-15: none, 200 fixed; 2026-07-15: 1000)"
    # every event of the lookback was read once (none twice within the run)
    extracted = pipeline.last_trace.last_normalize_info.row_counts.get("events", 0)
    surely, at_most = (len(_truth(emulator, cursor - lookback, t - CURSOR_SAFETY_MARGIN, revision)) for t in (started, after))
    assert 0 < surely <= extracted <= at_most


def test_late_events_with_a_chunked_rereading_run_are_loaded_once(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    _run(emulator, pipeline, chunk_records=400)
    while backfill_pending(pipeline):
        _run(emulator, pipeline, chunk_records=400)
    late = emulator.mutate(seed=2, create=0, update=0, delete=0, late=4, late_seconds=int(LATE_BY.total_seconds()))["event"]["late"]
    runs = 0
    while True:  # the lookback holds more than a chunk: the command runs chunk after chunk
        runs += 1
        after = _run(emulator, pipeline, chunk_records=400)
        if not backfill_pending(pipeline):
            break
        assert runs < 30
    assert runs > 1, "the lookback was read in chunks"
    loaded = column(pipeline, "events")
    assert set(late) <= set(loaded) and len(loaded) == len(set(loaded))
    assert set(loaded) <= set(_truth(emulator, datetime(2000, 1, 1, tzinfo=UTC), after))


def test_lookback_hours_overrides_the_default_and_custom_dates_have_none(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    _run(emulator, pipeline)
    cursor = _cursor(pipeline)
    late = emulator.mutate(seed=3, create=0, update=0, delete=0, late=3, late_seconds=int(LATE_BY.total_seconds()))["event"]["late"]
    emulator.clear_log()
    _run(emulator, pipeline, lookback_hours=0)
    assert min(_lower_bounds(emulator)) == cursor, "lookback_hours = 0 turns the re-read off"
    assert not set(late) & set(column(pipeline, "events")), "so the late events are missed"
    start, end = cursor - timedelta(days=2), cursor - timedelta(days=1)
    emulator.clear_log()
    _run(emulator, pipeline, start_date=f"{start:%Y-%m-%dT%H:%M:%SZ}", end_date=f"{end:%Y-%m-%dT%H:%M:%SZ}")
    assert min(_lower_bounds(emulator)) == start.replace(microsecond=0), "custom dates read exactly their range"
