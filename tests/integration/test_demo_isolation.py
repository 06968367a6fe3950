"""The demo and a real account never share a pipeline, a dataset or a DuckDB file: a real run
after the demo, in the same directory and pipelines dir, is a first run of its own and loads
exactly the real account's records."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dlt
import duckdb
import pytest

import klaviyo_pipeline
from klaviyo_demo import DEMO_DATASET, DEMO_DUCKDB, DEMO_PIPELINE
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.integration.conftest import TABLE_KINDS, expected_ids, parse_summary, run_demo


def _ids(database: Path, dataset: str) -> dict[str, set[str]]:
    with duckdb.connect(str(database), read_only=True) as db:
        return {t: {r[0] for r in db.execute(f"SELECT id FROM {dataset}.{t}").fetchall()} for t in TABLE_KINDS}


def test_a_real_run_after_the_demo_loads_exactly_the_real_accounts_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    demo = run_demo(tmp_path, ["--progress", "none"])
    demo_ids = _ids(tmp_path / DEMO_DUCKDB, DEMO_DATASET)
    # every record (but the few future-dated events) lies before the run and inside the defaults' backfill
    config = EmulatorConfig(seed=7, profiles=300, events=3000, days=10, now=datetime.now(UTC) - timedelta(minutes=5))
    with Emulator(config) as real:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("SOURCES__KLAVIYO__API_KEY", real.api_key)
        monkeypatch.setenv("SOURCES__KLAVIYO__BASE_URL", real.base_url)
        before = datetime.now(UTC)
        assert klaviyo_pipeline.main(["--pipelines-dir", str(tmp_path / "pipelines"), "--progress", "none"]) == 0
        after = datetime.now(UTC)
        loaded = _ids(tmp_path / "klaviyo.duckdb", "klaviyo_data")
        for table in TABLE_KINDS:
            surely, at_most = expected_ids(real, table, before, after)
            assert surely == at_most and loaded[table] == surely, table
            assert loaded[table].isdisjoint(demo_ids[table]), table
        assert parse_summary(capsys.readouterr().out)["events"] == len(loaded["events"]) > 2900  # future-dated ones wait
    pipelines = str(tmp_path / "pipelines")
    assert dlt.attach("klaviyo", pipelines_dir=pipelines).state["sources"]["klaviyo"]["account"] == {"id": real.account.account_id}
    assert dlt.attach(DEMO_PIPELINE, pipelines_dir=pipelines).state["sources"]["klaviyo"]["account"] == {"id": demo.emulator.account.account_id}
