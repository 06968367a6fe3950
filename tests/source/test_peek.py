"""dlt's idioms outside a pipeline: iterating a report to peek at its rows, as dlt users do in a
notebook (`list(source.with_resources("profiles").add_limit(2))`), yields rows for every default
report (of the default revision, 2026-07-15: event_attributions come with the events' Arrow pages);
inside a pipeline the Arrow tables keep the package's load id."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt
import pyarrow as pa
import pytest
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext

from klaviyo import klaviyo_source
from klaviyo.settings import DEFAULT_REPORTS, report_table
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import query

UTC = UTC


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=5, profiles=120, events=800, days=10, campaigns=12, flows=4, lists=4, segments=4)) as emu:
        yield emu


@pytest.fixture
def no_active_pipeline() -> Iterator[None]:
    """Peeking happens before any pipeline exists (earlier tests of the session activated some)."""
    context = Container()[PipelineContext]
    context.deactivate()
    yield
    context.deactivate()


def _aggregate_queries(emu: Emulator) -> dict[str, Any]:
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=5)
    metric_id = next(iter(emu.account.records("metric")))["id"]
    return {"daily": {"data": {"type": "metric-aggregate", "attributes": {
        "metric_id": metric_id, "measurements": ["count"], "interval": "day",
        "filter": [f"greater-or-equal(datetime,{start:%Y-%m-%dT%H:%M:%S})", f"less-than(datetime,{end:%Y-%m-%dT%H:%M:%S})"]}}}}


def _rows(items: list[Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for item in items:
        rows.extend(item.to_pylist() if isinstance(item, pa.Table) else [item])
    return rows


@pytest.mark.parametrize("report", DEFAULT_REPORTS)
def test_each_default_report_yields_rows_outside_a_pipeline(emulator: Emulator, report: str, no_active_pipeline: None) -> None:
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, aggregate_queries=_aggregate_queries(emulator))
    child = report_table().children.get(report)
    # a table split off its parent's pages (campaign_messages, campaign_tags, event_attributions) comes with the parent
    resources = [report] if report in source.resources else list(child.parents if child else ())
    rows = _rows(list(source.with_resources(*resources).add_limit(2)))
    key = "query_name" if report == "metric_aggregates" else child.parent_key if child and child.parent_key else "id"
    assert [row for row in rows if row.get(key)], f"{report} yielded no row"
    assert not any("_dlt_load_id" in row for row in rows), "no load package exists outside a pipeline"
    assert not Container()[PipelineContext].is_active(), "peeking created no pipeline"


def test_a_resumable_backfill_peeks_without_a_pipeline(emulator: Emulator, no_active_pipeline: None) -> None:
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events", "profiles"],
                            start_date="2000-01-01T00:00:00Z", chunk_records=200)
    rows = _rows(list(source))
    assert {r["id"] for r in rows if "metric_id" in r} and {r["id"] for r in rows if "email" in r}


def test_delete_detection_peeks_without_a_pipeline_and_creates_none(emulator: Emulator, no_active_pipeline: None) -> None:
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["metrics"], detect_deletes=True)
    rows = _rows(list(source))
    assert {r["id"] for r in rows} == {m["id"] for m in emulator.account.records("metric")}
    assert not any(r.get("_klaviyo_deleted") for r in rows)
    assert not Container()[PipelineContext].is_active(), "no default pipeline was created"


def test_inside_a_pipeline_arrow_tables_carry_the_packages_load_id(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline: dlt.Pipeline = make_pipeline()
    info = pipeline.run(klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events", "profiles"],
                                       start_date="2000-01-01T00:00:00Z"))
    (load_id,) = info.loads_ids
    for table in ("events", "profiles"):
        assert query(pipeline, f"SELECT DISTINCT _dlt_load_id FROM {table}") == [(load_id,)]
