"""Realistic event weight (`event_weight="realistic"`): the extra `event_properties` of a real
e-commerce account, served on top of each event's own (light) properties.

A real Klaviyo event carries dozens of properties (browser, device, UTM parameters, consent,
addresses; orders a line-item array of several KB). Generating them per event would cost the
emulator more CPU than the connector it measures, so each family (see catalog.STANDARD_METRICS)
has a pool of `POOL_SIZE` pre-serialized JSON fragments, built once per seed (deterministic,
lazily per family on first use, shared by every account of that seed in the process), and an
event takes the fragment its hash picks. A fragment is the inside of a JSON object
(`"k":v,...`, no braces): the fast paths splice it into the serialized `event_properties`; the
dict forms parse it (`extra_dict`), so both forms stay equal.

Extra keys never repeat an event's own keys nor a metric-aggregate dimension (they never change
an aggregate, a filter or a report), and no two keys of one object normalize to the same
snake_case column name. On purpose: unicode values (é, ü, emoji, CJK), nulls, nested objects,
lists, booleans, and `Postal Code` / `$source` that are numbers on some events and strings on
others.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from klaviyo_emulator import vocab

POOL_SIZE = 1024
"""Fragments per family (an event picks one by its hash)."""
WEIGHTS = ("realistic", "light")
ORDER_FAMILIES = ("order", "checkout", "fulfilled", "refund")

_BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Samsung Internet", "Opera", None)
_OS = ("iOS 17.5", "Android 14", "Windows 11", "macOS 14.5", "iPadOS 17.4", "Linux", "ChromeOS")
_DEVICES = ("iPhone 15", "Pixel 8", "SM-S918B", "iPad Air", "MacBook Pro", None, None)
_LANGS = ("en-US", "de-DE", "fr-FR", "ja-JP", "pt-BR", "pl-PL", "en-IE", "fr-CA")
_UTM_SOURCES = ("klaviyo", "google", "facebook", "instagram", "tiktok", "newsletter", None)
_UTM_MEDIUMS = ("email", "sms", "cpc", "social", "organic", "referral")
_REFERRERS = ("https://www.google.com/", "https://l.instagram.com/", "https://t.co/", None, None)
_TIERS = ("Bronze", "Silver", "Gold", "Platinum ✨", None)
_STORES = ("Shop DE 🇩🇪", "Shop US", "Boutique Montréal", "東京ストア", "Loja São Paulo")
_NOTES = ("Bitte beim Nachbarn abgeben", "配達時間指定: 午前中", "Gift wrap please 🎁",
          "Entregar após às 18h", "Ne pas plier", "", None)
_TAGS = ("vip", "wholesale", "newsletter", "returning", "größe-m", "セール", "b2b", "loyalty")
_ADJ = ("Classic", "Organic", "Vintage", "Ultra", "Cozy", "Everyday", "Premium", "Café", "Nordic",
        "Sakura 桜", "Jöhnny's", "Retro ☕")
_NOUNS = ("Tee", "Hoodie", "Sneaker", "Sock", "Mug", "Backpack", "Sunglasses", "Candle", "Scarf",
          "Water Bottle", "Yoga Mat", "Beanie", "Tote", "Notebook")
_BRANDS = ("Acme", "Nordwind", "Ōkami", "Bellevue & Co", "Straße 9", "Lumière", "Kōyō", "Atlas")
_SIZES = ("XS", "S", "M", "L", "XL", "One Size", "EU 42", "US 9")
_CARRIERS = ("DHL", "UPS", "FedEx", "USPS", "La Poste", "ヤマト運輸")
_GATEWAYS = ("shopify_payments", "paypal", "klarna", "stripe", "gift_card")
_REASONS = ("Too small", "Damaged in transit", "Changed my mind", "Falsche Farbe", None)
_UTM_CAMPAIGNS = ("spring_sale", "bf_early", "newsletter_w27", "winback", "vip", "fete-des-mères")
_EXPERIMENTS = ("Checkout Button", "Free Shipping Banner", "Hero Image", "Pricing Font")


class _Gen:
    """Draws realistic values from one seeded random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def pick(self, seq: tuple[Any, ...]) -> Any:
        return seq[self.r.randrange(len(seq))]

    def hexid(self, n: int) -> str:
        return f"{self.r.getrandbits(4 * n):0{n}x}"

    def city(self) -> tuple[Any, ...]:
        return self.pick(vocab.CITIES)

    def postal(self, city: tuple[Any, ...]) -> int | str:
        """A number for some events, a string for others (a leading 0 or letters)."""
        code = city[3]
        return int(code) if code.isdigit() and not code.startswith("0") else code

    def money(self, lo: float, hi: float) -> float:
        return round(self.r.uniform(lo, hi), 2)

    def product(self, k: int) -> dict[str, Any]:
        """One line item of an order (~14 fields)."""
        r = self.r
        pid = 7_000_000_000 + r.randrange(1_000_000)
        name = f"{self.pick(_ADJ)} {self.pick(_NOUNS)}"
        slug = name.lower().replace(" ", "-").replace("'", "")
        qty = 1 + r.randrange(3) if r.random() < 0.3 else 1
        price = self.money(4, 180)
        return {
            "ProductID": pid, "SKU": f"SKU-{r.randrange(100_000):05d}-{self.pick(_SIZES)}",
            "ProductName": name, "Quantity": qty, "ItemPrice": price,
            "RowTotal": round(price * qty, 2),
            "ProductURL": f"https://shop.example.com/products/{slug}?variant={pid + 17}",
            "ImageURL": f"https://cdn.shop.example.com/s/files/1/0{r.randrange(999):03d}/products/{self.hexid(12)}.jpg",
            "Categories": [self.pick(vocab.CATEGORIES) for _ in range(1 + r.randrange(3))],
            "Brand": self.pick(_BRANDS), "VariantName": f"{self.pick(vocab.COLORS)} / {self.pick(_SIZES)}",
            "VariantID": pid + 17 + k, "Vendor": self.pick(_BRANDS),
            "Compare At Price": self.money(price, price * 1.5) if r.random() < 0.3 else None,
            "Gift Card": name.startswith("Gift"),
        }

    def address(self, city: tuple[Any, ...]) -> dict[str, Any]:
        return {"FirstName": self.pick(vocab.FIRST_NAMES), "LastName": self.pick(vocab.LAST_NAMES),
                "Company": self.pick(vocab.ORGS) if self.r.random() < 0.2 else None,
                "Address1": f"{self.r.randrange(1, 300)} {self.pick(('Main St', 'Hauptstraße', 'Rue de la Paix', '銀座通り', 'Rua Augusta'))}",
                "Address2": None, "City": city[0], "Region": city[1], "Zip": self.postal(city),
                "Country": city[2], "Phone": f"+1555{self.r.randrange(10**7):07d}" if self.r.random() < 0.5 else None}


def _context(g: _Gen, family: str) -> list[tuple[str, Callable[[], Any]]]:
    """(key, value maker) candidates every family draws a subset of, in a fixed order."""
    r = g.r
    city = g.city()
    src = g.pick(_UTM_SOURCES)
    return [
        ("$source", lambda: g.pick((-9, "Klaviyo", "Shopify", "API", -2))),
        ("Browser", lambda: g.pick(_BROWSERS)),
        ("Browser Version", lambda: f"{r.randrange(100, 127)}.0"),
        ("Operating System", lambda: g.pick(_OS)),
        ("Device Type", lambda: g.pick(("Desktop", "Mobile", "Tablet"))),
        ("Device Model", lambda: g.pick(_DEVICES)),
        ("Is Mobile", lambda: r.random() < 0.6),
        ("Language", lambda: g.pick(_LANGS)),
        ("Timezone", lambda: city[4]),
        ("City", lambda: city[0]),
        ("Region", lambda: city[1]),
        ("Country", lambda: city[2]),
        ("Postal Code", lambda: g.postal(city)),
        ("Latitude", lambda: round(city[5] + r.uniform(-0.05, 0.05), 5)),
        ("Longitude", lambda: round(city[6] + r.uniform(-0.05, 0.05), 5)),
        ("utm_source", lambda: src),
        ("utm_medium", lambda: g.pick(_UTM_MEDIUMS) if src else None),
        ("utm_campaign", lambda: g.pick(_UTM_CAMPAIGNS) if src else None),
        ("utm_content", lambda: g.pick(("hero", "footer", "cta_1", None))),
        ("Referrer", lambda: g.pick(_REFERRERS)),
        ("Session ID", lambda: g.hexid(8)),
        ("Visit Number", lambda: r.randrange(1, 400)),
        ("Returning Visitor", lambda: r.random() < 0.55),
        ("Accepts Marketing", lambda: r.random() < 0.7),
        ("Loyalty Tier", lambda: g.pick(_TIERS)),
        ("Points Balance", lambda: r.randrange(0, 20_000)),
        ("Customer Tags", lambda: [g.pick(_TAGS) for _ in range(r.randrange(3))]),
        ("Store", lambda: g.pick(_STORES)),
        ("Integration", lambda: g.pick(("shopify", "api", "klaviyo", "woocommerce"))),
        ("API Version", lambda: g.pick(("2024-07", "2024-10", "2025-01"))),
        ("Consent", lambda: {"email": r.random() < 0.8, "gdpr": {"v": r.randrange(1, 5)} if r.random() < 0.5 else None}),
        ("Experiment", lambda: {"name": g.pick(_EXPERIMENTS), "variant": g.pick(("A", "B"))}
         if r.random() < 0.3 else None),
        ("Score", lambda: round(r.random() * 100, 3)),
        ("Cart Token", lambda: g.hexid(12) if r.random() < 0.4 else None),
        ("Note", lambda: g.pick(_NOTES)),
        ("Screen", lambda: g.pick(("1920x1080", "390x844", "1440x900", "820x1180"))),
        ("Touch", lambda: r.random() < 0.5),
        ("Page Title", lambda: g.pick(("Startseite", "Sale 🔥 -50%", "新着アイテム", "Cart", "Café ☕"))),
    ]


def _family_specific(g: _Gen, family: str) -> list[tuple[str, Any]]:
    """Properties only this family carries (always present)."""
    r = g.r
    if family in ("email", "email_open", "email_click", "bounce", "unsubscribe"):
        out = [("ESP", g.pick(("Google", "Microsoft", "Yahoo", "Apple", "GMX"))),
               ("Inbox", g.pick(("Primary", "Promotions", "Updates", None))),
               ("Preheader", g.pick(("Gratis Versand 🚚", "Don't miss out", "新作入荷", "")))]
        if family == "email_open":
            out.append(("Machine Open", r.random() < 0.3))
        if family == "email_click":
            out.append(("Link Label", g.pick(("Shop now", "Jetzt entdecken", "詳しく見る", "View order"))))
        return out
    if family in ("sms", "sms_click"):
        return [("Carrier Name", g.pick(("T-Mobile", "Vodafone", "AT&T", "NTT docomo"))),
                ("Segments Count", r.randrange(1, 4)), ("Encoding", g.pick(("GSM-7", "UCS-2")))]
    if family in ("product", "cart", "ordered_product"):
        p = g.product(0)
        return [("Brand", p["Brand"]), ("SKU", p["SKU"]), ("ImageURL", p["ImageURL"]),
                ("CompareAtPrice", p["Compare At Price"]), ("VariantName", p["VariantName"]),
                ("In Stock", r.random() < 0.9)]
    if family == "site":
        return [("Page Path", g.pick(("/", "/collections/sale", "/pages/über-uns", "/blogs/news"))),
                ("Time On Page", r.randrange(1, 600))]
    if family == "subscribe":
        return [("Form Name", g.pick(("Footer Signup", "Pop-up 10% ✉️", "Spin to Win"))), ("Double Opt In", r.random() < 0.5)]
    if family in ORDER_FAMILIES:
        return _order(g, family)
    return [("Widget Version", f"{r.randrange(1, 9)}.{r.randrange(20)}")]


def _order(g: _Gen, family: str) -> list[tuple[str, Any]]:
    """The heavy part of order events: an item array of several KB and addresses."""
    r = g.r
    items = [g.product(k) for k in range(3 + r.randrange(8))]
    subtotal = round(sum(i["RowTotal"] for i in items), 2)
    city = g.city()
    out: list[tuple[str, Any]] = [
        ("Items Detail", items),
        ("ItemNames", [i["ProductName"] for i in items]),
        ("Brands", sorted({i["Brand"] for i in items})),
        ("Collections", sorted({c for i in items for c in i["Categories"]})),
        ("Subtotal", subtotal),
        ("Total Discounts", g.money(0, subtotal / 5) if r.random() < 0.4 else 0.0),
        ("Shipping Rate", g.pick((0.0, 4.9, 5.99, 9.99))),
        ("Tax", round(subtotal * 0.19, 2)),
        ("Currency Code", g.pick(("EUR", "USD", "JPY", "BRL"))),
        ("Order Number", f"#{r.randrange(1000, 99999)}"),
        ("Source Name", g.pick(("web", "pos", "iphone", "shopify_draft_order"))),
        ("Payment Gateway", g.pick(_GATEWAYS)),
        ("Financial Status", g.pick(("paid", "pending", "partially_refunded"))),
        ("Fulfillment Status", g.pick(("fulfilled", "partial", None))),
        ("Is Gift", r.random() < 0.1),
        ("Shipping Address", g.address(city)),
        ("Billing Address", g.address(city) if r.random() < 0.4 else None),
    ]
    if family == "checkout":
        out.append(("Checkout URL", f"https://shop.example.com/checkouts/{g.hexid(32)}/recover?key={g.hexid(16)}"))
    elif family == "fulfilled":
        out += [("Carrier", g.pick(_CARRIERS)), ("Tracking Number", f"1Z{g.hexid(16).upper()}"),
                ("Tracking URL", f"https://track.example.com/{g.hexid(20)}")]
    elif family == "refund":
        out += [("Refund Reason", g.pick(_REASONS)), ("Restock", r.random() < 0.5)]
    return out


def _fragment(g: _Gen, family: str) -> bytes:
    """One pre-serialized fragment: `"k":v,...` without braces."""
    r = g.r
    cands = _context(g, family)
    heavy = family in ORDER_FAMILIES
    # most events 30-60 properties in all; order families fewer context properties
    k = r.randrange(12, 22) if heavy else r.randrange(17, 26)
    chosen = sorted(r.sample(range(len(cands)), min(k, len(cands))))
    props: dict[str, Any] = {cands[j][0]: cands[j][1]() for j in chosen}
    props.update(_family_specific(g, family))
    return orjson.dumps(props)[1:-1]


class Pool:
    """The fragments of one seed, built lazily per family (thread-safe)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._by_family: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    def fragments(self, family: str) -> list[bytes]:
        """The `POOL_SIZE` fragments of a family."""
        found = self._by_family.get(family)
        if found is None:
            with self._lock:
                found = self._by_family.get(family)
                if found is None:
                    g = _Gen(random.Random(f"{self.seed}|{family}|event-weight"))
                    found = self._by_family[family] = [_fragment(g, family) for _ in range(POOL_SIZE)]
        return found


@lru_cache(maxsize=4)
def pool(seed: int) -> Pool:
    """The (shared) pool of a seed."""
    return Pool(seed)


def splice(props_json: bytes, fragment: bytes) -> bytes:
    """Serialized `event_properties` with a fragment's properties appended."""
    if not fragment:
        return props_json
    if props_json == b"{}":
        return b"{" + fragment + b"}"
    return b"".join((props_json[:-1], b",", fragment, b"}"))


def extra_dict(fragment: bytes) -> dict[str, Any]:
    """A fresh dict of a fragment's properties ({} for none)."""
    return orjson.loads(b"{" + fragment + b"}") if fragment else {}
