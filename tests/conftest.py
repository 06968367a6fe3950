"""Shared fixtures: an in-process Klaviyo emulator and throw-away dlt pipelines into DuckDB."""

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import dlt
import pytest

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
# Tests exercise retries: keep the waits between attempts short.
os.environ.setdefault("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.05")
os.environ.setdefault("RUNTIME__REQUEST_MAX_RETRY_DELAY", "3")

REPO = Path(__file__).resolve().parents[1]
# Klaviyo's OpenAPI documents, vendored in the repository (origin and license in its README.md).
SPECS_DIR = REPO / "klaviyo_emulator" / "specs"
SPEC_REVISION = "2023-10-15"


def spec_path(revision: str = SPEC_REVISION) -> Path:
    """Path of Klaviyo's OpenAPI document of `revision` (YYYY-MM-DD) inside the repository."""
    return SPECS_DIR / f"openapi-{revision}.json"


SPEC_PATH = spec_path()


@cache
def _read_spec(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_spec(revision: str = SPEC_REVISION) -> dict[str, Any]:
    """The parsed OpenAPI document of `revision`, read once. When the file is absent (a partial
    checkout) the calling test skips with the path it looked at, or fails under CI=true, where
    the repository's own copy must be there."""
    path = spec_path(revision)
    if not path.exists():
        reason = f"Klaviyo OpenAPI spec {revision} not found at {path} (it is vendored in klaviyo_emulator/specs/)"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail("CI=true: " + reason)
        pytest.skip(reason)
    return _read_spec(path)


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Callable[..., dlt.Pipeline]:
    """Builds a pipeline with its own working dir and DuckDB file under tmp_path."""

    def make(name: str = "klaviyo_test", dataset: str = "klaviyo_data") -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=name,
            destination=dlt.destinations.duckdb(str(tmp_path / f"{name}.duckdb")),
            dataset_name=dataset,
            pipelines_dir=str(tmp_path / "pipelines"),
        )

    return make


def query(pipeline: dlt.Pipeline, sql: str, *args: Any) -> list[tuple]:
    """Rows of a SQL query on the pipeline's dataset."""
    with pipeline.sql_client() as client:
        return [tuple(r) for r in client.execute_sql(sql, *args)]


def column(pipeline: dlt.Pipeline, table: str, name: str = "id") -> list[Any]:
    """All values of one column of a loaded table."""
    return [r[0] for r in query(pipeline, f"SELECT {name} FROM {table}")]


def table_exists(pipeline: dlt.Pipeline, table: str) -> bool:
    return table in pipeline.default_schema.data_table_names()


def ids_by_kind(records: Iterator[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


Document = dict[str, Any]


def edit_pages(monkeypatch: pytest.MonkeyPatch, make_editor: Callable[[], Callable[[Document], Document]]) -> None:
    """Passes every page the source's client reads through an editor before the source sees
    it (a wire the emulator cannot fake); each paginated read gets a fresh editor from
    `make_editor`, so an editor may remember the read's earlier pages."""
    from klaviyo.client import KlaviyoApi

    paginate = KlaviyoApi.paginate

    def edited(self: KlaviyoApi, *args: Any, **kwargs: Any) -> Iterator[Document]:
        editor = make_editor()
        for document in paginate(self, *args, **kwargs):
            yield editor(document)

    monkeypatch.setattr(KlaviyoApi, "paginate", edited)


def stop_process_group(proc: "subprocess.Popen[Any]", grace_s: float) -> None:
    """Ends a server started in its own process group (`start_new_session=True`): SIGTERM, then
    SIGKILL if it is still there after `grace_s` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
