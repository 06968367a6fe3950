"""Custom Query Metric Aggregates: validated user queries -> windows -> long rows.

A query is the JSON body of `POST /api/metric-aggregates/` as in Klaviyo's docs, under a
name. Each is validated before any request, split into consecutive windows of at most one
year (Klaviyo's limit) aligned to the query's interval, paged with `page_cursor` (by the
client: `KlaviyoApi.paginate_post`), and turned into long rows: one per (bucket, dimensions,
measurement).
"""

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import KlaviyoConfigError
from .records import parse_datetime
from .settings import (
    AGGREGATE_DIMENSIONS,
    AGGREGATE_INTERVALS,
    AGGREGATE_MAX_HISTORY_DAYS,
    AGGREGATE_MAX_WINDOW_DAYS,
    AGGREGATE_MEASUREMENTS,
)
from .windows import UTC, format_datetime

_BOUND = re.compile(r"^(greater-or-equal|less-than)\s*\(\s*datetime\s*,\s*(.+?)\s*\)$")
_AND = re.compile(r"^and\s*\(")


@dataclass(frozen=True)
class AggregateQuery:
    """A validated custom aggregate query.

    Attributes:
        name: The user's name for the query (a column of `metric_aggregates`).
        attributes: The body's `data.attributes` without the datetime bounds and page cursor.
        start: Inclusive start of the query window (aware UTC).
        end: Exclusive end of the query window (aware UTC).
    """

    name: str
    attributes: Mapping[str, Any]
    start: datetime
    end: datetime

    @property
    def metric_id(self) -> str:
        return str(self.attributes["metric_id"])

    @property
    def by(self) -> list[str]:
        return list(self.attributes.get("by") or [])


def load_queries(raw: Any) -> list[AggregateQuery]:
    """Reads and validates the queries the user configured.

    Args:
        raw: A mapping of name -> body, a JSON text of one, or the path of a JSON file holding
            one (a single body without a name is named "query").
    """
    if raw is None or raw == "" or raw == {}:
        return []
    source = "aggregate queries"
    if isinstance(raw, str):
        text = raw
        if not raw.lstrip().startswith(("{", "[")):
            if not os.path.isfile(raw):
                raise KlaviyoConfigError(
                    f"Aggregate query file {raw!r} does not exist; pass the path of a JSON file"
                    " holding the body of POST /api/metric-aggregates/"
                )
            source = raw
            with open(raw, encoding="utf-8") as handle:
                text = handle.read()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise KlaviyoConfigError(
                f"The {source} is not valid JSON ({error.msg} at line {error.lineno}, column"
                f" {error.colno}); write each query as the JSON body of POST /api/metric-aggregates/"
            ) from None
    if isinstance(raw, Mapping) and "data" in raw:
        raw = {"query": raw}
    if not isinstance(raw, Mapping):
        raise KlaviyoConfigError(
            "Aggregate queries must be a JSON object of name -> query body; got"
            f" {type(raw).__name__}"
        )
    return [parse_query(str(name), body) for name, body in raw.items()]


def _fail(name: str, field: str, problem: str) -> KlaviyoConfigError:
    return KlaviyoConfigError(f"Aggregate query {name!r}: {field} {problem}")


def parse_query(name: str, body: Any) -> AggregateQuery:
    """Validates one query body (as Klaviyo documents it) and returns it parsed."""
    data = body.get("data") if isinstance(body, Mapping) else None
    attributes = data.get("attributes") if isinstance(data, Mapping) else None
    if not isinstance(attributes, Mapping):
        raise _fail(name, "data.attributes", "is missing; the body must be {\"data\": {\"type\": \"metric-aggregate\", \"attributes\": {...}}}")
    if not attributes.get("metric_id"):
        raise _fail(name, "metric_id", "is missing; copy a metric id from the metrics table")
    measurements = attributes.get("measurements")
    if not isinstance(measurements, list) or not measurements:
        raise _fail(name, "measurements", f"is missing; use a list of {', '.join(AGGREGATE_MEASUREMENTS)}")
    for measurement in measurements:
        if measurement not in AGGREGATE_MEASUREMENTS:
            raise _fail(name, "measurements", f"has unknown measurement {measurement!r}; use {', '.join(AGGREGATE_MEASUREMENTS)}")
    interval = attributes.get("interval", "day")
    if interval not in AGGREGATE_INTERVALS:
        raise _fail(name, "interval", f"{interval!r} is unknown; use one of {', '.join(AGGREGATE_INTERVALS)}")
    by = attributes.get("by") or []
    if not isinstance(by, list):
        raise _fail(name, "by", "must be a list of dimensions")
    for dimension in by:
        if dimension not in AGGREGATE_DIMENSIONS:
            raise _fail(name, "by", f"has unknown dimension {dimension!r}; see Klaviyo's list (e.g. $flow, $message, Campaign Name)")
    timezone_name = attributes.get("timezone", "UTC")
    try:
        ZoneInfo(str(timezone_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(name, "timezone", f"{timezone_name!r} is not an IANA time zone name (e.g. UTC, America/New_York)") from None
    start, end, others = _split_filter(name, attributes.get("filter"))
    if start >= end:
        raise _fail(name, "filter", f"has its start {format_datetime(start)} not before its end {format_datetime(end)}")
    oldest = datetime.now(UTC) - timedelta(days=AGGREGATE_MAX_HISTORY_DAYS)
    if start < oldest:
        raise _fail(name, "filter", f"starts at {format_datetime(start)}, more than 5 years back, which Klaviyo cannot serve;"
                    f" start at {format_datetime(oldest)[:10]} or later")
    kept = {k: v for k, v in attributes.items() if k not in ("filter", "page_cursor")}
    kept["interval"] = interval
    kept["filter"] = others
    return AggregateQuery(name=name, attributes=kept, start=start, end=end)


def _split_filter(name: str, conditions: Any) -> tuple[datetime, datetime, list[str]]:
    """Finds the datetime bounds in a query's `filter` list; returns (start, end, others).

    Klaviyo ANDs every condition of the list, of a comma-joined string and of `and(...)`, so
    the bounds may sit anywhere in any of these forms; the other conditions come back one a
    string, as written, and are sent with every window."""
    if not isinstance(conditions, list) or not conditions:
        raise _fail(name, "filter", "is missing; give [\"greater-or-equal(datetime,START)\", \"less-than(datetime,END)\"]")
    bounds: dict[str, datetime] = {}
    others: list[str] = []
    for item in conditions:
        if not isinstance(item, str):
            raise _fail(name, "filter", f"holds {item!r}, not a string; write each condition as a string, e.g. \"equals($flow,'X')\"")
        for condition in and_conditions(item, name):
            match = _BOUND.match(condition)
            if not match:
                others.append(condition)
                continue
            operator, value = match.groups()
            try:
                parsed = parse_datetime(value)
            except ValueError:
                parsed = None
            if parsed is None or value[:1] in "'\"":
                raise _fail(name, "filter", f"has a malformed datetime {value!r}; write it unquoted, e.g. 2024-01-01T00:00:00")
            if operator in bounds:
                raise _fail(name, "filter", f"has more than one {operator}(datetime,...) bound; keep one")
            bounds[operator] = parsed.astimezone(UTC)
    for operator in ("greater-or-equal", "less-than"):
        if operator not in bounds:
            raise _fail(name, "filter", f"lacks a {operator}(datetime,...) bound; a query needs both datetime bounds")
    return bounds["greater-or-equal"], bounds["less-than"], others


def and_conditions(text: str, name: str = "query") -> list[str]:
    """The conditions one filter string ANDs: its top-level comma list, with every `and(...)`
    opened (nested ones too); `or(...)`, `not(...)` and field conditions stay whole.

    No package parses Klaviyo's filter grammar (the SDK passes filters as plain strings), so
    this splits on the commas outside quotes, parentheses and brackets itself.

    Raises:
        KlaviyoConfigError: Unbalanced quotes, parentheses or brackets, or an empty condition.
    """
    out: list[str] = []
    for part in _top_level(text, name):
        if _AND.match(part) and part.endswith(")"):
            out.extend(and_conditions(part[part.index("(") + 1 : -1], name))
        else:
            out.append(part)
    return out


def _top_level(text: str, name: str) -> list[str]:
    """`text` cut at its commas outside quotes ('..' or "..", backslash escapes) and outside
    parentheses and brackets; each part stripped."""
    parts: list[str] = []
    depth, quote, escaped, begin = 0, "", False, 0
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                break
        elif char == "," and depth == 0:
            parts.append(text[begin:index].strip())
            begin = index + 1
    if quote or depth != 0:
        raise _fail(name, "filter", f"has unbalanced quotes, parentheses or brackets in {text!r}")
    parts.append(text[begin:].strip())
    if not all(parts):
        raise _fail(name, "filter", f"has an empty condition in {text!r}; separate conditions with single commas")
    return parts


def _align(moment: datetime, interval: str, zone: ZoneInfo) -> datetime:
    """The start of the interval bucket holding `moment`, in the query's time zone."""
    local = moment.astimezone(zone)
    if interval == "hour":
        local = local.replace(minute=0, second=0, microsecond=0)
    else:
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if interval == "week":
            local -= timedelta(days=local.weekday())
        elif interval == "month":
            local = local.replace(day=1)
    return local.astimezone(UTC)


def split_windows(query: AggregateQuery) -> list[tuple[datetime, datetime]]:
    """Consecutive `[start, end)` windows of at most one year covering the query's range,
    cut on bucket boundaries of its interval so that no bucket is split between two requests."""
    zone = ZoneInfo(str(query.attributes.get("timezone", "UTC")))
    interval = str(query.attributes["interval"])
    windows: list[tuple[datetime, datetime]] = []
    start = query.start
    while start < query.end:
        end = min(query.end, start + timedelta(days=AGGREGATE_MAX_WINDOW_DAYS))
        if end < query.end:
            aligned = _align(end, interval, zone)
            end = aligned if aligned > start else end
        windows.append((start, end))
        start = end
    return windows


def request_body(query: AggregateQuery, start: datetime, end: datetime) -> dict[str, Any]:
    """The POST body for one window of a query (its pages: `KlaviyoApi.paginate_post`)."""
    attributes = dict(query.attributes)
    attributes["filter"] = [
        f"greater-or-equal(datetime,{format_datetime(start)[:-1]})",
        f"less-than(datetime,{format_datetime(end)[:-1]})",
        *query.attributes["filter"],
    ]
    return {"data": {"type": "metric-aggregate", "attributes": attributes}}


def to_long_rows(query: AggregateQuery, document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Long rows of one answer: query name, metric id, bucket start, one column per `by`
    dimension, measurement and value; `dimension_key` joins the dimensions for the key."""
    attributes = (document.get("data") or {}).get("attributes") or {}
    dates = [parse_datetime(d) for d in attributes.get("dates") or []]
    by = query.by
    for entry in attributes.get("data") or []:
        dimensions: Sequence[str] = entry.get("dimensions") or []
        labels = {dim: (dimensions[i] if i < len(dimensions) else None) for i, dim in enumerate(by)}
        key = "|".join(str(d) for d in dimensions)
        for measurement, values in (entry.get("measurements") or {}).items():
            for bucket, value in zip(dates, values, strict=False):
                yield {
                    "query_name": query.name,
                    "metric_id": query.metric_id,
                    "date": bucket,
                    "dimension_key": key,
                    **labels,
                    "measurement": measurement,
                    "value": value,
                }
