"""Bad input: each kind ends `klaviyo_pipeline.py` with one line naming the problem and the
fix, before anything is written (no DuckDB file, or no table of the failed run), and never
with the key in it."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import klaviyo_pipeline
from klaviyo_emulator import Emulator, EmulatorConfig

KEY = "pk_BadInputTestKey_51ce"
LIMITED = "pk_limited_only_metrics"
NOW = datetime.now(UTC)


def _query(**attributes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metric_id": "M1", "measurements": ["count"], "interval": "day",
        "filter": [f"greater-or-equal(datetime,{(NOW - timedelta(days=3)):%Y-%m-%dT00:00:00})", f"less-than(datetime,{NOW:%Y-%m-%dT00:00:00})"],
    }
    base.update(attributes)
    return {"q": {"data": {"type": "metric-aggregate", "attributes": {k: v for k, v in base.items() if v is not None}}}}


# (id, command-line arguments, environment overrides, aggregate query file content, expected words)
CASES: list[Any] = [
    ("no key", ["--reports", "metrics"], {"SOURCES__KLAVIYO__API_KEY": ""}, None, "No Klaviyo API key; set SOURCES__KLAVIYO__API_KEY"),
    ("key with spaces", ["--reports", "metrics"], {"SOURCES__KLAVIYO__API_KEY": "pk_a b"}, None, "contains white space"),
    ("key without pk_", ["--reports", "metrics"], {"SOURCES__KLAVIYO__API_KEY": "garbage"}, None, "The Klaviyo API key does not start with pk_; use a private API key"),
    ("public key (site ID)", ["--reports", "metrics"], {"SOURCES__KLAVIYO__API_KEY": "AbC123"}, None, "The Klaviyo API key looks like the public key (site ID); use a private API key"),
    ("truncated key", ["--reports", "metrics"], {"SOURCES__KLAVIYO__API_KEY": "pk_"}, None, "The Klaviyo API key is malformed: after pk_ come letters and digits"),
    ("key in quotes", ["--reports", "metrics"], {"SOURCES__KLAVIYO__API_KEY": "'pk_0123456789abcdef'"}, None, "The Klaviyo API key is wrapped in quotes; set it without them"),
    ("malformed revision", ["--reports", "metrics"], {"SOURCES__KLAVIYO__REVISION": "2023/10/15"}, None, "revision '2023/10/15' is malformed; use YYYY-MM-DD"),
    ("unknown report", ["--reports", "events,evnts"], {}, None, "Unknown report 'evnts'; choose from"),
    ("no report", ["--reports", ","], {}, None, "No report selected"),
    ("malformed start", ["--reports", "events", "--start", "2024-01-02 23:20:49"], {}, None, "--start '2024-01-02 23:20:49' is not a datetime in the format YYYY-MM-DDTHH:MM:SSZ"),
    ("malformed end", ["--reports", "events", "--start", "2024-01-02T23:20:49Z", "--end", "2024-01-09"], {}, None, "--end '2024-01-09' is not a datetime"),
    ("end without start", ["--reports", "events", "--end", "2024-01-09T00:00:00Z"], {}, None, "--end needs --start; give both (custom dates) or neither"),
    ("end before start", ["--reports", "events", "--start", "2024-01-09T00:00:00Z", "--end", "2024-01-02T00:00:00Z"], {}, None, "--start 2024-01-09T00:00:00Z is not before --end 2024-01-02T00:00:00Z"),
    ("start in the future", ["--reports", "events", "--start", f"{NOW.year + 1}-01-01T00:00:00Z"], {}, None, "--start " + f"{NOW.year + 1}-01-01T00:00:00Z lies in the future"),
    ("custom dates on an undated report", ["--reports", "events,metrics", "--start", "2024-01-02T00:00:00Z", "--end", "2024-01-09T00:00:00Z"], {}, None, "Custom dates cannot be served for metrics: Klaviyo cannot filter it by date; drop it from the reports or run it without --start/--end"),
    ("non-http base_url", ["--reports", "metrics"], {"SOURCES__KLAVIYO__BASE_URL": "ftp://a.klaviyo.com"}, None, "base_url 'ftp://a.klaviyo.com' is not an http(s) URL"),
    ("workers below 1", ["--reports", "metrics"], {"SOURCES__KLAVIYO__WORKERS": "0"}, None, "workers 0 is below its minimum 1; set it to 1 or more"),
    ("negative lookback", ["--reports", "metrics"], {"SOURCES__KLAVIYO__LOOKBACK_HOURS": "-2"}, None, "lookback_hours -2.0 is below its minimum 0"),
    ("query not JSON", ["--reports", "metric_aggregates"], {}, "{not json", "is not valid JSON"),
    ("query without metric_id", ["--reports", "metric_aggregates"], {}, _query(metric_id=None), "metric_id is missing; copy a metric id from the metrics table"),
    ("unknown measurement", ["--reports", "metric_aggregates"], {}, _query(measurements=["median"]), "unknown measurement 'median'"),
    ("unknown interval", ["--reports", "metric_aggregates"], {}, _query(interval="year"), "interval 'year' is unknown; use one of hour, day, week, month"),
    ("unknown by dimension", ["--reports", "metric_aggregates"], {}, _query(by=["$nope"]), "unknown dimension '$nope'"),
    ("no datetime bounds", ["--reports", "metric_aggregates"], {}, _query(filter=["equals($flow,\"X\")"]), "lacks a greater-or-equal(datetime,...) bound"),
    ("range older than 5 years", ["--reports", "metric_aggregates"], {}, _query(filter=["greater-or-equal(datetime,2001-01-01T00:00:00)", "less-than(datetime,2001-02-01T00:00:00)"]), "more than 5 years back, which Klaviyo cannot serve"),
    ("bad time zone", ["--reports", "metric_aggregates"], {}, _query(timezone="Mars/Olympus"), "is not an IANA time zone name"),
    ("aggregates without a query", ["--reports", "metric_aggregates"], {}, None, "needs at least one query"),
    ("missing query file", ["--reports", "metric_aggregates", "--aggregate-query", "/nonexistent/q.json"], {}, None, "does not exist"),
    ("chunk too small", ["--reports", "events", "--chunk-records", "5"], {}, None, "--chunk-records 5 is below its minimum 100"),
    ("rejected key (401)", ["--reports", "metrics"], {"SOURCES__KLAVIYO__API_KEY": "pk_wrong_key_zz"}, None, "Klaviyo rejected the API key (401 on /api/accounts)"),  # the run's first request: which account
    ("missing scope (403)", ["--reports", "events"], {"SOURCES__KLAVIYO__API_KEY": LIMITED}, None, "The API key lacks the scope events:read to read the report events (403 on /api/events)"),
    # a revision the source does not speak is its own check now, before any request (Klaviyo's 404 is never met)
    ("unsupported revision", ["--reports", "metrics"], {"SOURCES__KLAVIYO__REVISION": "2031-01-01"}, None, "revision '2031-01-01' is not one this source speaks; set revision to one of: 2026-07-15 (the default), 2023-10-15"),
    ("report of another revision", ["--reports", "campaigns_push"], {"SOURCES__KLAVIYO__REVISION": "2023-10-15"}, None, "The report 'campaigns_push' needs revision 2026-07-15"),
    ("v1 retired (410)", ["--reports", "campaigns_v1"], {}, None, "Klaviyo retired the v1 API on 2024-06-30"),
    ("unknown destination", ["--reports", "metrics", "--destination", "nosuchdest"], {}, None, "--destination 'nosuchdest' is not a dlt destination; use one of: "),
]


# Cases refused by Klaviyo (the emulator) rather than by the source's own checks.
API_REFUSALS = {"rejected key (401)", "missing scope (403)", "v1 retired (410)"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    config = EmulatorConfig(seed=3, profiles=20, events=100, api_key=KEY, key_scopes={LIMITED: frozenset({"metrics:read"})})
    with Emulator(config) as emu:
        yield emu


def _run_case(case: Any, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Runs `klaviyo_pipeline.main` on one case in `tmp_path`; returns its exit code and stderr."""
    _, args, env, query_text, _ = case
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCES__KLAVIYO__API_KEY", KEY)
    monkeypatch.setenv("SOURCES__KLAVIYO__BASE_URL", emulator.base_url)
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if query_text is not None:
        path = tmp_path / "q.json"
        path.write_text(query_text if isinstance(query_text, str) else json.dumps(query_text))
        args = [*args, "--aggregate-query", str(path)]
    capsys.readouterr()
    code = klaviyo_pipeline.main([*args, "--pipelines-dir", str(tmp_path / "pipelines"), "--progress", "none"])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_with_one_line_naming_problem_and_fix(case: Any, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    expected = case[4]
    code, err = _run_case(case, emulator, tmp_path, monkeypatch, capsys)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    assert KEY not in err and LIMITED not in err
    database = tmp_path / "klaviyo.duckdb"
    if database.exists():  # API refusals happen in extract: the run writes no table
        import duckdb

        with duckdb.connect(str(database), read_only=True) as db:
            tables = db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'klaviyo_data'").fetchall()
        assert tables == []


def test_the_table_covers_at_least_twenty_kinds(emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Twenty kinds the command itself tells apart: run every case, and the command answers each
    with its own error line (two cases answered alike would be one kind); the source's own checks
    refuse before any request reaches Klaviyo, and the API refusals come from Klaviyo's answers."""
    assert {c[0] for c in CASES} >= API_REFUSALS
    answers: dict[str, str] = {}
    for number, case in enumerate(CASES):
        emulator.clear_log()
        workdir = tmp_path / str(number)
        workdir.mkdir()
        with pytest.MonkeyPatch.context() as monkeypatch:
            code, err = _run_case(case, emulator, workdir, monkeypatch, capsys)
        assert code == 1 and err.startswith("error: "), (case[0], code, err)
        answers[case[0]] = err
        sent = [f"{r.method} {r.path}" for r in emulator.request_log]
        assert bool(sent) == (case[0] in API_REFUSALS), (case[0], sent)
    alike = {err: [name for name, e in answers.items() if e == err] for err in answers.values()}
    assert [names for names in alike.values() if len(names) > 1] == []
    assert len(set(answers.values())) >= 20


def _uninstalled_destination() -> str | None:
    """A destination dlt knows whose packages are not installed here (its extra is missing)."""
    from dlt.common.destination import Destination

    for name in ("bigquery", "snowflake", "mssql", "clickhouse", "databricks"):
        try:
            _ = Destination.from_reference(name).client_class
        except ModuleNotFoundError:
            return name
    return None


def test_a_destination_is_named_or_its_extra_asked_for_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """dlt would print a traceback (unknown name) or fail at its sync step (missing extra);
    the command says it in one line, before the pipeline's working directory exists."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCES__KLAVIYO__API_KEY", KEY)
    names = ["nosuchdest"] + ([_uninstalled_destination()] if _uninstalled_destination() else [])
    errors = {}
    for name in names:
        code = klaviyo_pipeline.main(["--reports", "metrics", "--destination", name, "--pipelines-dir", str(tmp_path / "pipelines")])
        errors[name] = capsys.readouterr().err.strip()
        assert code == 1 and errors[name].startswith("error: ") and len(errors[name].splitlines()) == 1, errors[name]
        assert not (tmp_path / "pipelines").exists()
    listed = errors["nosuchdest"].split("use one of: ", 1)[1].split(" (", 1)[0].split(", ")
    assert {"duckdb", "postgres", "filesystem", "bigquery", "snowflake"} <= set(listed) and "nosuchdest" not in listed
    for name in names[1:]:
        assert f'--destination {name} needs packages that are not installed' in errors[name]
        assert f'pip install "dlt[{name}]==' in errors[name]
