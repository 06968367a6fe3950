"""The no-key demo: the local Klaviyo emulator, started in-process with its seed account.

Used by `python klaviyo_pipeline.py --demo`; the source itself never imports the emulator.
The demo has its own pipeline, dataset and DuckDB file, so that a real account loaded later
from the same directory never continues the demo's cursors or merges into its tables.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dlt

from klaviyo_emulator import Emulator, EmulatorConfig

DEMO_METRIC = "Placed Order"
DEMO_PIPELINE = "klaviyo_demo"
DEMO_DATASET = "klaviyo_demo_data"
DEMO_DUCKDB = "klaviyo_demo.duckdb"  # in the current directory


@dataclass(frozen=True)
class Demo:
    """What the pipeline needs to read the emulator."""

    base_url: str
    api_key: str
    aggregate_queries: dict[str, Any]


def demo_queries(emulator: Emulator, days: int = 30) -> dict[str, Any]:
    """Two example aggregate queries over the demo account: daily orders (count, revenue,
    buyers) and daily orders by the flow they are attributed to ($attributed_flow)."""
    metrics = {m["attributes"]["name"]: m["id"] for m in emulator.account.records("metric")}
    metric_id = metrics.get(DEMO_METRIC) or next(iter(metrics.values()))
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    start = end - timedelta(days=days + 1)
    bounds = [
        f"greater-or-equal(datetime,{start:%Y-%m-%dT%H:%M:%S})",
        f"less-than(datetime,{end:%Y-%m-%dT%H:%M:%S})",
    ]

    def body(measurements: Any, by: Any = None) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "metric_id": metric_id, "measurements": measurements, "interval": "day",
            "filter": bounds, "timezone": "UTC",
        }
        if by:
            attributes["by"] = by
        return {"data": {"type": "metric-aggregate", "attributes": attributes}}

    return {
        "orders_daily": body(["count", "sum_value", "unique"]),
        "orders_by_flow_daily": body(["count"], ["$attributed_flow"]),
    }


def demo_pipeline(**settings: Any) -> dlt.Pipeline:
    """The demo's pipeline (`DEMO_PIPELINE`), with `dlt.pipeline`'s other arguments."""
    return dlt.pipeline(pipeline_name=DEMO_PIPELINE, **settings)


@contextmanager
def start_demo(**config: Any) -> Iterator[Demo]:
    """Starts the emulator with its demo account; stops it on exit."""
    with Emulator(EmulatorConfig(**config)) as emulator:
        yield Demo(emulator.base_url, emulator.api_key, demo_queries(emulator))
