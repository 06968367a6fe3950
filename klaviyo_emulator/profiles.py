"""Compact, lazily rendered profiles (100,000 of them cost a few MB).

Only ids and created/updated epochs are stored per profile; every other attribute is a
pure function of (seed, index) rendered on demand, plus mutation overrides.

With `ties` > 0, about that share of profiles belongs to bulk-import batches of ~`TIE_BATCH`:
each batch gives its profiles (those created before it) one `updated`, and every other batch
is a suppression import that also gives them one suppression timestamp.
"""

from __future__ import annotations

import unicodedata
from array import array
from typing import Any

from klaviyo_emulator import vocab
from klaviyo_emulator.util import fmt_ts, h64_int, ns_key, ulid

DAY = 86_400
TIE_BATCH = 250  # profiles per bulk-import batch of the `ties` knob (before the created filter)
ADDITIONAL = ("subscriptions", "predictive_analytics")


def _ascii(text: str) -> str:
    """Lower-case ASCII transliteration for email local parts ("" if nothing is left)."""
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in norm.lower() if c.isalnum())


class Profiles:
    """All profiles of the account, by index; deleted ones stay as tombstones.

    Attributes:
        ids: Profile id per index (ULID-like; sorts by creation time).
        created: Creation epoch seconds per index.
        updated: Last-update epoch seconds per index (>= created).
        deleted: Indexes deleted by mutations.
        overrides: Attribute overrides per index from mutations.
        suppressed_at: Email suppression epoch seconds per index of the profiles a
            suppression import (or a tied mutation) suppressed.
    """

    def __init__(self, seed: int, now_ts: int, count: int, ties: float = 0.0) -> None:
        self.seed = seed
        self.now = now_ts
        self.key = ns_key(seed, "profile")
        self.ids: list[str] = []
        self.created = array("q")
        self.updated = array("q")
        self.deleted: set[int] = set()
        self.overrides: dict[int, dict[str, Any]] = {}
        self.suppressed_at: dict[int, int] = {}
        self.index: dict[str, int] = {}
        self.list_ids: list[str] = []
        lo = now_ts - 730 * DAY
        for i in range(count):
            h = h64_int(self.key, i)
            created = lo + h % (730 * DAY)
            if (h >> 40) % 5 == 0:
                updated = created
            else:
                updated = created + (h >> 20) % (now_ts - created + 1)
            if i % 7 == 3 and self.updated[i - 1] >= created:
                updated = self.updated[i - 1]  # ties on `updated` across records
            self.add(ulid(created * 1000 + (h >> 8) % 1000, h64_int(self.key, -i - 1) << 16 | i),
                     created, updated)
        if ties > 0 and count:
            self._bulk_imports(ns_key(seed, "profile-ties"), ties)

    def _bulk_imports(self, key: int, ties: float) -> None:
        """Gives about `ties` of the profiles one `updated` per import batch (batch b at a
        seeded time within the last 180 days; odd batches also suppress their profiles)."""
        batches = max(1, round(ties * len(self.ids) / TIE_BATCH))
        times = [self.now - 3600 - h64_int(key, -b - 1) % (180 * DAY) for b in range(batches)]
        for i in range(len(self.ids)):
            h = h64_int(key, i)
            if h % 1_000_000 >= ties * 1_000_000:
                continue
            batch = (h >> 20) % batches
            at = times[batch]
            if self.created[i] <= at:
                self.updated[i] = at
                if batch % 2:
                    self.suppressed_at[i] = at

    def add(self, pid: str, created: int, updated: int) -> int:
        """Appends a profile; returns its index."""
        idx = len(self.ids)
        self.ids.append(pid)
        self.created.append(created)
        self.updated.append(updated)
        self.index[pid] = idx
        return idx

    def __len__(self) -> int:
        return len(self.ids)

    def alive(self) -> list[int]:
        """Indexes of profiles that are not deleted."""
        if not self.deleted:
            return list(range(len(self.ids)))
        return [i for i in range(len(self.ids)) if i not in self.deleted]

    # ------------------------------------------------------------------ rendering
    def attributes(self, i: int, additional: tuple[str, ...] = ()) -> dict[str, Any]:
        """Attributes of profile `i` as served (with the requested additional fields)."""
        h = h64_int(self.key, i)
        h2 = h64_int(self.key ^ 0x5A5A, i)
        first = vocab.FIRST_NAMES[h % len(vocab.FIRST_NAMES)]
        last = vocab.LAST_NAMES[(h >> 8) % len(vocab.LAST_NAMES)]
        local = f"{_ascii(first) or 'user'}.{_ascii(last) or 'kunde'}{i}"
        city = vocab.CITIES[(h >> 16) % len(vocab.CITIES)]
        created, updated = self.created[i], self.updated[i]
        lat = round(city[5] + ((h2 % 1000) - 500) / 10_000, 4)
        lon = round(city[6] + (((h2 >> 10) % 1000) - 500) / 10_000, 4)
        as_text = (h2 >> 20) & 1
        attrs: dict[str, Any] = {
            "email": f"{local}@{vocab.DOMAINS[(h >> 24) % len(vocab.DOMAINS)]}",
            "phone_number": f"+1555{(i * 7919 + 1_000_003) % 10_000_000:07d}",
            "external_id": f"ext-{(h >> 28) % 10**9:09d}",
            "first_name": first,
            "last_name": last,
            "organization": vocab.ORGS[(h >> 32) % len(vocab.ORGS)],
            "title": vocab.TITLES[(h >> 36) % len(vocab.TITLES)],
            "image": f"https://images.example.com/avatars/{i}.png",
            "created": fmt_ts(created),
            "updated": fmt_ts(updated),
            "last_event_date": fmt_ts(created + (h2 >> 24) % (updated - created + 1)),
            "location": {
                "address1": f"{(h2 >> 30) % 999 + 1} Main Street",
                "address2": f"Apt {(h2 >> 40) % 50 + 1}" if (h2 >> 46) & 1 else "",
                "city": city[0],
                "country": city[2],
                "latitude": str(lat) if as_text else lat,
                "longitude": str(lon) if as_text else lon,
                "region": city[1],
                "zip": city[3],
                "timezone": city[4],
                "ip": f"203.0.113.{i % 254 + 1}",
            },
            "properties": self._properties(i, h, h2),
        }
        if "subscriptions" in additional:
            attrs["subscriptions"] = self._subscriptions(i, h2, created, updated)
        if "predictive_analytics" in additional:
            attrs["predictive_analytics"] = self._predictive(h2, updated)
        over = self.overrides.get(i)
        if over:
            for key, value in over.items():
                if key in attrs or key not in ADDITIONAL:
                    attrs[key] = value
        return attrs

    def _properties(self, i: int, h: int, h2: int) -> dict[str, Any]:
        """Custom properties: unicode keys and values, nesting, `$`-prefixed keys."""
        props: dict[str, Any] = {
            "$source": ("Shopify", "API", "Signup Form", "Import")[(h >> 44) % 4],
            "Favorite Color": vocab.COLORS[(h >> 46) % len(vocab.COLORS)],
            "Accepts Marketing": bool((h >> 49) & 1),
        }
        if (h >> 50) & 1:
            props["Loyalty"] = {"tier": ("bronze", "silver", "gold")[(h >> 51) % 3],
                                "points": (h2 >> 4) % 5000,
                                "history": [{"year": 2021 + k, "spent": round(((h2 >> k) % 900)
                                                                              + 0.5, 2)}
                                            for k in range((h >> 53) % 3)]}
        if (h >> 55) & 1:
            props["Notes ✍️"] = "Liebt Kaffee ☕ — préfère l'été"
        if (h >> 56) & 1:
            props["$consent"] = ["email", "sms"] if (h >> 57) & 1 else ["email"]
        if (h >> 58) % 4 == 0:
            props["Shoe Size"] = 36 + (h2 >> 50) % 12
        return props

    def _subscriptions(self, i: int, h2: int, created: int, updated: int) -> dict[str, Any]:
        """Email and SMS marketing consent (all attributes of the spec's Subscriptions)."""
        consent_ts = fmt_ts(created + (h2 >> 5) % (updated - created + 1))
        subscribed = (h2 >> 3) % 4 != 0
        email: dict[str, Any] = {
            "can_receive_email_marketing": subscribed,
            "consent": "SUBSCRIBED" if subscribed else ("UNSUBSCRIBED", "NEVER_SUBSCRIBED")[
                (h2 >> 7) & 1],
            "consent_timestamp": consent_ts,
            "last_updated": fmt_ts(updated),
            "method": ("FORM", "API", "IMPORT", "SHOPIFY")[(h2 >> 9) % 4],
            "method_detail": ("", "popup-form", "checkout")[(h2 >> 11) % 3],
            "custom_method_detail": "",
            "double_optin": bool((h2 >> 13) & 1),
            "suppression": [],
            "list_suppressions": [],
        }
        if not subscribed and (h2 >> 14) & 1:
            email["suppression"] = [{"reason": ("HARD_BOUNCE", "USER_SUPPRESSED", "SPAM_REPORT")[
                (h2 >> 15) % 3], "timestamp": consent_ts}]
        suppressed = self.suppressed_at.get(i)
        if suppressed is not None:  # a suppression import
            stamp = fmt_ts(suppressed)
            email.update(can_receive_email_marketing=False, consent="UNSUBSCRIBED",
                         consent_timestamp=stamp, method="IMPORT",
                         suppression=[{"reason": "USER_SUPPRESSED", "timestamp": stamp}])
        if (h2 >> 17) % 8 == 0 and self.list_ids:
            list_id = self.list_ids[(h2 >> 18) % len(self.list_ids)]
            email["list_suppressions"] = [{"list_id": list_id, "reason": "UNSUBSCRIBE",
                                           "timestamp": consent_ts}]
        sms_ok = (h2 >> 19) % 3 == 0
        sms = {
            "can_receive_sms_marketing": sms_ok,
            "consent": "SUBSCRIBED" if sms_ok else "NEVER_SUBSCRIBED",
            "consent_timestamp": consent_ts,
            "method": "FORM" if sms_ok else "",
            "method_detail": "",
            "last_updated": fmt_ts(updated),
        }
        return {"email": {"marketing": email}, "sms": {"marketing": sms}}

    def _predictive(self, h2: int, updated: int) -> dict[str, Any]:
        """Predictive analytics numbers (spec's PredictiveAnalytics)."""
        orders = (h2 >> 21) % 9
        aov = round(20 + (h2 >> 25) % 180 + ((h2 >> 33) % 100) / 100, 2)
        historic = round(orders * aov, 2)
        predicted = round(((h2 >> 35) % 400) + 0.25, 2)
        return {
            "historic_clv": historic,
            "predicted_clv": predicted,
            "total_clv": round(historic + predicted, 2),
            "historic_number_of_orders": orders,
            "predicted_number_of_orders": round(((h2 >> 41) % 40) / 10, 1),
            "average_days_between_orders": float(20 + (h2 >> 45) % 90),
            "average_order_value": aov if orders else 0.0,
            "churn_probability": round(((h2 >> 52) % 100) / 100, 2),
            "expected_date_of_next_order": fmt_ts(updated + (1 + (h2 >> 56) % 60) * DAY),
        }
