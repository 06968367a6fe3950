"""What `klaviyo_pipeline.py` prints: progress while it runs and the closing summary (rows per
table, elapsed time, destination, dataset and the DuckDB file), checked against the data."""

import re
import subprocess
import sys
from pathlib import Path

import duckdb

from klaviyo_demo import DEMO_DATASET, DEMO_DUCKDB
from tests.conftest import REPO
from tests.integration.conftest import CliDemo, isolated_env, parse_summary


def _table_counts(path: Path) -> dict:
    with duckdb.connect(str(path), read_only=True) as db:
        tables = [r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
            " AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'", [DEMO_DATASET]).fetchall()]
        return {t: db.execute(f'SELECT count(*) FROM {DEMO_DATASET}."{t}"').fetchone()[0] for t in tables}


def test_the_summary_lists_every_loaded_table_with_its_rows(cli_demo: CliDemo) -> None:
    summary = parse_summary(cli_demo.stdout)
    loaded = _table_counts(cli_demo.duckdb)
    assert summary == loaded
    assert {"events", "profiles", "metrics"} <= set(summary) and all(summary.values())
    total = re.search(r"^  total\s+(\d+) rows$", cli_demo.stdout, re.M)
    assert total and int(total.group(1)) == sum(loaded.values())


def test_the_summary_says_where_the_data_went_and_how_long_it_took(cli_demo: CliDemo) -> None:
    head = re.search(r"^Loaded into (\S+) dataset (\S+) in ([0-9.]+) s:$", cli_demo.stdout, re.M)
    assert head, cli_demo.stdout[-1500:]
    assert head.group(1, 2) == ("duckdb", DEMO_DATASET)
    assert 0 < float(head.group(3)) < 600
    location = re.search(r"^  location: (.+)$", cli_demo.stdout, re.M)
    assert location and Path(location.group(1)) == cli_demo.duckdb.resolve()
    assert Path(location.group(1)).is_absolute() and Path(location.group(1)).stat().st_size > 0
    assert "Inspect: dlt pipeline --pipelines-dir pipelines klaviyo_demo info | trace | schema | show" in cli_demo.stdout


def test_the_log_progress_reports_every_stage(cli_demo: CliDemo) -> None:
    for stage in ("Extract klaviyo", "Normalize klaviyo", "Load klaviyo"):
        assert stage in cli_demo.stdout
    assert re.search(r"^events: \d+", cli_demo.stdout, re.M), "per-resource progress lines"
    assert cli_demo.stdout.index("Load klaviyo") < cli_demo.stdout.index("Loaded into ")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--demo", "--pipelines-dir", "p", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=isolated_env(tmp_path),
    )


def test_tqdm_progress_bars_go_to_stderr_and_the_summary_to_stdout(tmp_path: Path) -> None:
    out = _run(tmp_path, "--reports", "metrics,lists", "--progress", "tqdm")
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"Load klaviyo in [0-9.]+: Jobs: 100%\|", out.stderr), out.stderr[-2000:]
    assert parse_summary(out.stdout) == _table_counts(tmp_path / DEMO_DUCKDB)
    assert "Extract klaviyo" not in out.stdout


def test_an_unknown_progress_display_is_refused_before_any_work(tmp_path: Path) -> None:
    bad = _run(tmp_path, "--progress", "fancy")
    assert bad.returncode == 2 and "invalid choice: 'fancy'" in bad.stderr
    assert not (tmp_path / DEMO_DUCKDB).exists()
