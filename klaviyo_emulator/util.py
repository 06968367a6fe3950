"""Small deterministic helpers: hashing, id formats and Klaviyo timestamp formatting."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime
from functools import lru_cache

UTC = UTC

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PACK2 = struct.Struct("<qq")


def h64(*parts: object) -> int:
    """Deterministic 64-bit hash of arbitrary printable parts (not for hot loops)."""
    data = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def h64_int(key: int, i: int) -> int:
    """Fast deterministic 64-bit hash of two integers (hot path: events, profiles).

    Args:
        key: A namespace key (e.g. `h64(seed, "event")` folded to 63 bits).
        i: The item index.
    """
    digest = hashlib.blake2b(_PACK2.pack(key, i), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def ns_key(*parts: object) -> int:
    """A signed 63-bit namespace key for `h64_int`."""
    return h64(*parts) >> 1


def b62(value: int, length: int) -> str:
    """Base-62 string of fixed length (Klaviyo-style short ids such as "Y6nRLr")."""
    out = []
    for _ in range(length):
        value, rem = divmod(value, 62)
        out.append(_B62[rem])
    return "".join(out)


def ulid(ms: int, rand: int) -> str:
    """ULID-like 26-char id (Crockford base32): 48-bit millisecond time + 80 random bits.

    Profiles and campaigns carry such ids; they sort by creation time.
    """
    value = ((ms & ((1 << 48) - 1)) << 80) | (rand & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))


def uuid_str(value: int, version: int = 4) -> str:
    """UUID-formatted string from a 128-bit integer (version nibble and variant set)."""
    value &= (1 << 128) - 1
    value &= ~(0xF000 << 64)
    value |= version << 76
    value &= ~(0xC000 << 48)
    value |= 0x8000 << 48
    hx = f"{value:032x}"
    return f"{hx[:8]}-{hx[8:12]}-{hx[12:16]}-{hx[16:20]}-{hx[20:]}"


@lru_cache(maxsize=8192)
def _day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")


@lru_cache(maxsize=65536)
def fmt_ts(ts: int) -> str:
    """Klaviyo response datetime from epoch seconds, e.g. "2023-10-16T14:00:05+00:00"."""
    day, rest = divmod(int(ts), 86_400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{_day(day)}T{hour:02d}:{minute:02d}:{second:02d}+00:00"


def fmt_v1(ts: int) -> str:
    """Legacy v1 datetime, e.g. "2023-10-16 14:00:05" (UTC, no offset)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def to_ts(value: datetime) -> int:
    """Epoch seconds of an aware datetime (naive = UTC), truncated to the second."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() // 1)


def to_dt(ts: int | float) -> datetime:
    """Aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(ts, UTC)


def redact_key(key: str | None) -> str:
    """Redacts an API key for logs: "pk_abc123" -> "pk_***" (never the full key)."""
    if not key:
        return ""
    prefix = key[:3] if key.startswith(("pk_", "sk_")) else ""
    return f"{prefix}***"
