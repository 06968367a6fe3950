"""JSON:API rendering of the account in revision 2026-07-15's shapes.

Records are kept once, in their 2023-10-15 form (`catalog.py`); this module derives what
2026-07-15 serves from them, so both revisions show the same data:

- campaigns: `tracking_options.add_tracking_params`/`custom_tracking_params` (were
  `is_add_utm`/`utm_params`), `send_strategy {method, datetime, options}` (was
  `options_static`); push campaigns have no tracking options;
- campaign messages: `definition` per channel (email: channel, label, content; SMS:
  channel, content, render_options; push: channel, notification_type, content, options),
  with `send_times`, `created_at`, `updated_at`;
- flow actions: `created`, `updated`, `definition {id, type, links, data}` (type
  `send-email`, `send-sms`, `time-delay`, `conditional-split`, `update-profile`,
  `send-webhook`; `links.next` is the flow's next action);
- flow messages: top-level `channel`, `created`, `updated`, `definition` (FlowEmail or
  FlowSms: the message's content with its action's send and render options);
- segments: `definition` (a list-membership condition), `is_active`, `is_processing`,
  `is_starred`; lists: `opt_in_process`; templates: `amp`; profiles: `sms.transactional`
  and `mobile_push` subscriptions, `historic_number_of_orders` a number, suppression reason
  `SPAM_REPORT` spelled `SPAM_COMPLAINT` (the 2026 enum);
- events: no `$attribution` in `event_properties`, an `attributions` relationship, and no
  `metric` relationship for an event whose metric cannot be resolved;
- links without the trailing slash, as the 2026 spec writes paths.
Values that only 2026-07-15 has (segment flags, list opt-in) are pure functions of
(seed, id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from klaviyo_emulator import documents, weight
from klaviyo_emulator.endpoints import PLURAL
from klaviyo_emulator.util import fmt_ts, h64

if TYPE_CHECKING:
    from klaviyo_emulator.store import Account

Record = dict[str, Any]
REVISION = "2026-07-15"

# type -> relationship name -> (related type, to_many)
RELATIONSHIPS: dict[str, dict[str, tuple[str, bool]]] = {
    "campaign": {"campaign-messages": ("campaign-message", True), "tags": ("tag", True)},
    "campaign-message": {"campaign": ("campaign", False), "template": ("template", False)},
    "tag": {"tag-group": ("tag-group", False)},
    "list": {"tags": ("tag", True), "flow-triggers": ("flow", True)},
    "segment": {"tags": ("tag", True), "flow-triggers": ("flow", True)},
    "metric": {"flow-triggers": ("flow", True)},
    "flow": {"flow-actions": ("flow-action", True), "tags": ("tag", True)},
    "flow-action": {"flow": ("flow", False), "flow-messages": ("flow-message", True)},
    "flow-message": {"flow-action": ("flow-action", False), "template": ("template", False)},
}
"""Relationships rendered per type (the account holds no flow triggers: always empty)."""

_ACTION_TYPES = {"SEND_EMAIL": "send-email", "SEND_SMS": "send-sms", "TIME_DELAY": "time-delay",
                 "CONDITIONAL_SPLIT": "conditional-split", "BOOLEAN_BRANCH": "conditional-split",
                 "UPDATE_CUSTOMER": "update-profile", "WEBHOOK": "send-webhook"}
_SPLITS = frozenset({"CONDITIONAL_SPLIT", "BOOLEAN_BRANCH"})
_SUPPRESSION_REASONS = {"SPAM_REPORT": "SPAM_COMPLAINT"}


def own_link(base: str, kind: str, rid: str) -> str:
    """`links.self` of a resource, e.g. "http://127.0.0.1:8765/api/events/4cSRrnNQJ9S"."""
    return f"{base}/api/{PLURAL.get(kind, kind + 's')}/{rid}"


def relationship(own: str, name: str, rel_type: str, target: Any) -> dict[str, Any]:
    """One relationship object; `target` is an id, a list of ids, or None (links only)."""
    out: dict[str, Any] = {}
    if isinstance(target, list):
        out["data"] = [{"type": rel_type, "id": x} for x in target]
    elif target is not None:
        out["data"] = {"type": rel_type, "id": target}
    out["links"] = {"self": f"{own}/relationships/{name}", "related": f"{own}/{name}"}
    return out


# ------------------------------------------------------------------------ small kinds
def attributes(acc: Account, rec: Record) -> dict[str, Any]:
    """2026-07-15 attributes of an internal small-kind record."""
    kind, attrs = rec["type"], rec["attributes"]
    if kind == "campaign":
        return _campaign(rec)
    if kind == "campaign-message":
        return _campaign_message(attrs)
    if kind == "flow-action":
        return _flow_action(acc, rec)
    if kind == "flow-message":
        return _flow_message(acc, rec)
    if kind == "segment":
        return _segment(acc, rec)
    if kind == "list":
        h = h64(acc.seed, "list-2026", rec["id"])
        return {**attrs, "opt_in_process": "double_opt_in" if h % 3 == 0 else "single_opt_in"}
    if kind == "template":
        return {**attrs, "amp": None}
    if kind == "account":  # required since 2024: a production account, English
        return {**attrs, "test_account": False, "locale": "en-US"}
    return attrs


def resource(acc: Account, rec: Record, fields: tuple[str, ...] | None = None) -> Record:
    """JSON:API object of an internal small-kind record, as 2026-07-15 serves it."""
    kind, rid = rec["type"], rec["id"]
    base = acc.base_url
    own = own_link(base, kind, rid)
    out: Record = {"type": kind, "id": rid,
                   "attributes": documents.sparse(attributes(acc, rec), fields)}
    shapes = RELATIONSHIPS.get(kind)
    if shapes:
        rels = {}
        rec_rel = rec.get("rel", {})
        for name, (rel_type, _to_many) in shapes.items():
            target = rec_rel.get(name)
            if name == "flow-triggers":
                target = []
            if target is None:
                continue
            rels[name] = relationship(own, name, rel_type, target)
        out["relationships"] = rels
    out["links"] = {"self": own}
    return out


def _campaign(rec: Record) -> dict[str, Any]:
    attrs = dict(rec["attributes"])
    channel = rec.get("channel")
    old = attrs.get("tracking_options")
    tracking: dict[str, Any] | None = None
    if isinstance(old, dict) and channel in ("email", "sms"):
        tracking = {"add_tracking_params": bool(old.get("is_add_utm")),
                    "custom_tracking_params": [
                        {"type": "static", "name": p["name"], "value": p["value"]}
                        for p in old.get("utm_params") or []]}
        if channel == "email":
            tracking["is_tracking_clicks"] = old.get("is_tracking_clicks", True)
            tracking["is_tracking_opens"] = old.get("is_tracking_opens", True)
    attrs["tracking_options"] = tracking
    strategy = attrs.get("send_strategy") or {}
    static = strategy.get("options_static") or {}
    options: dict[str, Any] = {"is_local": bool(static.get("is_local"))}
    if options["is_local"]:
        options["send_past_recipients_immediately"] = bool(
            static.get("send_past_recipients_immediately"))
    attrs["send_strategy"] = {"method": "static", "datetime": static.get("datetime"),
                              "options": options}
    return attrs


def _campaign_message(attrs: dict[str, Any]) -> dict[str, Any]:
    channel, content = attrs["channel"], attrs.get("content") or {}
    definition: dict[str, Any]
    if channel == "email":
        definition = {"channel": "email", "label": attrs.get("label"),
                      "content": {k: content.get(k) for k in (
                          "subject", "preview_text", "from_email", "from_label",
                          "reply_to_email", "cc_email", "bcc_email")}}
    elif channel == "sms":
        definition = {"channel": "sms",
                      "content": {"body": content.get("body"),
                                  "media_url": content.get("media_url")},
                      "render_options": attrs.get("render_options")}
    else:
        definition = {"channel": "mobile_push", "notification_type": "standard",
                      "content": {"title": content.get("title"), "body": content.get("body"),
                                  "dynamic_image": None, "action_buttons": None},
                      "kv_pairs": None,
                      "options": {"on_open": {"type": "open_app"}, "badge": {"display": False},
                                  "play_sound": True}}
    return {"definition": definition, "send_times": attrs.get("send_times"),
            "created_at": attrs.get("created_at"), "updated_at": attrs.get("updated_at")}


def _message_fields(acc: Account, message: Record, action: Record | None) -> dict[str, Any]:
    """FlowEmail / FlowSms fields of a flow message (content plus its action's options)."""
    a = message["attributes"]
    content = a.get("content") or {}
    send = (action or {}).get("attributes", {}).get("send_options") or {}
    track = (action or {}).get("attributes", {}).get("tracking_options") or {}
    render = (action or {}).get("attributes", {}).get("render_options") or {}
    common = {"smart_sending_enabled": bool(send.get("use_smart_sending")),
              "transactional": bool(send.get("is_transactional")),
              "add_tracking_params": bool(track.get("add_utm")),
              "custom_tracking_params": None, "additional_filters": None,
              "template_id": message["rel"].get("template"), "name": a.get("name"),
              "id": message["id"]}
    if a.get("channel") == "email":
        return {"from_email": content.get("from_email"), "from_label": content.get("from_label"),
                "reply_to_email": content.get("reply_to_email"),
                "cc_email": content.get("cc_email"), "bcc_email": content.get("bcc_email"),
                "subject_line": content.get("subject"),
                "preview_text": content.get("preview_text"), **common}
    return {"body": content.get("body") or "", "image_id": None,
            "dynamic_image": content.get("media_url") or None,
            "shorten_links": bool(render.get("shorten_links")), "include_contact_card": False,
            "add_org_prefix": bool(render.get("add_org_prefix")),
            "add_info_link": bool(render.get("add_info_link")),
            "add_opt_out_language": bool(render.get("add_opt_out_language")),
            "sms_quiet_hours_enabled": False, **common}


def _flow_message(acc: Account, rec: Record) -> dict[str, Any]:
    a = rec["attributes"]
    action = acc.small["flow-action"].get(rec["rel"].get("flow-action"))
    return {"channel": a.get("channel"), "created": a.get("created"), "updated": a.get("updated"),
            "definition": _message_fields(acc, rec, action)}


def _flow_action(acc: Account, rec: Record) -> dict[str, Any]:
    a = rec["attributes"]
    old_type = a.get("action_type", "")
    flow = acc.small["flow"].get(rec["rel"].get("flow"))
    order = flow["rel"]["flow-actions"] if flow else []
    pos = order.index(rec["id"]) if rec["id"] in order else -1
    after = order[pos + 1] if 0 <= pos < len(order) - 1 else None
    status = a.get("status")
    data: dict[str, Any] | None
    links: dict[str, Any] = {"next": after}
    settings = a.get("settings") or {}
    if old_type in ("SEND_EMAIL", "SEND_SMS"):
        mids = rec["rel"].get("flow-messages") or []
        msg = acc.small["flow-message"].get(mids[0]) if mids else None
        data = {"message": _message_fields(acc, msg, rec) if msg else None, "status": status}
    elif old_type == "TIME_DELAY":
        seconds = int(settings.get("delay_seconds", 86_400))
        unit, value = (("days", seconds // 86_400) if seconds % 86_400 == 0
                       else ("hours", max(1, seconds // 3600)))
        data = {"unit": unit, "value": value, "secondary_value": None, "timezone": "profile",
                "delay_until_time": None, "delay_until_weekdays": None}
    elif old_type in _SPLITS:
        links = {"next_if_true": after, "next_if_false": None}
        data = {"profile_filter": {"condition_groups": []}}
    elif old_type == "WEBHOOK":
        data = {"message": {"url": settings.get("url", "https://hooks.example.com/klaviyo"),
                            "headers": settings.get("headers") or {}, "body": None,
                            "name": None, "id": None}, "status": status}
    else:
        data = {"profile_operations": [], "status": status}
    definition = {"id": rec["id"], "temporary_id": None,
                  "type": _ACTION_TYPES.get(old_type, "update-profile"),
                  "links": links, "data": data}
    return {"created": a.get("created"), "updated": a.get("updated"), "definition": definition}


def _segment(acc: Account, rec: Record) -> dict[str, Any]:
    h = h64(acc.seed, "segment-2026", rec["id"])
    lists = sorted(acc.small["list"])
    definition = None
    if lists:
        definition = {"condition_groups": [{"conditions": [{
            "type": "profile-group-membership", "is_member": True,
            "group_ids": [lists[h % len(lists)]], "timeframe_filter": None}]}]}
    return {**rec["attributes"], "definition": definition, "is_active": h % 10 != 0,
            "is_processing": False, "is_starred": (h >> 8) % 4 == 0}


# ------------------------------------------------------------------------- profiles
def profile_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    """2026-07-15 profile attributes from the 2023-10-15 ones (a new dict)."""
    out = dict(attrs)
    subs = attrs.get("subscriptions")
    if isinstance(subs, dict):
        email = dict(subs["email"]["marketing"])
        email["suppression"] = [
            {**s, "reason": _SUPPRESSION_REASONS.get(s.get("reason"), s.get("reason"))}
            for s in email.get("suppression") or []]
        sms = subs["sms"]["marketing"]
        ok = bool(sms.get("can_receive_sms_marketing"))
        transactional = {"can_receive_sms_transactional": ok,
                         "consent": "SUBSCRIBED" if ok else "NEVER_SUBSCRIBED",
                         "consent_timestamp": sms.get("consent_timestamp"),
                         "method": sms.get("method"), "method_detail": sms.get("method_detail"),
                         "last_updated": sms.get("last_updated")}
        push_ok = bool(email.get("double_optin")) and ok
        out["subscriptions"] = {
            "email": {"marketing": email},
            "sms": {"marketing": sms, "transactional": transactional},
            "mobile_push": {"marketing": {
                "can_receive_push_marketing": push_ok,
                "consent": "SUBSCRIBED" if push_ok else "NEVER_SUBSCRIBED",
                "consent_timestamp": sms.get("consent_timestamp") if push_ok else None}},
        }
    pa = attrs.get("predictive_analytics")
    if isinstance(pa, dict):
        out["predictive_analytics"] = {**pa, "historic_number_of_orders":
                                       float(pa["historic_number_of_orders"])}
    return out


def profile_resource(acc: Account, i: int, additional: tuple[str, ...] = (),
                     fields: tuple[str, ...] | None = None,
                     extra: dict[str, Any] | None = None, relationships: bool = True) -> Record:
    """JSON:API profile object of profile index i, as 2026-07-15 serves it."""
    attrs = documents.sparse(profile_attributes(acc.profiles.attributes(i, additional)), fields)
    if extra:
        attrs.update(extra)
    pid = acc.profiles.ids[i]
    own = own_link(acc.base_url, "profile", pid)
    out: Record = {"type": "profile", "id": pid, "attributes": attrs}
    if relationships:
        out["relationships"] = {name: {"links": {"self": f"{own}/relationships/{name}",
                                                 "related": f"{own}/{name}"}}
                                for name in ("lists", "segments")}
    out["links"] = {"self": own}
    return out


# --------------------------------------------------------------------------- events
def metric_resolved(acc: Account, i: int, m: int) -> bool:
    """False for an event whose metric cannot be resolved (see newer_data)."""
    return i not in acc.unresolved and m not in acc.hidden_metrics


def event_parts(acc: Account, i: int) -> tuple[str, int, dict[str, Any], str, int, int,
                                                  list[dict[str, str]]]:
    """(id, timestamp, event_properties, uuid, metric index or -1, profile index,
    attributions) of event i in 2026-07-15 (`$attribution` left out of the properties;
    attributions revised by a mutation replace the generated ones). The properties are the
    event's own, without the extra ones of the realistic weight (`_render_parts`)."""
    return _render_parts(acc, i)[:7]  # type: ignore[return-value]


def _render_parts(acc: Account, i: int) -> tuple[str, int, dict[str, Any], str, int, int,
                                                   list[dict[str, str]], bytes]:
    """`event_parts` plus the fragment of extra properties (weight.py; b"" when light)."""
    eid, ts, props, uid, m, p, extra = acc.events.render_parts(i)
    props.pop("$attribution", None)
    if not metric_resolved(acc, i, m):
        return eid, ts, props, uid, -1, p, [], extra
    revised = acc.attribution_overrides.get(eid) if acc.attribution_overrides else None
    return eid, ts, props, uid, m, p, (acc.attributions.of(i, m, props) if revised is None
                                       else [dict(a) for a in revised]), extra


def event_resource(acc: Account, i: int, fields: tuple[str, ...] | None = None) -> Record:
    """JSON:API event object of event index i, as 2026-07-15 serves it."""
    eid, ts, props, uid, m, p, attributions, extra = _render_parts(acc, i)
    if extra and (fields is None or "event_properties" in fields):
        props.update(weight.extra_dict(extra))
    own = f"{acc.base_url}/api/events/{eid}"
    attrs = {"timestamp": ts, "event_properties": props, "datetime": fmt_ts(ts), "uuid": uid}
    if fields is not None:
        attrs = documents.sparse(attrs, fields)
    rels: dict[str, Any] = {"profile": relationship(own, "profile", "profile",
                                                    acc.profiles.ids[p])}
    if m >= 0:
        rels["metric"] = relationship(own, "metric", "metric", acc.metric_ids[m])
    rels["attributions"] = relationship(own, "attributions", "attribution",
                                        [a["id"] for a in attributions])
    return {"type": "event", "id": eid, "attributes": attrs, "relationships": rels,
            "links": {"self": own}}


def event_json(acc: Account, i: int) -> bytes:
    """Serialized `event_resource(acc, i)`, equal to it; the hot path of 1000-event pages
    (f-strings instead of nested dicts, bytes: as `Account.event_json` for 2023-10-15)."""
    eid, ts, props, uid, m, p, attributions, extra = _render_parts(acc, i)
    own = f"{acc.base_url}/api/events/{eid}"
    metric = ""
    if m >= 0:
        metric = (f'"metric":{{"data":{{"type":"metric","id":"{acc.metric_ids[m]}"}},'
                  f'"links":{{"self":"{own}/relationships/metric","related":"{own}/metric"}}}},')
    refs = ",".join(f'{{"type":"attribution","id":"{a["id"]}"}}' for a in attributions)
    head = (f'{{"type":"event","id":"{eid}","attributes":{{"timestamp":{ts},'
            f'"event_properties":')
    tail = (
        f',"datetime":"{fmt_ts(ts)}","uuid":"{uid}"}},'
        f'"relationships":{{"profile":{{"data":{{"type":"profile",'
        f'"id":"{acc.profiles.ids[p]}"}},"links":{{"self":"{own}/relationships/profile",'
        f'"related":"{own}/profile"}}}},{metric}"attributions":{{"data":[{refs}],'
        f'"links":{{"self":"{own}/relationships/attributions",'
        f'"related":"{own}/attributions"}}}}}},"links":{{"self":"{own}"}}}}'
    )
    return b"".join((head.encode(), weight.splice(orjson.dumps(props), extra), tail.encode()))


def attribution_resource(acc: Account, event_id: str, attribution: dict[str, str]) -> Record:
    """The `attribution` object of one attribution of an event (for `included[]`)."""
    own = f"{acc.base_url}/api/attributions/{attribution['id']}"
    rels = {"event": relationship(own, "event", "event", event_id)}
    for name in ("campaign", "campaign-message", "flow", "flow-message"):
        if name in attribution:
            rels[name] = relationship(own, name, name, attribution[name])
    return {"type": "attribution", "id": attribution["id"], "relationships": rels,
            "links": {"self": own}}
