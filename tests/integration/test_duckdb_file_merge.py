"""The command's DuckDB destination (`klaviyo_duckdb`) loads events file by file: each row written
once, no staging copy, merge's result (a re-read event replaces the loaded one), atomic and
idempotent jobs; other merge tables keep dlt's staging merge."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.common.destination.exceptions import DestinationTransientException

import klaviyo_duckdb
import klaviyo_pipeline
from klaviyo import klaviyo_source
from klaviyo_emulator import Emulator, EmulatorConfig
from klaviyo_pipeline import duckdb_destination
from tests.conftest import query

START = "2000-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=73, profiles=300, events=6000, days=4, event_weight="realistic")) as emu:
        yield emu


def _pipeline(tmp_path: Path) -> dlt.Pipeline:
    destination = duckdb_destination(str(tmp_path / "k.duckdb"))
    return dlt.pipeline("file_merge", destination=destination, dataset_name="klaviyo_data", pipelines_dir=str(tmp_path / "pipelines"))


def _run(pipeline: dlt.Pipeline, emulator: Emulator, **kwargs: Any) -> None:
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events", "profiles"], start_date=START, workers=4)
    pipeline.run(source, loader_file_format="parquet", **kwargs).raise_on_failed_jobs()


def _served_event_ids(emulator: Emulator, since: float) -> set[str]:
    """Ids of the events the emulator served in requests started after `since` (epoch s)."""
    import orjson
    import requests

    ids: set[str] = set()
    for entry in emulator.request_log:
        if entry.path.startswith("/api/events") and entry.started >= since and entry.status == 200:
            query_string = "&".join(f"{k}={v}" for k, values in entry.query.items() for v in values)
            headers = {"Authorization": f"Klaviyo-API-Key {emulator.api_key}", "revision": "2026-07-15"}
            body = requests.get(f"{emulator.base_url}{entry.path}?{query_string}", headers=headers, timeout=30)
            ids.update(r["id"] for r in orjson.loads(body.content)["data"])
    return ids


def test_events_are_written_once_without_staging_and_a_rerun_replaces_what_it_reads_again(emulator: Emulator, tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    _run(pipeline, emulator)
    rows = query(pipeline, "SELECT id, _dlt_load_id FROM events")
    assert len(rows) == len({r[0] for r in rows}) > 5000
    first_load = {r[1] for r in rows}
    assert len(first_load) == 1
    staged = {r[0] for r in query(pipeline, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'klaviyo_data_staging'")}
    assert "profiles" in staged and "events" not in staged  # profiles keep dlt's staging merge
    compression = {r[0] for r in query(pipeline, "SELECT compression FROM pragma_storage_info('klaviyo_data.events') WHERE column_name = 'event_properties'")}
    assert "ZSTD" in compression

    # The second run re-reads the last 7 days (the events' lookback): the whole 4-day account.
    import time

    since = time.time()
    _run(pipeline, emulator)
    reread = _served_event_ids(emulator, since)
    after = query(pipeline, "SELECT id, _dlt_load_id FROM events")
    assert len(after) == len({r[0] for r in after}) == len(rows)  # replaced, not duplicated
    replaced = {r[0] for r in after if r[1] not in first_load}
    assert reread and replaced == reread & {r[0] for r in after}


def test_a_file_job_retried_after_its_commit_leaves_one_row_per_event(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A crash between the job's commit and dlt's record of it: dlt runs the job again.
    run = klaviyo_duckdb._FileMergeJob.run
    attempts: list[str] = []

    def commit_then_fail(self: Any) -> None:
        run(self)
        attempts.append(self._file_path)
        if len(attempts) == 1:
            raise DestinationTransientException("lost after commit")

    monkeypatch.setattr(klaviyo_duckdb._FileMergeJob, "run", commit_then_fail)
    pipeline = _pipeline(tmp_path)
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events"], start_date=START, workers=4)
    pipeline.run(source, loader_file_format="parquet").raise_on_failed_jobs()  # dlt runs the job again
    assert len(attempts) == 2 and attempts[0].rsplit(".", 2)[0] == attempts[1].rsplit(".", 2)[0]  # one file, retry number 0 then 1
    (count, distinct), = query(pipeline, "SELECT count(*), count(DISTINCT id) FROM events")
    assert count == distinct > 5000


def test_a_file_job_that_fails_after_its_delete_keeps_the_loaded_events(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = _pipeline(tmp_path)
    _run(pipeline, emulator)
    before = sorted(query(pipeline, "SELECT id, _dlt_load_id FROM events"))

    def fail(self: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(klaviyo_duckdb.DuckDbCopyJob, "run", fail)  # the insert, after the delete ran
    with pytest.raises(Exception):  # noqa: B017
        _run(pipeline, emulator)
    assert sorted(query(pipeline, "SELECT id, _dlt_load_id FROM events")) == before




def test_a_package_interrupted_mid_load_and_repaired_finishes_file_by_file(emulator: Emulator, tmp_path: Path) -> None:
    # A kill after the events job committed leaves the job to run again (here: the file twice in
    # the package, one marked started); the command repairs the package (the staging dedup back)
    # before it resumes. The events must still load file by file: their staging table was never
    # made (the resumed load failed on it), and the repeated job must leave one row per event.
    from klaviyo.recovery import repair_interrupted_packages
    from tests.source.test_resume import _package_with_a_job_run_twice

    pipeline = _pipeline(tmp_path)
    load_id = _package_with_a_job_run_twice(emulator, pipeline)
    assert repair_interrupted_packages(pipeline) == [load_id]
    pipeline.load().raise_on_failed_jobs()
    (count, distinct), = query(pipeline, "SELECT count(*), count(DISTINCT id) FROM events")
    assert count == distinct > 5000
    assert not query(pipeline, "SELECT 1 FROM information_schema.tables WHERE table_schema = 'klaviyo_data_staging' AND table_name = 'events'")



def _load_chunk(pipeline: dlt.Pipeline, chunk: int, rows: int) -> None:
    """One run of `rows` immutable rows (a chunk of the command's backfill of events, narrow rows)
    through the command's DuckDB destination."""
    import pyarrow as pa

    table = pa.table({"id": pa.array([f"e{chunk}-{i:07d}" for i in range(rows)]), "n": pa.array(range(rows), pa.int64())})

    @dlt.resource(name="events", write_disposition={"disposition": "merge", "strategy": "delete-insert"}, primary_key="id")
    def events() -> Iterator[Any]:
        yield table

    events.apply_hints(additional_table_hints={klaviyo_duckdb.IMMUTABLE: True})
    pipeline.run(events(), loader_file_format="parquet").raise_on_failed_jobs()


def _blocks(pipeline: dlt.Pipeline) -> dict[int, set[tuple[int, int]]]:
    """Row group of the events table -> the (block id, offset) of its column segments."""
    blocks: dict[int, set[tuple[int, int]]] = {}
    for group, block, offset in query(pipeline, "SELECT row_group_id, block_id, block_offset FROM pragma_storage_info('klaviyo_data.events')"):
        blocks.setdefault(group, set()).add((block, offset))
    return blocks


@pytest.mark.parametrize("chunk_rows, rewritten", [(klaviyo_pipeline.CHUNK_RECORDS, False), (klaviyo_duckdb.ROW_GROUP_SIZE * 9 // 8, True)])
def test_a_chunk_of_the_default_size_leaves_the_loaded_row_groups_as_written(tmp_path: Path, chunk_rows: int, rewritten: bool) -> None:
    # DuckDB's checkpoint merges the part-filled row groups that end two loads when at most three
    # row groups' worth of rows lie between them, rewriting them all; a chunk of the command's
    # default size holds many more, so a backfill writes each event once. (Chunks of one row group
    # and an eighth: the second load's checkpoint rewrites the first one's part.)
    pipeline = _pipeline(tmp_path)
    _load_chunk(pipeline, 0, chunk_rows)
    first = _blocks(pipeline)
    _load_chunk(pipeline, 1, chunk_rows)
    assert query(pipeline, "SELECT count(*), count(DISTINCT id) FROM events")[0] == (2 * chunk_rows, 2 * chunk_rows)
    after = _blocks(pipeline)
    kept = all(after.get(group) == segments for group, segments in first.items())
    assert kept is not rewritten, (sorted(first), sorted(after))


def test_the_database_file_has_small_row_groups_and_opens_in_plain_duckdb(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    _load_chunk(pipeline, 0, 40_000)
    sizes = [r[0] for r in query(pipeline, "SELECT max(count) FROM pragma_storage_info('klaviyo_data.events') GROUP BY row_group_id ORDER BY row_group_id")]
    full, rest = divmod(40_000, klaviyo_duckdb.ROW_GROUP_SIZE)
    assert full >= 2 and sizes == [klaviyo_duckdb.ROW_GROUP_SIZE] * full + [rest]
    _load_chunk(pipeline, 1, 10)  # a second run opens the file again
    import duckdb

    with duckdb.connect(str(tmp_path / "k.duckdb"), read_only=True) as connection:  # any DuckDB client reads it
        loaded = connection.execute("SELECT count(*), count(DISTINCT id), sum(n) FROM klaviyo_data.events").fetchone()
        assert loaded == (40_010, 40_010, sum(range(40_000)) + sum(range(10)))
        assert connection.execute("SELECT current_database()").fetchone() == ("k",)
