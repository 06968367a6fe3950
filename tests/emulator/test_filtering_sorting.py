"""Filter rules per endpoint over HTTP, filter semantics vs ground truth, sort orders."""

from __future__ import annotations

from datetime import datetime

import pytest

from klaviyo_emulator import Emulator
from tests.emulator.conftest import Http

T = "2023-10-20T00:00:00Z"
EMAIL = "equals(messages.channel,'email')"

ALLOWED = [
    ("/api/events/", f"greater-or-equal(datetime,{T})"),
    ("/api/events/", f"and(greater-or-equal(datetime,{T}),less-than(datetime,2023-10-21T00:00:00))"),
    ("/api/events/", f"greater-or-equal(datetime,{T}),less-than(datetime,2023-10-21T00:00:00)"),
    ("/api/events/", "greater-than(timestamp,1697760000)"),
    ("/api/events/", "equals(metric_id,\"XXXXXX\")"),
    ("/api/profiles/", f"greater-than(updated,{T})"),
    ("/api/profiles/", "less-than(created,2023-10-20 00:00:00+02:00)"),
    ("/api/profiles/", "any(email,['a@example.com','b@example.com'])"),
    ("/api/lists/", f"greater-than(updated,{T})"),
    ("/api/segments/", f"greater-than(created,{T})"),
    ("/api/templates/", f"greater-or-equal(updated,{T})"),
    ("/api/campaigns/", f"and({EMAIL},greater-than(updated_at,{T}))"),
    ("/api/campaigns/", f"{EMAIL},greater-than(updated_at,2023-10-20T00:00:00-07:00)"),
    ("/api/campaigns/", f"{EMAIL},any(status,['Sent','Draft'])"),
    ("/api/flows/", f"less-or-equal(updated,{T})"),
    ("/api/flows/", "starts-with(name,'Welcome')"),
    ("/api/metrics/", "equals(integration.name,'Shopify')"),
    ("/api/tags/", "contains(name,'o')"),
]

REJECTED = [
    ("/api/events/", "equals(datetime,2023-10-20T00:00:00Z)", "operator"),
    ("/api/events/", f"greater-than(datetime,'{T}')", "quoted"),
    ("/api/events/", f'greater-than(datetime,"{T}")', "quoted"),
    ("/api/events/", "greater-than(datetime,1697760000)", "datetime"),
    ("/api/events/", "equals(uuid,'x')", "uuid"),
    ("/api/events/", "equals(metric_id,XXXXXX)", "quoted"),
    ("/api/events/", f"or(greater-than(datetime,{T}),less-than(datetime,{T}))", "or"),
    ("/api/events/", "greater-than(datetime,2023-10-20T00:00:00Z", "position"),
    ("/api/events/", "", "empty"),
    ("/api/profiles/", f"greater-or-equal(updated,{T})", "operator"),
    ("/api/lists/", f"less-than(updated,{T})", "operator"),
    ("/api/segments/", "equals(updated,2023-10-20T00:00:00Z)", "operator"),
    ("/api/metrics/", f"greater-than(updated,{T})", "updated"),
    ("/api/campaigns/", f"greater-than(updated_at,{T})", "messages.channel"),
    ("/api/campaigns/", "equals(messages.channel,'push')", "push"),
    ("/api/campaigns/", f"{EMAIL},equals(archived,'true')", "archived"),
    ("/api/flows/", "any(status,['live'])", "operator"),
    ("/api/templates/", "contains(name,'x')", "operator"),
]


@pytest.mark.parametrize("path,flt", ALLOWED, ids=[f"{p} {f}" for p, f in ALLOWED])
def test_allowed_filters(http: Http, path: str, flt: str) -> None:
    r = http.get(path, {"filter": flt})
    assert r.status_code == 200, r.text[:300]


@pytest.mark.parametrize("path,flt,hint", REJECTED, ids=[f"{p} {f}" for p, f, _ in REJECTED])
def test_rejected_filters(http: Http, path: str, flt: str, hint: str) -> None:
    r = http.get(path, {"filter": flt})
    assert r.status_code == 400, r.text[:300]
    err = r.json()["errors"][0]
    assert err["code"] == "invalid" and err["source"] == {"parameter": "filter"}
    assert hint in err["detail"], err["detail"]


def test_filter_on_an_endpoint_without_filter_param(emu: Emulator, http: Http) -> None:
    cid = next(iter(emu.account.small["campaign"]))
    r = http.get(f"/api/campaigns/{cid}/campaign-messages/", {"filter": "equals(id,'x')"})
    assert r.status_code == 400 and r.json()["errors"][0]["source"] == {"parameter": "filter"}


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_event_window_filters_match_ground_truth(emu: Emulator, http: Http) -> None:
    lo, hi = _dt("2023-10-19T06:00:00+00:00"), _dt("2023-10-21T00:00:00+00:00")
    served = http.all("/api/events/", {"filter": f"greater-or-equal(datetime,{lo.isoformat()}),"
                                                 f"less-than(datetime,{hi.isoformat()})",
                                       "sort": "datetime"})
    truth = [e for e in emu.account.records("event")
             if lo <= _dt(e["attributes"]["datetime"]) < hi]
    assert [e["id"] for e in served] == [e["id"] for e in truth] and len(truth) > 200
    metric = truth[0]["relationships"]["metric"]["data"]["id"]
    served = http.all("/api/events/", {"filter": f"equals(metric_id,'{metric}'),"
                                                 f"greater-than(timestamp,{int(lo.timestamp())})"})
    truth = {e["id"] for e in emu.account.records("event", metric_id=metric)
             if e["attributes"]["timestamp"] > lo.timestamp()}
    assert {e["id"] for e in served} == truth and truth


def test_boundaries_on_shared_datetimes(emu: Emulator, http: Http) -> None:
    events = list(emu.account.records("event"))
    pairs = [(a, b) for a, b in zip(events, events[1:], strict=False)
             if a["attributes"]["datetime"] == b["attributes"]["datetime"]]
    assert len(pairs) > 100, "the account must hold many events sharing one datetime"
    a, b = pairs[len(pairs) // 2]
    at = a["attributes"]["datetime"]
    ge = {e["id"] for e in http.all("/api/events/", {"filter": f"greater-or-equal(datetime,{at}),"
                                                              f"less-or-equal(datetime,{at})"})}
    assert {a["id"], b["id"]} <= ge
    gt = {e["id"] for e in http.ok("/api/events/", {"filter": f"greater-than(datetime,{at})",
                                                    "sort": "datetime"})["data"]}
    lt = {e["id"] for e in http.ok("/api/events/", {"filter": f"less-than(datetime,{at})",
                                                    "sort": "-datetime"})["data"]}
    assert not ({a["id"], b["id"]} & (gt | lt))


def test_profile_updated_filter_matches_truth(emu: Emulator, http: Http) -> None:
    profiles = list(emu.account.records("profile"))
    cut = sorted(p["attributes"]["updated"] for p in profiles)[len(profiles) // 2]
    served = http.all("/api/profiles/", {"filter": f"greater-than(updated,{cut})",
                                         "page[size]": "100", "sort": "updated"})
    truth = {p["id"] for p in profiles if p["attributes"]["updated"] > cut}
    assert {p["id"] for p in served} == truth and len(served) == len(truth)
    email = profiles[3]["attributes"]["email"]
    assert [p["id"] for p in http.all("/api/profiles/", {"filter": f"equals(email,'{email}')"})
            ] == [profiles[3]["id"]]


def test_campaign_archived_handling(emu: Emulator, http: Http) -> None:
    email = list(emu.account.records("campaign", channel="email"))
    default = {c["id"] for c in http.all("/api/campaigns/", {"filter": EMAIL})}
    archived = {c["id"] for c in http.all("/api/campaigns/",
                                          {"filter": f"{EMAIL},equals(archived,true)"})}
    active = {c["id"] for c in http.all("/api/campaigns/",
                                        {"filter": f"{EMAIL},equals(archived,false)"})}
    assert archived == {c["id"] for c in email if c["attributes"]["archived"]} and archived
    assert default == active == {c["id"] for c in email if not c["attributes"]["archived"]}
    sms = {c["id"] for c in http.all("/api/campaigns/",
                                     {"filter": "equals(messages.channel,'sms')"})}
    assert sms and not sms & default


def test_flows_hide_archived_by_default(emu: Emulator, http: Http) -> None:
    flows = list(emu.account.records("flow"))
    assert any(f["attributes"]["archived"] for f in flows)
    served = {f["id"] for f in http.all("/api/flows/")}
    assert served == {f["id"] for f in flows if not f["attributes"]["archived"]}
    only = {f["id"] for f in http.all("/api/flows/", {"filter": "equals(archived,true)"})}
    assert only == {f["id"] for f in flows if f["attributes"]["archived"]}


SORTS = [
    ("/api/profiles/", "updated", {"page[size]": "100"}),
    ("/api/profiles/", "-created", {"page[size]": "100"}),
    ("/api/profiles/", "email", {"page[size]": "100"}),
    ("/api/templates/", "-updated", {}),
    ("/api/templates/", "name", {}),
    ("/api/campaigns/", "updated_at", {"filter": EMAIL}),
    ("/api/campaigns/", "-scheduled_at", {"filter": EMAIL}),
    ("/api/flows/", "-trigger_type", {}),
    ("/api/tags/", "-name", {}),
]


@pytest.mark.parametrize("path,sort,params", SORTS, ids=[f"{p} {s}" for p, s, _ in SORTS])
def test_sort_orders_ties_by_id(http: Http, path: str, sort: str, params: dict) -> None:
    items = http.all(path, {**params, "sort": sort})
    field = sort.lstrip("-")
    keys = [(i["attributes"][field], i["id"]) for i in items]
    assert keys == sorted(keys, reverse=sort.startswith("-"))
    assert len({i["id"] for i in items}) == len(items) > 1


def test_events_sorts(http: Http) -> None:
    flt = {"filter": "greater-or-equal(datetime,2023-10-25T00:00:00Z)"}
    asc = http.all("/api/events/", {**flt, "sort": "datetime"})
    desc = http.all("/api/events/", {**flt, "sort": "-timestamp"})
    default = http.all("/api/events/", flt)
    stamps = [e["attributes"]["timestamp"] for e in asc]
    assert stamps == sorted(stamps) and len(asc) > 400
    assert [e["id"] for e in desc] == [e["id"] for e in reversed(asc)]
    assert [e["id"] for e in default] == [e["id"] for e in desc]  # newest first by default


def test_lists_and_segments_are_not_ordered_by_updated(http: Http) -> None:
    for path in ("/api/lists/", "/api/segments/"):
        first = [g["id"] for g in http.all(path)]
        assert first == [g["id"] for g in http.all(path)]  # stable
        updated = [g["attributes"]["updated"] for g in http.all(path)]
        assert updated != sorted(updated) and updated != sorted(updated, reverse=True)
