"""Legacy v1 campaigns API: `GET /api/v1/campaigns?api_key=&page=&count=`.

With `v1="retired"` (default) every v1 request gets 410 Gone, as Klaviyo answers since
the retirement on 2024-06-30. With `v1="live"` it serves the `$list` envelope built from
the same campaigns as /api/campaigns/ (newest first).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from klaviyo_emulator.util import fmt_v1, to_ts

if TYPE_CHECKING:
    from klaviyo_emulator.api import Api, Response

RETIRED_MESSAGE = (
    "The v1 and v2 APIs were retired on June 30, 2024. Use the new API instead: "
    "GET https://a.klaviyo.com/api/campaigns/ (revision 2023-10-15) - see "
    "https://developers.klaviyo.com/en/reference/get_campaigns"
)
STATUS_IDS = {"draft": 2, "scheduled": 3, "sending": 4, "sent": 1, "cancelled": 5}


def _answer(status: int, payload: Any) -> Response:
    from klaviyo_emulator.api import Response
    return Response(status, orjson.dumps(payload), [], "application/json")


def handle(api: Api, method: str, path: str, query: list[tuple[str, str]]) -> Response:
    """Answers a /api/v1/ request."""
    if api.config.v1 != "live":
        return _answer(410, {"status": 410, "message": RETIRED_MESSAGE})
    if path.rstrip("/") != "/api/v1/campaigns":
        return _answer(404, {"status": 404, "message": "Not found."})
    if method != "GET":
        return _answer(405, {"status": 405, "message": f"Method {method} not allowed."})
    params = dict(query)
    key = params.get("api_key")
    if not key:
        return _answer(403, {"status": 403, "message": "You must specify an API key."})
    if key != api.config.api_key and "campaigns:read" not in api.config.key_scopes.get(
            key, frozenset()):
        return _answer(403, {"status": 403, "message": "The API key specified is invalid."})
    try:
        page = int(params.get("page", "0"))
        count = int(params.get("count", "50"))
    except ValueError:
        return _answer(400, {"status": 400, "message": "page and count must be integers."})
    if page < 0 or not 1 <= count <= 100:
        return _answer(400, {"status": 400,
                             "message": "page must be >= 0 and count between 1 and 100."})
    rows = campaigns(api)
    start = page * count
    chunk = rows[start:start + count]
    return _answer(200, {
        "object": "$list", "start": start, "end": start + len(chunk) - 1,
        "page": page, "page_size": count, "total": len(rows), "data": chunk,
    })


def campaigns(api: Api) -> list[dict[str, Any]]:
    """Every campaign as a v1 object, newest created first."""
    acc = api.account
    with acc.lock:
        recs = list(acc.small["campaign"].values())
        lists = acc.small["list"]
        messages = acc.small["campaign-message"]
        out = []
        for rec in recs:
            a = rec["attributes"]
            msg = messages.get(rec["rel"]["campaign-messages"][0]) if rec["rel"][
                "campaign-messages"] else None
            content = msg["attributes"]["content"] if msg else {}
            status = a["status"].split(":")[0].lower()
            status = status if status in STATUS_IDS else "sent"
            sent = status == "sent"
            out.append({
                "object": "campaign",
                "id": rec["id"],
                "name": a["name"],
                "subject": content.get("subject", ""),
                "from_email": content.get("from_email", ""),
                "from_name": content.get("from_label", ""),
                "lists": [_v1_list(lists[x]) for x in a["audiences"]["included"] if x in lists],
                "excluded_lists": [_v1_list(lists[x]) for x in a["audiences"]["excluded"]
                                   if x in lists],
                "status": status,
                "status_id": STATUS_IDS[status],
                "status_label": status.capitalize(),
                "sent_at": _v1(a["send_time"]) if sent else None,
                "send_time": _v1(a["send_time"]),
                "created": _v1(a["created_at"]),
                "updated": _v1(a["updated_at"]),
                "num_recipients": (h := sum(map(ord, rec["id"]))) * 7 % 5000 + 100,
                "campaign_type": "Regular",
                "is_segmented": bool(h % 2),
                "message_type": rec.get("channel", "email"),
                "template_id": msg["rel"].get("template") if msg else None,
            })
    out.sort(key=lambda c: (c["created"], c["id"]), reverse=True)
    return out


def _v1(text: str) -> str:
    """v1 datetime "YYYY-MM-DD HH:MM:SS" from a Klaviyo ISO datetime."""
    return fmt_v1(to_ts(datetime.fromisoformat(text)))


def _v1_list(rec: dict[str, Any]) -> dict[str, Any]:
    a = rec["attributes"]
    return {"object": "list", "id": rec["id"], "name": a["name"], "list_type": "list",
            "person_count": rec.get("member_pct", 10) * 10, "created": _v1(a["created"]),
            "updated": _v1(a["updated"])}
