"""Tests of POST /api/metric-aggregates/ validation and computation."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from klaviyo_emulator.aggregates import (
    AggEvent,
    AggregateError,
    compute,
    decode_cursor,
    encode_cursor,
    parse_query,
)
from tests.conftest import load_spec

UTC = UTC
NOW = datetime(2023, 10, 15, 12, 0, tzinfo=UTC)
METRICS = {"M1", "M2"}
SELF = "http://localhost:8000/api/metric-aggregates/"


def spec() -> dict[str, Any]:
    """Klaviyo's OpenAPI spec 2023-10-15 (skips the test when the file is absent)."""
    return load_spec()


def validate(instance: Any, schema_name: str) -> None:
    """Validates against a spec component schema, resolving $refs in the whole spec."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec()["components"]}
    cls = jsonschema.validators.validator_for({})
    cls(schema, format_checker=cls.FORMAT_CHECKER).validate(instance)


def dt(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def body(**attrs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metric_id": "M1",
        "measurements": ["count", "sum_value", "unique"],
        "filter": ["greater-or-equal(datetime,2023-09-01T00:00:00)",
                   "less-than(datetime,2023-09-04T00:00:00)"],
    }
    base.update(attrs)
    for key in [k for k, v in base.items() if v is None]:
        del base[key]
    return {"data": {"type": "metric-aggregate", "attributes": base}}


def ev(metric: str, profile: str, when: datetime, value: float = 0.0, **dims: str) -> AggEvent:
    return AggEvent(metric, profile, when, value, dims)


EVENTS = [
    ev("M1", "p1", dt(2023, 9, 1, 1), 10, **{"$flow": "F1"}),
    ev("M1", "p1", dt(2023, 9, 1, 23, 59, 59), 5, **{"$flow": "F1", "Campaign Name": "C"}),
    ev("M1", "p2", dt(2023, 9, 1, 12), 2.5),
    ev("M1", "p2", dt(2023, 9, 3), 1, **{"$flow": "F2"}),
    ev("M2", "p3", dt(2023, 9, 2), 100, **{"$flow": "F1"}),   # other metric
    ev("M1", "p1", dt(2023, 9, 4), 7, **{"$flow": "F1"}),     # at end: excluded
    ev("M1", "p1", dt(2023, 8, 31, 23, 59, 59), 7),           # before start: excluded
]


def run(events: list[AggEvent] = EVENTS, **attrs: Any) -> dict[str, Any]:
    request = body(**attrs)
    validate(request, "MetricAggregateQuery")
    doc = compute(parse_query(request, METRICS, NOW), events, SELF)
    validate(doc, "PostMetricAggregateResponse")
    for date in doc["data"]["attributes"]["dates"]:
        assert datetime.fromisoformat(date).utcoffset().total_seconds() == 0
    return doc


def rows(doc: dict[str, Any]) -> list[tuple[list[str], dict[str, list[float]]]]:
    return [(r["dimensions"], r["measurements"]) for r in doc["data"]["attributes"]["data"]]


# ---------------------------------------------------------------------------- compute


def test_day_buckets_without_by() -> None:
    doc = run()
    data = doc["data"]
    assert data["type"] == "metric-aggregate"
    assert data["id"].isdigit()
    assert data["links"] == {"self": SELF}
    assert data["attributes"]["dates"] == [
        "2023-09-01T00:00:00+00:00", "2023-09-02T00:00:00+00:00", "2023-09-03T00:00:00+00:00"]
    assert rows(doc) == [([], {"count": [3.0, 0.0, 1.0], "sum_value": [17.5, 0.0, 1.0],
                               "unique": [2.0, 0.0, 1.0]})]
    assert all(isinstance(x, float) for x in rows(doc)[0][1]["count"])


def test_no_events_gives_one_zero_row_and_measurement_order_follows_request() -> None:
    doc = run([], measurements=["unique", "count"])
    assert rows(doc) == [([], {"unique": [0.0, 0.0, 0.0], "count": [0.0, 0.0, 0.0]})]
    assert list(rows(doc)[0][1]) == ["unique", "count"]


def test_by_dimension_with_missing_dimension_row_last() -> None:
    doc = run(by=["$flow"])
    assert rows(doc) == [
        (["F1"], {"count": [2.0, 0.0, 0.0], "sum_value": [15.0, 0.0, 0.0], "unique": [1.0, 0.0, 0.0]}),
        (["F2"], {"count": [0.0, 0.0, 1.0], "sum_value": [0.0, 0.0, 1.0], "unique": [0.0, 0.0, 1.0]}),
        ([], {"count": [1.0, 0.0, 0.0], "sum_value": [2.5, 0.0, 0.0], "unique": [1.0, 0.0, 0.0]}),
    ]


def test_two_by_dimensions_event_lacking_one_goes_to_empty_row() -> None:
    doc = run(by=["$flow", "Campaign Name"], measurements=["count"])
    assert rows(doc) == [
        (["F1", "C"], {"count": [1.0, 0.0, 0.0]}),
        ([], {"count": [2.0, 0.0, 1.0]}),
    ]


def test_extra_dimension_filter() -> None:
    doc = run(filter=["greater-or-equal(datetime,2023-09-01T00:00:00)",
                      "less-than(datetime,2023-09-04T00:00:00)", 'equals($flow,"F1")'],
              measurements=["count", "sum_value"])
    assert rows(doc) == [([], {"count": [2.0, 0.0, 0.0], "sum_value": [15.0, 0.0, 0.0]})]
    # several conditions in one string (and/comma) work as well
    doc = run(filter=["and(greater-or-equal(datetime,2023-09-01T00:00:00),"
                      "less-than(datetime,2023-09-04T00:00:00)),equals(Campaign Name,'C')"],
              measurements=["count"])
    assert rows(doc) == [([], {"count": [1.0, 0.0, 0.0]})]


_GTE = "greater-or-equal(datetime,2023-09-01T00:00:00)"
_LT = "less-than(datetime,2023-09-04T00:00:00)"
_DIM = 'equals($flow,"F1")'


@pytest.mark.parametrize("filter_", [
    [_GTE, _LT, _DIM],
    [f"{_GTE},{_LT},{_DIM}"],
    [f"{_DIM} , {_LT},{_GTE}"],
    [f"and({_GTE},{_LT},{_DIM})"],
    [f"and({_LT},{_DIM})", _GTE],
    [f"and(and({_DIM},{_GTE}),{_LT})"],
    [_DIM, f"{_LT},{_GTE}"],
], ids=["strings", "one_string", "reversed", "and", "and_mixed", "nested_and", "split"])
def test_every_and_form_of_the_filter_gives_the_same_query_and_rows(filter_: list[str]) -> None:
    query = parse_query(body(filter=filter_), METRICS, NOW)
    assert (query.start, query.end) == (dt(2023, 9, 1), dt(2023, 9, 4))
    assert [(c.op, c.field, c.value) for c in query.extra_conditions] == [("equals", "$flow", "F1")]
    doc = run(filter=filter_, measurements=["count", "sum_value"])
    assert rows(doc) == [([], {"count": [2.0, 0.0, 0.0], "sum_value": [15.0, 0.0, 0.0]})]


def test_hour_buckets_utc() -> None:
    events = [ev("M1", "a", dt(2023, 9, 1, 0, 59, 59)), ev("M1", "b", dt(2023, 9, 1, 1)),
              ev("M1", "a", dt(2023, 9, 1, 2, 30)), ev("M1", "a", dt(2023, 9, 1, 2, 45))]
    doc = run(events, interval="hour", measurements=["count", "unique"],
              filter=["greater-or-equal(datetime,2023-09-01T00:00:00Z)",
                      "less-than(datetime,2023-09-01T03:00:00Z)"])
    assert doc["data"]["attributes"]["dates"] == [
        "2023-09-01T00:00:00+00:00", "2023-09-01T01:00:00+00:00", "2023-09-01T02:00:00+00:00"]
    assert rows(doc) == [([], {"count": [1.0, 1.0, 2.0], "unique": [1.0, 1.0, 1.0]})]


def test_day_buckets_in_new_york_naive_filter_is_local() -> None:
    doc = run(timezone="America/New_York", measurements=["count"],
              filter=["greater-or-equal(datetime,2023-09-01T00:00:00)",
                      "less-than(datetime,2023-09-03T00:00:00)"])
    assert doc["data"]["attributes"]["dates"] == [
        "2023-09-01T04:00:00+00:00", "2023-09-02T04:00:00+00:00"]
    # 09-01T01Z is Aug 31 local (excluded); 09-03T00Z is Sept 2, 20:00 local.
    assert rows(doc) == [([], {"count": [2.0, 1.0]})]


def test_explicit_offset_wins_over_timezone() -> None:
    doc = run(timezone="America/New_York", measurements=["count"],
              filter=["greater-or-equal(datetime,2023-09-01T00:00:00Z)",
                      "less-than(datetime,2023-09-02T00:00:00Z)"])
    # starts 2023-08-31 20:00 local: first bucket is local Aug 31 midnight.
    assert doc["data"]["attributes"]["dates"] == [
        "2023-08-31T04:00:00+00:00", "2023-09-01T04:00:00+00:00"]
    assert rows(doc) == [([], {"count": [1.0, 2.0]})]


def test_dst_fall_back_day_and_hour() -> None:
    doc = run([], timezone="America/New_York", measurements=["count"],
              filter=["greater-or-equal(datetime,2023-11-04T00:00:00)",
                      "less-than(datetime,2023-11-07T00:00:00)"])
    assert doc["data"]["attributes"]["dates"] == [
        "2023-11-04T04:00:00+00:00", "2023-11-05T04:00:00+00:00", "2023-11-06T05:00:00+00:00"]
    doc = run([], timezone="America/New_York", interval="hour", measurements=["count"],
              filter=["greater-or-equal(datetime,2023-11-05T00:00:00)",
                      "less-than(datetime,2023-11-05T03:00:00)"])
    assert doc["data"]["attributes"]["dates"] == [
        f"2023-11-05T0{h}:00:00+00:00" for h in (4, 5, 6, 7)]


def test_week_buckets_start_monday() -> None:
    events = [ev("M1", "a", dt(2023, 9, 1)), ev("M1", "a", dt(2023, 9, 4)),
              ev("M1", "b", dt(2023, 9, 17, 23, 59)), ev("M1", "c", dt(2023, 9, 19))]
    doc = run(events, interval="week", measurements=["count"],
              filter=["greater-or-equal(datetime,2023-09-01T00:00:00)",
                      "less-than(datetime,2023-09-20T00:00:00)"])
    assert doc["data"]["attributes"]["dates"] == [
        "2023-08-28T00:00:00+00:00", "2023-09-04T00:00:00+00:00",
        "2023-09-11T00:00:00+00:00", "2023-09-18T00:00:00+00:00"]
    assert rows(doc) == [([], {"count": [1.0, 1.0, 1.0, 1.0]})]


def test_month_buckets_utc_and_tokyo() -> None:
    events = [ev("M1", "a", dt(2023, 1, 20), 1.25), ev("M1", "a", dt(2023, 3, 31, 23), 2.5),
              ev("M1", "b", dt(2023, 1, 31, 16), 1), ev("M1", "b", dt(2022, 12, 31, 14, 59))]
    doc = run(events, interval="month", measurements=["count", "sum_value"],
              filter=["greater-or-equal(datetime,2023-01-15T00:00:00)",
                      "less-than(datetime,2023-04-01T00:00:00)"])
    assert doc["data"]["attributes"]["dates"] == [
        "2023-01-01T00:00:00+00:00", "2023-02-01T00:00:00+00:00", "2023-03-01T00:00:00+00:00"]
    assert rows(doc) == [([], {"count": [2.0, 0.0, 1.0], "sum_value": [2.25, 0.0, 2.5]})]
    doc = run(events, interval="month", measurements=["count"], timezone="Asia/Tokyo",
              filter=["greater-or-equal(datetime,2023-01-01T00:00:00)",
                      "less-than(datetime,2023-03-01T00:00:00)"])
    assert doc["data"]["attributes"]["dates"] == [
        "2022-12-31T15:00:00+00:00", "2023-01-31T15:00:00+00:00"]
    assert rows(doc) == [([], {"count": [1.0, 1.0]})]


def test_sum_value_float_noise_is_rounded() -> None:
    events = [ev("M1", "a", dt(2023, 9, 1), 0.1), ev("M1", "a", dt(2023, 9, 1), 0.2)]
    assert rows(run(events, measurements=["sum_value"]))[0][1]["sum_value"][0] == 0.3


def test_sort_options() -> None:
    def dims(**attrs: Any) -> list[list[str]]:
        return [r[0] for r in rows(run(by=["$flow"], measurements=["count"], **attrs))]

    assert dims() == [["F1"], ["F2"], []]
    assert dims(sort="-count") == [["F1"], ["F2"], []]
    assert dims(sort="count") == [["F2"], [], ["F1"]]
    assert dims(sort="-$flow") == [["F2"], ["F1"], []]


def test_pagination_over_rows() -> None:
    first = run(by=["$flow"], measurements=["count"], page_size=2)
    assert [r[0] for r in rows(first)] == [["F1"], ["F2"]]
    cursor = first["data"]["links"]["next"]
    assert decode_cursor(cursor) == 2
    second = run(by=["$flow"], measurements=["count"], page_size=2, page_cursor=cursor)
    assert [r[0] for r in rows(second)] == [[]]
    assert "next" not in second["data"]["links"]
    assert second["data"]["attributes"]["dates"] == first["data"]["attributes"]["dates"]
    assert encode_cursor(0) != encode_cursor(1)


def test_id_is_stable_for_same_query() -> None:
    assert run()["data"]["id"] == run()["data"]["id"]
    assert run()["data"]["id"] != run(interval="hour")["data"]["id"]


# ------------------------------------------------------------------------- validation

FULL_YEAR = ["greater-or-equal(datetime,2023-01-01T00:00:00)", "less-than(datetime,2024-01-01T00:00:00)"]


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(body())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


ATTR = "/data/attributes"
INVALID: list[tuple[str, Any, str, str]] = [
    ("not an object", [1], "", "JSON object"),
    ("no data", {"meta": {}}, "/data", "'data'"),
    ("wrong type", mutate(["data", "type"], "metric"), "/data/type", "metric-aggregate"),
    ("no type", mutate(["data", "type"], KeyError), "/data/type", "metric-aggregate"),
    ("no attributes", mutate(["data", "attributes"], KeyError), ATTR, "'attributes'"),
    ("unknown attribute", body(measurement=["count"]), f"{ATTR}/measurement", "not a valid"),
    ("no metric", body(metric_id=None), f"{ATTR}/metric_id", "'metric_id' is required"),
    ("metric not str", body(metric_id=5), f"{ATTR}/metric_id", "'metric_id'"),
    ("no measurements", body(measurements=None), f"{ATTR}/measurements", "required"),
    ("empty measurements", body(measurements=[]), f"{ATTR}/measurements", "empty"),
    ("measurements str", body(measurements="count"), f"{ATTR}/measurements", "list"),
    ("bad measurement", body(measurements=["count", "avg"]), f"{ATTR}/measurements/1", "'avg'"),
    ("dup measurement", body(measurements=["count", "count"]), f"{ATTR}/measurements/1", "more than once"),
    ("bad interval", body(interval="year"), f"{ATTR}/interval", "'year'"),
    ("bad by", body(by=["$flow", "Color"]), f"{ATTR}/by/1", "'Color'"),
    ("by not list", body(by="$flow"), f"{ATTR}/by", "list"),
    ("no filter", body(filter=None), f"{ATTR}/filter", "'filter' is required"),
    ("empty filter list", body(filter=[]), f"{ATTR}/filter", "time range"),
    ("no lower bound", body(filter=["less-than(datetime,2023-09-04T00:00:00)"]),
     f"{ATTR}/filter", "greater-or-equal(datetime"),
    ("no upper bound", body(filter=["greater-or-equal(datetime,2023-09-01T00:00:00)"]),
     f"{ATTR}/filter", "less-than(datetime"),
    ("gt not allowed", body(filter=["greater-than(datetime,2023-09-01T00:00:00)",
                                    "less-than(datetime,2023-09-04T00:00:00)"]),
     f"{ATTR}/filter/0", "operator 'greater-than' is not allowed"),
    ("quoted datetime", body(filter=["greater-or-equal(datetime,'2023-09-01T00:00:00')",
                                     "less-than(datetime,2023-09-04T00:00:00)"]),
     f"{ATTR}/filter/0", "must not be quoted"),
    ("syntax", body(filter=["greater-or-equal(datetime,2023-09-01T00:00:00)",
                            "less-than(datetime,2023-09-04T00:00:00"]), f"{ATTR}/filter/1", "expected ')'"),
    ("unknown dimension", body(filter=[*FULL_YEAR, "equals(Color,'red')"]),
     f"{ATTR}/filter/2", "'Color' is not filterable"),
    ("filter item not str", body(filter=[*FULL_YEAR, 3]), f"{ATTR}/filter/2", "strings"),
    ("dup lower", body(filter=[*FULL_YEAR, "greater-or-equal(datetime,2023-02-01T00:00:00)"]),
     f"{ATTR}/filter/2", "more than one greater-or-equal"),
    ("start after end", body(filter=["greater-or-equal(datetime,2023-09-04T00:00:00)",
                                     "less-than(datetime,2023-09-01T00:00:00)"]),
     f"{ATTR}/filter", "must be before"),
    ("start equals end", body(filter=["greater-or-equal(datetime,2023-09-04T00:00:00)",
                                      "less-than(datetime,2023-09-04T00:00:00)"]),
     f"{ATTR}/filter", "must be before"),
    ("over one year", body(filter=["greater-or-equal(datetime,2023-01-01T00:00:00)",
                                   "less-than(datetime,2024-01-01T00:00:01)"]),
     f"{ATTR}/filter", "at most one year"),
    ("over 5 years back", body(filter=["greater-or-equal(datetime,2018-10-14T23:59:59)",
                                       "less-than(datetime,2019-01-01T00:00:00)"]),
     f"{ATTR}/filter", "5 years"),
    ("bad timezone", body(timezone="Mars/Olympus"), f"{ATTR}/timezone", "'Mars/Olympus'"),
    ("timezone case", body(timezone="america/new_york"), f"{ATTR}/timezone", "case-sensitive"),
    ("Factory", body(timezone="Factory"), f"{ATTR}/timezone", "not a supported"),
    ("Kyiv", body(timezone="Europe/Kyiv"), f"{ATTR}/timezone", "not a supported"),
    ("Kanton", body(timezone="Pacific/Kanton"), f"{ATTR}/timezone", "not a supported"),
    ("page_size zero", body(page_size=0), f"{ATTR}/page_size", "positive integer"),
    ("page_size str", body(page_size="10"), f"{ATTR}/page_size", "positive integer"),
    ("page_size bool", body(page_size=True), f"{ATTR}/page_size", "positive integer"),
    ("bad cursor", body(page_cursor="!!!"), f"{ATTR}/page_cursor", "page_cursor"),
    ("cursor not ours", body(page_cursor="aGVsbG8"), f"{ATTR}/page_cursor", "page_cursor"),
    ("bad sort", body(sort="-color"), f"{ATTR}/sort", "not a valid sort"),
    ("sort on dim not in by", body(sort="$flow"), f"{ATTR}/sort", "neither in 'by'"),
    ("sort on unrequested measurement", body(measurements=["count"], sort="-unique"),
     f"{ATTR}/sort", "neither"),
    ("return_fields not list", body(return_fields="x"), f"{ATTR}/return_fields", "list"),
]


@pytest.mark.parametrize(("name", "request_body", "pointer", "needle"), INVALID,
                         ids=[case[0] for case in INVALID])
def test_validation_errors(name: str, request_body: Any, pointer: str, needle: str) -> None:
    with pytest.raises(AggregateError) as info:
        parse_query(request_body, METRICS, NOW)
    err = info.value
    assert (err.status, err.pointer) == (400, pointer), err.detail
    assert needle in err.detail
    assert str(err) == err.detail


def test_unknown_metric_is_404_after_other_checks() -> None:
    with pytest.raises(AggregateError) as info:
        parse_query(body(metric_id="NOPE"), METRICS, NOW)
    assert (info.value.status, info.value.pointer) == (404, f"{ATTR}/metric_id")
    assert "'NOPE'" in info.value.detail
    with pytest.raises(AggregateError) as info:
        parse_query(body(metric_id="NOPE", interval="year"), METRICS, NOW)
    assert info.value.status == 400


def test_window_limits_accept_exactly_one_year_and_five_years() -> None:
    q = parse_query(body(filter=FULL_YEAR), METRICS, NOW)
    assert (q.start, q.end) == (dt(2023, 1, 1), dt(2024, 1, 1))
    q = parse_query(body(timezone="America/New_York", filter=FULL_YEAR), METRICS, NOW)
    assert (q.start, q.end) == (dt(2023, 1, 1, 5), dt(2024, 1, 1, 5))
    q = parse_query(body(filter=["greater-or-equal(datetime,2018-10-15T00:00:00)",
                                 "less-than(datetime,2019-01-01T00:00:00)"]), METRICS, NOW)
    assert q.start == dt(2018, 10, 15)
    q = parse_query(body(filter=["greater-or-equal(datetime,2024-02-29T00:00:00)",
                                 "less-than(datetime,2025-02-28T00:00:00)"]), METRICS, NOW)
    assert q.end == dt(2025, 2, 28)
    with pytest.raises(AggregateError, match="one year"):
        parse_query(body(filter=["greater-or-equal(datetime,2024-02-29T00:00:00)",
                                 "less-than(datetime,2025-03-01T00:00:00)"]), METRICS, NOW)


def test_parsed_query_fields_and_defaults() -> None:
    q = parse_query(body(by=["$flow"], filter=[*FULL_YEAR, 'equals(URL,"https://x/")'],
                         return_fields=["dates"]), METRICS, NOW)
    assert q.metric_id == "M1"
    assert q.measurements == ("count", "sum_value", "unique")
    assert (q.interval, q.timezone, q.page_size, q.page_cursor, q.sort) == ("day", "UTC", 500, None, None)
    assert q.by == ("$flow",)
    assert [(c.op, c.field, c.value) for c in q.extra_conditions] == [("equals", "URL", "https://x/")]
    assert q.return_fields == ("dates",)
    assert q.start.tzinfo is not None and q.end.tzinfo is not None
