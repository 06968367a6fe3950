"""What `klaviyo_pipeline.py` prints: progress while it runs and the closing summary (rows per
table, elapsed time, destination, dataset and the DuckDB file), checked against the data."""

import io
import re
import subprocess
import sys
from pathlib import Path

import dlt
import duckdb
import pytest

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
    assert 0 < float(head.group(3)) < 600  # not load-sensitive: the fixture's subprocess may live 600 s at most
    location = re.search(r"^  location: (.+)$", cli_demo.stdout, re.M)
    assert location and Path(location.group(1)) == cli_demo.duckdb.resolve()
    assert Path(location.group(1)).is_absolute() and Path(location.group(1)).stat().st_size > 0
    assert "Inspect: dlt pipeline --pipelines-dir pipelines klaviyo_demo info   (or trace, schema, show)" in cli_demo.stdout


def test_the_log_progress_says_each_stage_and_table_in_a_few_true_lines(cli_demo: CliDemo) -> None:
    """A line per table and step when each step ends, plus one per step every 10 s while it
    runs (dlt's LogCollector printed 292 lines here, every counter every second)."""
    progress = cli_demo.stdout[:cli_demo.stdout.index("Loaded into ")].splitlines()
    assert progress and all(re.match(r"(Extract|Normalize|Load) klaviyo( in \S+)?: ", line) for line in progress), progress
    for stage in ("Extract klaviyo", "Normalize klaviyo", "Load klaviyo"):
        assert any(line.startswith(stage) for line in progress)
    summary = parse_summary(cli_demo.stdout)
    extracted = {m.group(1): int(m.group(2).replace(",", "")) for m in map(EXTRACTED_TABLE.match, progress) if m}
    assert {t: n for t, n in extracted.items() if not t.startswith("_dlt")} == summary
    elapsed = float(re.search(r"^Loaded into \S+ dataset \S+ in ([0-9.]+) s:$", cli_demo.stdout, re.M).group(1))
    steps = 4  # extract (and dlt's extract of the pipeline state), normalize, load
    assert len(progress) <= steps * (2 + elapsed / 10) + 2 * (len(summary) + 1), "\n".join(progress)
    assert "psutil" not in cli_demo.stderr


EXTRACTED_TABLE = re.compile(r"^Extract klaviyo: (\w+) ([0-9,]+) rows?$")


def test_progress_lines_rate_rows_over_the_step_and_come_once_a_period() -> None:
    """`ProgressLog` on a clock the test moves: a table whose rows arrive at once right after
    the step starts does not show millions per second, and lines come every period."""
    from klaviyo_progress import ProgressLog

    out = io.StringIO()
    now = [100.0]
    log = ProgressLog(log_period=10.0, stream=out)
    log._clock = lambda: now[0]  # type: ignore[method-assign]
    feed = [(0.0, "Resources", 0, 3), (0.000001, "templates", 10, None), (4.0, "events", 100, None), (11.0, "events", 890, None),
            (12.0, "Resources", 2, None), (19.0, "Resources", 1, None)]
    with log("Extract klaviyo"):
        for at, name, inc, total in feed:
            now[0] = 100.0 + at
            log.update(name, inc, total)
        now[0] = 120.0
    lines = out.getvalue().splitlines()
    assert [line.split(" | ")[:3] for line in lines[:2]] == [
        ["Extract klaviyo: 11.0 s", "Resources 0/3", "1,000 rows, 91/s"],
        ["Extract klaviyo: done in 20.0 s", "Resources 3/3", "1,000 rows, 50/s"],
    ]
    assert re.search(r" \| RSS [0-9,]+ MB, CPU \d+%$", lines[1])
    assert lines[2:] == ["Extract klaviyo: events 990 rows", "Extract klaviyo: templates 10 rows"]
    out.truncate(0)
    out.seek(0)
    with pytest.raises(RuntimeError), log("Load klaviyo"):
        log.update("Jobs", 0, 2)
        now[0] = 121.5
        raise RuntimeError("a failed load")
    assert out.getvalue().startswith("Load klaviyo: failed after 1.5 s | Jobs 0/2 | RSS ")


def test_the_log_progress_asks_nothing_of_psutil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dlt's LogCollector warns on every run when psutil is missing; the command's does not
    need it (requirements.txt installs it for the memory and CPU figures)."""
    import importlib
    import warnings

    import klaviyo_pipeline
    import klaviyo_progress

    monkeypatch.setitem(sys.modules, "psutil", None)  # as if not installed
    importlib.reload(klaviyo_progress)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            collector = klaviyo_pipeline._progress("log")
            dlt.pipeline("progress_check", pipelines_dir=str(tmp_path), progress=collector)
        assert not [w for w in caught if "psutil" in str(w.message)]
        out = io.StringIO()
        collector.logger = out
        with collector("Load klaviyo"):
            collector.update("Jobs", 1, 1)
        assert out.getvalue().startswith("Load klaviyo: done in ") and "Jobs 1/1" in out.getvalue() and "RSS" not in out.getvalue()
    finally:
        monkeypatch.undo()
        importlib.reload(klaviyo_progress)


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


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The run's first request is the account check (GET /api/accounts under the default revision),
# for every report (the legacy v1 API's key-in-URL redaction is covered by tests/source/test_secrets.py).
@pytest.mark.parametrize("report, path", [("metrics", "/api/accounts"), ("campaigns_v1", "/api/accounts")])
def test_each_retry_against_an_unreachable_host_is_said_on_stderr_before_the_final_error(tmp_path: Path, report: str, path: str) -> None:
    key = "pk_UnreachableRetryKey_9d2e"
    env = isolated_env(tmp_path, SOURCES__KLAVIYO__API_KEY=key, SOURCES__KLAVIYO__BASE_URL=f"http://127.0.0.1:{_closed_port()}",
                       RUNTIME__REQUEST_MAX_ATTEMPTS="3", RUNTIME__REQUEST_BACKOFF_FACTOR="0.05")
    out = subprocess.run(
        [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--reports", report, "--pipelines-dir", "p", "--progress", "none"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 1, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    retries = [re.search(r"Klaviyo GET (\S+) failed \((\w+)\), attempt (\d) of 3; next try in ([0-9.]+) s$", line) for line in lines[:-1]]
    assert all(retries) and len(retries) == 2, out.stderr
    assert [(m.group(1), m.group(2), int(m.group(3))) for m in retries] == [(path, "ConnectionError", 1), (path, "ConnectionError", 2)]
    assert all(0 < float(m.group(4)) <= 0.05 * 2 + 1.0 for m in retries)  # backoff plus at most 1 s of jitter
    assert lines[-1].startswith(f"error: Klaviyo could not be read at {path} after all retries (ConnectionError)")
    assert key not in out.stdout + out.stderr


def _help(capsys: pytest.CaptureFixture) -> str:
    """`--help`'s text, unwrapped."""
    import klaviyo_pipeline

    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit):
        patch.setenv("COLUMNS", "1000")  # argparse would wrap a long path mid-word
        klaviyo_pipeline.parse_args(["--help"])
    return " ".join(capsys.readouterr().out.split())


def _names(text: str) -> set:
    return {n.strip("` ") for n in re.split(r",| and ", text) if n.strip("` ")}


def test_the_help_readme_and_config_agree_with_the_code_on_what_the_default_leaves_out(capsys: pytest.CaptureFixture) -> None:
    import klaviyo_pipeline
    from klaviyo.settings import ALL_REPORT_NAMES, DEFAULT_REPORTS

    left_out = set(ALL_REPORT_NAMES) - set(DEFAULT_REPORTS)
    demo_left_out = set(ALL_REPORT_NAMES) - set(klaviyo_pipeline.demo_reports().split(","))
    assert left_out == {"campaigns_v1", "segment_profiles"} and demo_left_out == {"campaigns_v1"}
    said = re.search(r"\(default: all but (.+?); --demo: all but (.+?)\)", _help(capsys))
    assert said and (_names(said.group(1)), _names(said.group(2))) == (left_out, demo_left_out)
    row = re.search(r"^\| `--reports a,b` \| .*\(default: all but (.+?)\) \|$", (REPO / "README.md").read_text(encoding="utf-8"), re.M)
    assert row and _names(row.group(1)) == left_out
    config = re.search(r"^# reports = .*# default: every report but (.+)$", (REPO / ".dlt" / "config.toml").read_text(encoding="utf-8"), re.M)
    assert config and _names(config.group(1)) == left_out


def test_the_help_names_the_pipelines_dir_dlt_uses_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """dlt's default is not always ~/.dlt/pipelines (as root it is /var/dlt/pipelines)."""
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "data"))
    assert f"(default dlt's, here {tmp_path / 'data' / 'pipelines'})" in _help(capsys)
    assert not (tmp_path / "data").exists()
