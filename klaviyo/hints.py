"""Column types beyond what dlt infers, and the opt-in flattening of free-form properties.

dlt types most columns from the data (and detects ISO timestamps); the report table's column
types fix the columns where inference would be wrong or unstable, and this module turns a
report's row into its column hints for the run's options:

- `column_types` (e.g. profile coordinates, which Klaviyo sends as a string or a number, as
  `double`);
- `flat_column_types`: money (`$value`, prices) as `decimal`, never floating point, once
  free-form properties are flattened;
- `predictive`: predictive-analytics numbers (CLV as `decimal`) and dates, which exist only
  when that option is on.

Free-form objects (`profiles.properties`, `events.event_properties`) and profiles' suppression
lists are JSON columns by default; `flatten_properties=True` reads those reports as row dicts
and lets dlt flatten them into `properties__*` / `event_properties__*` columns and nested child
tables (`profiles__subscriptions__email__marketing__suppression`, ...).
"""

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import cast

from dlt.common.schema.typing import TDataType, TTableSchemaColumns

from .settings import SUPPRESSION_LISTS, Report

TColumns = TTableSchemaColumns

# Objects whose keys are chosen by each Klaviyo account (custom properties).
FREE_FORM_COLUMNS = ("properties", "event_properties")


def report_for_run(report: Report, predictive_analytics: bool, flatten_properties: bool) -> Report:
    """The report as this run reads it: with predictive analytics, a report that has them
    (`Report.predictive`: profiles) asks for them too, at the tier Klaviyo then serves it (M);
    column types extended by the run's options; read as row dicts with everything left to
    dlt's flattening when `flatten_properties`.

    Args:
        report: The report's row in the report table.
        predictive_analytics: Whether reports are read with their predictive analytics.
        flatten_properties: Whether free-form properties are flattened into columns.
    """
    types: dict[str, str] = dict(report.column_types)
    predictive = report.predictive
    if predictive is not None and predictive_analytics:
        types.update(predictive.column_types)
        params = dict(report.params)
        for key, value in predictive.params.items():
            params[key] = f"{params[key]},{value}" if params.get(key) else value
        report = replace(report, tier=predictive.tier or report.tier, params=params)
    if flatten_properties:
        types.update(report.flat_column_types)
    report = replace(report, column_types=types)
    if not flatten_properties:
        return report
    # Arrow pages carry JSON columns as text, which dlt cannot flatten, so the report is read
    # as row dicts (slower per row; opt-in), which dlt flattens whole, lists into child tables.
    kept = tuple(c for c in report.json_columns if c not in (*FREE_FORM_COLUMNS, *SUPPRESSION_LISTS))
    if kept == report.json_columns:
        return report
    return replace(report, json_columns=kept, row_format="dict", dlt_ids=False)


def dimension_columns(dimensions: Iterable[str]) -> TColumns:
    """Text hints for the `by` dimension columns of metric aggregates, so a dimension that
    is empty in one load (e.g. `$flow` on events no flow sent) still gets a typed column."""
    return {dimension: {"data_type": "text"} for dimension in dict.fromkeys(dimensions)}


def report_columns(report: Report, keys: Sequence[str] = ("id",)) -> TColumns:
    """Column hints of a report's table from its row in the report table: key columns,
    timestamps, JSON columns and related ids (fresh dicts per call: dlt writes into them)."""
    columns: TColumns = {key: {"data_type": "text", "nullable": False} for key in keys}
    for column in report.timestamps:
        columns[column] = {"data_type": "timestamp"}
    for column in (*report.json_columns, *report.to_many.values()):
        columns[column] = {"data_type": "json"}
    for column in report.to_one.values():
        columns[column] = {"data_type": "text"}
    for column, data_type in report.column_types.items():
        columns[column] = {"data_type": cast(TDataType, data_type)}
    return columns
