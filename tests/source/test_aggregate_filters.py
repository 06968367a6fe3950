"""Metric-aggregate filters in every form Klaviyo ANDs (several strings, one comma-joined string,
any order, `and(...)`, nested): the same windows are sent, each carrying the other conditions,
and the same rows are loaded, equal to the emulator's events."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from klaviyo import klaviyo_source
from klaviyo.aggregates import load_queries, split_windows
from klaviyo.errors import KlaviyoConfigError
from klaviyo.settings import report_table
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import query

UTC = UTC


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=13, profiles=150, events=3000, days=40)) as emu:
        yield emu


def _forms(gte: str, lt: str, dim: str) -> dict[str, list[str]]:
    """Name -> the `filter` list of one form; all of them mean gte AND lt AND dim."""
    return {
        "strings": [gte, lt, dim],
        "one_string": [f"{gte},{lt},{dim}"],
        "reversed": [f"{dim}, {lt}, {gte}"],
        "and_one": [f"and({gte},{lt},{dim})"],
        "and_mixed": [f"and({lt},{dim})", gte],
        "nested": [f"and(and({dim},{gte}),{lt})"],
    }


def _body(metric_id: str, filter_: list[str]) -> dict[str, Any]:
    return {"data": {"type": "metric-aggregate", "attributes": {
        "metric_id": metric_id, "measurements": ["count"], "interval": "month", "timezone": "UTC", "filter": filter_}}}


def _common_flow(emu: Emulator, metric_id: str) -> str:
    """The `$flow` most events of the metric carry (so the filter removes some and keeps some)."""
    counts: dict[str, int] = {}
    for event in emu.account.records("event"):
        flow = event["attributes"]["event_properties"].get("$flow")
        if event["relationships"]["metric"]["data"]["id"] == metric_id and flow:
            counts[flow] = counts.get(flow, 0) + 1
    return max(counts, key=lambda k: counts[k])


def test_every_filter_form_sends_the_same_windows_and_loads_the_same_rows(emulator: Emulator, make_pipeline: Any) -> None:
    metric_id = next(m["id"] for m in emulator.account.records("metric") if m["attributes"]["name"] == "Received Email")
    flow = _common_flow(emulator, metric_id)
    end = (datetime.now(UTC) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (end - timedelta(days=426)).replace(day=1)  # 14 months: two windows
    gte, lt = f"greater-or-equal(datetime,{start:%Y-%m-%dT%H:%M:%S})", f"less-than(datetime,{end:%Y-%m-%dT%H:%M:%S})"
    dim = f"equals($flow,'{flow}')"
    forms = _forms(gte, lt, dim)
    queries = {name: _body(metric_id, filter_) for name, filter_ in forms.items()}
    emulator.clear_log()
    pipeline = make_pipeline()
    pipeline.run(klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["metric_aggregates"],
                                aggregate_queries=queries)).raise_on_failed_jobs()

    # what was sent: per form two windows, the same bounds, each carrying the $flow condition
    path = report_table().others["metric_aggregates"].path  # the default revision's (2026-07-15: no trailing slash)
    posts = [r for r in emulator.request_log if r.method == "POST" and r.path == path]
    assert all(r.status == 200 for r in posts)
    sent = [r.body["data"]["attributes"]["filter"] for r in posts]
    assert len(sent) == 2 * len(forms)
    windows = sorted({tuple(f[:2]) for f in sent})
    assert len(windows) == 2
    assert windows[0][0] == gte and windows[1][1] == lt
    assert windows[0][1].replace("less-than", "greater-or-equal") == windows[1][0], "the windows meet on a bucket edge"
    assert all(f[2:] == [dim] for f in sent)

    # what was loaded: the same counts for every form, equal to the emulator's events of that flow
    rows = query(pipeline, "SELECT query_name, date, value FROM metric_aggregates WHERE measurement = 'count'")
    by_form: dict[str, dict[datetime, float]] = {}
    for name, date, value in rows:
        by_form.setdefault(name, {})[date] = value
    assert set(by_form) == set(forms)
    reference = by_form["strings"]
    assert all(counts == reference for counts in by_form.values())
    truth = sum(
        1 for e in emulator.account.records("event")
        if e["relationships"]["metric"]["data"]["id"] == metric_id and e["attributes"]["event_properties"].get("$flow") == flow
        and start <= datetime.fromisoformat(e["attributes"]["datetime"]).astimezone(UTC) < end
    )
    all_flows = sum(1 for e in emulator.account.records("event") if e["relationships"]["metric"]["data"]["id"] == metric_id)
    assert sum(reference.values()) == truth and 0 < truth < all_flows


@pytest.mark.parametrize(
    "filter_, message",
    [
        (["greater-or-equal(datetime,2026-01-01T00:00:00),greater-or-equal(datetime,2026-02-01T00:00:00),less-than(datetime,2026-03-01T00:00:00)"],
         "more than one greater-or-equal(datetime,...) bound"),
        (["and(greater-or-equal(datetime,2026-01-01T00:00:00),less-than(datetime,2026-03-01T00:00:00)"], "unbalanced"),
        (["greater-or-equal(datetime,2026-01-01T00:00:00),,less-than(datetime,2026-03-01T00:00:00)"], "empty condition"),
        (["or(greater-or-equal(datetime,2026-01-01T00:00:00),less-than(datetime,2026-03-01T00:00:00))"], "lacks a greater-or-equal"),
        (["greater-or-equal(datetime,2026-01-01T00:00:00)", 7], "not a string"),
    ],
)
def test_malformed_filters_fail_before_any_request(filter_: list[Any], message: str) -> None:
    with pytest.raises(KlaviyoConfigError) as error:
        load_queries({"q": _body("M1", filter_)})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_comma_joined_filter_is_split_into_windows_with_its_other_conditions() -> None:
    dim = 'equals(URL,"https://shop.example/a,b(c)")'  # commas and parentheses inside quotes stay
    one_string = f"less-than(datetime,2026-03-01T00:00:00),{dim},greater-or-equal(datetime,2025-01-01T00:00:00)"
    (parsed,) = load_queries({"q": _body("M1", [one_string])})
    assert (parsed.start, parsed.end) == (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    assert parsed.attributes["filter"] == [dim]
    windows = split_windows(parsed)
    assert len(windows) == 2 and windows[0][1] == windows[1][0] == datetime(2026, 1, 1, tzinfo=UTC)
    assert not re.search(r"datetime", " ".join(parsed.attributes["filter"]))
