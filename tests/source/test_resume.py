"""Never lose or duplicate a row: chunked backfills that resume, kill -9 at random moments,
faults and throttling on the wire, and a cursor that ends where a clean run's does."""

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from klaviyo import backfill_pending, klaviyo_source
from klaviyo.settings import CURSOR_SAFETY_MARGIN, DEFAULT_REVISION, REVISIONS
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO, column

UTC = UTC
START = "2000-01-01T00:00:00Z"


def _dt(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _event_truth(emu: Emulator, end: datetime) -> dict[str, datetime]:
    return {e["id"]: _dt(e["attributes"]["datetime"]) for e in emu.account.records("event") if _dt(e["attributes"]["datetime"]) < end}


def _cursor(pipeline: dlt.Pipeline, report: str = "events", field: str = "datetime") -> Any:
    return pipeline.state["sources"]["klaviyo"]["resources"][report]["incremental"][field]["last_value"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=21, profiles=300, events=4000, days=12)) as emu:
        yield emu


def test_a_chunked_backfill_equals_a_clean_run(emulator: Emulator, make_pipeline: Any) -> None:
    clean = make_pipeline("clean")
    clean.run(klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events", "profiles"], start_date=START))
    chunked = make_pipeline("chunked")
    runs = 0
    before = datetime.now(UTC)
    while True:
        runs += 1
        chunked.run(klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events", "profiles"],
                                   start_date=START, chunk_records=600))
        if not backfill_pending(chunked):
            break
        assert runs < 50
    after = datetime.now(UTC)
    assert runs >= 4, "the backfill was cut into chunks"
    for report in ("events", "profiles"):
        loaded = column(chunked, report)
        assert len(loaded) == len(set(loaded))
        assert set(loaded) == set(column(clean, report))
    truth = _event_truth(emulator, after)
    surely = {i for i, t in truth.items() if t < before - CURSOR_SAFETY_MARGIN}
    assert surely <= set(column(chunked, "events")) <= set(truth)
    assert _cursor(chunked) == _cursor(clean)
    assert _cursor(chunked, "profiles", "updated") == _cursor(clean, "profiles", "updated")


def _pipeline_command(emu: Emulator, tmp: Path, chunk: int) -> tuple[list[str], dict[str, str]]:
    command = [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--reports", "events,profiles", "--start", START,
               "--chunk-records", str(chunk), "--pipelines-dir", str(tmp / "pipelines"), "--progress", "none"]
    env = {**os.environ, "SOURCES__KLAVIYO__API_KEY": emu.api_key, "SOURCES__KLAVIYO__BASE_URL": emu.base_url,
           "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.05", "HOME": str(tmp)}
    return command, env


def _loaded(tmp: Path, table: str) -> list[str]:
    with duckdb.connect(str(tmp / "klaviyo.duckdb"), read_only=True) as db:
        return [r[0] for r in db.execute(f"SELECT id FROM klaviyo_data.{table}").fetchall()]


def test_kill_9_at_random_moments_then_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("KILL_SEED", "7")))
    config = EmulatorConfig(seed=22, profiles=400, events=8000, days=10, latency_ms=60)
    with Emulator(config) as emu:
        command, env = _pipeline_command(emu, tmp_path, chunk=700)
        before = datetime.now(UTC)
        kills = 0
        for _ in range(4):
            process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(rng.uniform(1.5, 5.0))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(timeout=30)
            assert process.returncode in (0, -signal.SIGKILL), process.stderr.read()[-2000:] if process.stderr else ""
        assert kills >= 2, "the pipeline was killed mid-run"
        finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        after = datetime.now(UTC)
        assert finished.returncode == 0, finished.stderr[-2000:]
        events = _loaded(tmp_path, "events")
        assert len(events) == len(set(events)), "no duplicate event"
        truth = _event_truth(emu, after)
        surely = {i for i, t in truth.items() if t < before - CURSOR_SAFETY_MARGIN}
        assert surely <= set(events) <= set(truth), "no lost event"
        profiles = _loaded(tmp_path, "profiles")
        assert len(profiles) == len(set(profiles))
        assert set(profiles) == {p["id"] for p in emu.account.records("profile")}
        # the cursor ends where a clean run's would: at the newest event loaded, which is the
        # newest the emulator holds before the run's cap
        state = dlt.attach("klaviyo", pipelines_dir=str(tmp_path / "pipelines")).state
        cursor = state["sources"]["klaviyo"]["resources"]["events"]["incremental"]["datetime"]["last_value"]
        assert not backfill_pending(dlt.attach("klaviyo", pipelines_dir=str(tmp_path / "pipelines")))
        newest_loaded = max(truth[i] for i in events)
        assert _dt(str(cursor)) == newest_loaded
        assert newest_loaded >= max(t for t in truth.values() if t < before - CURSOR_SAFETY_MARGIN)


def _package_with_a_job_run_twice(emu: Emulator, pipeline: dlt.Pipeline) -> str:
    """Extracts and normalizes the events into a package, then makes it look like a load a
    kill interrupted after the events' insert into the staging table had committed: the job
    file is in the package twice (it will run twice), and one job is marked started."""
    pipeline.extract(klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports=["events"], start_date=START),
                     loader_file_format="parquet")
    pipeline.normalize()
    packages = pipeline._get_load_storage().normalized_packages
    (load_id,) = packages.list_packages()
    (job,) = [j for j in packages.list_new_jobs(load_id) if os.path.basename(j).startswith("events.")]
    name = os.path.basename(job)
    table, file_id, rest = name.split(".", 2)
    twin = os.path.join(os.path.dirname(packages.storage.make_full_path(job)), f"{table}.{file_id[:-1]}z.{rest}")
    Path(twin).write_bytes(Path(packages.storage.make_full_path(job)).read_bytes())
    packages.start_job(load_id, name)
    return load_id


def test_a_load_resumed_after_a_kill_gets_the_staging_dedup_back(emulator: Emulator, make_pipeline: Any) -> None:
    from klaviyo.recovery import repair_interrupted_packages

    truth = {e["id"] for e in emulator.account.records("event")}
    control = make_pipeline("klaviyo_control")
    _package_with_a_job_run_twice(emulator, control)
    control.load()
    doubled = column(control, "events")
    assert len(doubled) == 2 * len(set(doubled)) > 3000, "without the repair the twice-run job doubles every event"

    pipeline = make_pipeline("klaviyo_repaired")
    load_id = _package_with_a_job_run_twice(emulator, pipeline)
    assert repair_interrupted_packages(pipeline) == [load_id]
    pipeline.load()
    loaded = column(pipeline, "events")
    assert sorted(loaded) == sorted(set(doubled)) and set(loaded) <= truth
    assert pipeline.default_schema.tables["events"].get("x-stage-data-deduplicated")  # later loads skip it again


def test_faults_throttling_and_latency_lose_nothing(make_pipeline: Any) -> None:
    config = EmulatorConfig(seed=23, profiles=300, events=3000, days=8, fault_rate=0.05, latency_ms=5, throttle_every=7)
    with Emulator(config) as emu:
        pipeline = make_pipeline()
        before = datetime.now(UTC)
        pipeline.run(klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports=["events", "profiles", "metrics"], start_date=START))
        after = datetime.now(UTC)
        statuses = [r.status for r in emu.request_log]
        faults = [r for r in emu.request_log if getattr(r, "fault", None)]
        assert 429 in statuses and faults, "faults and throttling really happened"
        events = column(pipeline, "events")
        assert len(events) == len(set(events))
        truth = _event_truth(emu, after)
        assert {i for i, t in truth.items() if t < before - CURSOR_SAFETY_MARGIN} <= set(events) <= set(truth)
        assert set(column(pipeline, "profiles")) == {p["id"] for p in emu.account.records("profile")}
        assert set(column(pipeline, "metrics")) == {m["id"] for m in emu.account.records("metric")}


def test_retries_are_bounded_and_end_with_the_endpoint_and_status(make_pipeline: Any) -> None:
    os.environ["RUNTIME__REQUEST_MAX_ATTEMPTS"] = "3"
    try:
        with Emulator(EmulatorConfig(seed=24, profiles=20, events=50, fault_rate=1.0)) as emu:
            pipeline = make_pipeline()
            with pytest.raises(Exception) as error:
                pipeline.run(klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports=["metrics"]))
            # the run's first request (which account the key belongs to) meets the faults
            attempts = [r for r in emu.request_log if r.path.rstrip("/") == "/api/accounts"]
    finally:
        del os.environ["RUNTIME__REQUEST_MAX_ATTEMPTS"]
    text = str(error.value)
    # Every request faults (fault_rate=1.0), so the source retries exactly up to the configured
    # bound: 3 attempts, neither fewer (no retry) nor more (bound ignored; dlt's default is 5).
    assert len(attempts) == 3 and all(r.fault for r in attempts), [(r.status, r.fault) for r in attempts]
    assert "/api/accounts" in text and "after all retries" in text
    last = attempts[-1]  # the seeded fault sequence is fixed: the error names the last status
    assert f"with {last.status}" in text, (last.status, text)


def test_a_400_is_never_retried_and_shows_klaviyos_detail(make_pipeline: Any, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # A query parameter Klaviyo does not know: its 400 names the parameter (source.parameter).
    # (An unknown revision is refused by the source before any request.) The run reads the
    # report table of its revision, the default's here.
    table = REVISIONS[DEFAULT_REVISION]
    monkeypatch.setitem(table.reports, "metrics", replace(table.reports["metrics"], params={"page[bogus]": "1"}))  # type: ignore[index]
    emulator.clear_log()
    pipeline = make_pipeline()
    with pytest.raises(Exception) as error:
        pipeline.run(klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["metrics"]))
    assert len([r for r in emulator.request_log if r.path.rstrip("/") == "/api/metrics"]) == 1
    assert "(400)" in str(error.value) and "page[bogus]" in str(error.value)


def test_lookback_rereads_a_recent_stretch_and_merges_it(emulator: Emulator, make_pipeline: Any) -> None:
    import re

    pipeline = make_pipeline()
    pipeline.run(klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events"], start_date=START))
    cursor = _cursor(pipeline)
    ids = column(pipeline, "events")
    emulator.clear_log()
    pipeline.run(klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events"], start_date=START, lookback_hours=24))
    lower_bounds = [
        _dt(m.group(1).replace("Z", "+00:00"))
        for r in emulator.request_log if r.path.rstrip("/") == "/api/events"
        for m in [re.search(r"greater-or-equal\(datetime,([^),]+)\)", r.query["filter"][0])] if m
    ]
    assert min(lower_bounds) == _dt(str(cursor)) - timedelta(hours=24)
    reread = pipeline.last_trace.last_normalize_info.row_counts.get("events", 0)
    assert reread > 0, "the last 24 hours were read again"
    after = column(pipeline, "events")
    assert len(after) == len(set(after)) and set(ids) <= set(after)
    assert _cursor(pipeline) >= cursor
