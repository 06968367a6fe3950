"""Lazily generated events: event i is a pure function of (seed, i).

Event datetimes are a non-decreasing function of the index, so a datetime range maps
to an index range by binary search, and "sort=datetime" is index order. Many
neighbours share the exact same second (boundary cases). A few events lie up to a day
after `now`. Events created by mutations are appended after every existing one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from klaviyo_emulator import vocab
from klaviyo_emulator.util import b62, fmt_ts, h64_int, ns_key, uuid_str

DAY = 86_400


@dataclass(frozen=True)
class ExtraEvent:
    """An event created by a mutation."""

    ts: int
    metric: int
    profile: int
    salt: int


@dataclass(frozen=True)
class Sources:
    """Where email/SMS events come from (for `$flow`, `$message`, `Campaign Name` ...).

    Attributes:
        email_campaigns: (message id, campaign name, subject) of email campaigns.
        sms_campaigns: (message id, campaign name) of SMS campaigns.
        email_flows: (flow id, flow-message id, subject) of email flow messages.
        sms_flows: (flow id, flow-message id) of SMS flow messages.
        lists: (list id, list name).
    """

    email_campaigns: tuple[tuple[str, str, str], ...]
    sms_campaigns: tuple[tuple[str, str], ...]
    email_flows: tuple[tuple[str, str, str], ...]
    sms_flows: tuple[tuple[str, str], ...]
    lists: tuple[tuple[str, str], ...]


class Events:
    """The event stream of the account.

    Attributes:
        n: Number of generated (base) events.
        extra: Events appended by mutations (datetimes after every base event).
        metric_ids: Metric id per metric index.
        families: Event-property family per metric index.
    """

    def __init__(self, seed: int, now_ts: int, n: int, days: int, metric_ids: list[str],
                 families: list[str], weights: list[int], profile_count: int,
                 sources: Sources) -> None:
        self.key = ns_key(seed, "event")
        self.dup_key = ns_key(seed, "event-dup")
        self.now = now_ts
        self.n = n
        self.future = 0 if n < 20 else max(3, n // 2000)
        self.past = n - self.future
        self.span = days * DAY
        self.start = now_ts - self.span
        self.metric_ids = metric_ids
        self.families = families
        self.cum: list[int] = []
        total = 0
        for w in weights:
            total += w
            self.cum.append(total)
        self.total_weight = total
        self.profile_count = profile_count
        self.sources = sources
        self.extra: list[ExtraEvent] = []

    def __len__(self) -> int:
        return self.n + len(self.extra)

    # ----------------------------------------------------------------- positions
    def ts(self, i: int) -> int:
        """Epoch seconds of event i (non-decreasing in i)."""
        if i >= self.n:
            return self.extra[i - self.n].ts
        if i >= self.past:
            j = i - self.past
            return self.now + 60 + (j * (DAY - 120)) // self.future
        k = i
        if i > 0 and h64_int(self.dup_key, i) % 4 == 0:
            k = i - 1  # same second as the previous event
        return self.start + (k * self.span) // self.past

    def first_at_or_after(self, ts: int) -> int:
        """Smallest index whose datetime is >= ts (len(self) if none)."""
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.ts(mid) < ts:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def max_ts(self) -> int | None:
        """Latest event datetime, or None without events."""
        return self.ts(len(self) - 1) if len(self) else None

    def metric_index(self, i: int) -> int:
        """Index (into metric_ids) of the metric of event i."""
        if i >= self.n:
            return self.extra[i - self.n].metric
        r = h64_int(self.key, i) % self.total_weight
        return bisect.bisect_right(self.cum, r)

    def profile_index(self, i: int) -> int:
        """Profile index of event i."""
        if i >= self.n:
            return self.extra[i - self.n].profile
        return (h64_int(self.key, i) >> 20) % self.profile_count

    # ------------------------------------------------------------------ rendering
    def event_id(self, i: int) -> str:
        """Klaviyo-style 11-character event id."""
        if i >= self.n:
            return b62(h64_int(self.key ^ 0x77, self.extra[i - self.n].salt), 11)
        return b62(h64_int(self.key ^ 0x33, i), 11)

    def attributes(self, i: int) -> dict[str, Any]:
        """Attributes of event i as served."""
        ts = self.ts(i)
        salt = self.extra[i - self.n].salt if i >= self.n else i
        h = h64_int(self.key ^ 0x55, salt)
        h2 = h64_int(self.key ^ 0x99, salt)
        family = self.families[self.metric_index(i)]
        return {
            "timestamp": ts,
            "event_properties": self.properties(family, h, h2, salt),
            "datetime": fmt_ts(ts),
            "uuid": uuid_str((h2 << 64) | h, version=1),
        }

    def properties(self, family: str, h: int, h2: int, salt: int) -> dict[str, Any]:
        """`event_properties` for a metric family (dimension values on some families)."""
        src = self.sources
        props: dict[str, Any] = {}
        if family in ("email", "email_open", "email_click", "bounce", "unsubscribe"):
            if src.email_flows and (not src.email_campaigns or h % 5 < 2):
                flow_id, msg_id, subject = src.email_flows[(h >> 3) % len(src.email_flows)]
                props.update({"$flow": flow_id, "$message": msg_id, "Subject": subject})
            elif src.email_campaigns:
                msg_id, name, subject = src.email_campaigns[(h >> 3) % len(src.email_campaigns)]
                props.update({"$message": msg_id, "Campaign Name": name, "Subject": subject})
            props["Email Domain"] = vocab.DOMAINS[(h >> 12) % len(vocab.DOMAINS)]
            props["$message_send_cohort"] = "A" if (h >> 15) & 1 else "B"
            if family == "email_open":
                props["Client Name"] = ("Gmail", "Apple Mail", "Outlook")[(h >> 16) % 3]
                props["Client Type"] = ("Webmail", "Desktop", "Mobile")[(h >> 18) % 3]
                props["Client Canonical"] = ("Gmail", "Apple Mail", "Outlook")[(h >> 16) % 3]
            elif family == "email_click":
                props["URL"] = f"https://shop.example.com/p/{(h >> 16) % 40}?utm_source=klaviyo"
            elif family == "bounce":
                props["Bounce Type"] = ("hard", "soft")[(h >> 16) & 1]
            elif family == "unsubscribe":
                props["Method"] = ("Email Link", "Preference Page")[(h >> 16) & 1]
        elif family in ("sms", "sms_click"):
            if src.sms_flows and (not src.sms_campaigns or h % 5 < 2):
                flow_id, msg_id = src.sms_flows[(h >> 3) % len(src.sms_flows)]
                props.update({"$flow": flow_id, "$message": msg_id})
            elif src.sms_campaigns:
                msg_id, name = src.sms_campaigns[(h >> 3) % len(src.sms_campaigns)]
                props.update({"$message": msg_id, "Campaign Name": name})
            props["To Number"] = f"+1555{(h >> 20) % 10_000_000:07d}"
            props["From Number"] = "+15550001111"
            props["Message Type"] = ("SMS", "MMS")[(h >> 44) & 1]
            props["To Phone Region"] = "US"
            if family == "sms_click":
                props["URL"] = f"https://kvo.io/{b62(h2, 6)}"
        elif family in ("order", "checkout", "fulfilled", "refund"):
            count = 1 + h % 4
            items = [vocab.PRODUCTS[(h >> (4 + 4 * k)) % len(vocab.PRODUCTS)] for k in
                     range(count)]
            value = round(sum(p for _, p in items) * (1 - ((h2 >> 3) % 3) * 0.1), 2)
            props.update({
                "$value": value,
                "$event_id": f"{1_000_000 + salt}",
                "Items": [n for n, _ in items],
                "Item Count": count,
                "Discount Codes": ["WELCOME10"] if (h2 >> 5) % 4 == 0 else [],
                "$extra": {
                    "line_items": [{"product": {"title": n, "price": p,
                                                "id": (h2 >> k) % 100_000},
                                    "quantity": 1 + (h2 >> (k + 7)) % 3}
                                   for k, (n, p) in enumerate(items)],
                    "currency": "EUR",
                    "shipping_address": {"city": vocab.CITIES[h2 % len(vocab.CITIES)][0],
                                         "country_code": "DE"},
                },
            })
            if family == "order" and (h2 >> 9) % 3 == 0:
                channel = ("email", "sms")[(h2 >> 11) & 1]
                props["$attributed_channel"] = channel
                flows = src.email_flows if channel == "email" else src.sms_flows
                if flows:
                    flow = flows[(h2 >> 13) % len(flows)]
                    props["$attributed_flow"] = flow[0]
                    props["$attributed_message"] = flow[1]
        elif family in ("product", "cart", "ordered_product"):
            name, price = vocab.PRODUCTS[h % len(vocab.PRODUCTS)]
            props.update({"ProductName": name, "ProductID": 1000 + h % len(vocab.PRODUCTS),
                          "Price": price,
                          "Categories": [vocab.CATEGORIES[(h >> 8) % len(vocab.CATEGORIES)]],
                          "URL": f"https://shop.example.com/products/{h % len(vocab.PRODUCTS)}"})
            if family != "product":
                props["$value"] = price
                props["Quantity"] = 1 + (h >> 12) % 2
        elif family == "site":
            props.update({"page": f"https://shop.example.com/{('', 'cart', 'sale', 'blog')[h % 4]}",
                          "$is_session_activity": bool((h >> 3) & 1), "$use_ip": True,
                          "os": ("iOS", "Android", "Windows", "macOS")[(h >> 5) % 4]})
        elif family == "subscribe":
            if src.lists:
                list_id, list_name = src.lists[h % len(src.lists)]
                props.update({"List": list_name, "list_id": list_id})
            props["Method"] = ("Form", "API", "Checkout")[(h >> 8) % 3]
        else:
            props.update({"$value": round((h % 10_000) / 100, 2), "Kanal": "Widget ✨",
                          "nested": {"level": {"deep": [1, {"x": "ÿ"}]}}})
        return props
