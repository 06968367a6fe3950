"""Delete detection against the emulator: after `emu.mutate` deletes records, the next
detecting run flags exactly them (or removes them with hard deletes); nothing is flagged
without detection, and the id scans are sparse."""

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest

from klaviyo import KlaviyoConfigError, klaviyo_source
from klaviyo.settings import DEFAULT_REVISION, REVISIONS
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO, column, query

UTC = UTC
START = "2000-01-01T00:00:00Z"
# Table -> (emulator kind, channel of the campaigns); every dimension table but the exclusions.
TABLES = {
    "profiles": ("profile", None),
    "campaigns_email": ("campaign", "email"),
    "campaigns_sms": ("campaign", "sms"),
    "flows": ("flow", None),
    "lists": ("list", None),
    "segments": ("segment", None),
    "templates": ("template", None),
    "metrics": ("metric", None),
}
REPORTS = [*TABLES, "global_exclusions"]
# 2026-07-15 adds the push campaigns.
TABLES_2026 = {**TABLES, "campaigns_push": ("campaign", "mobile_push")}
CONFIG = dict(profiles=120, events=20, campaigns=12, flows=3, lists=4, segments=4, templates=6, tags=3)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=9, now=datetime.now(UTC) - timedelta(hours=1), **CONFIG)) as emu:
        yield emu


def run(emu: Emulator, pipeline: dlt.Pipeline, reports: list[str] = REPORTS, revision: str = DEFAULT_REVISION, **kwargs: Any) -> None:
    emu.clear_log()
    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports=reports, start_date=START, revision=revision, **kwargs)
    pipeline.run(source).raise_on_failed_jobs()


def served(emu: Emulator, table: str, revision: str = DEFAULT_REVISION) -> set[str]:
    kind, channel = TABLES_2026[table]
    return {r["id"] for r in emu.account.records(kind, revision=revision, **({"channel": channel} if channel else {}))}


def flagged(pipeline: dlt.Pipeline, table: str) -> dict[str, Any]:
    """Id -> `_klaviyo_deleted_at` of the rows flagged deleted (none while the table has no flag)."""
    if "_klaviyo_deleted" not in pipeline.default_schema.get_table_columns(table):
        return {}
    rows = query(pipeline, f"SELECT id, _klaviyo_deleted_at FROM {table} WHERE _klaviyo_deleted")
    return dict(rows)


def scans(emu: Emulator) -> list[Any]:
    """Logged requests that are id scans (they ask for the sparse fieldset of a row's `id_scan`,
    in any revision's table)."""
    id_scans = [table.row(name).id_scan for table in REVISIONS.values() for name in table.names]
    fieldsets = {k: v for scan in id_scans for k, v in scan.items() if k.startswith("fields[")}
    return [r for r in emu.request_log if any(r.query.get(k) == [v] for k, v in fieldsets.items())]


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_deleted_records_are_flagged_after_the_next_detecting_run(emulator: Emulator, make_pipeline: Any, revision: str) -> None:
    tables = {t: kind for t, kind in TABLES_2026.items() if t in REVISIONS[revision].reports}
    reports = [*tables, "global_exclusions"]
    pipeline = make_pipeline()
    run(emulator, pipeline, reports, revision, detect_deletes=True)
    assert not scans(emulator), "nothing is scanned before anything is loaded"
    before = {table: set(column(pipeline, table)) for table in tables}
    assert all(before.values())

    changes = emulator.mutate(seed=4, create=0, update=0, delete=2)
    run(emulator, pipeline, reports, revision, detect_deletes=True)
    assert {r.path.rstrip("/") for r in scans(emulator)} == {REVISIONS[revision].reports[t].path.rstrip("/") for t in tables}
    assert {r.headers["revision"] for r in scans(emulator)} == {revision}
    for table, (kind, _) in tables.items():
        gone = before[table] - served(emulator, table, revision)
        assert gone == set(changes[kind]["deleted"]) & before[table], table
        assert set(flagged(pipeline, table)) == gone, table
        assert set(column(pipeline, table)) == before[table], "soft delete keeps the rows"
    assert any(flagged(pipeline, t) for t in tables)
    names = query(pipeline, "SELECT count(*) FROM templates WHERE _klaviyo_deleted AND name IS NOT NULL AND html IS NOT NULL")
    assert names == [(2,)], "a flagged row keeps its columns"
    for request in scans(emulator):
        assert "additional-fields[profile]" not in request.query and "include" not in request.query

    stamps = {table: flagged(pipeline, table) for table in tables}
    run(emulator, pipeline, reports, revision, detect_deletes=True)
    assert {table: flagged(pipeline, table) for table in tables} == stamps, "flags and their times stay"


def test_suppressions_that_disappear_are_flagged_in_global_exclusions(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    run(emulator, pipeline, ["global_exclusions"], detect_deletes=True)
    suppressed = set(column(pipeline, "global_exclusions"))
    deleted = emulator.mutate(seed=2, create=0, update=0, delete=40)["profile"]["deleted"]
    assert suppressed & set(deleted), "some suppressed profiles are deleted"
    run(emulator, pipeline, ["global_exclusions"], detect_deletes=True)
    assert set(flagged(pipeline, "global_exclusions")) == suppressed & set(deleted)


def test_nothing_is_flagged_or_scanned_without_detection(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    run(emulator, pipeline)
    emulator.mutate(seed=4, create=0, update=0, delete=2)
    run(emulator, pipeline)
    assert not scans(emulator)
    for table in TABLES:
        columns = pipeline.default_schema.get_table_columns(table)
        assert "_klaviyo_deleted" not in columns, table


def test_hard_deletes_remove_the_rows(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    reports = ["lists", "templates", "profiles"]
    run(emulator, pipeline, reports, detect_deletes=True, hard_deletes=True)
    changes = emulator.mutate(seed=4, create=0, update=0, delete=2)
    run(emulator, pipeline, reports, detect_deletes=True, hard_deletes=True)
    for table in reports:
        kind = TABLES[table][0]
        ids = column(pipeline, table)
        assert set(ids) == served(emulator, table) and len(ids) == len(set(ids)), table
        assert not set(ids) & set(changes[kind]["deleted"])


def test_hard_deletes_need_detection_and_events_are_never_scanned(emulator: Emulator) -> None:
    with pytest.raises(KlaviyoConfigError, match="detect_deletes"):
        klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, hard_deletes=True)
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events", "lists"], detect_deletes=True)
    assert set(source.resources) == {"events", "lists", "lists_deletes"}


def test_the_detect_deletes_flag_of_the_command(emulator: Emulator, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SOURCES__KLAVIYO__API_KEY": emulator.api_key,
           "SOURCES__KLAVIYO__BASE_URL": emulator.base_url, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    command = [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--reports", "lists", "--detect-deletes",
               "--pipelines-dir", str(tmp_path / "p"), "--progress", "none"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    (gone,) = emulator.mutate(seed=4, create=0, update=0, delete=1)["list"]["deleted"]
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    import duckdb

    with duckdb.connect(str(tmp_path / "klaviyo.duckdb")) as db:
        rows = db.execute("SELECT id FROM klaviyo_data.lists WHERE _klaviyo_deleted").fetchall()
    assert rows == [(gone,)]
