"""One account, two revisions: 2026-07-15 serves the same data as 2023-10-15 in its own
shapes, plus what only it has (push campaigns, attributions, unresolved-metric events)."""

from __future__ import annotations

from collections import Counter

import pytest

from klaviyo_emulator import Emulator
from tests.emulator.conftest import LIMITED, Http

NEW = "2026-07-15"


def rel_id(res: dict, name: str):
    data = res.get("relationships", {}).get(name, {}).get("data")
    if isinstance(data, list):
        return [d["id"] for d in data]
    return data["id"] if data else None


# ------------------------------------------------------------------------ same data
@pytest.mark.parametrize("kind", ["tag", "template", "metric", "segment", "list", "flow",
                                  "flow-action", "flow-message", "profile"])
def test_both_revisions_hold_the_same_records(emu: Emulator, kind: str) -> None:
    old = {r["id"]: r for r in emu.account.records(kind)}
    new = {r["id"]: r for r in emu.account.records(kind, revision=NEW)}
    assert old and set(old) == set(new)
    for rid, rec in old.items():
        for name in ("name", "created", "updated", "email", "html", "trigger_type"):
            if name in rec["attributes"] and not (kind == "flow-message" and name == "name"):
                assert new[rid]["attributes"][name] == rec["attributes"][name], (kind, name)


def test_campaigns_differ_in_shape_not_data(emu: Emulator) -> None:
    acc = emu.account
    old = {c["id"]: c for c in acc.records("campaign")}
    new = {c["id"]: c for c in acc.records("campaign", revision=NEW)}
    push = {c["id"] for c in acc.records("campaign", revision=NEW, channel="mobile_push")}
    assert push and set(new) == set(old) | push and not push & set(old)
    for cid, camp in old.items():
        a, b = camp["attributes"], new[cid]["attributes"]
        assert b["send_strategy"] == {"method": "static",
                                      "datetime": a["send_strategy"]["options_static"]["datetime"],
                                      "options": {"is_local": False}}
        utm = [{"type": "static", **p} for p in a["tracking_options"]["utm_params"]]
        assert b["tracking_options"]["add_tracking_params"] == a["tracking_options"]["is_add_utm"]
        assert b["tracking_options"]["custom_tracking_params"] == utm
        assert {k: b[k] for k in ("name", "status", "archived", "updated_at")} == {
            k: a[k] for k in ("name", "status", "archived", "updated_at")}
    old_m = {m["id"]: m["attributes"] for m in acc.records("campaign-message")}
    new_m = {m["id"]: m["attributes"] for m in acc.records("campaign-message", revision=NEW)}
    channels = Counter(m["definition"]["channel"] for m in new_m.values())
    assert set(channels) == {"email", "sms", "mobile_push"}
    for mid, a in old_m.items():
        d = new_m[mid]["definition"]
        assert d["channel"] == a["channel"] and new_m[mid]["send_times"] == a["send_times"]
        if a["channel"] == "email":
            assert d["content"]["subject"] == a["content"]["subject"] and d["label"] == a["label"]
        else:
            assert d["content"]["body"] == a["content"]["body"]
            assert d["render_options"] == a["render_options"]


def test_flow_actions_and_messages_carry_their_definition(emu: Emulator) -> None:
    acc = emu.account
    old_a = {a["id"]: a for a in acc.records("flow-action")}
    old_m = {m["id"]: m for m in acc.records("flow-message")}
    types = {"SEND_EMAIL": "send-email", "SEND_SMS": "send-sms", "TIME_DELAY": "time-delay"}
    for action in acc.records("flow-action", revision=NEW):
        old = old_a[action["id"]]["attributes"]
        d = action["attributes"]["definition"]
        assert set(action["attributes"]) == {"created", "updated", "definition"}
        assert d["id"] == action["id"] and d["type"] == types.get(old["action_type"], d["type"])
        if old["action_type"] in ("SEND_EMAIL", "SEND_SMS"):
            (mid,) = rel_id(action, "flow-messages")
            assert d["data"]["message"]["id"] == mid and d["data"]["status"] == old["status"]
    for msg in acc.records("flow-message", revision=NEW):
        old = old_m[msg["id"]]["attributes"]
        assert msg["attributes"]["channel"] == old["channel"]
        d = msg["attributes"]["definition"]
        assert d["name"] == old["name"]
        if old["channel"] == "email":
            assert d["subject_line"] == old["content"]["subject"]
        else:
            assert d["body"] == old["content"]["body"]


def test_served_2026_pages_equal_the_ground_truth(emu: Emulator, http2026: Http) -> None:
    acc = emu.account
    for kind, path, params in (
            ("segment", "/api/segments", {}), ("list", "/api/lists", {}),
            ("template", "/api/templates", {}), ("tag", "/api/tags", {}),
            ("flow", "/api/flows", {"filter": "equals(archived,false)"})):
        served = http2026.all(path, params)
        truth = [r for r in acc.records(kind, revision=NEW)
                 if kind != "flow" or not r["attributes"]["archived"]]
        assert sorted(served, key=lambda r: r["id"]) == sorted(
            [{**r, "links": r["links"]} for r in truth], key=lambda r: r["id"]), kind
    for channel in ("email", "sms", "mobile_push"):
        served = http2026.all("/api/campaigns", {
            "filter": f"equals(messages.channel,'{channel}')", "page[size]": "3"})
        truth = [c for c in acc.records("campaign", revision=NEW, channel=channel)
                 if not c["attributes"]["archived"]]
        assert {c["id"] for c in served} == {c["id"] for c in truth} and truth


# --------------------------------------------------------------------------- events
def test_events_in_pages_of_1000_are_the_2023_events(emu: Emulator, http: Http,
                                                     http2026: Http) -> None:
    emu.clear_log()
    new = http2026.all("/api/events", {"page[size]": "1000", "sort": "datetime"})
    sizes = [len(d["data"]) for d in http2026.pages("/api/events", {"page[size]": "1000"})]
    assert sizes[:-1] == [1000] * (len(sizes) - 1) and sum(sizes) == 5000
    old = http.all("/api/events/", {"sort": "datetime"})
    assert [e["id"] for e in new] == [e["id"] for e in old] == [
        e["id"] for e in emu.account.records("event", revision=NEW)]
    assert all(a["attributes"] == b["attributes"] for a, b in zip(old, new, strict=False))
    assert all("$attribution" not in e["attributes"]["event_properties"] for e in new)
    default = http2026.ok("/api/events")
    assert len(default["data"]) == 200


def test_unresolved_metric_events(emu: Emulator, http: Http, http2026: Http) -> None:
    acc = emu.account
    unresolved = {acc.events.event_id(i) for i in acc.unresolved}
    assert len(unresolved) == 3
    new = {e["id"]: e for e in http2026.all("/api/events", {"page[size]": "1000"})}
    assert {eid for eid, e in new.items() if "metric" not in e["relationships"]} == unresolved
    with_metric = {e["id"] for e in http2026.all("/api/events", {
        "page[size]": "1000", "filter": "has(metric)"})}
    assert with_metric == set(new) - unresolved
    assert len(http2026.all("/api/events", {"page[size]": "1000",
                                            "filter": "has(profile)"})) == len(new)
    old = {e["id"]: e for e in http.all("/api/events/")}
    assert set(old) == set(new) and all(rel_id(old[e], "metric") for e in unresolved)
    metric = rel_id(old[next(iter(unresolved))], "metric")
    by_metric = {e["id"] for e in http2026.all("/api/events", {
        "filter": f"equals(metric_id,'{metric}')", "page[size]": "1000"})}
    assert by_metric and not by_metric & unresolved
    r = http.get("/api/events/", {"filter": "has(metric)"})
    assert r.status_code == 400, "2023-10-15 has no has(metric) filter"


def test_attributions_are_served_as_the_ground_truth(emu: Emulator, http2026: Http) -> None:
    acc = emu.account
    truth = list(acc.records("attribution", revision=NEW))
    served, by_event = [], {}
    for doc in http2026.pages("/api/events", {"page[size]": "1000", "sort": "datetime",
                                              "include": "attributions,metric"}):
        served += [i for i in doc["included"] if i["type"] == "attribution"]
        by_event.update({e["id"]: rel_id(e, "attributions") for e in doc["data"]})
    assert served == truth and len({a["id"] for a in truth}) == len(truth) > 20
    for a in truth:
        assert by_event[rel_id(a, "event")].count(a["id"]) == 1
    flows = [a for a in truth if "flow" in a["relationships"]]
    campaigns = [a for a in truth if "campaign" in a["relationships"]]
    assert flows and campaigns
    messages = {m["id"]: rel_id(m, "campaign")
                for m in acc.records("campaign-message", revision=NEW)}
    actions = {a["id"]: rel_id(a, "flow") for a in acc.records("flow-action")}
    flow_of = {m["id"]: actions[rel_id(m, "flow-action")] for m in acc.records("flow-message")}
    for a in campaigns:
        assert messages[rel_id(a, "campaign-message")] == rel_id(a, "campaign")
    for a in flows:
        assert flow_of[rel_id(a, "flow-message")] == rel_id(a, "flow")
    events = {e["id"]: e for e in acc.records("event", revision=NEW)}
    metric_names = {m["id"]: m["attributes"]["name"] for m in acc.records("metric")}
    for a in truth:
        event = events[rel_id(a, "event")]
        assert metric_names[rel_id(event, "metric")] == "Placed Order"
        if "flow" in a["relationships"]:
            props = event["attributes"]["event_properties"]
            assert props["$attributed_message"] == rel_id(a, "flow-message")
    multi = Counter(rel_id(a, "event") for a in truth)
    assert max(multi.values()) == 2, "some conversions are attributed twice"


# ------------------------------------------------------------------------ campaigns
def test_push_campaigns_only_in_2026(emu: Emulator, http: Http, http2026: Http) -> None:
    push = {"filter": "equals(messages.channel,'mobile_push')"}
    r = http.get("/api/campaigns/", push)
    assert r.status_code == 400 and "mobile_push" in r.text
    docs = http2026.all("/api/campaigns", {**push, "include": "campaign-messages"})
    assert docs and all(c["attributes"]["tracking_options"] is None for c in docs)
    page = http2026.ok("/api/campaigns", {**push, "include": "campaign-messages"})
    assert {m["attributes"]["definition"]["channel"] for m in page["included"]} == {"mobile_push"}
    cid = docs[0]["id"]
    assert http.get(f"/api/campaigns/{cid}/campaign-messages/").status_code == 404
    msgs = http2026.ok(f"/api/campaigns/{cid}/campaign-messages")["data"]
    assert [m["id"] for m in msgs] == rel_id(docs[0], "campaign-messages")


def test_campaign_pages_of_100(emu: Emulator, http2026: Http) -> None:
    email = {"filter": "equals(messages.channel,'email')"}
    docs = list(http2026.pages("/api/campaigns", email))
    assert len(docs) == 1, "the default page of 2026-07-15 is 100"
    assert http2026.get("/api/campaigns", {**email, "page[size]": "101"}).status_code == 400


# ------------------------------------------------------------------ per-revision rules
def test_flow_messages_pages(emu: Emulator, http: Http, http2026: Http) -> None:
    aid = next(a["id"] for a in emu.account.small["flow-action"].values()
               if a["rel"]["flow-messages"])
    assert http.get(f"/api/flow-actions/{aid}/flow-messages/",
                    {"page[size]": "100"}).status_code == 200
    r = http2026.get(f"/api/flow-actions/{aid}/flow-messages", {"page[size]": "100"})
    assert r.status_code == 400 and "page[size]" in r.text
    assert http.get(f"/api/flow-actions/{aid}/flow-messages/",
                    {"page[cursor]": "x"}).status_code == 400, "2023: no cursor param"
    doc = http2026.ok(f"/api/flow-actions/{aid}/flow-messages", {"page[size]": "50"})
    assert [m["id"] for m in doc["data"]] == emu.account.small["flow-action"][aid]["rel"][
        "flow-messages"]


def test_scopes_and_sorts_per_revision(emu: Emulator) -> None:
    lists_key = "pk_lists_only"
    emu.config.key_scopes[lists_key] = frozenset({"lists:read"})
    try:
        old = Http(emu)
        new = Http(emu, NEW)
        auth = {"Authorization": f"Klaviyo-API-Key {lists_key}"}
        assert old.get("/api/lists/", headers=auth).status_code == 403  # 2023: list:read
        assert new.get("/api/lists", headers=auth).status_code == 200
    finally:
        del emu.config.key_scopes[lists_key]
    assert Http(emu).get("/api/lists/", {"sort": "name"}).status_code == 400
    names = [g["attributes"]["name"] for g in Http(emu, NEW).all("/api/lists", {"sort": "name"})]
    assert names == sorted(names) and names
    active = Http(emu, NEW).all("/api/segments", {"filter": "equals(is_active,true)"})
    truth = [s["id"] for s in emu.account.records("segment", revision=NEW)
             if s["attributes"]["is_active"]]
    assert sorted(s["id"] for s in active) == sorted(truth) and 0 < len(truth) < 12


def test_limited_key_and_revision_404_order(emu: Emulator) -> None:
    http = Http(emu, "2099-01-15")
    assert http.get("/api/metrics", headers={"Authorization": None}).status_code == 401
    r = http.get("/api/metrics", headers={"Authorization": f"Klaviyo-API-Key {LIMITED}"})
    assert r.status_code == 404


def test_fast_event_json_equals_the_resource(emu: Emulator) -> None:
    import orjson

    from klaviyo_emulator import render_2026
    acc = emu.account
    orders = [i for i in range(len(acc.events)) if render_2026.event_parts(acc, i)[-1]][:50]
    for i in [*sorted(acc.unresolved), *orders, *range(200)]:
        assert orjson.loads(render_2026.event_json(acc, i)) == render_2026.event_resource(acc, i)


def test_flat_ground_truth_helpers(emu: Emulator) -> None:
    acc = emu.account
    rows = acc.attribution_rows()
    resources = list(acc.records("attribution", revision=NEW))
    assert [r["attribution_id"] for r in rows] == [a["id"] for a in resources]
    assert all(r["event_id"] and (r["campaign_id"] or r["flow_id"]) for r in rows)
    assert all((r["campaign_id"] is None) == (r["campaign_message_id"] is None) for r in rows)
    no_metric = {e["id"] for e in acc.records("event", revision=NEW)
                 if "metric" not in e["relationships"]}
    assert acc.unresolved_event_ids() == no_metric and len(no_metric) == 3


def test_events_of_a_deleted_metric_lose_their_metric_in_2026() -> None:
    from tests.emulator.conftest import small_config
    with Emulator(small_config(seed=5, events=400, profiles=40)) as emu:
        gone = emu.mutate(seed=3, create=0, update=0, delete=2)["metric"]["deleted"]
        old = {e["id"] for e in Http(emu).all("/api/events/")}
        new = {e["id"]: e for e in Http(emu, NEW).all("/api/events", {"page[size]": "1000"})}
        orphans = {eid for eid, e in new.items() if "metric" not in e["relationships"]}
        acc = emu.account
        of_gone = {acc.events.event_id(i) for i in range(len(acc.events))
                   if acc.metric_ids[acc.events.metric_index(i)] in gone} & set(new)
        assert of_gone and orphans == acc.unresolved_event_ids() and of_gone <= orphans
        assert set(new) - old == of_gone and old < set(new)
