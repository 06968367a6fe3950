"""Opaque, signed page cursors bound to the query they were issued for."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson


class CursorError(ValueError):
    """A `page[cursor]` this server did not issue, or issued for another query."""


class Cursors:
    """Issues and checks cursors.

    A cursor is base64url(JSON [query signature, keyset position]) + a MAC, so it is
    opaque to clients, survives restarts with the same seed and key, and cannot be
    forged or moved to another query.
    """

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def query_signature(self, path: str, filter_text: str | None, sort: str,
                        size: int) -> str:
        """Short digest of what a cursor is valid for (path incl. id, filter, sort, size)."""
        raw = "\x1f".join((path, filter_text or "", sort, str(size))).encode()
        return hashlib.blake2b(raw, digest_size=6).hexdigest()

    def issue(self, signature: str, position: Any) -> str:
        """Cursor text for the page after `position`."""
        payload = orjson.dumps([signature, position])
        mac = hmac.new(self.secret, payload, hashlib.sha256).digest()[:9]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def check(self, text: str, signature: str) -> Any:
        """The keyset position of a cursor.

        Raises:
            CursorError: Malformed, forged, or issued for another query.
        """
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, TypeError) as exc:
            raise CursorError("malformed cursor") from exc
        payload, mac = raw[:-9], raw[-9:]
        good = hmac.new(self.secret, payload, hashlib.sha256).digest()[:9]
        if len(raw) <= 9 or not hmac.compare_digest(mac, good):
            raise CursorError("unknown cursor")
        try:
            sig, position = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise CursorError("malformed cursor") from exc
        if sig != signature:
            raise CursorError("cursor belongs to another query")
        return position
