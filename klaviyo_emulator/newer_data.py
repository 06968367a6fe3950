"""Account data that only newer revisions show: push campaigns, attributions, unresolved events.

One account per seed serves every revision; these parts of it are invisible under
2023-10-15, which has no `mobile_push` channel, no attribution resource and never returns
an event whose metric cannot be resolved:

- **Push campaigns**: one `mobile_push` campaign (with its message) per 8 configured
  campaigns (at least one when there are campaigns), from an RNG stream of their own so
  the email and SMS campaigns are exactly those of the 2023-10-15 account.
- **Attributions** of conversion events (`Placed Order`): an order whose
  `event_properties` carry `$attributed_flow`/`$attributed_message` is attributed to that
  flow and flow message; about one order in four (by the event's own hash) is attributed to
  a campaign message (email, SMS or push) and its campaign, some orders to both. Each
  attribution has a stable 32-hex id. Pure functions of (seed, event index).
- **Unresolved events**: `max(3, events // 2000)` base events (none below 100 events)
  whose metric cannot be resolved in 2026-07-15: served there without a `metric`
  relationship, left out by `has(metric)` and by `equals(metric_id,...)`. 2023-10-15 serves
  them as before, with their metric, so every revision holds the same events (and the
  configured `events` count); metric aggregates count them under their metric in both.
  Events of a metric deleted by a mutation are likewise served without a metric from
  2026-07-15 on, while 2023-10-15 leaves them out (as before).
"""

from __future__ import annotations

import random
import struct
from hashlib import blake2b
from typing import Any

from klaviyo_emulator.catalog import DAY, Catalog, fmt_times, spread
from klaviyo_emulator.events import Events
from klaviyo_emulator.util import fmt_ts, h64, ulid

Record = dict[str, Any]

PUSH_EVERY = 8
"""One push campaign per this many configured campaigns."""

_PACK = struct.Struct("<qqq")
_TITLES = ("Flash sale ⚡", "Back in stock", "Your cart is waiting", "New arrivals", "Last call")


def push_campaigns(cat: Catalog, campaigns: int) -> tuple[list[Record], list[Record]]:
    """The account's `mobile_push` campaigns and their messages (internal records)."""
    count = max(1, campaigns // PUSH_EVERY) if campaigns > 0 else 0
    rng = cat.rng("campaign-push")
    audiences = [g["id"] for g in cat.lists + cat.segments]
    out_c: list[Record] = []
    out_m: list[Record] = []
    for i in range(count):
        created, updated = spread(rng, cat.history_start, cat.now)
        cid = ulid(created * 1000 + rng.randint(0, 999), h64(cat.seed, "campaign-push", i))
        title = _TITLES[i % len(_TITLES)]
        status = rng.choice(("Sent", "Sent", "Draft", "Scheduled"))
        send_at = (min(cat.now + 7 * DAY, updated + rng.randint(0, 3 * DAY))
                   if status != "Sent" else rng.randint(created, updated))
        included = rng.sample(audiences, min(len(audiences), 1)) if audiences else []
        mid = ulid(created * 1000 + 1, h64(cat.seed, "campaign-push-message", i))
        campaign = {
            "type": "campaign", "id": cid, "channel": "mobile_push",
            "attributes": {
                "name": f"{title} #{i + 1} (Push)", "status": status,
                "archived": rng.random() < 0.15,
                "audiences": {"included": included, "excluded": []},
                "send_options": {"use_smart_sending": rng.random() < 0.5},
                "tracking_options": None,
                "send_strategy": {"method": "static",
                                  "options_static": {"datetime": send_at, "is_local": False,
                                                     "send_past_recipients_immediately": False}},
                "created_at": created, "scheduled_at": send_at, "updated_at": updated,
                "send_time": send_at,
            },
            "rel": {"campaign-messages": [mid], "tags": cat.pick_tags(rng)},
        }
        message = {
            "type": "campaign-message", "id": mid,
            "attributes": {
                "label": f"{title} push", "channel": "mobile_push",
                "content": {"title": title, "body": f"{title}: tap to see today's picks 📱"},
                "send_times": [{"datetime": send_at, "is_local": False}],
                "render_options": None, "created_at": created, "updated_at": updated,
            },
            "rel": {"campaign": cid, "template": None},
        }
        fmt_times(campaign, ("created_at", "updated_at", "scheduled_at", "send_time"))
        opts = campaign["attributes"]["send_strategy"]["options_static"]
        opts["datetime"] = fmt_ts(opts["datetime"])
        fmt_times(message, ("created_at", "updated_at"))
        for st in message["attributes"]["send_times"]:
            st["datetime"] = fmt_ts(st["datetime"])
        out_c.append(campaign)
        out_m.append(message)
    return out_c, out_m


def unresolved_events(seed: int, events: Events) -> frozenset[int]:
    """Indexes of the base events whose metric cannot be resolved (see the module doc)."""
    n = events.past
    if events.n < 100 or n <= 0:
        return frozenset()
    count = max(3, events.n // 2000)
    rng = random.Random(h64(seed, "unresolved-events"))
    return frozenset(rng.sample(range(n), min(count, n)))


class Attributions:
    """Attributions of conversion events, a pure function of (seed, event index).

    Args:
        seed: Account seed.
        families: Event-property family per metric index.
        campaign_messages: (message id, campaign id) of every campaign message that
            conversions may be attributed to (email, SMS and push), sorted by id.
        flow_of_message: Flow-message id -> flow id.
    """

    def __init__(self, seed: int, families: list[str],
                 campaign_messages: list[tuple[str, str]],
                 flow_of_message: dict[str, str]) -> None:
        self.key = h64(seed, "attribution") & 0x7FFF_FFFF_FFFF_FFFF
        self.families = families
        self.campaign_messages = campaign_messages
        self.flow_of_message = flow_of_message

    def of(self, i: int, metric: int, props: dict[str, Any]) -> list[dict[str, str]]:
        """Attributions of event i: dicts with `id` and the attributed `flow`,
        `flow-message`, `campaign`, `campaign-message` ids (only those that apply)."""
        if self.families[metric] != "order":
            return []
        d = blake2b(_PACK.pack(self.key, i, 1), digest_size=32).digest()
        out: list[dict[str, str]] = []
        message = props.get("$attributed_message")
        if isinstance(message, str) and message in self.flow_of_message:
            out.append({"id": d[:16].hex(), "flow": self.flow_of_message[message],
                        "flow-message": message})
        campaign_too = d[17] % 4 == 0 if out else d[16] % 4 == 0
        if campaign_too and self.campaign_messages:
            mid, cid = self.campaign_messages[int.from_bytes(d[18:22], "little")
                                              % len(self.campaign_messages)]
            out.append({"id": d[16:32].hex(), "campaign": cid, "campaign-message": mid})
        return out
