"""Fixtures of the integration tests: the demo command as users run it, and the demo run
in-process with its emulator at hand as ground truth."""

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from klaviyo.settings import CURSOR_SAFETY_MARGIN, DEFAULT_REVISION, REVISIONS
from klaviyo_demo import DEMO_DUCKDB
from klaviyo_emulator import Emulator
from tests.conftest import REPO

UTC = UTC

# Resource tables and the emulator kind each one holds (campaigns split by channel), in the
# default revision.
TABLE_KINDS: dict[str, str] = {
    "campaigns_email": "campaign",
    "campaigns_sms": "campaign",
    "campaigns_push": "campaign",
    "templates": "template",
    "profiles": "profile",
    "events": "event",
    "metrics": "metric",
    "segments": "segment",
    "lists": "list",
    "flows": "flow",
}
SUMMARY_ROW = re.compile(r"^  (\S+)\s+(\d+) rows$")

POSTGRES_URL = os.environ.get("KLAVIYO_TEST_POSTGRES", "postgresql://klaviyo:klaviyo@127.0.0.1:5432/klaviyo_test")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """The test server's URL; skips locally (fails under CI=true) when none answers."""
    import psycopg2

    try:
        psycopg2.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg2.Error as error:
        shown = POSTGRES_URL.split("@")[-1]
        reason = f"no PostgreSQL at {shown} ({str(error).strip()}); start one with `bash .ci/postgres.sh` (root) or set KLAVIYO_TEST_POSTGRES"
        if _in_ci():
            pytest.fail("CI=true: " + reason)
        pytest.skip(reason)
    yield POSTGRES_URL


def isolated_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a command run in `workdir`: dlt's global dir and HOME kept there, and
    the virtualenv's scripts on PATH as after `activate` (`show` starts `marimo` by name)."""
    env = dict(os.environ)
    env.update(HOME=str(workdir), DLT_DATA_DIR=str(workdir / "dlt_data"), RUNTIME__DLTHUB_TELEMETRY="false")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def parse_summary(stdout: str) -> dict[str, int]:
    """Rows per table from the summary `klaviyo_pipeline.py` prints last (total left out)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Loaded into ")]
    assert starts, f"no summary in the output:\n{stdout[-2000:]}"
    rows: dict[str, int] = {}
    for line in lines[starts[-1] + 1:]:
        match = SUMMARY_ROW.match(line)
        if match and match.group(1) != "total":
            rows[match.group(1)] = int(match.group(2))
    return rows


@dataclass
class CliDemo:
    """`python klaviyo_pipeline.py --demo` run as a subprocess in its own directory."""

    workdir: Path
    stdout: str
    stderr: str

    @property
    def duckdb(self) -> Path:
        return self.workdir / DEMO_DUCKDB

    @property
    def pipelines_dir(self) -> Path:
        return self.workdir / "pipelines"

    @property
    def schema_file(self) -> Path:
        return self.workdir / "export" / "klaviyo.schema.yaml"


@pytest.fixture(scope="session")
def cli_demo(tmp_path_factory: pytest.TempPathFactory) -> CliDemo:
    """The demo command, once per session, with the log progress display and the schema export."""
    workdir = tmp_path_factory.mktemp("cli_demo")
    out = subprocess.run(
        [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--demo", "--pipelines-dir", "pipelines",
         "--export-schema-path", "export", "--progress", "log"],
        cwd=workdir, capture_output=True, text=True, timeout=600, env=isolated_env(workdir),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return CliDemo(workdir, out.stdout, out.stderr)


@dataclass
class DemoRun:
    """The demo run in-process through `klaviyo_pipeline.main`, with its emulator kept."""

    emulator: Emulator
    before: datetime
    after: datetime
    stdout: str
    workdir: Path

    @property
    def summary(self) -> dict[str, int]:
        return parse_summary(self.stdout)


def run_demo(workdir: Path, args: Sequence[str], env: Mapping[str, str] | None = None) -> DemoRun:
    """Runs `klaviyo_pipeline.main(["--demo", *args])` in `workdir`, capturing the emulator
    the demo starts (its account is the ground truth) and the printed output."""
    import klaviyo_demo
    import klaviyo_pipeline

    emulators: list[Emulator] = []

    class CapturedEmulator(Emulator):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            emulators.append(self)

    out = io.StringIO()
    environ = dict(os.environ)  # the command sets process-wide variables; later tests must not see them
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(klaviyo_demo, "Emulator", CapturedEmulator)
            patch.chdir(workdir)
            os.environ.update(env or {})
            before = datetime.now(UTC)
            with redirect_stdout(out):
                code = klaviyo_pipeline.main(["--demo", "--pipelines-dir", str(workdir / "pipelines"), *args])
            after = datetime.now(UTC)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    assert code == 0, out.getvalue()[-3000:]
    assert len(emulators) == 1
    return DemoRun(emulators[0], before, after, out.getvalue(), workdir)


@pytest.fixture(scope="session")
def duckdb_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """The demo loaded into `klaviyo_demo.duckdb` in-process, with its emulator."""
    workdir = tmp_path_factory.mktemp("duckdb_demo")
    yield run_demo(workdir, ["--progress", "none"])


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


CHANNELS = {"campaigns_email": "email", "campaigns_sms": "sms", "campaigns_push": "mobile_push"}


def expected_ids(emu: Emulator, table: str, before: datetime, after: datetime) -> tuple[set, set]:
    """Ids a default demo run must load into `table` (`surely`) and may load (`at_most`):
    records whose cursor lies in the report's default backfill up to the run's start."""
    report = REVISIONS[DEFAULT_REVISION].reports[table]
    channel = {"channel": CHANNELS[table]} if table in CHANNELS else {}
    surely, at_most = set(), set()
    for record in emu.account.records(TABLE_KINDS[table], revision=DEFAULT_REVISION, **channel):
        if report.cursor is None:
            surely.add(record["id"])
            at_most.add(record["id"])
            continue
        value = _parse(record["attributes"][report.cursor])
        backfill = report.backfill or timedelta(days=365 * 100)
        if after - backfill <= value < before - CURSOR_SAFETY_MARGIN:
            surely.add(record["id"])
        if before - backfill <= value < after:
            at_most.add(record["id"])
    return surely, at_most


def suppression_counts(emu: Emulator, profile_ids: set) -> dict[str, int]:
    """Rows of the two profile child tables for the given profiles."""
    counts = {"suppression": 0, "list_suppressions": 0}
    for profile in emu.account.records("profile"):
        if profile["id"] not in profile_ids:
            continue
        marketing = (((profile["attributes"].get("subscriptions") or {}).get("email") or {}).get("marketing") or {})
        for key in counts:
            counts[key] += len(marketing.get(key) or [])
    return {f"profiles__subscriptions__email__marketing__{k}": n for k, n in counts.items()}
