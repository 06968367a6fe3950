"""POST /api/metric-aggregates/ (Klaviyo revision 2023-10-15): validation and computation.

Decisions where the spec is silent (each documented where it is made):

* Naive datetimes in the `filter` strings are read in the query's `timezone` (the spec
  says the timezone is "used when processing the query"); explicit offsets win.
* Buckets are aligned in `timezone`: hour = local hour, day = local midnight,
  week = local Monday midnight (ISO weeks; the spec does not say), month = local 1st.
  The first bucket is the one containing `start`; `dates` are bucket starts in UTC.
* "At most one year" = `end` no later than the same local date/time one year after
  `start` (29 Feb -> 28 Feb). "At most 5 years back" = `start` no earlier than local
  midnight of the same date 5 years before `now`.
* Without `by`, there is always exactly one row (`dimensions: []`, zeros if no events).
  With `by`, one row per distinct tuple seen; events lacking any `by` dimension fall
  into the `dimensions: []` row. Default order: rows sorted by dimensions, the `[]` row
  last. `sort` on a measurement sorts by its total over all dates.
* Pagination is over rows. The spec's response has no cursor field, but `ObjectLinks`
  allows extra properties, so the next `page_cursor` (opaque, not a URL: the request is
  a POST) is returned as `data.links.next`; it is absent on the last page.
* `return_fields` is validated (list of strings) and otherwise ignored.
* `sum_value` totals are rounded to 6 decimals to hide float noise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from klaviyo_emulator.filter_rules import AGGREGATE_DIMENSIONS, AGGREGATE_FILTER_RULES
from klaviyo_emulator.filters import Condition, FilterError, compile_conditions, parse_filter

UTC = UTC
MEASUREMENTS = ("count", "sum_value", "unique")
INTERVALS = ("hour", "day", "week", "month")
SORT_KEYS = frozenset(
    f"{sign}{key}" for key in (*AGGREGATE_DIMENSIONS, *MEASUREMENTS) for sign in ("", "-")
)
UNSUPPORTED_TIMEZONES = frozenset({"Factory", "Europe/Kyiv", "Pacific/Kanton", "localtime"})
ATTRIBUTES = frozenset(
    {"metric_id", "measurements", "filter", "interval", "by", "page_size", "page_cursor",
     "return_fields", "timezone", "sort"}
)
DEFAULT_PAGE_SIZE = 500
_ATTR = "/data/attributes"


class AggregateError(ValueError):
    """A request Klaviyo would reject.

    Attributes:
        detail: Human-readable error detail.
        pointer: JSON pointer into the request body, e.g. "/data/attributes/metric_id".
        status: HTTP status: 400, or 404 for an unknown metric.
    """

    def __init__(self, detail: str, pointer: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer
        self.status = status


@dataclass(frozen=True)
class AggregateQuery:
    """A validated metric-aggregate query (datetimes aware UTC)."""

    metric_id: str
    measurements: tuple[str, ...]
    interval: str
    by: tuple[str, ...]
    start: datetime
    end: datetime
    timezone: str
    page_size: int = DEFAULT_PAGE_SIZE
    page_cursor: str | None = None
    sort: str | None = None
    extra_conditions: tuple[Condition, ...] = ()
    return_fields: tuple[str, ...] | None = None
    offset: int = field(default=0, compare=False)


@dataclass(frozen=True)
class AggEvent:
    """One event as the server hands it over.

    Attributes:
        metric_id: The event's metric.
        profile_id: The event's profile (counted by `unique`).
        datetime: When it happened (aware UTC; naive is taken as UTC).
        value: `event_properties["$value"]`, or 0.0.
        dimensions: Dimension name -> value; a missing key means the event lacks it.
    """

    metric_id: str
    profile_id: str
    datetime: datetime
    value: float
    dimensions: Mapping[str, str]


# ---------------------------------------------------------------------------- helpers


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    """IANA names this emulator accepts (the spec's exceptions removed)."""
    return frozenset(available_timezones()) - UNSUPPORTED_TIMEZONES


@lru_cache(maxsize=256)
def zone(name: str) -> tzinfo:
    """The tzinfo for an accepted timezone name."""
    if name == "UTC":
        try:
            return ZoneInfo("UTC")
        except ZoneInfoNotFoundError:  # no tz database at all: UTC still works
            return UTC
    return ZoneInfo(name)


def _valid_zone(name: str) -> bool:
    """True when `name` is an accepted, case-exact IANA timezone name."""
    if name == "UTC":
        return True
    names = _zone_names()
    if names:
        return name in names
    try:  # no list available (no tzdata): fall back to loading it
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return name not in UNSUPPORTED_TIMEZONES


def _add_years(day: date, years: int) -> date:
    """Same month/day `years` later; 29 Feb becomes 28 Feb."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _local_to_utc(wall: datetime, tz: tzinfo) -> datetime:
    """Converts a naive local wall time to aware UTC."""
    return wall.replace(tzinfo=tz).astimezone(UTC)


def encode_cursor(offset: int) -> str:
    """Opaque page cursor for a row offset."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Row offset of a cursor from `encode_cursor`; ValueError if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(cursor) from exc
    prefix, _, number = raw.partition(":")
    if prefix != "offset" or not number.isdigit():
        raise ValueError(cursor)
    return int(number)


# --------------------------------------------------------------------------- validation


def _string_list(attrs: Mapping[str, Any], key: str, required: bool) -> list[str] | None:
    """Reads an optional/required list of strings from the attributes."""
    value = attrs.get(key)
    if value is None:
        if required:
            raise AggregateError(f"'{key}' is required", f"{_ATTR}/{key}")
        return None
    if not isinstance(value, list):
        raise AggregateError(f"'{key}' must be a list of strings", f"{_ATTR}/{key}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise AggregateError(f"'{key}' must contain only strings", f"{_ATTR}/{key}/{i}")
    return value


def _enum_list(attrs: Mapping[str, Any], key: str, allowed: Collection[str],
               required: bool) -> tuple[str, ...]:
    """Reads a list of enum strings, rejecting unknown and duplicate values."""
    values = _string_list(attrs, key, required)
    if values is None:
        return ()
    if required and not values:
        raise AggregateError(f"'{key}' must not be empty", f"{_ATTR}/{key}")
    seen: list[str] = []
    for i, item in enumerate(values):
        if item not in allowed:
            raise AggregateError(
                f"'{item}' is not a valid choice for '{key}'; allowed: {', '.join(allowed)}",
                f"{_ATTR}/{key}/{i}",
            )
        if item in seen:
            raise AggregateError(f"'{item}' appears more than once in '{key}'",
                                 f"{_ATTR}/{key}/{i}")
        seen.append(item)
    return tuple(seen)


def _time_range(filters: list[str], tz: tzinfo) -> tuple[datetime, datetime, list[Condition]]:
    """Parses the filter strings into (start, end, dimension conditions)."""
    pointer = f"{_ATTR}/filter"
    start: datetime | None = None
    end: datetime | None = None
    extra: list[Condition] = []
    for i, text in enumerate(filters):
        try:
            conditions = parse_filter(text, AGGREGATE_FILTER_RULES, default_tz=tz)
        except FilterError as exc:
            raise AggregateError(exc.detail, f"{pointer}/{i}") from exc
        for cond in conditions:
            if cond.field != "datetime":
                extra.append(cond)
            elif cond.op == "greater-or-equal":
                if start is not None:
                    raise AggregateError(
                        "'filter' has more than one greater-or-equal(datetime,...)",
                        f"{pointer}/{i}")
                start = cond.value
            else:
                if end is not None:
                    raise AggregateError(
                        "'filter' has more than one less-than(datetime,...)", f"{pointer}/{i}")
                end = cond.value
    if start is None or end is None:
        raise AggregateError(
            "'filter' must include a time range: greater-or-equal(datetime,<start>) and "
            "less-than(datetime,<end>), e.g. greater-or-equal(datetime,2023-09-01T00:00:00)",
            pointer,
        )
    return start, end, extra


def _check_window(start: datetime, end: datetime, tz: tzinfo, now: datetime) -> None:
    """Enforces start < end, a span of at most one year, and at most 5 years back."""
    pointer = f"{_ATTR}/filter"
    if start >= end:
        raise AggregateError(
            f"The time range start ({start.isoformat()}) must be before its end "
            f"({end.isoformat()})", pointer)
    local_start = start.astimezone(tz).replace(tzinfo=None)
    latest_end = _local_to_utc(
        datetime.combine(_add_years(local_start.date(), 1), local_start.time()), tz)
    if end > latest_end:
        raise AggregateError(
            f"The time range may span at most one year; {start.isoformat()} to "
            f"{end.isoformat()} is longer", pointer)
    local_now = now.astimezone(tz)
    earliest = _local_to_utc(datetime.combine(_add_years(local_now.date(), -5),
                                              datetime.min.time()), tz)
    if start < earliest:
        raise AggregateError(
            f"The time range may start at most 5 years before the current date "
            f"(earliest {earliest.isoformat()}); got {start.isoformat()}", pointer)


def parse_query(body: Any, known_metric_ids: Collection[str], now: datetime) -> AggregateQuery:
    """Validates a POST /api/metric-aggregates/ body.

    Args:
        body: The decoded JSON body.
        known_metric_ids: IDs of existing metrics.
        now: Current time (aware), for the 5-years-back rule.

    Returns:
        The validated query.

    Raises:
        AggregateError: With detail, JSON pointer and status (404 for an unknown metric).
    """
    if not isinstance(body, dict):
        raise AggregateError("The request body must be a JSON object", "")
    data = body.get("data")
    if not isinstance(data, dict):
        raise AggregateError("'data' is required and must be an object", "/data")
    if data.get("type") != "metric-aggregate":
        raise AggregateError(f"'type' must be 'metric-aggregate', got {data.get('type')!r}",
                             "/data/type")
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        raise AggregateError("'attributes' is required and must be an object", _ATTR)
    for key in attrs:
        if key not in ATTRIBUTES:
            raise AggregateError(f"'{key}' is not a valid attribute; allowed: "
                                 f"{', '.join(sorted(ATTRIBUTES))}", f"{_ATTR}/{key}")

    metric_id = attrs.get("metric_id")
    if not isinstance(metric_id, str) or not metric_id:
        raise AggregateError("'metric_id' is required and must be a non-empty string",
                             f"{_ATTR}/metric_id")
    measurements = _enum_list(attrs, "measurements", MEASUREMENTS, required=True)
    interval = attrs.get("interval", "day")
    if interval not in INTERVALS:
        raise AggregateError(f"{interval!r} is not a valid interval; allowed: "
                             f"{', '.join(INTERVALS)}", f"{_ATTR}/interval")
    by = _enum_list(attrs, "by", AGGREGATE_DIMENSIONS, required=False)

    tz_name = attrs.get("timezone", "UTC")
    if not isinstance(tz_name, str) or not _valid_zone(tz_name):
        raise AggregateError(
            f"{tz_name!r} is not a supported timezone; use a case-sensitive IANA name such "
            "as 'America/New_York' ('Factory', 'Europe/Kyiv' and 'Pacific/Kanton' are not "
            "supported)", f"{_ATTR}/timezone")
    tz = zone(tz_name)

    filters = _string_list(attrs, "filter", required=True) or []
    start, end, extra = _time_range(filters, tz)
    _check_window(start, end, tz, now)

    page_size = attrs.get("page_size", DEFAULT_PAGE_SIZE)
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise AggregateError(f"'page_size' must be a positive integer, got {page_size!r}",
                             f"{_ATTR}/page_size")
    cursor = attrs.get("page_cursor")
    offset = 0
    if cursor is not None:
        try:
            offset = decode_cursor(cursor) if isinstance(cursor, str) else -1
        except ValueError:
            offset = -1
        if offset < 0:
            raise AggregateError(f"Invalid page_cursor {cursor!r}", f"{_ATTR}/page_cursor")
    sort = _check_sort(attrs.get("sort"), by, measurements)
    return_fields = _string_list(attrs, "return_fields", required=False)

    if metric_id not in known_metric_ids:
        raise AggregateError(f"Metric with id '{metric_id}' does not exist",
                             f"{_ATTR}/metric_id", status=404)
    return AggregateQuery(
        metric_id=metric_id, measurements=measurements, interval=interval, by=by,
        start=start, end=end, timezone=tz_name, page_size=page_size, page_cursor=cursor,
        sort=sort, extra_conditions=tuple(extra),
        return_fields=tuple(return_fields) if return_fields is not None else None,
        offset=offset,
    )


def _check_sort(sort: Any, by: tuple[str, ...], measurements: tuple[str, ...]) -> str | None:
    """Validates `sort`: in the spec enum, on a `by` dimension or requested measurement."""
    if sort is None:
        return None
    pointer = f"{_ATTR}/sort"
    if not isinstance(sort, str) or sort not in SORT_KEYS:
        raise AggregateError(f"{sort!r} is not a valid sort; use a 'by' dimension or a "
                             "measurement, optionally prefixed with '-'", pointer)
    key = sort.lstrip("-")
    if key not in by and key not in measurements:
        raise AggregateError(f"Cannot sort by {key!r}: it is neither in 'by' nor in "
                             "'measurements'", pointer)
    return sort


# ---------------------------------------------------------------------------- computing


def bucket_starts(start: datetime, end: datetime, interval: str, tz: tzinfo) -> list[datetime]:
    """UTC starts of the interval buckets covering [start, end), aligned in `tz`.

    Weeks start on Monday (ISO) as the spec does not say; months on the 1st.
    """
    local = start.astimezone(tz).replace(tzinfo=None)
    out: list[datetime] = []
    if interval == "hour":
        cur = _local_to_utc(local.replace(minute=0, second=0, microsecond=0), tz)
        if cur > start:  # the local hour began before a DST jump
            cur -= timedelta(hours=1)
        while cur < end:
            out.append(cur)
            cur += timedelta(hours=1)
        return out
    day = local.date()
    if interval == "week":
        day -= timedelta(days=day.weekday())
    elif interval == "month":
        day = day.replace(day=1)
    while True:
        cur = _local_to_utc(datetime.combine(day, datetime.min.time()), tz)
        if cur >= end:
            return out
        out.append(cur)
        if interval == "day":
            day += timedelta(days=1)
        elif interval == "week":
            day += timedelta(days=7)
        else:
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)


@dataclass
class _Row:
    """Accumulators for one `data[]` row."""

    count: list[float]
    total: list[float]
    profiles: list[set[str]]


def _accumulate(query: AggregateQuery, events: Iterable[AggEvent],
                starts: list[datetime]) -> dict[tuple[str, ...], _Row]:
    """Buckets the query's events per row key and date index."""
    n = len(starts)
    rows: dict[tuple[str, ...], _Row] = {}
    keep = compile_conditions(query.extra_conditions) if query.extra_conditions else None
    by, start, end, metric_id = query.by, query.start, query.end, query.metric_id
    for ev in events:
        if ev.metric_id != metric_id:
            continue
        when = ev.datetime if ev.datetime.tzinfo else ev.datetime.replace(tzinfo=UTC)
        if not start <= when < end:
            continue
        dims = ev.dimensions
        if keep is not None and not keep(dims.get):
            continue
        key: tuple[str, ...] = ()
        if by:
            values = [dims.get(name) for name in by]
            key = () if any(v is None for v in values) else tuple(str(v) for v in values)
        row = rows.get(key)
        if row is None:
            row = rows[key] = _Row([0.0] * n, [0.0] * n, [set() for _ in range(n)])
        i = bisect_right(starts, when) - 1
        row.count[i] += 1.0
        row.total[i] += float(ev.value or 0.0)
        if ev.profile_id:
            row.profiles[i].add(ev.profile_id)
    if not by and () not in rows:
        rows[()] = _Row([0.0] * n, [0.0] * n, [set() for _ in range(n)])
    return rows


def _series(row: _Row, measurement: str) -> list[float]:
    """One measurement's values, aligned with `dates`."""
    if measurement == "count":
        return list(row.count)
    if measurement == "sum_value":
        return [round(v, 6) + 0.0 for v in row.total]
    return [float(len(p)) for p in row.profiles]


def _ordered_keys(query: AggregateQuery, rows: dict[tuple[str, ...], _Row]) -> list[tuple[str, ...]]:
    """Row keys in response order: by dimensions ([] last) unless `sort` says otherwise."""
    keys = sorted(rows, key=lambda k: (k == (), k))
    if not query.sort:
        return keys
    desc = query.sort.startswith("-")
    name = query.sort.lstrip("-")
    if name in query.by:
        idx = query.by.index(name)
        present = [k for k in keys if k]
        present.sort(key=lambda k: k[idx], reverse=desc)
        return present + [k for k in keys if not k]
    return sorted(keys, key=lambda k: sum(_series(rows[k], name)), reverse=desc)


def _query_id(query: AggregateQuery) -> str:
    """Ephemeral numeric-string id, stable for the same query."""
    digest = hashlib.sha256(repr((query, query.offset)).encode()).hexdigest()
    return str(int(digest[:15], 16))


def compute(query: AggregateQuery, events: Iterable[AggEvent], self_url: str) -> dict[str, Any]:
    """Aggregates events into the full `PostMetricAggregateResponse` document.

    Args:
        query: From `parse_query`.
        events: Candidate events (any metric/time; filtered here).
        self_url: Absolute URL for `data.links.self`.

    Returns:
        {"data": {"type", "id", "attributes": {"dates", "data"}, "links"}}; the next
        page's cursor, if any, is `data.links.next`.
    """
    starts = bucket_starts(query.start, query.end, query.interval, zone(query.timezone))
    rows = _accumulate(query, events, starts)
    keys = _ordered_keys(query, rows)
    page = keys[query.offset: query.offset + query.page_size]
    links: dict[str, str] = {"self": self_url}
    if query.offset + query.page_size < len(keys):
        links["next"] = encode_cursor(query.offset + query.page_size)
    return {
        "data": {
            "type": "metric-aggregate",
            "id": _query_id(query),
            "attributes": {
                "dates": [s.isoformat() for s in starts],
                "data": [
                    {"dimensions": list(key),
                     "measurements": {m: _series(rows[key], m) for m in query.measurements}}
                    for key in page
                ],
            },
            "links": links,
        }
    }
