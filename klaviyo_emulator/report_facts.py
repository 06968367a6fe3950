"""What the reporting API counts, read off the account: message, form and segment facts.

The reports (`reports.py`) count *facts*, each dated and tied to one message, form or
segment. Every fact comes from an event `/api/events` serves in 2026-07-15 (visible, metric
resolved), so a report's counts can be recounted from the events; only the segment facts
come from the memberships (and their modelled removals). Definitions: REPORTS.md.

- Message facts (campaign and flow messages, from `$message` of the event): `delivered`
  (Received Email, Received SMS), `bounced` (Bounced Email), `open` (Opened Email), `click`
  (Clicked Email, Clicked SMS), `unsubscribe` (Unsubscribed), and `conversion`: an event
  with attributions (Placed Order; `include=attributions`, revised by mutations) gives one
  conversion fact per attributed message, with the event's `$value` and metric.
- Form facts: the account has forms (`forms()`: a few, each with 1-2 versions and 1-2
  steps) but no form metrics, so form activity is read off two existing metrics. An
  `Active on Site` event is a page view on which a form may show: by the event's hash, 60 %
  qualify for one form (`qualified`), two thirds of those show it (`viewed`, and step 1 in
  `viewed_step`), 70 % of the shown ones are closed (`closed`). A `Subscribed to List`
  event with `Method` "Form" is a submission of the form that targets its list (else one by
  hash): `submit`, and as its visitor saw the form, also `qualified`, `viewed`, one
  `viewed_step` per step and one `submitted_step` per step.
- Segment facts: +1 when a profile joins a segment (the `joined_group_at` of its members,
  as served), -1 when it leaves. Leaving is modelled: besides its members, each segment had
  former members (about a third of its member share of the other profiles, by hash) that
  joined and left before `now`; a member whose profile a mutation deleted leaves at the
  mutation time.

The facts are built once per account version (mutations bump it), under the account lock.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from klaviyo_emulator import render_2026
from klaviyo_emulator.util import b62, h64, h64_int, ns_key, to_ts

if TYPE_CHECKING:
    from klaviyo_emulator.store import Account

REVISION = "2026-07-15"
SEND_CHANNELS = {"email": "email", "sms": "sms", "mobile_push": "push-notification"}
"""A message's channel -> the reports' `send_channel` value."""
FORM_NAMES = ("Newsletter Popup", "Exit Intent Offer", "Spin to Win", "Footer Signup",
              "Back in Stock Flyout", "SMS Opt-in Teaser")
SMS_CREDIT_PRICE = 0.01
"""`text_message_spend` per SMS credit (an emulator constant: Klaviyo bills by plan)."""
MMS_CREDITS = 3
"""Credits of one MMS (an SMS costs one credit per segment)."""
_MESSAGE_FAMILIES = {"email": "delivered", "sms": "delivered", "bounce": "bounced",
                     "email_open": "open", "email_click": "click", "sms_click": "click",
                     "unsubscribe": "unsubscribe"}


@dataclass(frozen=True)
class Message:
    """A campaign or flow message as the reports group it.

    Attributes:
        family: "campaign" or "flow".
        id: Campaign-message or flow-message id.
        name: Its label (campaign message) or name (flow message).
        parent_id: Campaign or flow id.
        parent_name: Campaign or flow name.
        send_channel: "email", "sms" or "push-notification".
        tag_ids: Tags of the campaign or flow.
        tag_names: Their names, in the same order.
        group: First included audience (list or segment id) of a campaign, else None.
        group_name: Its name.
        text_message_format: "SMS" or "MMS" (media attached) for SMS, else None.
        segments: Message segments of one SMS (GSM-7: 160, then 153 a segment; other text
            70, then 67); 1 for an MMS; 0 for other channels.
        credits: SMS credits of one send (segments; 3 for an MMS).
    """

    family: str
    id: str
    name: str
    parent_id: str
    parent_name: str
    send_channel: str
    tag_ids: tuple[str, ...]
    tag_names: tuple[str, ...]
    group: str | None
    group_name: str | None
    text_message_format: str | None
    segments: int
    credits: int


@dataclass(frozen=True)
class Form:
    """A form of the account (no Klaviyo endpoint lists them here; REPORTS.md).

    Attributes:
        id: Form id (6 characters, like Klaviyo's).
        name: Form name.
        versions: Its version ids (1 or 2: an A/B test), numeric strings.
        steps: Number of steps (1 or 2).
        list_id: The list its submissions subscribe to.
    """

    id: str
    name: str
    versions: tuple[str, ...]
    steps: int
    list_id: str | None


@dataclass
class Facts:
    """Every fact of one account version, in datetime order per kind of source.

    Attributes:
        message_ts: Datetimes (epoch seconds) of `message`, ascending.
        message: (ts, kind, message id, profile index, value, metric index) facts.
        messages: Message id -> Message (messages of deleted campaigns/flows are absent).
        form_ts: Datetimes of `form`, ascending.
        form: (ts, kind, form id, version id, profile index, n) facts.
        forms: Form id -> Form.
        segments: Segment id -> (ts, +1/-1, profile index) joins and leaves, ascending.
    """

    message_ts: list[int] = field(default_factory=list)
    message: list[tuple[int, str, str, int, float, int]] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)
    form_ts: list[int] = field(default_factory=list)
    form: list[tuple[int, str, str, str, int, int]] = field(default_factory=list)
    forms: dict[str, Form] = field(default_factory=dict)
    segments: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)

    def message_range(self, start: int, end: int) -> list[tuple[int, str, str, int, float, int]]:
        """Message facts with start <= ts < end."""
        return self.message[bisect.bisect_left(self.message_ts, start):
                            bisect.bisect_left(self.message_ts, end)]

    def form_range(self, start: int, end: int) -> list[tuple[int, str, str, str, int, int]]:
        """Form facts with start <= ts < end."""
        return self.form[bisect.bisect_left(self.form_ts, start):
                         bisect.bisect_left(self.form_ts, end)]


_CACHE: weakref.WeakKeyDictionary[Account, tuple[int, Facts]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def facts(acc: Account) -> Facts:
    """The facts of the account's current version (built on first use, then cached)."""
    with acc.lock:
        with _CACHE_LOCK:
            hit = _CACHE.get(acc)
        if hit is not None and hit[0] == acc.version:
            return hit[1]
        built = _build(acc)
        with _CACHE_LOCK:
            _CACHE[acc] = (acc.version, built)
        return built


def forms(acc: Account) -> list[Form]:
    """The account's forms: a pure function of (seed, the configured lists)."""
    lists = acc.events.sources.lists
    out = []
    for k in range(max(1, min(len(FORM_NAMES), acc.config.lists // 3))):
        h = h64(acc.seed, "form", k)
        versions = tuple(str(1_000_000 + h64(acc.seed, "form-version", k, v) % 9_000_000)
                         for v in range(1 + (h >> 8) % 2))
        out.append(Form(b62(h, 6), FORM_NAMES[k], versions, 1 + (h >> 16) % 2,
                        lists[k % len(lists)][0] if lists else None))
    return out


def sms_segments(body: str) -> int:
    """Segments of an SMS text: GSM-7 (ASCII here) 160 characters, else 153 per segment;
    other text (emoji, accents) 70, else 67 per segment."""
    size = len(body)
    single, multi = (160, 153) if body.isascii() else (70, 67)
    return 1 if size <= single else -(-size // multi)


# ------------------------------------------------------------------------------ building
def _build(acc: Account) -> Facts:
    out = Facts()
    out.messages = _messages(acc)
    out.forms = {f.id: f for f in forms(acc)}
    _event_facts(acc, out)
    out.segments = {gid: _segment_history(acc, gid) for gid in sorted(acc.small["segment"])}
    return out


def _messages(acc: Account) -> dict[str, Message]:
    tags = {t["id"]: t["attributes"]["name"] for t in acc.small["tag"].values()}
    groups = {g["id"]: g["attributes"]["name"]
              for kind in ("list", "segment") for g in acc.small[kind].values()}
    out: dict[str, Message] = {}
    for msg in acc.scope("campaign-message", REVISION):
        camp = acc.get("campaign", msg["rel"].get("campaign"))
        if camp is None:
            continue
        a = msg["attributes"]
        tag_ids = tuple(t for t in camp["rel"].get("tags") or [] if t in tags)
        included = [g for g in (camp["attributes"].get("audiences") or {}).get("included") or []]
        group = included[0] if included else None
        out[msg["id"]] = Message(
            "campaign", msg["id"], a.get("label") or "", camp["id"],
            camp["attributes"]["name"], SEND_CHANNELS[a["channel"]], tag_ids,
            tuple(tags[t] for t in tag_ids), group, groups.get(group) if group else None,
            *_sms_shape(a["channel"], a.get("content") or {}))
    for msg in acc.small["flow-message"].values():
        action = acc.small["flow-action"].get(msg["rel"].get("flow-action"))
        flow = acc.small["flow"].get(action["rel"]["flow"]) if action else None
        if flow is None:
            continue
        a = msg["attributes"]
        tag_ids = tuple(t for t in flow["rel"].get("tags") or [] if t in tags)
        out[msg["id"]] = Message(
            "flow", msg["id"], a.get("name") or "", flow["id"], flow["attributes"]["name"],
            SEND_CHANNELS[a["channel"]], tag_ids, tuple(tags[t] for t in tag_ids), None, None,
            *_sms_shape(a["channel"], a.get("content") or {}))
    return out


def _sms_shape(channel: str, content: dict) -> tuple[str | None, int, int]:
    """(text_message_format, segments, credits) of one send of a message."""
    if channel != "sms":
        return None, 0, 0
    if content.get("media_url"):
        return "MMS", 1, MMS_CREDITS
    segments = sms_segments(content.get("body") or "")
    return "SMS", segments, segments


def _event_facts(acc: Account, out: Facts) -> None:
    ev = acc.events
    families = ev.families
    wanted = {m for m, fam in enumerate(families)
              if fam in _MESSAGE_FAMILIES or fam in ("order", "site", "subscribe")}
    form_list = list(out.forms.values())
    by_list = {f.list_id: f for f in form_list if f.list_id}
    message_facts, form_facts = out.message, out.form
    for i in range(len(ev)):
        m = ev.metric_index(i)
        if m not in wanted or not acc.event_visible(i, REVISION):
            continue
        eid, ts, props, _, m, p, attributions = render_2026.event_parts(acc, i)
        if m < 0:
            continue  # its metric cannot be resolved: not counted (as it is not listed)
        fam = families[m]
        kind = _MESSAGE_FAMILIES.get(fam)
        if kind is not None:
            mid = props.get("$message")
            if isinstance(mid, str) and mid in out.messages:
                message_facts.append((ts, kind, mid, p, 0.0, m))
        elif fam == "site" and form_list:
            _view_facts(acc, eid, ts, p, form_list, form_facts)
        elif fam == "subscribe" and form_list and props.get("Method") == "Form":
            h = h64(acc.seed, "form-submit", eid)
            form = by_list.get(str(props.get("list_id"))) or form_list[h % len(form_list)]
            version = form.versions[(h >> 8) % len(form.versions)]
            for k, n in (("qualified", 1), ("viewed", 1), ("viewed_step", form.steps),
                         ("submit", 1), ("submitted_step", form.steps)):
                form_facts.append((ts, k, form.id, version, p, n))
        for a in attributions:
            mid = a.get("campaign-message") or a.get("flow-message")
            if mid in out.messages:
                value = props.get("$value", 0.0)
                value = float(value) if isinstance(value, (int, float)) else 0.0
                message_facts.append((ts, "conversion", mid, p, value, m))
    out.message_ts = [f[0] for f in message_facts]
    out.form_ts = [f[0] for f in form_facts]


def _view_facts(acc: Account, eid: str, ts: int, p: int, form_list: list[Form],
                form_facts: list[tuple[int, str, str, str, int, int]]) -> None:
    """The form funnel of one `Active on Site` event (see the module doc)."""
    h = h64(acc.seed, "form-view", eid)
    if h % 10 >= 6:
        return
    form = form_list[(h >> 8) % len(form_list)]
    version = form.versions[(h >> 16) % len(form.versions)]
    form_facts.append((ts, "qualified", form.id, version, p, 1))
    if h % 10 < 4:
        form_facts.append((ts, "viewed", form.id, version, p, 1))
        form_facts.append((ts, "viewed_step", form.id, version, p, 1))
        if (h >> 24) % 10 < 7:
            form_facts.append((ts, "closed", form.id, version, p, 1))


def _segment_history(acc: Account, gid: str) -> list[tuple[int, int, int]]:
    """Joins (+1) and leaves (-1) of one segment, ascending by time."""
    rec = acc.small["segment"][gid]
    rows: list[tuple[int, int, int]] = []
    members = acc.members("segment", gid, include_deleted=True)
    deleted = acc.profiles.deleted
    for p, joined in members:
        rows.append((joined, 1, p))
        if p in deleted:
            rows.append((max(joined, acc.profile_deleted_at.get(p, acc.last_mutation_ts)), -1, p))
    current = {p for p, _ in members}
    pct = max(1, rec.get("member_pct", 10) // 3)
    group_created = to_ts(datetime.fromisoformat(rec["attributes"]["created"]))
    key = ns_key(acc.seed, "former-member", gid)
    created = acc.profiles.created
    now = acc.now_ts
    for i in range(min(acc.config.profiles, len(created))):
        if i in current:
            continue
        h = h64_int(key, i)
        if h % 100 >= pct:
            continue
        start = max(created[i], group_created)
        if start >= now - 1:
            continue
        joined = start + (h >> 8) % (now - start - 1)
        left = joined + 1 + (h >> 40) % (now - joined - 1) if now - joined > 1 else now
        rows += [(joined, 1, i), (left, -1, i)]
    rows.sort()
    return rows
