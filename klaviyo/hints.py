"""Column types beyond what dlt infers, and the opt-in flattening of free-form properties.

dlt types most columns from the data (and detects ISO timestamps); these hints fix the
columns where inference would be wrong or unstable:

- money (`$value`, CLV, order values) as `decimal`, never floating point;
- profile coordinates, which Klaviyo sends as a string or a number, as `double`;
- predictive-analytics numbers and dates, which exist only when that option is on.

Free-form objects (`profiles.properties`, `events.event_properties`) are JSON columns by
default; `flatten_properties=True` drops those JSON hints, so dlt flattens the objects into
`properties__*` / `event_properties__*` columns and nested child tables.
"""

from dataclasses import replace
from typing import Any, Dict, Iterable, Mapping, Sequence

from .settings import Report

TColumns = Dict[str, Dict[str, Any]]

# Objects whose keys are chosen by each Klaviyo account (custom properties).
FREE_FORM_COLUMNS = ("properties", "event_properties")

_LOCATION: Mapping[str, str] = {"location__latitude": "double", "location__longitude": "double"}

# `additional-fields[profile]=predictive_analytics`, flattened by dlt.
_PREDICTIVE: Mapping[str, str] = {
    "predictive_analytics__historic_clv": "decimal",
    "predictive_analytics__predicted_clv": "decimal",
    "predictive_analytics__total_clv": "decimal",
    "predictive_analytics__average_order_value": "decimal",
    "predictive_analytics__historic_number_of_orders": "bigint",
    "predictive_analytics__predicted_number_of_orders": "double",
    "predictive_analytics__average_days_between_orders": "double",
    "predictive_analytics__churn_probability": "double",
    "predictive_analytics__expected_date_of_next_order": "timestamp",
}

# Klaviyo's reserved money properties once `event_properties` is flattened
# (`$value` normalizes to `_value`; `Price` is set on product events).
_FLAT_EVENT_MONEY: Mapping[str, str] = {
    "event_properties___value": "decimal",
    "event_properties__price": "decimal",
}


def extra_columns(report_name: str, predictive_analytics: bool, flatten_properties: bool) -> TColumns:
    """Column hints of one report's table on top of the report table's own (fresh dicts).

    Args:
        report_name: The report (table) name.
        predictive_analytics: Whether profiles are read with predictive analytics.
        flatten_properties: Whether free-form properties are flattened into columns.
    """
    types: Dict[str, str] = {}
    if report_name == "profiles":
        types.update(_LOCATION)
        if predictive_analytics:
            types.update(_PREDICTIVE)
    if report_name == "events" and flatten_properties:
        types.update(_FLAT_EVENT_MONEY)
    return {name: {"data_type": data_type} for name, data_type in types.items()}


def flattened(report: Report) -> Report:
    """The report with its free-form objects left to dlt's flattening.

    Arrow pages carry JSON columns as text, which dlt cannot flatten, so a report read as
    Arrow tables is read as row dicts instead (slower per row; opt-in).
    """
    json_columns = tuple(c for c in report.json_columns if c not in FREE_FORM_COLUMNS)
    if json_columns == report.json_columns:
        return report
    return replace(report, json_columns=json_columns, row_format="dict")


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
    return columns
