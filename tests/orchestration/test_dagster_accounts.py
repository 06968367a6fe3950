"""Many Klaviyo accounts through Dagster's own API: one partition per account, each loaded by its
own pipeline into its own dataset (a DuckDB file per account), runs side by side; an account that
fails does not stop the others, is retried by the job's RetryPolicy, and is re-executed alone once
its fault is gone; a rejected key fails once, without retries; the run summary is asset metadata."""

import importlib
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.orchestration import require_dagster

require_dagster()

from dagster import (  # noqa: E402
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    ReexecutionOptions,
    build_schedule_context,
    execute_job,
    reconstructable,
)

from klaviyo_dagster.accounts import AccountsFileError, load_settings  # noqa: E402
from klaviyo_dagster.jobs import JOB_NAME, SCHEDULE_NAME, build_definitions  # noqa: E402
from klaviyo_emulator import Emulator, EmulatorConfig  # noqa: E402
from tests.conftest import REPO  # noqa: E402

PAST = datetime.now(UTC) - timedelta(days=3)  # every record lies in the past: all of it is loaded
REPORTS = "events,profiles,metrics,lists"
TABLES = {"events": "event", "profiles": "profile", "metrics": "metric", "lists": "list"}
# account -> emulator seed (each seed is another account, with its own id); gamma uses OAuth
ACCOUNTS = {"alpha": 31, "beta": 32, "gamma": 33, "delta": 34}
FAULTY = "delta"


def _key(name: str) -> str:
    return f"pk_{name}_DagsterTestKey_{ACCOUNTS[name]}"


def _write_accounts(path: Path, emulators: dict[str, Emulator], tmp: Path, oauth: tuple[str, ...] = ("gamma",)) -> None:
    lines = [
        "[klaviyo]",
        f'duckdb_dir = "{tmp / "data"}"',
        f'pipelines_dir = "{tmp / "pipelines"}"',
        f'reports = "{REPORTS}"',
        'start_date = "2000-01-01T00:00:00Z"',
        "max_retries = 1",
        "retry_delay_seconds = 0.2",
    ]
    for name, emu in emulators.items():
        lines += ["", f"[accounts.{name}]", f'base_url = "{emu.base_url}"']
        if name in oauth:
            lines += [f'refresh_token_env = "KLAVIYO_TEST_REFRESH_{name.upper()}"', 'client_id_env = "KLAVIYO_TEST_CLIENT_ID"',
                      'client_secret_env = "KLAVIYO_TEST_CLIENT_SECRET"']
        else:
            lines.append(f'api_key_env = "KLAVIYO_TEST_KEY_{name.upper()}"')
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Emulator]]:
    """Four emulated accounts (delta answers every request with a fault), the accounts file
    naming them, their keys in the environment, and a Dagster instance under tmp_path."""
    emulators: dict[str, Emulator] = {}
    try:
        for name, seed in ACCOUNTS.items():
            config = EmulatorConfig(seed=seed, profiles=120, events=1500, days=5, now=PAST, api_key=_key(name), latency_ms=10,
                                    fault_rate=1.0 if name == FAULTY else 0.0, oauth_refresh_token=f"rt_{name}_DagsterTest")
            emulators[name] = Emulator(config).start()
            monkeypatch.setenv(f"KLAVIYO_TEST_KEY_{name.upper()}", _key(name))
            monkeypatch.setenv(f"KLAVIYO_TEST_REFRESH_{name.upper()}", f"rt_{name}_DagsterTest")
        monkeypatch.setenv("KLAVIYO_TEST_CLIENT_ID", "emu_client_id")
        monkeypatch.setenv("KLAVIYO_TEST_CLIENT_SECRET", "emu_client_secret")
        accounts = tmp_path / "accounts.toml"
        _write_accounts(accounts, emulators, tmp_path)
        home = tmp_path / "dagster_home"
        home.mkdir()
        monkeypatch.setenv("KLAVIYO_DAGSTER_ACCOUNTS", str(accounts))
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")  # dlt's own retries, kept short
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        yield emulators
    finally:
        for emu in emulators.values():
            emu.stop()


def _job() -> Any:
    """The definitions module's job, (re)loaded for this test's accounts file."""
    sys.modules.pop("klaviyo_dagster.definitions", None)
    module = importlib.import_module("klaviyo_dagster.definitions")
    return reconstructable(module.klaviyo_accounts_job)


def _ids(tmp: Path, account: str, table: str) -> list[str]:
    with duckdb.connect(str(tmp / "data" / f"{account}.duckdb"), read_only=True) as db:
        return sorted(r[0] for r in db.execute(f"SELECT id FROM klaviyo_{account}.{table}").fetchall())


def _assert_exact(tmp: Path, account: str, emu: Emulator) -> None:
    for table, kind in TABLES.items():
        assert _ids(tmp, account, table) == sorted(r["id"] for r in emu.account.records(kind)), (account, table)


def _events(instance: DagsterInstance, run_id: str, kind: DagsterEventType) -> list[Any]:
    return [e for e in instance.all_logs(run_id) if e.dagster_event is not None and e.dagster_event.event_type == kind]


def _materializations(result: Any) -> dict[str, dict[str, Any]]:
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        found[materialization.asset_key.path[-1]] = {k: v.value for k, v in materialization.metadata.items()}
    return found


def test_accounts_load_in_parallel_exactly_and_a_failing_one_is_retried_alone(fleet: dict[str, Emulator], tmp_path: Path) -> None:
    job = _job()
    instance = DagsterInstance.get()
    with ThreadPoolExecutor(len(ACCOUNTS)) as pool:  # one run per partition, as a backfill or the schedule starts them
        runs = dict(zip(ACCOUNTS, pool.map(lambda name: execute_job(job, instance, tags={"dagster/partition": name}), ACCOUNTS), strict=False))

    good = [name for name in ACCOUNTS if name != FAULTY]
    assert {name: runs[name].success for name in ACCOUNTS} == {**{n: True for n in good}, FAULTY: False}
    for name in good:
        _assert_exact(tmp_path, name, fleet[name])
        assert _events(instance, runs[name].run_id, DagsterEventType.STEP_UP_FOR_RETRY) == []
    # the runs overlapped: each started before any of them ended
    stats = [instance.get_run_stats(runs[name].run_id) for name in ACCOUNTS]
    assert max(s.start_time for s in stats) < min(s.end_time for s in stats)
    # the faulty account was retried by the job's RetryPolicy (max_retries=1): two attempts,
    # each with dlt's two tries of the run's first request (which account the key belongs to)
    assert len(_events(instance, runs[FAULTY].run_id, DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    assert [r.path for r in fleet[FAULTY].request_log] == ["/api/accounts"] * 4  # the default revision 2026-07-15: no trailing slash
    assert not (tmp_path / "data" / f"{FAULTY}.duckdb").exists() or _tables(tmp_path, FAULTY) == []

    # the run summary of a loaded account, as asset metadata of each table
    summary = _materializations(runs["gamma"])
    assert set(summary) == set(TABLES)
    truth = {table: sum(1 for _ in fleet["gamma"].account.records(kind)) for table, kind in TABLES.items()}
    events = summary["events"]
    assert {t: events["rows_by_table"][t] for t in TABLES} == truth and events["rows"] == truth["events"]
    assert events["account"] == "gamma" and events["pipeline"] == "klaviyo_gamma" and events["dataset"] == "klaviyo_gamma"
    assert events["credential"] == "oauth" and events["klaviyo_429s"] == 0
    assert events["klaviyo_requests"] == sum(1 for r in fleet["gamma"].request_log if r.path.startswith("/api/"))
    newest = max(e["attributes"]["datetime"] for e in fleet["gamma"].account.records("event"))
    assert _same_instant(events["cursor"]["datetime"], newest)

    # Klaviyo is back for delta: re-execute its failed run alone
    fleet[FAULTY].faults.rate = 0.0
    before = {name: len(fleet[name].request_log) for name in good}
    again = execute_job(job, instance, tags={"dagster/partition": FAULTY},  # (the Python API does not carry the parent's tags over)
                        reexecution_options=ReexecutionOptions.from_failure(runs[FAULTY].run_id, instance))
    assert again.success and again.dagster_run.tags.get("dagster/partition") == FAULTY
    _assert_exact(tmp_path, FAULTY, fleet[FAULTY])
    assert {name: len(fleet[name].request_log) for name in good} == before  # nobody else was read again
    assert _materializations(again)["profiles"]["rows"] == sum(1 for _ in fleet[FAULTY].account.records("profile"))


def _tables(tmp: Path, account: str) -> list[str]:
    with duckdb.connect(str(tmp / "data" / f"{account}.duckdb"), read_only=True) as db:
        return [r[0] for r in db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
                                         " AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'", [f"klaviyo_{account}"]).fetchall()]


def _same_instant(a: str, b: str) -> bool:
    def parse(value: str) -> datetime:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))

    return parse(a) == parse(b)


def test_a_rejected_key_fails_once_without_retries_with_one_line(fleet: dict[str, Emulator], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLAVIYO_TEST_KEY_ALPHA", "pk_revoked_key_of_alpha")
    defs = build_definitions(tmp_path / "accounts.toml")
    instance = DagsterInstance.get()
    result = defs.resolve_job_def(JOB_NAME).execute_in_process(partition_key="alpha", instance=instance, raise_on_error=False)
    assert not result.success
    assert _events(instance, result.run_id, DagsterEventType.STEP_UP_FOR_RETRY) == []
    (failure,) = _events(instance, result.run_id, DagsterEventType.STEP_FAILURE)
    message = failure.dagster_event.step_failure_data.user_failure_data.description
    assert message == ("Klaviyo account alpha: Klaviyo rejected the API key (401 on /api/accounts): Missing or invalid private key.;"
                       " set a valid private key (pk_...) in SOURCES__KLAVIYO__API_KEY or [sources.klaviyo] api_key")
    assert [r.path for r in fleet["alpha"].request_log] == ["/api/accounts"]  # asked once: not retried
    assert "pk_revoked_key_of_alpha" not in str(failure.dagster_event)


def test_the_daily_schedule_asks_for_one_run_per_account(fleet: dict[str, Emulator], tmp_path: Path) -> None:
    defs = build_definitions(tmp_path / "accounts.toml")
    schedule = defs.resolve_schedule_def(SCHEDULE_NAME)
    assert schedule.cron_schedule == "0 3 * * *"
    tick = datetime(2026, 5, 4, 3, 0, tzinfo=UTC)
    context = build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    requests = schedule.evaluate_tick(context).run_requests or []
    assert sorted(r.partition_key for r in requests) == sorted(ACCOUNTS)
    assert len({r.run_key for r in requests}) == len(ACCOUNTS)
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == {f"klaviyo/{t}" for t in TABLES}
    assert AssetKey(["klaviyo", "events"]) in defs.resolve_job_def(JOB_NAME).asset_layer.asset_graph.get_all_asset_keys()


@pytest.mark.parametrize("text, expected", [
    ("", "lists no account; add an [accounts.NAME] table"),
    ("[accounts.Brand-A]\napi_key_env = 'K'\n", "the name must be lower-case letters, digits and _"),
    ("[accounts.a]\n", "names no credential; set api_key_env"),
    ("[accounts.a]\napi_key_env = 'K'\nrefresh_token_env = 'R'\n", "names both a private key and OAuth credentials"),
    ("[accounts.a]\nrefresh_token_env = 'R'\n", "refresh_token_env needs client_id_env and client_secret_env"),
    ("[accounts.a]\napi_key = 'pk_x'\n", "unknown key 'api_key'"),
    ("[klaviyo]\nschedul = '0 3 * * *'\n[accounts.a]\napi_key_env = 'K'\n", "unknown setting 'schedul' in [klaviyo]"),
    ("[accounts.a\n", "is not valid TOML"),
], ids=["empty", "bad name", "no credential", "key and oauth", "oauth incomplete", "secret in the file", "typo", "not toml"])
def test_a_bad_accounts_file_is_one_line_naming_the_fix(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    with pytest.raises(AccountsFileError) as error:
        load_settings(path)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_missing_key_variable_is_named_when_the_run_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text("[accounts.a]\napi_key_env = 'KLAVIYO_TEST_UNSET_KEY'\n")
    monkeypatch.delenv("KLAVIYO_TEST_UNSET_KEY", raising=False)
    with pytest.raises(AccountsFileError, match="Klaviyo account a: the environment variable KLAVIYO_TEST_UNSET_KEY is not set"):
        load_settings(path).accounts["a"].credentials()
