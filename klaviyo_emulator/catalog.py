"""Generates the small resources of the synthetic account.

Metrics, tags (and their tag group), templates, lists, segments, campaigns with
campaign-messages, flows with flow-actions and flow-messages. Records are kept in the
internal form `{"type", "id", "attributes", "rel"}` where `rel` maps a relationship name
to an id (to-one) or a list of ids (to-many); `documents.py` renders them as JSON:API.
"""

from __future__ import annotations

import math
import random
from typing import Any

from klaviyo_emulator import vocab
from klaviyo_emulator.util import b62, fmt_ts, h64, ulid, uuid_str

Record = dict[str, Any]

INTEGRATIONS = {
    "shopify": {"object": "integration", "id": "0rG4eQ", "name": "Shopify", "category": "eCommerce"},
    "klaviyo": {"object": "integration", "id": "0eMvjm", "name": "Klaviyo", "category": "Internal"},
    "api": {"object": "integration", "id": "7FtS4J", "name": "API", "category": "API"},
}

# (name, integration key, relative event weight, event-property family)
STANDARD_METRICS: tuple[tuple[str, str, int, str], ...] = (
    ("Received Email", "klaviyo", 30, "email"),
    ("Opened Email", "klaviyo", 18, "email_open"),
    ("Clicked Email", "klaviyo", 7, "email_click"),
    ("Active on Site", "api", 20, "site"),
    ("Viewed Product", "api", 14, "product"),
    ("Added to Cart", "api", 5, "cart"),
    ("Started Checkout", "shopify", 4, "checkout"),
    ("Placed Order", "shopify", 4, "order"),
    ("Ordered Product", "shopify", 4, "ordered_product"),
    ("Received SMS", "klaviyo", 6, "sms"),
    ("Clicked SMS", "klaviyo", 2, "sms_click"),
    ("Subscribed to List", "klaviyo", 2, "subscribe"),
    ("Unsubscribed", "klaviyo", 1, "unsubscribe"),
    ("Bounced Email", "klaviyo", 1, "bounce"),
    ("Fulfilled Order", "shopify", 2, "fulfilled"),
    ("Refunded Order", "shopify", 1, "refund"),
)

DAY = 86_400


def spread(rng: random.Random, lo: int, hi: int) -> tuple[int, int]:
    """A (created, updated) pair of epoch seconds with lo <= created <= updated <= hi."""
    created = rng.randint(lo, hi)
    updated = created if rng.random() < 0.15 else rng.randint(created, hi)
    return created, updated


def share_some(records: list[Record], rng: random.Random, created: str, updated: str) -> None:
    """Makes ~1 in 6 records share their `updated` value with another record (ties)."""
    for i in range(1, len(records), 6):
        a, b = records[i - 1]["attributes"], records[i]["attributes"]
        if a[updated] >= b[created]:
            b[updated] = a[updated]


def bulk_edit(records: list[Record], share: float, at: int, created: str, updated: str) -> None:
    """A bulk edit at `at`: `share` of the records (spread evenly, those created by then)
    get `at` as their `updated` value (the `ties` knob: runs of one value over pages)."""
    if share <= 0:
        return
    for i, rec in enumerate(records):
        attrs = rec["attributes"]
        if math.ceil((i + 1) * share) > math.ceil(i * share) and attrs[created] <= at:
            attrs[updated] = at


class Catalog:
    """The small collections of one account, generated from (seed, now, sizes, ties)."""

    def __init__(self, seed: int, now_ts: int, sizes: dict[str, int], ties: float = 0.0) -> None:
        self.seed = seed
        self.now = now_ts
        self.sizes = sizes
        self.ties = ties
        self.history_start = now_ts - 400 * DAY
        self.metrics: list[Record] = []
        self.metric_family: dict[str, str] = {}
        self.metric_weight: dict[str, int] = {}
        self.tag_groups: list[Record] = []
        self.tags: list[Record] = []
        self.templates: list[Record] = []
        self.lists: list[Record] = []
        self.segments: list[Record] = []
        self.campaigns: list[Record] = []
        self.campaign_messages: list[Record] = []
        self.flows: list[Record] = []
        self.flow_actions: list[Record] = []
        self.flow_messages: list[Record] = []
        self._build()

    def rng(self, kind: str) -> random.Random:
        """A private RNG per collection so sizes of one kind do not shift another."""
        return random.Random(h64(self.seed, "catalog", kind))

    def bulk_edit(self, kind: str, records: list[Record], created: str, updated: str) -> None:
        """The `ties` knob's bulk edit of one kind, at a seeded time of the last 60 days."""
        if self.ties > 0:
            at = self.now - DAY - h64(self.seed, "catalog-ties", kind) % (59 * DAY)
            bulk_edit(records, self.ties, at, created, updated)

    def _build(self) -> None:
        self._metrics()
        self._tags()
        self._templates()
        self._lists_segments()
        self._campaigns()
        self._flows()

    # ------------------------------------------------------------------ metrics, tags
    def _metrics(self) -> None:
        rng = self.rng("metric")
        for i in range(self.sizes["metrics"]):
            if i < len(STANDARD_METRICS):
                name, integ, weight, family = STANDARD_METRICS[i]
            else:
                name, integ, weight, family = f"Custom Event {i - 15} ✨", "api", 2, "custom"
            mid = b62(h64(self.seed, "metric", i), 6)
            created, updated = spread(rng, self.history_start, self.now - 30 * DAY)
            self.metrics.append(make_metric(mid, name, INTEGRATIONS[integ], created, updated))
            self.metric_family[mid] = family
            self.metric_weight[mid] = weight
        share_some(self.metrics, rng, "created", "updated")
        for rec in self.metrics:
            fmt_times(rec, ("created", "updated"))

    def _tags(self) -> None:
        gid = uuid_str(h64(self.seed, "tag-group") << 64 | h64(self.seed, "tag-group", 2))
        self.tag_groups.append({
            "type": "tag-group", "id": gid,
            "attributes": {"name": "Default Tag Group", "exclusive": False, "default": True},
            "rel": {},
        })
        for i in range(self.sizes["tags"]):
            name = vocab.TAG_NAMES[i % len(vocab.TAG_NAMES)]
            if i >= len(vocab.TAG_NAMES):
                name = f"{name} {i // len(vocab.TAG_NAMES) + 1}"
            tid = uuid_str(h64(self.seed, "tag", i) << 64 | h64(self.seed, "tag", i, 2))
            self.tags.append({"type": "tag", "id": tid, "attributes": {"name": name},
                              "rel": {"tag-group": gid}})

    def pick_tags(self, rng: random.Random, most: int = 2) -> list[str]:
        """0..most distinct tag ids."""
        if not self.tags:
            return []
        k = rng.randint(0, min(most, len(self.tags)))
        return [t["id"] for t in rng.sample(self.tags, k)]

    # -------------------------------------------------------------- templates, lists
    def _templates(self) -> None:
        rng = self.rng("template")
        for i in range(self.sizes["templates"]):
            tid = b62(h64(self.seed, "template", i), 6)
            created, updated = spread(rng, self.history_start, self.now)
            self.templates.append(make_template(rng, tid, i, created, updated))
        share_some(self.templates, rng, "created", "updated")
        self.bulk_edit("template", self.templates, "created", "updated")
        for rec in self.templates:
            fmt_times(rec, ("created", "updated"))

    def _lists_segments(self) -> None:
        for kind, names, out in (("list", vocab.LIST_NAMES, self.lists),
                                 ("segment", vocab.SEGMENT_NAMES, self.segments)):
            rng = self.rng(kind)
            for i in range(self.sizes[kind + "s"]):
                gid = b62(h64(self.seed, kind, i), 6)
                name = names[i % len(names)] + ("" if i < len(names) else f" {i}")
                created, updated = spread(rng, self.history_start, self.now)
                out.append({
                    "type": kind, "id": gid,
                    "attributes": {"name": name, "created": created, "updated": updated},
                    "rel": {"tags": self.pick_tags(rng)},
                    "member_pct": rng.choice((5, 10, 20, 35, 60)),
                })
            share_some(out, rng, "created", "updated")
            self.bulk_edit(kind, out, "created", "updated")
            for rec in out:
                fmt_times(rec, ("created", "updated"))

    # ---------------------------------------------------------------------- campaigns
    def _campaigns(self) -> None:
        rng = self.rng("campaign")
        audiences = [g["id"] for g in self.lists + self.segments]
        for i in range(self.sizes["campaigns"]):
            created, updated = spread(rng, self.history_start, self.now)
            cid = ulid(created * 1000 + rng.randint(0, 999), h64(self.seed, "campaign", i))
            channel = "sms" if rng.random() < 0.3 else "email"
            campaign, message = make_campaign(rng, self, cid, i, channel, created, updated,
                                              audiences)
            self.campaigns.append(campaign)
            self.campaign_messages.append(message)
        share_some(self.campaigns, rng, "created_at", "updated_at")
        self.bulk_edit("campaign", self.campaigns, "created_at", "updated_at")
        for rec in self.campaigns:
            fmt_times(rec, ("created_at", "updated_at", "scheduled_at", "send_time"))
            opts = rec["attributes"]["send_strategy"]["options_static"]
            opts["datetime"] = fmt_ts(opts["datetime"])
        for msg in self.campaign_messages:
            fmt_times(msg, ("created_at", "updated_at"))
            for st in msg["attributes"]["send_times"]:
                st["datetime"] = fmt_ts(st["datetime"])

    # -------------------------------------------------------------------------- flows
    def _flows(self) -> None:
        rng = self.rng("flow")
        action_no = 0
        for i in range(self.sizes["flows"]):
            fid = b62(h64(self.seed, "flow", i), 6)
            created, updated = spread(rng, self.history_start, self.now)
            flow = make_flow(rng, fid, i, created, updated, self.pick_tags(rng))
            self.flows.append(flow)
            for _ in range(rng.randint(1, 5)):
                action_no += 1
                action, messages = make_flow_action(rng, self, flow, action_no, created)
                self.flow_actions.append(action)
                self.flow_messages.extend(messages)
        share_some(self.flows, rng, "created", "updated")
        self.bulk_edit("flow", self.flows, "created", "updated")
        for rec in self.flows + self.flow_actions + self.flow_messages:
            fmt_times(rec, ("created", "updated"))


def fmt_times(rec: Record, names: tuple[str, ...]) -> None:
    """Formats integer epoch attributes as Klaviyo datetimes, in place."""
    attrs = rec["attributes"]
    for name in names:
        if isinstance(attrs.get(name), int):
            attrs[name] = fmt_ts(attrs[name])


def make_metric(mid: str, name: str, integration: dict[str, str], created: int,
                updated: int) -> Record:
    """A metric record (times as epoch ints until `fmt_times`)."""
    return {"type": "metric", "id": mid,
            "attributes": {"name": name, "created": created, "updated": updated,
                           "integration": dict(integration)},
            "rel": {}}


def make_template(rng: random.Random, tid: str, i: int, created: int, updated: int) -> Record:
    """A template record with a few KB of HTML."""
    name = vocab.TEMPLATE_NAMES[i % len(vocab.TEMPLATE_NAMES)] + f" v{i + 1}"
    editor = rng.choice(("SYSTEM_DRAGGABLE", "SIMPLE", "CODE", "USER_DRAGGABLE"))
    product, price = rng.choice(vocab.PRODUCTS)
    rows = "".join(
        f'<tr><td class="item">{p} — €{q:.2f}</td></tr>'
        for p, q in rng.sample(vocab.PRODUCTS, 4)
    )
    html = (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>"
        f"{name}</title><style>body{{font-family:Arial}} .item{{padding:4px}}</style></head>"
        f"<body><h1>Hello {{{{ first_name|default:'friend' }}}} 👋</h1>"
        f"<p>Featured: <b>{product}</b> for €{price:.2f}</p><table>{rows}</table>"
        "<p><a href=\"{% unsubscribe_url %}\">Unsubscribe</a></p></body></html>"
    )
    return {"type": "template", "id": tid,
            "attributes": {"name": name, "editor_type": editor, "html": html,
                           "text": f"Hello! Featured: {product}.", "created": created,
                           "updated": updated},
            "rel": {}}


CAMPAIGN_STATUSES = (("Sent", 60), ("Draft", 12), ("Scheduled", 8), ("Cancelled", 5),
                     ("Sending", 3), ("Cancelled: No Recipients", 2), ("Variations Sent", 2))


def make_campaign(rng: random.Random, cat: Catalog, cid: str, i: int, channel: str,
                  created: int, updated: int, audiences: list[str]) -> tuple[Record, Record]:
    """A campaign and its single campaign-message (times as epoch ints)."""
    words = rng.choice(vocab.CAMPAIGN_WORDS)
    name = f"{words} #{i + 1}" + (" (SMS)" if channel == "sms" else "")
    status = rng.choices([s for s, _ in CAMPAIGN_STATUSES],
                         weights=[w for _, w in CAMPAIGN_STATUSES])[0]
    send_at = min(cat.now + 7 * DAY, updated + rng.randint(0, 3 * DAY)) if status in (
        "Draft", "Scheduled") else rng.randint(created, updated)
    included = rng.sample(audiences, min(len(audiences), rng.randint(1, 2))) if audiences else []
    rest = [a for a in audiences if a not in included]
    excluded = rng.sample(rest, min(len(rest), rng.randint(0, 1)))
    attrs = {
        "name": name,
        "status": status,
        "archived": rng.random() < 0.15,
        "audiences": {"included": included, "excluded": excluded},
        "send_options": {"use_smart_sending": rng.random() < 0.7},
        "tracking_options": (
            {"is_add_utm": True, "utm_params": [{"name": "utm_source", "value": "klaviyo"},
                                                {"name": "utm_campaign", "value": name}],
             "is_tracking_clicks": True, "is_tracking_opens": True}
            if channel == "email" else
            {"is_add_utm": False, "utm_params": []}
        ),
        "send_strategy": {"method": "static",
                          "options_static": {"datetime": send_at, "is_local": False,
                                             "send_past_recipients_immediately": False}},
        "created_at": created,
        "scheduled_at": send_at,
        "updated_at": updated,
        "send_time": send_at,
    }
    mid = ulid(created * 1000 + 1, h64(cat.seed, "campaign-message", i))
    template = rng.choice(cat.templates)["id"] if cat.templates else None
    if channel == "email":
        content = {"subject": f"{words} – just for you", "preview_text": "Don't miss out ✨",
                   "from_email": "store@example.com", "from_label": "Example Store",
                   "reply_to_email": "help@example.com", "cc_email": "", "bcc_email": ""}
    else:
        content = {"body": f"{words}: 20% off today only! Reply STOP to opt out.",
                   "media_url": "https://cdn.example.com/sms/promo.png"}
    message = {
        "type": "campaign-message", "id": mid,
        "attributes": {
            "label": f"{name} message", "channel": channel, "content": content,
            "send_times": [{"datetime": send_at, "is_local": False}],
            "render_options": {"shorten_links": True, "add_org_prefix": True,
                               "add_info_link": True, "add_opt_out_language": channel == "sms"},
            "created_at": created, "updated_at": updated,
        },
        "rel": {"campaign": cid, "template": template},
    }
    campaign = {"type": "campaign", "id": cid, "attributes": attrs,
                "rel": {"campaign-messages": [mid], "tags": cat.pick_tags(rng)},
                "channel": channel}
    return campaign, message


def make_flow(rng: random.Random, fid: str, i: int, created: int, updated: int,
              tags: list[str]) -> Record:
    """A flow record (times as epoch ints)."""
    name = vocab.FLOW_NAMES[i % len(vocab.FLOW_NAMES)] + ("" if i < 10 else f" {i}")
    return {"type": "flow", "id": fid,
            "attributes": {"name": name,
                           "status": rng.choices(("live", "manual", "draft"), (6, 2, 2))[0],
                           "archived": rng.random() < 0.15,
                           "created": created, "updated": updated,
                           "trigger_type": rng.choice(("Added to List", "Date Based", "Metric",
                                                       "Price Drop", "Unconfigured"))},
            "rel": {"flow-actions": [], "tags": tags}}


ACTION_TYPES = (("SEND_EMAIL", 5), ("TIME_DELAY", 3), ("SEND_SMS", 2), ("CONDITIONAL_SPLIT", 1),
                ("BOOLEAN_BRANCH", 1), ("UPDATE_CUSTOMER", 1), ("WEBHOOK", 1))


def make_flow_action(rng: random.Random, cat: Catalog, flow: Record, number: int,
                     flow_created: int) -> tuple[Record, list[Record]]:
    """A flow-action of `flow` and its flow-messages (send actions only)."""
    action_type = rng.choices([a for a, _ in ACTION_TYPES], [w for _, w in ACTION_TYPES])[0]
    created, updated = spread(rng, flow_created, cat.now)
    aid = str(10_000_000 + h64(cat.seed, "flow-action", number) % 89_999_999)
    settings: dict[str, Any] = {}
    if action_type == "TIME_DELAY":
        settings = {"delay_seconds": rng.choice((3600, 86400, 259200)), "timezone": "profile"}
    elif action_type == "WEBHOOK":
        settings = {"url": "https://hooks.example.com/klaviyo", "headers": {"X-Src": "flow"}}
    action = {
        "type": "flow-action", "id": aid,
        "attributes": {
            "action_type": action_type,
            "status": flow["attributes"]["status"],
            "created": created, "updated": updated,
            "settings": settings,
            "tracking_options": {"add_utm": False, "utm_params": [], "is_tracking_opens": True,
                                 "is_tracking_clicks": True},
            "send_options": {"use_smart_sending": rng.random() < 0.5,
                             "is_transactional": False},
            "render_options": {"shorten_links": True, "add_org_prefix": True,
                               "add_info_link": True, "add_opt_out_language": False},
        },
        "rel": {"flow": flow["id"], "flow-messages": []},
    }
    flow["rel"]["flow-actions"].append(aid)
    messages = []
    if action_type in ("SEND_EMAIL", "SEND_SMS"):
        channel = "email" if action_type == "SEND_EMAIL" else "sms"
        mid = b62(h64(cat.seed, "flow-message", number), 6)
        m_created, m_updated = spread(rng, created, updated)
        if channel == "email":
            content = {"subject": f"{flow['attributes']['name']} – step {number}",
                       "preview_text": "We saved something for you", "from_email":
                       "store@example.com", "from_label": "Example Store",
                       "reply_to_email": "help@example.com", "cc_email": "", "bcc_email": ""}
        else:
            content = {"body": "Hi {{ first_name }}, your cart misses you 🛒",
                       "media_url": ""}
        messages.append({
            "type": "flow-message", "id": mid,
            "attributes": {"name": f"{flow['attributes']['name']} {channel} #{number}",
                           "channel": channel, "content": content,
                           "created": m_created, "updated": m_updated},
            "rel": {"flow-action": aid,
                    "template": rng.choice(cat.templates)["id"] if cat.templates else None},
        })
        action["rel"]["flow-messages"].append(mid)
    return action, messages
