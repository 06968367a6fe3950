"""deploy/airflow/klaviyo_dag.py under Airflow's own `dag.test()`: one task group per account of
the accounts file, each account loaded exactly into its own DuckDB file and dataset; an account
whose key Klaviyo rejects fails its own task only; the DAG file parses without any credential in
the environment (the sources are built when the tasks run). Needs Airflow (requirements-airflow.txt,
in a venv of its own); skipped without it, failed under KLAVIYO_REQUIRE_AIRFLOW=1."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO

try:
    import airflow  # noqa: F401
except ImportError:
    reason = "Airflow not installed: pip install -r requirements-airflow.txt in a venv of its own"
    if os.environ.get("KLAVIYO_REQUIRE_AIRFLOW") == "1":
        pytest.fail(f"KLAVIYO_REQUIRE_AIRFLOW=1: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)

PAST = datetime.now(UTC) - timedelta(days=3)
ACCOUNTS = {"alpha": 41, "beta": 42, "gamma": 43}  # gamma's key is rejected
TABLES = {"events": "event", "profiles": "profile", "metrics": "metric"}


@pytest.fixture
def airflow_env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    emulators = {name: Emulator(EmulatorConfig(seed=seed, profiles=60, events=400, days=5, now=PAST, api_key=f"pk_{name}_key")).start()
                 for name, seed in ACCOUNTS.items()}
    try:
        lines = ["[klaviyo]", 'duckdb_dir = "data"', 'reports = "events,profiles,metrics"', 'start_date = "2000-01-01T00:00:00Z"',
                 "max_retries = 0"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
            "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"), "KLAVIYO_DAGSTER_ACCOUNTS": str(tmp_path / "accounts.toml"),
            "RUNTIME__DLTHUB_TELEMETRY": "false", "RUNTIME__REQUEST_MAX_ATTEMPTS": "2",
        }
        keys = {}
        for name, emu in emulators.items():
            lines += [f"[accounts.{name}]", f'base_url = "{emu.base_url}"', f'api_key_env = "KLAVIYO_KEY_{name.upper()}"']
            keys[f"KLAVIYO_KEY_{name.upper()}"] = "pk_rejected_key_zz" if name == "gamma" else emu.api_key
        (tmp_path / "accounts.toml").write_text("\n".join(lines) + "\n")
        (tmp_path / "dags").mkdir()
        (tmp_path / "dags" / "klaviyo_dag.py").write_text((REPO / "deploy" / "airflow" / "klaviyo_dag.py").read_text())
        migrate = subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr[-2000:]
        yield {"env": env, "keys": keys, "emulators": emulators, "tmp": tmp_path}
    finally:
        for emu in emulators.values():
            emu.stop()


def _run(setup: dict[str, Any], *args: str, keys: bool = True) -> dict[str, Any]:
    env = {**setup["env"], **(setup["keys"] if keys else {})}
    out = subprocess.run([sys.executable, str(REPO / "tests" / "orchestration" / "airflow_dag_run.py"), *args],
                         env=env, cwd=setup["tmp"], capture_output=True, text=True, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])  # type: ignore[no-any-return]


def test_the_dag_parses_without_credentials(airflow_env: dict[str, Any]) -> None:
    report = _run(airflow_env, "--parse-only", keys=False)
    assert report["tasks"] == [f"klaviyo_{name}.klaviyo_{name}" for name in sorted(ACCOUNTS)]
    assert all(emu.request_log == [] for emu in airflow_env["emulators"].values())


def test_dag_test_loads_each_account_exactly_and_a_rejected_key_fails_alone(airflow_env: dict[str, Any]) -> None:
    report = _run(airflow_env)
    states = report["task_states"]
    expected = {"alpha": "success", "beta": "success", "gamma": "failed"}
    assert states == {f"klaviyo_{name}.klaviyo_{name}": state for name, state in expected.items()}
    for name in ("alpha", "beta"):
        emu = airflow_env["emulators"][name]
        with duckdb.connect(str(airflow_env["tmp"] / "data" / f"{name}.duckdb"), read_only=True) as db:
            for table, kind in TABLES.items():
                loaded = sorted(r[0] for r in db.execute(f"SELECT id FROM klaviyo_{name}.{table}").fetchall())
                assert loaded == sorted(r["id"] for r in emu.account.records(kind)), (name, table)
    assert [r.status for r in airflow_env["emulators"]["gamma"].request_log] == [401]
