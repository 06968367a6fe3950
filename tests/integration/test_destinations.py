"""The demo into the other destinations through `--destination`: a real PostgreSQL server, and
the filesystem destination writing parquet files (the staging format of BigQuery and
Snowflake). Rows per table are checked against the run's summary and the emulator's records."""

import os
import re
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from klaviyo_demo import DEMO_DATASET
from tests.integration.conftest import TABLE_KINDS, DemoRun, expected_ids, run_demo


def _check_against_truth(run: DemoRun, loaded: dict[str, int], ids: dict[str, list[str]]) -> None:
    """Loaded rows equal the run's summary for every table, and the emulator's records for
    the resource tables (ids within the default backfill) and the profile child tables."""
    assert loaded == run.summary
    for table in TABLE_KINDS:
        surely, at_most = expected_ids(run.emulator, table, run.before, run.after)
        assert len(ids[table]) == len(set(ids[table])), table
        assert surely <= set(ids[table]) <= at_most, table
    # Profiles' suppression lists are JSON columns of `profiles` (child tables only with
    # flatten_properties, see tests/integration/test_schema.py).
    assert not [t for t in loaded if t.startswith("profiles__")]


def test_the_demo_loads_into_postgres_with_every_row(postgres: str, tmp_path: Path) -> None:
    import psycopg2

    dataset = f"klaviyo_it_{os.getpid()}_{int(time.time())}"
    run = run_demo(tmp_path, ["--destination", "postgres", "--dataset", dataset, "--progress", "none"],
                   env={"DESTINATION__POSTGRES__CREDENTIALS": postgres})
    assert f"Loaded into postgres dataset {dataset} in" in run.stdout
    assert "location: " + re.sub(r":[^:@/]*@", ":***@", postgres, count=1) in run.stdout  # the server's URL, password hidden
    with psycopg2.connect(postgres) as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name NOT LIKE '\\_dlt%%'", (dataset,))
            tables = [r[0] for r in cur.fetchall()]
            loaded = {}
            for table in tables:
                cur.execute(f'SELECT count(*) FROM "{dataset}"."{table}"')
                loaded[table] = cur.fetchone()[0]
            ids = {}
            for table in TABLE_KINDS:
                cur.execute(f'SELECT id FROM "{dataset}"."{table}"')
                ids[table] = [r[0] for r in cur.fetchall()]
            _check_against_truth(run, loaded, ids)
            cur.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = %s"
                " AND (table_name, column_name) IN (('events', 'event_properties'), ('events', 'datetime'),"
                " ('profiles', 'properties'), ('profiles', 'location__latitude'), ('campaigns_email', 'archived'))", (dataset,))
            assert sorted(cur.fetchall()) == [
                ("campaigns_email", "archived", "boolean"),
                ("events", "datetime", "timestamp with time zone"),
                ("events", "event_properties", "jsonb"),
                ("profiles", "location__latitude", "double precision"),
                ("profiles", "properties", "jsonb"),
            ]
            cur.execute(f"""SELECT sum((event_properties->>'$value')::numeric) FROM "{dataset}".events""")
            total = cur.fetchone()[0]
            assert total == _value_total(run, set(ids["events"]))
        finally:
            cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE; DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')


def _value_total(run: DemoRun, event_ids: set):  # type: ignore[no-untyped-def]
    """Sum of `$value` over the given events, as the emulator serves them (exact decimal)."""
    from decimal import Decimal

    total = Decimal(0)
    for event in run.emulator.account.records("event"):
        value = event["attributes"]["event_properties"].get("$value")
        if event["id"] in event_ids and value is not None:
            total += Decimal(str(value))
    return total


def test_the_demo_writes_parquet_files_to_the_filesystem_destination(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    run = run_demo(tmp_path, ["--destination", "filesystem", "--progress", "none"],
                   env={"DESTINATION__FILESYSTEM__BUCKET_URL": bucket.as_uri()})
    assert f"Loaded into filesystem dataset {DEMO_DATASET} in" in run.stdout
    assert f"location: {bucket.as_uri()}" in run.stdout
    root = bucket / DEMO_DATASET
    tables = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_dlt") and p.name != "init")
    loaded, ids = {}, {}
    for table in tables:
        files = sorted((root / table).glob("*.parquet"))
        assert files, f"no parquet file for {table}"
        data = pq.ParquetDataset([str(f) for f in files]).read()
        loaded[table] = data.num_rows
        if table in TABLE_KINDS:
            ids[table] = data.column("id").to_pylist()
    _check_against_truth(run, loaded, ids)
    with duckdb.connect() as db:
        db.execute("SET TimeZone = 'UTC'")
        events = str(root / "events" / "*.parquet")
        types = dict(db.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{events}'))").fetchall())
        assert types["datetime"] == "TIMESTAMP WITH TIME ZONE" and types["timestamp"] == "BIGINT"
        (total,) = db.execute(
            f"""SELECT sum(CAST(json_extract_string(event_properties, '$."$value"') AS DECIMAL(18, 2))) FROM read_parquet('{events}')"""
        ).fetchone()
    assert total == _value_total(run, set(ids["events"]))
