"""POST /api/metric-aggregates/ over HTTP equals sums computed from the served events."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from klaviyo_emulator import Emulator
from tests.emulator.conftest import Http

UTC = UTC
START = datetime(2023, 10, 20, tzinfo=UTC)
END = datetime(2023, 10, 27, tzinfo=UTC)


def metric_id(emu: Emulator, name: str) -> str:
    return next(m["id"] for m in emu.account.records("metric") if m["attributes"]["name"] == name)


def query(mid: str, **attrs) -> dict:
    base = {"metric_id": mid, "measurements": ["count", "sum_value", "unique"],
            "interval": "day",
            "filter": [f"greater-or-equal(datetime,{START:%Y-%m-%dT%H:%M:%S})",
                       f"less-than(datetime,{END:%Y-%m-%dT%H:%M:%S})"]}
    return {"data": {"type": "metric-aggregate", "attributes": {**base, **attrs}}}


def expected(emu: Emulator, mid: str, by: str | None = None) -> dict:
    """(dimension tuple) -> per-day [count, sum, unique], computed from the ground truth."""
    days = [(START + timedelta(days=k)) for k in range((END - START).days)]
    rows: dict = defaultdict(lambda: [[0, 0.0, set()] for _ in days])
    for e in emu.account.events_between(START, END):
        if e["relationships"]["metric"]["data"]["id"] != mid:
            continue
        at = datetime.fromisoformat(e["attributes"]["datetime"])
        props = e["attributes"]["event_properties"]
        key = () if by is None else ((str(props[by]),) if by in props else ())
        cell = rows[key][(at - START).days]
        cell[0] += 1
        cell[1] += props.get("$value", 0.0)
        cell[2].add(e["relationships"]["profile"]["data"]["id"])
    return {k: [[c, round(s, 2), len(u)] for c, s, u in v] for k, v in rows.items()}


def served(doc: dict) -> dict:
    attrs = doc["data"]["attributes"]
    assert attrs["dates"] == [(START + timedelta(days=k)).isoformat()
                              for k in range((END - START).days)]
    out = {}
    for row in attrs["data"]:
        m = row["measurements"]
        out[tuple(row["dimensions"])] = [[int(c), round(s, 2), int(u)] for c, s, u in
                                         zip(m["count"], m["sum_value"], m["unique"], strict=False)]
    return out


def test_counts_sums_uniques_equal_ground_truth(emu: Emulator, http: Http) -> None:
    mid = metric_id(emu, "Placed Order")
    r = http.post("/api/metric-aggregates/", query(mid))
    assert r.status_code == 200, r.text[:300]
    got, want = served(r.json()), expected(emu, mid)
    assert got == want and sum(c for c, _, _ in want[()]) > 5


@pytest.mark.parametrize("metric,dimension", [("Placed Order", "$attributed_channel"),
                                              ("Received Email", "$flow"),
                                              ("Received Email", "Campaign Name"),
                                              ("Clicked Email", "URL")])
def test_grouping_by_dimension(emu: Emulator, http: Http, metric: str, dimension: str) -> None:
    mid = metric_id(emu, metric)
    r = http.post("/api/metric-aggregates/", query(mid, by=[dimension]))
    assert r.status_code == 200, r.text[:300]
    got, want = served(r.json()), expected(emu, mid, dimension)
    assert got == want and len(want) > 1


@pytest.mark.parametrize("form", ["strings", "one_string", "reversed", "and", "nested_and"])
def test_filter_forms_over_http_equal_ground_truth(emu: Emulator, http: Http, form: str) -> None:
    mid = metric_id(emu, "Received Email")
    flows = [str(e["attributes"]["event_properties"]["$flow"]) for e in emu.account.events_between(START, END)
             if e["relationships"]["metric"]["data"]["id"] == mid and "$flow" in e["attributes"]["event_properties"]]
    flow = max(set(flows), key=flows.count)
    gte, lt = query(mid)["data"]["attributes"]["filter"]
    dim = f"equals($flow,'{flow}')"
    filter_ = {"strings": [gte, lt, dim], "one_string": [f"{gte},{lt},{dim}"], "reversed": [f"{dim},{lt},{gte}"],
               "and": [f"and({gte},{lt},{dim})"], "nested_and": [f"and({lt},and({dim},{gte}))"]}[form]
    r = http.post("/api/metric-aggregates/", query(mid, filter=filter_, by=["$flow"]))
    assert r.status_code == 200, r.text[:300]
    assert served(r.json()) == {(flow,): expected(emu, mid, "$flow")[(flow,)]}


def test_metric_without_values_sums_to_zero(emu: Emulator, http: Http) -> None:
    mid = metric_id(emu, "Opened Email")
    got = served(http.post("/api/metric-aggregates/", query(mid)).json())
    assert all(s == 0 for row in got.values() for _, s, _ in row)
    assert sum(c for row in got.values() for c, _, _ in row) > 0


def test_month_buckets_cover_every_event_incl_future_ones(emu: Emulator, http: Http) -> None:
    mid = metric_id(emu, "Active on Site")
    window = query(mid, filter=["greater-or-equal(datetime,2023-10-01T00:00:00)",
                                "less-than(datetime,2023-12-01T00:00:00)"], interval="month")
    before = http.post("/api/metric-aggregates/", window).json()
    total_before = sum(before["data"]["attributes"]["data"][0]["measurements"]["count"])
    truth = sum(1 for e in emu.account.events_between(None, None)
                if e["relationships"]["metric"]["data"]["id"] == mid)
    assert total_before == truth


@pytest.mark.parametrize("attrs,status,pointer", [
    ({"metric_id": None}, 400, "/data/attributes/metric_id"),
    ({"measurements": ["median"]}, 400, "/data/attributes/measurements"),
    ({"interval": "minute"}, 400, "/data/attributes/interval"),
    ({"by": ["Color"]}, 400, "/data/attributes/by"),
    ({"filter": ["greater-or-equal(datetime,2022-01-01T00:00:00)",
                 "less-than(datetime,2023-06-01T00:00:00)"]}, 400, "/data/attributes/filter"),
    ({"filter": ["greater-or-equal(datetime,2023-10-01T00:00:00)"]}, 400,
     "/data/attributes/filter"),
    ({"metric_id": "NOPE00"}, 404, "/data/attributes/metric_id"),
])
def test_invalid_queries(emu: Emulator, http: Http, attrs: dict, status: int,
                         pointer: str) -> None:
    body = query(metric_id(emu, "Placed Order"))
    for key, value in attrs.items():
        if value is None:
            body["data"]["attributes"].pop(key)
        else:
            body["data"]["attributes"][key] = value
    r = http.post("/api/metric-aggregates/", body)
    assert r.status_code == status, r.text[:300]
    err = r.json()["errors"][0]
    assert err["source"]["pointer"].startswith(pointer) and err["detail"]


def test_body_and_media_type_errors(emu: Emulator, http: Http) -> None:
    r = http.session.post(http.base + "/api/metric-aggregates/", data="{not json",
                          headers={**http.headers, "content-type": "application/json"})
    assert r.status_code == 400
    r = http.session.post(http.base + "/api/metric-aggregates/", data="x=1",
                          headers={**http.headers, "content-type": "text/plain"})
    assert r.status_code == 415
    r = http.post("/api/metric-aggregates/", query(metric_id(emu, "Placed Order")),
                  headers={"content-type": "application/vnd.api+json"})
    assert r.status_code == 200
