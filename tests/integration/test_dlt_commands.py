"""dlt's own commands on the pipeline the demo left behind: `dlt pipeline klaviyo_demo info`,
`trace`, `schema` and `show` (the dashboard, started headless and polled over HTTP)."""

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import yaml

from klaviyo_demo import DEMO_DATASET, DEMO_PIPELINE
from tests.conftest import REPO, stop_process_group
from tests.integration.conftest import CliDemo, isolated_env, parse_summary

DLT = str(Path(sys.executable).with_name("dlt"))


def dlt_pipeline(demo: CliDemo, *args: str) -> str:
    """Output of `dlt pipeline --pipelines-dir <demo's> klaviyo_demo <args>` (must succeed)."""
    out = subprocess.run(
        [DLT, "--non-interactive", "pipeline", "--pipelines-dir", str(demo.pipelines_dir), DEMO_PIPELINE, *args],
        cwd=demo.workdir, capture_output=True, text=True, timeout=120, env=isolated_env(demo.workdir),
    )
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    return out.stdout


def _data_tables(demo: CliDemo) -> list[str]:
    with duckdb.connect(str(demo.duckdb), read_only=True) as db:
        return sorted(r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
            " AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'", [DEMO_DATASET]).fetchall())


@pytest.mark.parametrize("activated", [False, True], ids=["as after README's commands", "virtualenv activated"])
def test_the_printed_inspect_command_works_as_printed(tmp_path: Path, activated: bool) -> None:
    """README's commands leave the virtualenv unactivated, so `dlt` is on no PATH: the closing
    `Inspect:` line must be a command that runs as printed, and its advice for `show` (which
    starts `marimo` by name) must put the virtualenv's dlt and marimo on PATH."""
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv, target_is_directory=True)
    env = isolated_env(tmp_path)
    path = [p for p in env["PATH"].split(os.pathsep) if p and Path(p).resolve() != (venv / "bin").resolve()]
    env["PATH"] = os.pathsep.join([str(tmp_path / ".venv" / "bin")] * activated + path)
    out = subprocess.run(
        [".venv/bin/python", str(REPO / "klaviyo_pipeline.py"), "--demo", "--reports", "metrics", "--pipelines-dir", "p", "--progress", "none"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    hint = re.search(r"^Inspect: (.+?)   \((.+)\)$", out.stdout, re.M)
    assert hint, out.stdout[-1000:]
    assert hint.group(1) == ("dlt" if activated else ".venv/bin/dlt") + " pipeline --pipelines-dir p klaviyo_demo info"
    info = subprocess.run(["bash", "-c", hint.group(1)], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert info.returncode == 0, info.stdout[-1000:] + info.stderr[-1000:]
    assert info.stdout.startswith("Found pipeline klaviyo_demo in p\n") and "Has 1 completed load packages" in info.stdout
    if activated:
        assert hint.group(2) == "or trace, schema, show"
        return
    activate = re.fullmatch(r"or trace, schema; for show, the dashboard, first activate the virtualenv: (\. \S+)", hint.group(2))
    assert activate, hint.group(2)
    found = subprocess.run(["bash", "-c", f"{activate.group(1)} && command -v dlt marimo"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
    assert [Path(p).resolve() for p in found.stdout.split()] == [(venv / "bin" / name).resolve() for name in ("dlt", "marimo")], found


def test_info_shows_the_dataset_the_resources_and_the_loaded_package(cli_demo: CliDemo) -> None:
    out = dlt_pipeline(cli_demo, "info")
    assert f"Found pipeline {DEMO_PIPELINE} in {cli_demo.pipelines_dir}" in out
    assert f"dataset_name: {DEMO_DATASET}" in out and "destination_type: dlt.destinations.duckdb" in out
    resources = dict(re.findall(r"^(\w+) with (\d+) table\(s\)", out, re.M))
    assert {"events", "profiles", "metrics", "metric_aggregates"} <= set(resources)
    assert sum(map(int, resources.values())) == len(_data_tables(cli_demo))
    assert "Has 1 completed load packages" in out


def test_info_verbose_shows_the_incremental_cursor_at_the_newest_loaded_event(cli_demo: CliDemo) -> None:
    out = dlt_pipeline(cli_demo, "info", "-v")
    state = json.loads(out.split("sources:", 1)[1].split("Local state:", 1)[0])
    cursor = state["klaviyo"]["resources"]["events"]["incremental"]["datetime"]
    with duckdb.connect(str(cli_demo.duckdb), read_only=True) as db:
        (newest,) = db.execute(f"SELECT max(datetime) FROM {DEMO_DATASET}.events").fetchone()
    assert datetime.fromisoformat(cursor["last_value"]) == newest


def test_trace_shows_the_completed_run_with_the_rows_of_every_table(cli_demo: CliDemo) -> None:
    out = dlt_pipeline(cli_demo, "trace")
    assert re.search(r"Run started at .* and COMPLETED in [0-9.]+ seconds with 4 steps", out)
    for step in ("extract", "normalize", "load"):
        assert f"Step {step} COMPLETED" in out
    traced = {t: int(n) for t, n in re.findall(r"^- (\w+): (\d+) row\(s\)$", out, re.M) if not t.startswith("_dlt")}
    assert traced == parse_summary(cli_demo.stdout)
    assert f"duckdb:///{cli_demo.duckdb.resolve()}" in out


def test_schema_prints_the_yaml_schema_of_every_table(cli_demo: CliDemo) -> None:
    schema = yaml.safe_load(dlt_pipeline(cli_demo, "schema", "--format", "yaml").split("Found schema with name klaviyo", 1)[1])
    assert schema["name"] == "klaviyo"
    assert set(_data_tables(cli_demo)) <= set(schema["tables"])
    assert schema["tables"]["events"]["columns"]["event_properties"]["data_type"] == "json"
    assert schema["tables"]["events"]["columns"]["id"]["primary_key"] is True


def _read_lines(stream, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    for line in iter(stream.readline, ""):
        lines.append(line)


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except Exception:
        return None


def test_show_serves_the_dashboard_over_http(cli_demo: CliDemo) -> None:
    """`show` is a blocking marimo server (port 2718, or the next free one; the command has
    no port option): read the URL it prints, poll it until HTTP 200, then stop it."""
    proc = subprocess.Popen(
        [DLT, "--non-interactive", "pipeline", "--pipelines-dir", str(cli_demo.pipelines_dir), DEMO_PIPELINE, "show"],
        cwd=cli_demo.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, env=isolated_env(cli_demo.workdir), start_new_session=True,
    )
    lines: list[str] = []
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    status, url = None, None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and status != 200:
            output = "".join(lines)
            assert "Install dlt[hub]" not in output, "the dashboard extra is missing: " + output
            found = re.search(r"URL: (http://\S+)", output)
            if found:
                url = found.group(1)
                status = _http_status(url)
            elif proc.poll() is not None:
                break
            time.sleep(0.5)
        assert status == 200, f"show did not serve (exit {proc.poll()}, url {url}):\n{''.join(lines)[-3000:]}"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert "marimo" in response.read().decode("utf-8", "replace").lower()
    finally:
        stop_process_group(proc, 15)
