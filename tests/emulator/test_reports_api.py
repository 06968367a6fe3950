"""The reporting API of 2026-07-15: every family answers, its numbers are recounts of the
served events and memberships, day windows add up, validation, paging, the daily rate
limit, and attribution revised by a mutation."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from klaviyo_emulator import Emulator
from klaviyo_emulator.reports import ADDITIVE, ReportError, key_days
from tests.emulator.conftest import LIMITED, NOW, Http, small_config
from tests.emulator.test_limits_faults import Clock

REV = "2026-07-15"
UTC = UTC
MESSAGE_METRICS = {"Received Email": "delivered", "Received SMS": "delivered",
                   "Bounced Email": "bounced", "Opened Email": "opens",
                   "Clicked Email": "clicks", "Clicked SMS": "clicks",
                   "Unsubscribed": "unsubscribes"}
COUNTS = ["recipients", "delivered", "bounced", "opens", "clicks", "unsubscribes",
          "conversions", "conversion_value"]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(small_config(report_page_size=7)) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def http(emu: Emulator) -> Http:
    return Http(emu, REV)


def placed_id(emu: Emulator) -> str:
    return next(m["id"] for m in emu.account.records("metric")
                if m["attributes"]["name"] == "Placed Order")


def body(kind: str, **attributes: Any) -> dict:
    return {"data": {"type": f"{kind}-report", "attributes": attributes}}


def days(first: str, last: str) -> dict[str, str]:
    """A custom timeframe from the first to the last day (both included)."""
    return {"start": f"{first}T00:00:00", "end": f"{last}T00:00:00"}


def recount(emu: Emulator) -> dict[tuple[str, str], Counter]:
    """(message id, day) -> counts, recounted from the served 2026-07-15 events and their
    attributions (independently of the emulator's report code)."""
    acc = emu.account
    names = {m["id"]: m["attributes"]["name"] for m in acc.records("metric", revision=REV)}
    attributed: dict[str, list[str]] = defaultdict(list)
    for a in acc.records("attribution", revision=REV):
        rel = a["relationships"]
        for name in ("campaign-message", "flow-message"):
            if name in rel:
                attributed[rel["event"]["data"]["id"]].append(rel[name]["data"]["id"])
    out: dict[tuple[str, str], Counter] = defaultdict(Counter)
    uniques: dict[tuple[str, str, str], set] = defaultdict(set)
    for e in acc.records("event", revision=REV):
        metric = e["relationships"].get("metric")
        if metric is None:
            continue
        name = names[metric["data"]["id"]]
        day = e["attributes"]["datetime"][:10]
        props = e["attributes"]["event_properties"]
        profile = e["relationships"]["profile"]["data"]["id"]
        stat = MESSAGE_METRICS.get(name)
        if stat and "$message" in props:
            out[(props["$message"], day)][stat] += 1
            uniques[(props["$message"], day, stat)].add(profile)
        if name == "Placed Order":
            for mid in attributed.get(e["id"], []):
                out[(mid, day)]["conversions"] += 1
                out[(mid, day)]["conversion_value"] += props["$value"]
    for (mid, day, stat), profiles in uniques.items():
        out[(mid, day)][stat + "_unique"] = len(profiles)
    for counts in out.values():
        counts["recipients"] = counts["delivered"] + counts["bounced"]
    return out


# ----------------------------------------------------------------------- every family
FAMILIES = [
    ("campaign-values", {"statistics": ["opens", "open_rate"], "timeframe": {"key": "last_30_days"}}),
    ("flow-values", {"statistics": ["clicks", "click_rate"], "timeframe": {"key": "last_30_days"}}),
    ("flow-series", {"statistics": ["delivered"], "timeframe": {"key": "last_7_days"},
                     "interval": "daily"}),
    ("form-values", {"statistics": ["viewed_form", "submits"], "timeframe": {"key": "last_30_days"}}),
    ("form-series", {"statistics": ["submit_rate"], "timeframe": {"key": "last_7_days"},
                     "interval": "weekly"}),
    ("segment-values", {"statistics": ["total_members"], "timeframe": {"key": "last_30_days"}}),
    ("segment-series", {"statistics": ["members_added"], "timeframe": {"key": "last_7_days"},
                        "interval": "daily"}),
]


@pytest.mark.parametrize("kind,attributes", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_each_family_answers_only_in_2026(emu: Emulator, kind: str, attributes: dict) -> None:
    attrs = dict(attributes)
    if kind.startswith(("campaign", "flow")):
        attrs["conversion_metric_id"] = placed_id(emu)
    path = f"/api/{kind}-reports"
    r = Http(emu, REV).post(path, body(kind, **attrs))
    assert r.status_code == 200, r.text[:300]
    doc = r.json()
    assert doc["data"]["type"] == f"{kind}-report"
    results = doc["data"]["attributes"]["results"]
    assert results and all(set(row["statistics"]) == set(attrs["statistics"]) for row in results)
    assert ("date_times" in doc["data"]["attributes"]) == kind.endswith("series")
    old = Http(emu, "2023-10-15").post(path, body(kind, **attrs))
    assert old.status_code == 404 and "2023-10-15" in old.json()["errors"][0]["detail"]


def test_ground_truth_equals_the_http_answer(emu: Emulator, http: Http) -> None:
    attrs = {"statistics": ["delivered", "opens_unique", "conversion_value"],
             "timeframe": days("2023-10-20", "2023-10-31"), "interval": "daily",
             "conversion_metric_id": placed_id(emu)}
    truth = emu.report("flow-series", **attrs)
    doc = http.post("/api/flow-series-reports", body("flow-series", **attrs)).json()
    served = list(doc["data"]["attributes"]["results"])
    while doc["links"].get("next"):  # 7 results a page in this module
        doc = http.session.post(doc["links"]["next"], data=json.dumps(body("flow-series", **attrs)),
                                headers={**http.headers, "content-type": "application/json"}).json()
        served += doc["data"]["attributes"]["results"]
    assert served == truth["results"] and len(served) > 7
    assert doc["data"]["attributes"]["date_times"] == truth["date_times"]


# ------------------------------------------------------------------- counts are recounts
def test_message_statistics_are_counts_of_the_served_events(emu: Emulator) -> None:
    truth = recount(emu)
    placed = placed_id(emu)
    stats = COUNTS + ["opens_unique", "clicks_unique"]
    checked = 0
    for kind, parent in (("campaign", "campaign_message_id"), ("flow", "flow_message_id")):
        for day in ("2023-10-10", "2023-10-29"):
            rows = emu.report(f"{kind}-values", statistics=stats, timeframe=days(day, day),
                              conversion_metric_id=placed)["results"]
            got = {row["groupings"][parent]: row["statistics"] for row in rows}
            want = {mid: c for (mid, d), c in truth.items() if d == day and
                    (mid in got or (mid in {m["id"] for m in emu.account.records(
                        f"{kind}-message", revision=REV)} and any(c.values())))}
            assert set(got) == set(want), (kind, day)
            for mid, s in got.items():
                for stat in stats:
                    assert s[stat] == pytest.approx(want[mid][stat]), (kind, day, mid, stat)
            checked += len(got)
    assert checked > 20
    conversions = sum(c["conversions"] for c in truth.values())
    assert conversions > 0


def test_rates_follow_their_definitions(emu: Emulator) -> None:
    stats = ["delivered", "recipients", "bounced", "opens_unique", "clicks_unique",
             "conversions", "conversion_uniques", "conversion_value", "open_rate",
             "click_rate", "click_to_open_rate", "bounce_rate", "delivery_rate",
             "conversion_rate", "average_order_value", "revenue_per_recipient"]
    rows = emu.report("campaign-values", statistics=stats, timeframe={"key": "last_30_days"},
                      conversion_metric_id=placed_id(emu))["results"]
    assert any(r["statistics"]["conversions"] for r in rows)
    for row in rows:
        s = row["statistics"]

        def ratio(a: float, b: float) -> float:
            return a / b if b else 0.0
        assert s["open_rate"] == ratio(s["opens_unique"], s["delivered"])
        assert s["click_rate"] == ratio(s["clicks_unique"], s["delivered"])
        assert s["click_to_open_rate"] == ratio(s["clicks_unique"], s["opens_unique"])
        assert s["bounce_rate"] == ratio(s["bounced"], s["recipients"])
        assert s["delivery_rate"] == ratio(s["delivered"], s["recipients"])
        assert s["conversion_rate"] == ratio(s["conversion_uniques"], s["delivered"])
        assert s["average_order_value"] == pytest.approx(ratio(s["conversion_value"], s["conversions"]))
        assert s["revenue_per_recipient"] == pytest.approx(ratio(s["conversion_value"], s["delivered"]))


def test_sms_segments_credits_and_spend(emu: Emulator) -> None:
    rows = emu.report("campaign-values", statistics=[
        "delivered", "message_segment_count_sum", "text_message_credit_usage_amount",
        "text_message_spend"], timeframe={"key": "last_30_days"}, conversion_metric_id=placed_id(emu),
        group_by=["campaign_id", "campaign_message_id", "send_channel", "text_message_format"])["results"]
    sms = [r for r in rows if r["groupings"]["send_channel"] == "sms"]
    assert sms and all(r["groupings"]["text_message_format"] == "MMS" for r in sms)  # media attached
    for r in sms:
        s = r["statistics"]
        assert s["message_segment_count_sum"] == s["delivered"]
        assert s["text_message_credit_usage_amount"] == 3 * s["delivered"]
        assert s["text_message_spend"] == round(0.03 * s["delivered"], 2)
    for r in rows:
        if r["groupings"]["send_channel"] == "email":
            assert r["statistics"]["text_message_spend"] == 0 and r["groupings"]["text_message_format"] is None


def test_form_submits_are_form_subscriptions(emu: Emulator) -> None:
    acc = emu.account
    names = {m["id"]: m["attributes"]["name"] for m in acc.records("metric", revision=REV)}
    subs = Counter(e["attributes"]["datetime"][:10] for e in acc.records("event", revision=REV)
                   if "metric" in e["relationships"]
                   and names[e["relationships"]["metric"]["data"]["id"]] == "Subscribed to List"
                   and e["attributes"]["event_properties"].get("Method") == "Form")
    report = emu.report("form-series", statistics=["submits", "viewed_form", "qualified_form",
                                                   "closed_form", "viewed_form_uniques"],
                        timeframe=days("2023-10-01", "2023-10-31"), interval="daily")
    for k, day in enumerate(report["date_times"]):
        assert sum(r["statistics"]["submits"][k] for r in report["results"]) == subs[day[:10]]
    for r in report["results"]:
        s = r["statistics"]
        for k in range(len(report["date_times"])):
            assert s["qualified_form"][k] >= s["viewed_form"][k] >= max(s["submits"][k], s["closed_form"][k])
            assert s["viewed_form_uniques"][k] <= s["viewed_form"][k]
    assert sum(subs.values()) > 0 and len(report["results"]) == 4


def test_segment_series_follow_the_memberships(emu: Emulator) -> None:
    acc = emu.account
    report = emu.report("segment-series", statistics=["members_added", "members_removed",
                                                      "net_members_changed", "total_members"],
                        timeframe=days("2023-09-01", "2023-10-30"), interval="daily")
    assert len(report["date_times"]) == 60
    removed = 0
    for row in report["results"]:
        gid = row["groupings"]["segment_id"]
        s = row["statistics"]
        joined = Counter(ts.date().isoformat() for _, ts in acc.segment_members(gid))
        for k, day in enumerate(report["date_times"]):
            assert s["net_members_changed"][k] == s["members_added"][k] - s["members_removed"][k]
            assert s["members_added"][k] >= joined[day[:10]]  # members' joins, plus former members'
            if k:
                assert s["total_members"][k] == s["total_members"][k - 1] + s["net_members_changed"][k]
        removed += sum(s["members_removed"])
    assert removed > 0
    today = emu.report("segment-values", statistics=["total_members"], timeframe={"key": "today"})
    for row in today["results"]:
        assert row["statistics"]["total_members"] == len(acc.segment_members(row["groupings"]["segment_id"]))
    assert {r["groupings"]["segment_id"] for r in today["results"]} == set(acc.small["segment"])


# ------------------------------------------------------------------------ windows add up
def test_day_windows_add_up_to_one_query(emu: Emulator) -> None:
    placed = placed_id(emu)
    stats = ["recipients", "delivered", "opens", "clicks", "conversions", "conversion_value",
             "bounced", "unsubscribes", "message_segment_count_sum", "text_message_spend"]
    assert set(stats) <= ADDITIVE
    for kind, key in (("campaign", "campaign_message_id"), ("flow", "flow_message_id")):
        whole = emu.report(f"{kind}-values", statistics=stats, timeframe=days("2023-10-02", "2023-10-31"),
                           conversion_metric_id=placed)["results"]
        summed: dict[str, Counter] = defaultdict(Counter)
        for day in range(2, 32):
            one = f"2023-10-{day:02d}"
            for row in emu.report(f"{kind}-values", statistics=stats, timeframe=days(one, one),
                                  conversion_metric_id=placed)["results"]:
                summed[row["groupings"][key]].update(row["statistics"])
        assert {r["groupings"][key] for r in whole} == set(summed)
        for row in whole:
            for stat in stats:
                assert row["statistics"][stat] == pytest.approx(summed[row["groupings"][key]][stat])
    # a series over 60 days = two series of 30 days, bucket by bucket
    attrs = {"statistics": ["delivered", "conversion_value"], "interval": "daily",
             "conversion_metric_id": placed}
    both = emu.report("flow-series", timeframe=days("2023-09-02", "2023-10-31"), **attrs)
    first = emu.report("flow-series", timeframe=days("2023-09-02", "2023-10-01"), **attrs)
    second = emu.report("flow-series", timeframe=days("2023-10-02", "2023-10-31"), **attrs)
    assert both["date_times"] == first["date_times"] + second["date_times"]
    halves = {tuple(r["groupings"].values()): r["statistics"] for r in first["results"]}
    rest = {tuple(r["groupings"].values()): r["statistics"] for r in second["results"]}
    for row in both["results"]:
        g = tuple(row["groupings"].values())
        zeros = {"delivered": [0] * 30, "conversion_value": [0.0] * 30}
        assert row["statistics"] == {s: halves.get(g, zeros)[s] + rest.get(g, zeros)[s]
                                     for s in attrs["statistics"]}


def test_timeframes_cover_both_end_days(emu: Emulator) -> None:
    """Windows cut at midnight but written end = next start count the shared day twice."""
    placed = placed_id(emu)

    def total(timeframe: dict) -> int:
        return sum(r["statistics"]["delivered"] for r in emu.report(
            "flow-values", statistics=["delivered"], timeframe=timeframe,
            conversion_metric_id=placed)["results"])
    one, two, both = (total(days("2023-10-10", "2023-10-10")), total(days("2023-10-11", "2023-10-11")),
                      total(days("2023-10-10", "2023-10-11")))
    assert one and two and both == one + two
    overlapping = (total({"start": "2023-10-10T00:00:00", "end": "2023-10-11T00:00:00"})
                   + total({"start": "2023-10-11T00:00:00", "end": "2023-10-12T00:00:00"}))
    assert overlapping == total(days("2023-10-10", "2023-10-12")) + two  # day 11 twice
    assert total({"start": "2023-10-10T23:59:59-08:00", "end": "2023-10-10T00:00:01+05:00"}) == one


def test_timeframe_keys_and_buckets(emu: Emulator) -> None:
    today = NOW.date()  # Wednesday 2023-11-01
    assert key_days("today", today) == (today, today)
    assert key_days("yesterday", today) == (date(2023, 10, 31),) * 2
    assert key_days("last_7_days", today) == (date(2023, 10, 25), date(2023, 10, 31))
    assert key_days("this_week", today) == (date(2023, 10, 30), today)
    assert key_days("last_week", today) == (date(2023, 10, 23), date(2023, 10, 29))
    assert key_days("last_month", today) == (date(2023, 10, 1), date(2023, 10, 31))
    assert key_days("last_12_months", today) == (date(2022, 11, 1), date(2023, 10, 31))
    assert key_days("last_year", today) == (date(2022, 1, 1), date(2022, 12, 31))
    attrs = {"statistics": ["submits"], "timeframe": days("2023-10-04", "2023-10-17")}
    weekly = emu.report("form-series", interval="weekly", **attrs)["date_times"]
    assert weekly == ["2023-10-04T00:00:00+00:00", "2023-10-09T00:00:00+00:00",
                      "2023-10-16T00:00:00+00:00"]
    monthly = emu.report("form-series", interval="monthly",
                         statistics=["submits"], timeframe=days("2023-08-15", "2023-10-31"))
    assert monthly["date_times"] == ["2023-08-15T00:00:00+00:00", "2023-09-01T00:00:00+00:00",
                                     "2023-10-01T00:00:00+00:00"]
    hourly = emu.report("form-series", interval="hourly", statistics=["viewed_form"],
                        timeframe=days("2023-10-30", "2023-10-31"))
    assert len(hourly["date_times"]) == 48 and hourly["date_times"][1] == "2023-10-30T01:00:00+00:00"
    daily = emu.report("form-series", interval="daily", statistics=["viewed_form"],
                       timeframe=days("2023-10-30", "2023-10-31"))
    for h, d in zip(hourly["results"], daily["results"], strict=False):
        assert [sum(h["statistics"]["viewed_form"][:24]), sum(h["statistics"]["viewed_form"][24:])] == \
            d["statistics"]["viewed_form"]


# ----------------------------------------------------------------------------- errors
BAD = [
    ("campaign-values", {"timeframe": {"key": "today"}}, "/data/attributes/statistics"),
    ("campaign-values", {"statistics": ["open_rate"], "timeframe": {"key": "today"}},
     "/data/attributes/conversion_metric_id"),
    ("campaign-values", {"statistics": ["opened"], "timeframe": {"key": "today"}, "cm": 1},
     "/data/attributes/statistics"),
    ("form-values", {"statistics": ["opens"], "timeframe": {"key": "today"}}, "/data/attributes/statistics"),
    ("segment-values", {"statistics": ["submits"], "timeframe": {"key": "today"}}, "/data/attributes/statistics"),
    ("campaign-values", {"statistics": ["opens"], "timeframe": {"key": "today"}, "cm": 1,
                         "group_by": ["campaign_id", "flow_id"]}, "/data/attributes/group_by"),
    ("flow-values", {"statistics": ["opens"], "timeframe": {"key": "today"}, "cm": 1,
                     "group_by": ["flow_id", "send_channel"]}, "/data/attributes/group_by"),
    ("form-values", {"statistics": ["submits"], "timeframe": {"key": "today"},
                     "group_by": ["form_version_id"]}, "/data/attributes/group_by"),
    ("segment-values", {"statistics": ["total_members"], "timeframe": {"key": "today"},
                        "group_by": ["segment_id"]}, "/data/attributes/group_by"),
    ("form-values", {"statistics": ["submits"], "timeframe": days("2022-10-01", "2023-10-01")},
     "/data/attributes/timeframe"),
    ("form-values", {"statistics": ["submits"], "timeframe": days("2023-10-02", "2023-10-01")},
     "/data/attributes/timeframe"),
    ("form-values", {"statistics": ["submits"], "timeframe": {"key": "last_2_days"}},
     "/data/attributes/timeframe/key"),
    ("form-values", {"statistics": ["submits"], "timeframe": {"key": "today", "start": "2023-10-01"}},
     "/data/attributes/timeframe"),
    ("form-values", {"statistics": ["submits"], "timeframe": {"start": "yesterday", "end": "2023-10-01"}},
     "/data/attributes/timeframe/start"),
    ("form-values", {"statistics": ["submits"], "timeframe": {"key": "today"}, "interval": "daily"},
     "/data/attributes/interval"),
    ("form-series", {"statistics": ["submits"], "timeframe": {"key": "today"}}, "/data/attributes/interval"),
    ("form-series", {"statistics": ["submits"], "timeframe": {"key": "today"}, "interval": "yearly"},
     "/data/attributes/interval"),
    ("form-series", {"statistics": ["submits"], "timeframe": {"key": "last_90_days"}, "interval": "daily"},
     "/data/attributes/timeframe"),
    ("flow-series", {"statistics": ["opens"], "timeframe": days("2023-10-01", "2023-10-08"), "cm": 1,
                     "interval": "hourly"}, "/data/attributes/timeframe"),
    ("form-series", {"statistics": ["submits"], "timeframe": {"key": "last_365_days"}, "interval": "monthly"},
     "/data/attributes/timeframe"),
    ("segment-series", {"statistics": ["total_members"], "timeframe": days("2023-05-31", "2023-06-30"),
                        "interval": "weekly"}, "/data/attributes/timeframe"),
    ("flow-values", {"statistics": ["opens"], "timeframe": {"key": "today"},
                     "conversion_metric_id": "NOPE00"}, "/data/attributes/conversion_metric_id"),
    ("flow-values", {"statistics": ["opens"], "timeframe": {"key": "today"}, "cm": 1,
                     "filter": "equals(campaign_id,\"x\")"}, "/data/attributes/filter"),
    ("flow-values", {"statistics": ["opens"], "timeframe": {"key": "today"}, "cm": 1,
                     "filter": "and(equals(flow_id,\"a\"),contains-any(flow_id,[\"b\"]))"},
     "/data/attributes/filter"),
    ("flow-values", {"statistics": ["opens"], "timeframe": {"key": "today"}, "cm": 1,
                     "filter": "equals(send_channel,\"fax\")"}, "/data/attributes/filter"),
    ("flow-values", {"statistics": ["opens"], "timeframe": {"key": "today"}, "cm": 1,
                     "filter": "or(equals(flow_id,\"a\"),equals(flow_id,\"b\"))"}, "/data/attributes/filter"),
    ("flow-values", {"statistics": ["opens"], "timeframe": {"key": "today"}, "cm": 1,
                     "filter": "equals(tag_id,\"a\")"}, "/data/attributes/filter"),
    ("segment-values", {"statistics": ["total_members"], "timeframe": {"key": "today"},
                        "filter": "any(segment_id,[" + ",".join(f'"s{i}"' for i in range(101)) + "])"},
     "/data/attributes/filter"),
]


@pytest.mark.parametrize("kind,attributes,pointer", BAD, ids=[f"{b[0]}:{b[2].split('/')[-1]}:{i}"
                                                              for i, b in enumerate(BAD)])
def test_invalid_requests_are_400s(emu: Emulator, http: Http, kind: str, attributes: dict,
                                   pointer: str) -> None:
    attrs = dict(attributes)
    if attrs.pop("cm", None):
        attrs["conversion_metric_id"] = placed_id(emu)
    r = http.post(f"/api/{kind}-reports", body(kind, **attrs))
    assert r.status_code == 400, r.text[:300]
    err = r.json()["errors"][0]
    assert err["code"] == "invalid" and err["source"] == {"pointer": pointer}, err
    with pytest.raises(ReportError):
        emu.report(kind, **attrs)


def test_malformed_requests(emu: Emulator, http: Http) -> None:
    attrs = {"statistics": ["submits"], "timeframe": {"key": "today"}}
    path = "/api/form-values-reports"
    assert http.post(path, {"data": {"type": "form-series-report", "attributes": attrs}}).json()[
        "errors"][0]["source"] == {"pointer": "/data/type"}
    r = http.session.post(http.base + path, data=b"{nope", headers={**http.headers,
                                                                     "content-type": "application/json"})
    assert r.status_code == 400
    r = http.session.post(http.base + path, data=json.dumps(body("form-values", **attrs)),
                          headers={**http.headers, "content-type": "text/plain"})
    assert r.status_code == 415
    r = http.post(path + "?page_cursor=abc", body("form-values", **attrs))  # forms do not page
    assert r.status_code == 400 and r.json()["errors"][0]["source"] == {"parameter": "page_cursor"}
    cm = placed_id(emu)
    flow = body("flow-values", statistics=["opens"], timeframe={"key": "last_30_days"},
                conversion_metric_id=cm)
    r = http.post("/api/flow-values-reports?page_cursor=forged", flow)
    assert r.status_code == 400
    nxt = http.post("/api/flow-values-reports", flow).json()["links"]["next"]
    other = body("flow-values", statistics=["clicks"], timeframe={"key": "last_30_days"},
                 conversion_metric_id=cm)
    r = http.session.post(nxt, data=json.dumps(other), headers={**http.headers,
                                                                "content-type": "application/json"})
    assert r.status_code == 400 and "another query" in r.json()["errors"][0]["detail"]
    r = http.post(path, body("form-values", **attrs), headers={"Authorization": f"Klaviyo-API-Key {LIMITED}"})
    assert r.status_code == 403 and "forms:read" in r.json()["errors"][0]["detail"]
    r = http.post(path + "?fields[form-values-report]=results", body("form-values", **attrs))
    assert r.status_code == 200 and set(r.json()["data"]["attributes"]) == {"results"}


def test_filters_narrow_the_groupings(emu: Emulator) -> None:
    cm = placed_id(emu)
    base = {"statistics": ["delivered"], "timeframe": {"key": "last_30_days"},
            "conversion_metric_id": cm}
    rows = emu.report("campaign-values", **base, group_by=[
        "campaign_id", "campaign_message_id", "send_channel", "tag_id", "tag_name"])["results"]
    tagged = next(r["groupings"] for r in rows if r["groupings"]["tag_id"])
    by_tag = emu.report("campaign-values", **base, filter=f"contains-any(tag_id,[\"{tagged['tag_id']}\"])",
                        group_by=["campaign_id", "campaign_message_id", "tag_id"])["results"]
    assert by_tag and all(r["groupings"]["campaign_id"] in {x["groupings"]["campaign_id"] for x in rows
                                                            if x["groupings"]["tag_id"] == tagged["tag_id"]}
                          for r in by_tag)
    sms = emu.report("campaign-values", **base, filter="equals(send_channel,'sms')")["results"]
    assert sms and {r["groupings"]["send_channel"] for r in sms} == {"sms"}
    one = sms[0]["groupings"]["campaign_id"]
    only = emu.report("campaign-values", **base,
                      filter=f"and(equals(campaign_id,\"{one}\"),contains-any(send_channel,[\"sms\",\"email\"]))")
    assert [r["groupings"]["campaign_id"] for r in only["results"]] == [one]


# ------------------------------------------------------------------------- rate limits
def test_daily_limit_per_reporting_endpoint() -> None:
    with Emulator(small_config(events=300, profiles=50, rate_limits=True, report_daily_limit=2,
                               report_day_seconds=3600)) as emu:
        clock = Clock(3_000_000.5)
        emu.limiter.clock = clock
        http = Http(emu, REV)
        path = "/api/segment-values-reports"

        def post(p: str = path) -> Any:
            stat = "total_members" if p == path else "submits"
            return http.post(p, body(p[5:-8], statistics=[stat], timeframe={"key": "today"}))
        assert post().status_code == 200
        assert post().status_code == 429  # burst: 1/s
        clock.t += 1
        assert post().status_code == 200
        clock.t += 61  # a new minute: the steady 2/min frees, the daily 2 does not
        r = post()
        assert r.status_code == 429 and int(r.headers["Retry-After"]) == 3600 - 62
        assert "daily limit of 2 requests" in r.json()["errors"][0]["detail"]
        assert post("/api/form-values-reports").status_code == 200  # per endpoint
        clock.t += 3600 - 62
        assert post().status_code == 200  # the first of the day has left the window
        emu.set_rate_limits(False)
        assert [post().status_code for _ in range(5)] == [200] * 5
        emu.set_rate_limits(True)
        clock.t += 120
        assert post().status_code == 429 and "daily" in post().json()["errors"][0]["detail"]
        emu.reset_rate_limits()
        assert post().status_code == 200


# ----------------------------------------------------------------- revised attribution
def test_mutation_revises_attribution_of_recent_orders() -> None:
    with Emulator(small_config()) as emu:
        cm = placed_id(emu)
        attrs = {"statistics": ["conversions", "conversion_value"], "timeframe": days("2023-10-27", "2023-11-01"),
                 "conversion_metric_id": cm,
                 "group_by": ["campaign_id", "campaign_message_id", "send_channel"]}
        before = {tuple(r["groupings"].values()): r["statistics"]
                  for r in emu.report("campaign-values", **attrs)["results"]}
        old = emu.report("campaign-values", **{**attrs, "timeframe": days("2023-10-01", "2023-10-20")})
        attributions = {a["id"] for a in emu.account.records("attribution", revision=REV)}
        out = emu.mutate(create=0, update=0, delete=0, revise_attribution=6)
        revised = out["event"]["revised"]
        assert len(revised) == 6
        after = {tuple(r["groupings"].values()): r["statistics"]
                 for r in emu.report("campaign-values", **attrs)["results"]}
        assert before != after
        assert emu.report("campaign-values", **{**attrs, "timeframe": days("2023-10-01", "2023-10-20")}) == old
        events = {e["id"]: e for e in emu.account.records("event", revision=REV) if e["id"] in revised}
        for e in events.values():
            assert e["attributes"]["datetime"] >= "2023-10-27"
            ids = {a["id"] for a in e["relationships"]["attributions"]["data"]}
            assert ids and not ids & attributions  # new attributions, served with the event
        truth = recount(emu)
        for (_, mid, _), s in after.items():
            want = sum(c["conversions"] for (m, d), c in truth.items()
                       if m == mid and "2023-10-27" <= d <= "2023-11-01")
            assert s["conversions"] == want


def test_deleted_profile_leaves_its_segments() -> None:
    with Emulator(small_config()) as emu:
        acc = emu.account
        gid = max(acc.small["segment"], key=lambda g: len(acc.members("segment", g)))
        members = {p for p, _ in acc.segment_members(gid)}
        attrs = {"statistics": ["members_removed", "total_members"], "timeframe": {"key": "today"},
                 "filter": f"equals(segment_id,\"{gid}\")"}
        before = emu.report("segment-values", **attrs)["results"][0]["statistics"]
        for seed in range(1, 40):
            out = emu.mutate(seed=seed, create=0, update=0, delete=3)
            if set(out["profile"]["deleted"]) & members:
                break
        gone = len(set(out["profile"]["deleted"]) & members)
        assert gone
        when = datetime.fromisoformat(out["mutated_at"]).date()
        after = emu.report("segment-values", **{**attrs, "timeframe": days(str(NOW.date()), str(when))})
        s = after["results"][0]["statistics"]
        assert s["total_members"] == len(acc.segment_members(gid)) <= before["total_members"] - gone
        assert s["members_removed"] >= gone
        assert when >= NOW.date() and when - NOW.date() < timedelta(days=365)


def test_limiter_daily_window_is_rolling() -> None:
    from klaviyo_emulator.ratelimit import RateLimiter
    clock = Clock(5_000_000.0)
    lim = RateLimiter(True, clock)

    def check() -> Any:
        return lim.check("account", "reports", 1, 2, daily=3, day_seconds=1000)
    assert check().allowed
    for step in (100, 400):  # one request per new second and minute
        clock.t += step
        assert check().allowed
    clock.t += 100
    refused = check()
    assert (refused.allowed, refused.blocked_by, refused.retry_after) == (False, "daily", 400)
    clock.t += 400  # the first request (at 0 s) leaves the 1000 s window
    assert check().allowed and not check().allowed  # then the burst refuses
    assert lim.check("account", "reports", 1, 2).allowed is False  # same second: burst
    off = RateLimiter(False, clock)
    assert all(off.check("k", "b", 1, 2, daily=1).allowed for _ in range(5))
