"""The command's DuckDB loader runs with the memory bound of `DUCKDB_GLOBAL_CONFIG` (64MB buffer
pool, one thread, insertion order not preserved), with the repository's `.dlt/` in effect as
when users run it from the repository root; a configured `global_config` overrides it."""

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO
from tests.integration.conftest import isolated_env, parse_summary

# Runs the command in-process in a child (cwd = a directory holding the repository's .dlt/),
# keeps the pipeline it builds and reads DuckDB's settings through that pipeline's sql_client:
# the same destination configuration the loader connected with.
RUN_AND_READ_SETTINGS = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
import dlt
import klaviyo_pipeline
made = []
build = dlt.pipeline
def keep(*args, **kwargs):
    made.append(build(*args, **kwargs))
    return made[-1]
dlt.pipeline = keep
code = klaviyo_pipeline.main(sys.argv[1:])
if code == 0:
    with made[-1].sql_client() as client:
        row = client.execute_sql(
            "SELECT current_setting('memory_limit'), current_setting('threads'), current_setting('preserve_insertion_order')"
        )[0]
    print("SETTINGS " + json.dumps([str(value) for value in row]))
sys.exit(code)
"""


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=61, profiles=50, events=500, days=5)) as emu:
        yield emu


def _run(workdir: Path, emulator: Emulator, **env: str) -> subprocess.CompletedProcess:
    shutil.copytree(REPO / ".dlt", workdir / ".dlt")
    environment = isolated_env(workdir, SOURCES__KLAVIYO__API_KEY=emulator.api_key, SOURCES__KLAVIYO__BASE_URL=emulator.base_url, **env)
    return subprocess.run(
        [sys.executable, "-c", RUN_AND_READ_SETTINGS, "--reports", "metrics,events", "--pipelines-dir", "pipelines", "--progress", "none"],
        cwd=workdir, capture_output=True, text=True, timeout=300, env=environment,
    )


def _settings(stdout: str) -> dict[str, str]:
    (line,) = [line for line in stdout.splitlines() if line.startswith("SETTINGS ")]
    memory, threads, order = json.loads(line[len("SETTINGS "):])
    return {"memory_limit": memory, "threads": threads, "preserve_insertion_order": order}


def test_the_real_command_loads_with_the_repositorys_config_and_the_memory_bound(tmp_path: Path, emulator: Emulator) -> None:
    out = _run(tmp_path, emulator)
    assert out.returncode == 0, out.stderr[-3000:]
    # DuckDB reports 64MB as 61.0 MiB (MB = 1000^2 bytes, MiB = 1024^2)
    assert _settings(out.stdout) == {"memory_limit": "61.0 MiB", "threads": "1", "preserve_insertion_order": "False"}
    with duckdb.connect(str(tmp_path / "klaviyo.duckdb"), read_only=True) as db:
        loaded = {r[0] for r in db.execute("SELECT id FROM klaviyo_data.metrics").fetchall()}
    assert loaded == {m["id"] for m in emulator.account.records("metric")}
    assert parse_summary(out.stdout)["metrics"] == len(loaded)


def test_a_configured_global_config_overrides_the_bound_key_by_key(tmp_path: Path, emulator: Emulator) -> None:
    out = _run(tmp_path, emulator, DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG='{"memory_limit": "128MB"}')
    assert out.returncode == 0, out.stderr[-3000:]
    assert _settings(out.stdout) == {"memory_limit": "122.0 MiB", "threads": "1", "preserve_insertion_order": "False"}
