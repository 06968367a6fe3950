"""A pipeline's state belongs to one Klaviyo account: the source records the account on the first
run and refuses, before any page is read, to continue the state against another account (by
its id from /api/accounts, or by its metric ids for a key without accounts:read). The tests that
look at the requests run under both API revisions (the path is each revision's); the others
under the default."""

import logging
import subprocess
import sys
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

import klaviyo_pipeline
from klaviyo import KlaviyoConfigError, account, klaviyo_source
from klaviyo.account import STATE_KEY
from klaviyo.settings import DEFAULT_REVISION, REVISIONS
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import column, query

METRICS_ONLY = "pk_metrics_only_key"  # no accounts:read: the account is known by its metric ids
EVENTS_ONLY = "pk_events_only_key"  # neither accounts:read nor metrics:read: not checked
SCOPES = {METRICS_ONLY: frozenset({"metrics:read"}), EVENTS_ONLY: frozenset({"events:read"})}
DLT = str(Path(sys.executable).with_name("dlt"))


def _account(seed: int) -> EmulatorConfig:
    return EmulatorConfig(seed=seed, profiles=30, events=300, days=5, key_scopes=SCOPES)


@pytest.fixture(scope="module")
def first() -> Iterator[Emulator]:
    with Emulator(_account(42)) as emu:
        yield emu


@pytest.fixture(scope="module")
def second() -> Iterator[Emulator]:
    with Emulator(_account(43)) as emu:
        yield emu


def _run(pipeline: dlt.Pipeline, emu: Emulator, key: str = "", reports: str = "metrics,events", revision: str = DEFAULT_REVISION) -> None:
    pipeline.run(klaviyo_source(
        api_key=key or emu.api_key, base_url=emu.base_url, reports=reports, start_date="2000-01-01T00:00:00Z", revision=revision,
    ))


@pytest.fixture
def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The account answers are kept per process and key, whatever the revision: each test that
    counts the account requests starts as a new process would."""
    monkeypatch.setattr(account, "_answers", {})


def _refusal(error: BaseException) -> KlaviyoConfigError:
    seen: Any = error
    while seen is not None and not isinstance(seen, KlaviyoConfigError):
        seen = seen.__cause__ or seen.__context__
    assert seen is not None, f"not refused as bad input: {error!r}"
    return seen


def _written(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """What a run could have changed: the source state, every table's ids, the loads."""
    tables = {t: sorted(column(pipeline, t)) for t in pipeline.default_schema.data_table_names()}
    loads = query(pipeline, "SELECT load_id FROM _dlt_loads ORDER BY load_id")
    return {"state": deepcopy(pipeline.state["sources"]), "tables": tables, "loads": loads}


def _paths(emu: Emulator) -> list[str]:
    return [r.path for r in emu.request_log]


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_the_first_run_records_the_account_which_later_runs_of_it_pass(first: Emulator, make_pipeline: Any, new_process: None, revision: str) -> None:
    pipeline = make_pipeline("klaviyo_same_account")
    first.clear_log()
    _run(pipeline, first, revision=revision)
    _run(pipeline, first, revision=revision)
    assert pipeline.state["sources"]["klaviyo"][STATE_KEY] == {"id": first.account.account_id}
    assert set(column(pipeline, "metrics")) == {m["id"] for m in first.account.records("metric")}
    # a key belongs to one account for good: asked once per process (tier XS: 15 a minute)
    path = REVISIONS[revision].account.path  # 2023-10-15: /api/accounts/, 2026-07-15: /api/accounts
    assert _paths(first).count(path) == 1 and [p for p in _paths(first) if p.startswith("/api/accounts")] == [path]


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_another_accounts_key_is_refused_with_one_line_before_anything_is_read(
    first: Emulator, second: Emulator, make_pipeline: Any, new_process: None, revision: str
) -> None:
    pipeline = make_pipeline("klaviyo_switched_account")
    _run(pipeline, first, revision=revision)
    before = _written(pipeline)
    second.clear_log()
    with pytest.raises(PipelineStepFailed) as raised:
        _run(pipeline, second, revision=revision)
    message = str(_refusal(raised.value))
    assert message.startswith(
        f"This pipeline's state was read from Klaviyo account {first.account.account_id}, but the API key belongs to account"
        f" {second.account.account_id}; "
    )
    assert "dlt pipeline klaviyo_switched_account drop --drop-all --state-paths account" in message
    assert "\n" not in message and second.api_key not in message
    assert _paths(second) == [REVISIONS[revision].account.path], "no page of the other account was read"
    assert _written(pipeline) == before


def test_the_command_prints_the_refusal_and_the_named_fix_lets_the_new_account_in(
    first: Emulator, second: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--reports", "metrics", "--pipelines-dir", str(tmp_path / "pipelines"), "--progress", "none"]
    for emu, code in ((first, 0), (second, 1)):
        monkeypatch.setenv("SOURCES__KLAVIYO__API_KEY", emu.api_key)
        monkeypatch.setenv("SOURCES__KLAVIYO__BASE_URL", emu.base_url)
        assert klaviyo_pipeline.main(argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: This pipeline's state was read from Klaviyo account"), lines
    fix = lines[0].rsplit("start this one over: ", 1)[1]
    assert fix == "dlt pipeline klaviyo drop --drop-all --state-paths account"
    # the fix as printed, with the pipelines dir this test uses (--yes: confirmed as a user would)
    command = [DLT, "--yes", "pipeline", "--pipelines-dir", str(tmp_path / "pipelines"), *fix.split()[2:]]
    dropped = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert dropped.returncode == 0, dropped.stdout[-1500:] + dropped.stderr[-1500:]
    assert klaviyo_pipeline.main(argv) == 0
    pipeline = dlt.attach("klaviyo", pipelines_dir=str(tmp_path / "pipelines"))
    assert pipeline.state["sources"]["klaviyo"][STATE_KEY] == {"id": second.account.account_id}
    assert set(column(pipeline, "metrics")) == {m["id"] for m in second.account.records("metric")}


def test_a_key_without_accounts_read_is_checked_by_the_accounts_metric_ids(first: Emulator, second: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline("klaviyo_metric_ids")
    _run(pipeline, first, METRICS_ONLY, "metrics")
    stored = pipeline.state["sources"]["klaviyo"][STATE_KEY]
    assert stored == {"metric_ids": sorted(m["id"] for m in first.account.records("metric"))}
    _run(pipeline, first, reports="metrics")  # the full key of the same account: same metrics
    assert pipeline.state["sources"]["klaviyo"][STATE_KEY] == {**stored, "id": first.account.account_id}
    before = _written(pipeline)
    with pytest.raises(PipelineStepFailed) as raised:
        _run(pipeline, second, METRICS_ONLY, "metrics")
    message = str(_refusal(raised.value))
    assert message.startswith("This pipeline's state was read from another Klaviyo account than the API key's (none of its metric ids")
    assert _written(pipeline) == before


def test_a_key_that_can_read_neither_loads_with_a_warning(first: Emulator, make_pipeline: Any, caplog: pytest.LogCaptureFixture) -> None:
    pipeline = make_pipeline("klaviyo_unchecked")
    _run(pipeline, first, reports="events")
    with caplog.at_level(logging.WARNING, logger="klaviyo.account"):
        _run(pipeline, first, EVENTS_ONLY, "events")
    assert any("is not checked" in r.getMessage() for r in caplog.records if r.name == "klaviyo.account")
    assert pipeline.state["sources"]["klaviyo"][STATE_KEY] == {"id": first.account.account_id}
