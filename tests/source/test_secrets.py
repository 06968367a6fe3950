"""The API key never appears in logs (DEBUG included), errors, the trace, state, schema, the
loaded data or printed URLs — the v1 API, which carries it in the query string, included."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from klaviyo import klaviyo_source
from klaviyo.client import KlaviyoApi
from klaviyo.options import validate_options
from klaviyo.ratelimit import RateLimiter
from klaviyo.settings import ALL_REPORT_NAMES
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO

KEY = "pk_RecognisableSecret_7f3a9c"


def _files_containing(root: Path, needle: bytes) -> list[str]:
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
    assert "Klaviyo rejected the API key (401 on /api/accounts)" in out.stderr  # the first request: which account
    assert KEY not in out.stdout + out.stderr
    assert _files_containing(tmp_path, KEY.encode()) == []


def test_no_repr_of_what_holds_the_key_shows_it() -> None:
    base_url = "http://127.0.0.1:9"  # nothing is sent: the objects are only built
    api = KlaviyoApi(KEY, base_url, "2023-10-15", RateLimiter.for_account(base_url, KEY))
    options = validate_options(
        api_key=KEY, base_url=base_url, revision="2023-10-15", reports=None, start_date=None,
        end_date=None, lookback_hours=0, workers=1, min_window_minutes=None,
    )
    source = klaviyo_source(api_key=KEY, base_url=base_url, reports=list(ALL_REPORT_NAMES), detect_deletes=True,
                            aggregate_queries={"q": {"data": {"attributes": {
                                "metric_id": "m", "measurements": ["count"],
                                "filter": ["greater-or-equal(datetime,2026-01-01T00:00:00)", "less-than(datetime,2026-02-01T00:00:00)"]}}}})
    held = [api, api._auth, api._v1_auth, api.limiter, options, source, *source.resources.values()]
    assert options.api_key == KEY
    shown = [type(obj).__name__ for obj in held if KEY in repr(obj) or KEY in str(obj)]
    assert shown == []
    assert repr(api) == f"KlaviyoApi(base_url={base_url!r}, revision='2023-10-15')"
