"""Lazily generated events: event i is a pure function of (seed, i).

Event datetimes are a non-decreasing function of the index, so a datetime range maps
to an index range by binary search, and "sort=datetime" is index order. Many
neighbours share the exact same second (boundary cases). A few events lie up to a day
after `now`. Events created by mutations are appended after every existing one; "late" events
(written with a past datetime, or seen late as Klaviyo's eventually consistent listing does)
are slotted in among the others by datetime: a position is then a virtual index over both,
so the base events keep their ids and the order stays the datetime order.

With `ties` > 0 (bulk imports), past events are grouped in blocks of `TIE_BLOCK` indexes and
that share of the blocks begins with a run of 450-1000 events sharing the block's first
datetime: whole pages of one `datetime`. Runs stay in index order, so datetimes stay
non-decreasing.

With `event_weight="realistic"`, each event also carries extra properties picked by its hash
from per-seed pools of pre-serialized fragments (weight.py; `render_parts`); `parts` and the
aggregates keep to the event's own properties.
"""

from __future__ import annotations

import bisect
import math
import struct
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from klaviyo_emulator import vocab, weight
from klaviyo_emulator.util import b62, fmt_ts, h64_int, ns_key

_PACK = struct.Struct("<qq")
_B62 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_TABLE = bytes(_B62[b % 62] for b in range(256))

DAY = 86_400
TIE_BLOCK = 1000  # events per block of the `ties` knob (a run of one datetime starts a block)


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
        late: Events a mutation dated in the past, sorted by datetime (see `add_late`).
        metric_ids: Metric id per metric index.
        families: Event-property family per metric index.
    """

    def __init__(self, seed: int, now_ts: int, n: int, days: int, metric_ids: list[str],
                 families: list[str], weights: list[int], profile_count: int,
                 sources: Sources, ties: float = 0.0, event_weight: str = "light") -> None:
        self.key = ns_key(seed, "event")
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
        self.late: list[ExtraEvent] = []
        self._late_pos: list[int] = []  # position of each late event, ascending
        self.tie_runs = self._tie_runs(seed, ties)
        # realistic weight: per family, the pool of extra properties (weight.py)
        self._pool = weight.pool(seed) if event_weight == "realistic" else None

    def warm(self) -> None:
        """Builds the pools of extra properties of every family now (realistic weight; else
        they are built on first use, ~0.5 s for all)."""
        if self._pool is not None:
            for family in set(self.families):
                self._pool.fragments(family)

    def _tie_runs(self, seed: int, ties: float) -> list[int]:
        """Length of the run of one datetime that begins each block of past events (0 =
        none): `ties` of the blocks, spread evenly from the first, 450-1000 events each."""
        if ties <= 0:
            return []
        key = ns_key(seed, "event-ties")
        runs = []
        for b in range(-(-self.past // TIE_BLOCK)):
            bulk = math.ceil((b + 1) * ties) > math.ceil(b * ties)
            runs.append(450 + h64_int(key, b) % 551 if bulk else 0)
        return runs

    def __len__(self) -> int:
        return self.n + len(self.extra) + len(self.late)

    def _at(self, i: int) -> int | ExtraEvent:
        """Position i -> the base event's index, or the mutation's event standing there."""
        if self._late_pos:
            k = bisect.bisect_left(self._late_pos, i)
            if k < len(self._late_pos) and self._late_pos[k] == i:
                return self.late[k]
            i -= k
        return i if i < self.n else self.extra[i - self.n]

    def add_late(self, event: ExtraEvent) -> int:
        """Slots an event dated in the past in after the events of its second; returns its
        position. Positions after it move up by one (a page cursor taken before then
        repeats one event, as a listing that changed under a reader may)."""
        self.late.append(event)
        self.late.sort(key=lambda x: x.ts)  # stable: equal datetimes keep their order
        self._late_pos = []
        for k, x in enumerate(self.late):
            lo, hi = 0, self.n + len(self.extra)  # base and appended events dated <= x.ts
            while lo < hi:
                mid = (lo + hi) // 2
                if self._main_ts(mid) <= x.ts:
                    lo = mid + 1
                else:
                    hi = mid
            self._late_pos.append(lo + k)
        return self._late_pos[self.late.index(event)]

    # ----------------------------------------------------------------- positions
    def digest(self, i: int) -> bytes:
        """32 pseudo-random bytes of event i, the source of all its attributes."""
        at = self._at(i) if self._late_pos or i >= self.n else i  # (hot path: a base event)
        salt = at.salt if isinstance(at, ExtraEvent) else at
        return blake2b(_PACK.pack(self.key, salt), digest_size=32).digest()

    def ts(self, i: int) -> int:
        """Epoch seconds of event i (non-decreasing in i)."""
        at = self._at(i) if self._late_pos or i >= self.n else i
        return at.ts if isinstance(at, ExtraEvent) else self._main_ts(at)

    def _main_ts(self, i: int) -> int:
        """Epoch seconds of the i-th base or appended event (late ones not counted)."""
        if i >= self.n:
            return self.extra[i - self.n].ts
        if i >= self.past:
            j = i - self.past
            return self.now + 60 + (j * (DAY - 120)) // self.future
        return self._past_ts(i, self._base_digest(i))

    def _past_ts(self, i: int, d: bytes) -> int:
        """Datetime of a past base event; 1 in 4 shares the previous event's second, and
        events of a bulk-import run share their block's first datetime."""
        if self.tie_runs:
            block, offset = divmod(i, TIE_BLOCK)
            if offset < self.tie_runs[block]:
                return self.start + (block * TIE_BLOCK * self.span) // self.past
        k = i - 1 if i > 0 and d[31] & 3 == 0 else i
        return self.start + (k * self.span) // self.past

    def _base_digest(self, i: int) -> bytes:
        """`digest` of the i-th base event."""
        return blake2b(_PACK.pack(self.key, i), digest_size=32).digest()

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

    def metric_index(self, i: int, d: bytes | None = None) -> int:
        """Index (into metric_ids) of the metric of event i."""
        if self._late_pos or i >= self.n:
            at = self._at(i)
            if isinstance(at, ExtraEvent):
                return at.metric
            i = at
        d = d or self._base_digest(i)
        r = int.from_bytes(d[:8], "little") % self.total_weight
        return bisect.bisect_right(self.cum, r)

    def profile_index(self, i: int, d: bytes | None = None) -> int:
        """Profile index of event i."""
        if self._late_pos or i >= self.n:
            at = self._at(i)
            if isinstance(at, ExtraEvent):
                return at.profile
            i = at
        d = d or self._base_digest(i)
        return int.from_bytes(d[8:14], "little") % self.profile_count

    # ------------------------------------------------------------------ rendering
    def event_id(self, i: int, d: bytes | None = None) -> str:
        """Klaviyo-style 11-character event id."""
        d = d or self.digest(i)
        return d[14:25].translate(_B62_TABLE).decode()

    def parts(self, i: int) -> tuple[str, int, dict[str, Any], str, int, int]:
        """(id, timestamp, event_properties, uuid, metric index, profile index) of event i
        (the event's own properties: without the extra ones of the realistic weight)."""
        return self.render_parts(i)[:6]  # type: ignore[return-value]

    def render_parts(self, i: int) -> tuple[str, int, dict[str, Any], str, int, int, bytes]:
        """`parts(i)` plus the fragment of extra properties served on top of the event's own
        (serialized, b"" with the light weight; see weight.py)."""
        at = self._at(i) if self._late_pos or i >= self.n else i  # (hot path: a base event)
        if isinstance(at, ExtraEvent):
            d = blake2b(_PACK.pack(self.key, at.salt), digest_size=32).digest()
            ts, m, p, salt = at.ts, at.metric, at.profile, at.salt
        else:
            i = at
            d = blake2b(_PACK.pack(self.key, i), digest_size=32).digest()
            ts = self._past_ts(i, d) if i < self.past else self._main_ts(i)
            salt = i
            m = bisect.bisect_right(self.cum, int.from_bytes(d[:8], "little") % self.total_weight)
            p = int.from_bytes(d[8:14], "little") % self.profile_count
        hx = d[16:32].hex()
        family = self.families[m]
        props = self.properties(family, int.from_bytes(d[16:24], "little"),
                                int.from_bytes(d[24:32], "little"), salt)
        extra = (self._pool.fragments(family)[int.from_bytes(d[14:16], "little") % weight.POOL_SIZE]
                 if self._pool is not None else b"")
        return (d[14:25].translate(_B62_TABLE).decode(), ts, props,
                f"{hx[:8]}-{hx[8:12]}-1{hx[13:16]}-8{hx[17:20]}-{hx[20:]}", m, p, extra)

    def attributes(self, i: int) -> dict[str, Any]:
        """Attributes of event i as served (extra properties of the realistic weight included)."""
        _, ts, props, uid, _, _, extra = self.render_parts(i)
        if extra:
            props.update(weight.extra_dict(extra))
        return {"timestamp": ts, "event_properties": props, "datetime": fmt_ts(ts),
                "uuid": uid}

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
