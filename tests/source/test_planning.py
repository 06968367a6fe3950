"""Unit tests of the pure pieces: window planning, filter bounds, argument validation,
aggregate query validation and window splitting."""

from datetime import UTC, datetime, timedelta

import pytest

from klaviyo.aggregates import load_queries, split_windows
from klaviyo.errors import KlaviyoConfigError
from klaviyo.options import validate_options
from klaviyo.windows import Window, bound_conditions, combine, split_into

UTC = UTC
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_split_into_makes_consecutive_windows_that_cover_every_value_once() -> None:
    window = Window(T0, T0 + timedelta(hours=25), start_open=True, end_closed=True)
    parts = split_into(window, 5)
    assert len(parts) == 5
    assert parts[0].start == window.start and parts[-1].end == window.end
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
    assert parts[0].start_open and parts[-1].end_closed
    assert not any(p.end_closed for p in parts[:-1]) and not any(p.start_open for p in parts[1:])
    probes = [T0 + timedelta(minutes=m) for m in range(0, 25 * 60 + 1, 7)] + [p.start for p in parts] + [window.end]
    for probe in probes:
        owners = [p for p in parts if p.contains(probe)]
        assert len(owners) == (0 if probe == T0 else 1), probe


def test_bounds_use_exact_operators_where_allowed_and_widen_otherwise() -> None:
    window = Window(T0, T0 + timedelta(days=1))
    all_ops = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")
    assert bound_conditions("datetime", window, all_ops) == [
        "greater-or-equal(datetime,2024-01-01T00:00:00Z)",
        "less-than(datetime,2024-01-02T00:00:00Z)",
    ]
    assert bound_conditions("updated", window, ("greater-than", "less-than")) == [
        "greater-than(updated,2023-12-31T23:59:59Z)",
        "less-than(updated,2024-01-02T00:00:00Z)",
    ]
    custom = Window(T0, T0 + timedelta(days=1), start_open=True, end_closed=True)
    assert bound_conditions("datetime", custom, all_ops) == [
        "greater-than(datetime,2024-01-01T00:00:00Z)",
        "less-or-equal(datetime,2024-01-02T00:00:00Z)",
    ]
    assert combine(["a(x,1)", "b(y,2)"]) == "and(a(x,1),b(y,2))"
    assert combine([]) is None


def _options(**overrides: object) -> dict:
    base = dict(api_key="pk_demo", base_url="https://a.klaviyo.com", revision="2023-10-15", reports=None,
                start_date=None, end_date=None, lookback_hours=0, workers=4, min_window_minutes=None)
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"api_key": ""}, "No Klaviyo API key"),
        ({"base_url": "ftp://a.klaviyo.com"}, "is not an http(s) URL"),
        ({"revision": "15-10-2023"}, "revision '15-10-2023' is malformed"),
        ({"reports": "events,evnts"}, "Unknown report 'evnts'"),
        ({"start_date": "2024-01-02 23:20:49"}, "start_date '2024-01-02 23:20:49' is not a datetime in the format YYYY-MM-DDTHH:MM:SSZ"),
        ({"start_date": "2024-01-09T00:00:00Z", "end_date": "2024-01-02T00:00:00Z"}, "start_date 2024-01-09T00:00:00Z is not before end_date 2024-01-02T00:00:00Z"),
        ({"end_date": "2024-01-02T00:00:00Z"}, "end_date needs start_date; give both"),
        ({"start_date": "2024-01-02T00:00:00Z", "end_date": "2024-01-09T00:00:00Z", "reports": "metrics"}, "run it without start_date/end_date"),
        ({"api_key": "garbage"}, "The Klaviyo API key does not start with pk_"),
        ({"api_key": "pk_ab"}, "The Klaviyo API key is malformed"),
        ({"api_key": "pk_ab*cd"}, "The Klaviyo API key is malformed"),
        ({"workers": 0}, "workers 0 is below its minimum 1"),
    ],
)
def test_bad_arguments_fail_with_one_line_naming_the_problem(overrides: dict, message: str) -> None:
    with pytest.raises(KlaviyoConfigError) as error:
        validate_options(**_options(**overrides))
    assert message in str(error.value)
    assert "\n" not in str(error.value) and "{" not in str(error.value)
    assert overrides.get("api_key") in (None, "") or overrides["api_key"] not in str(error.value)


@pytest.mark.parametrize("key", ["pk_demo", "pk_" + "0123456789abcdef" * 2 + "ab", "pk_BadInputTestKey_51ce", "pk_a-b-c-d"])
def test_plausible_private_keys_are_accepted(key: str) -> None:
    """Lenient on purpose: Klaviyo's keys are pk_ and 34 hex digits; the emulator's are shorter."""
    assert validate_options(**_options(api_key=key)).api_key == key


def _query(start: str, end: str, interval: str = "day") -> dict:
    return {"data": {"type": "metric-aggregate", "attributes": {
        "metric_id": "M1", "measurements": ["count"], "interval": interval,
        "filter": [f"greater-or-equal(datetime,{start})", f"less-than(datetime,{end})"]}}}


def test_a_fourteen_month_query_becomes_two_windows_cut_on_a_bucket_boundary() -> None:
    (query,) = load_queries({"q": _query("2023-01-01T00:00:00", "2024-03-01T00:00:00", "month")})
    windows = split_windows(query)
    assert len(windows) == 2
    assert windows[0][0] == query.start and windows[-1][1] == query.end
    assert windows[0][1] == windows[1][0] == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "is not valid JSON"),
        ({"q": {"data": {"attributes": {"measurements": ["count"]}}}}, "metric_id is missing"),
        ({"q": {"data": {"attributes": {"metric_id": "M", "measurements": ["median"], "filter": []}}}}, "unknown measurement 'median'"),
        ({"q": {"data": {"attributes": {"metric_id": "M", "measurements": ["count"], "interval": "year"}}}}, "interval 'year' is unknown"),
        ({"q": {"data": {"attributes": {"metric_id": "M", "measurements": ["count"], "by": ["$nope"]}}}}, "unknown dimension '$nope'"),
        ({"q": {"data": {"attributes": {"metric_id": "M", "measurements": ["count"], "filter": ["less-than(datetime,2024-01-01T00:00:00)"]}}}}, "lacks a greater-or-equal(datetime,...) bound"),
    ],
)
def test_bad_aggregate_queries_fail_before_any_request(raw: object, message: str) -> None:
    with pytest.raises(KlaviyoConfigError) as error:
        load_queries(raw)
    assert message in str(error.value)
