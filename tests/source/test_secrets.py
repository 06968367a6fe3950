"""The API key never appears in logs (DEBUG included), errors, the trace, state, schema, the
loaded data or printed URLs — the v1 API, which carries it in the query string, included."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, List

from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO

KEY = "pk_RecognisableSecret_7f3a9c"


def _files_containing(root: Path, needle: bytes) -> List[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue
    return hits


def _run_pipeline(tmp_path: Path, emu: Emulator, reports: str, extra_env: Any = None) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "RUNTIME__LOG_LEVEL": "DEBUG",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.05",
        "SOURCES__KLAVIYO__API_KEY": KEY,
        "SOURCES__KLAVIYO__BASE_URL": emu.base_url,
        **(extra_env or {}),
    }
    return subprocess.run(
        [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--reports", reports,
         "--start", "2000-01-01T00:00:00Z", "--pipelines-dir", str(tmp_path / "pipelines")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def test_the_key_is_nowhere_after_a_debug_run(tmp_path: Path) -> None:
    config = EmulatorConfig(seed=2, profiles=60, events=500, days=5, api_key=KEY, v1="live",
                            log_file=str(tmp_path / "emulator.jsonl"))
    with Emulator(config) as emu:
        out = _run_pipeline(tmp_path, emu, "events,profiles,metrics,campaigns_email,campaigns_v1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "DEBUG" in out.stderr or "DEBUG" in out.stdout, "the run logged at DEBUG level"
    assert KEY not in out.stdout and KEY not in out.stderr
    assert _files_containing(tmp_path, KEY.encode()) == []


def test_the_key_is_not_in_the_errors_of_a_rejected_key(tmp_path: Path) -> None:
    with Emulator(EmulatorConfig(seed=2, profiles=10, events=10, api_key="pk_other_accepted_key")) as emu:
        out = _run_pipeline(tmp_path, emu, "events")
    assert out.returncode == 1
    assert "Klaviyo rejected the API key (401 on /api/events)" in out.stderr
    assert KEY not in out.stdout + out.stderr
    assert _files_containing(tmp_path, KEY.encode()) == []
