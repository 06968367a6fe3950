"""POST /api/{campaign-values,flow-values,flow-series,form-values,form-series,segment-values,
segment-series}-reports (2026-07-15): parameters, body, paging and the answer document.

The report itself is `reports.parse` + `reports.compute` (the ground truth tests use too).
Campaign and flow reports declare a `page_cursor` query parameter: their results come in
pages of `EmulatorConfig.report_page_size` with `links.next` (the same URL and body plus
`page_cursor`; the cursor is signed and bound to the body). Form and segment reports answer
in one page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from klaviyo_emulator import reports
from klaviyo_emulator.cursors import CursorError
from klaviyo_emulator.endpoints import Endpoint
from klaviyo_emulator.spec_tables_2026_07_15 import REPORT_BODIES

if TYPE_CHECKING:
    from klaviyo_emulator.api import Api, Response



def handle(api: Api, ep: Endpoint, path: str, query: list[tuple[str, str]], body: bytes,
           headers: Mapping[str, str]) -> Response:
    """Answers 200 with the report (one page of it), or a JSON:API error."""
    from klaviyo_emulator.api import Response, _enum_list, _single_params, invalid, json_body

    spec = REPORT_BODIES[(ep.method, ep.path)]
    params = _single_params(query)
    fields: tuple[str, ...] | None = None
    cursor_text = None
    for name, value in params.items():
        if name.startswith("fields[") and name.endswith("]") and name[7:-1] in ep.fields:
            fields = _enum_list(name, value, ep.fields[name[7:-1]])
        elif name == "page_cursor" and spec["page_cursor"]:
            cursor_text = value
        else:
            raise invalid(f"'{name}' is not a valid query parameter for {ep.method} {ep.path}.",
                          name)
    doc = json_body(headers, body, "application/vnd.api+json")
    acc = api.account
    try:
        with acc.lock:
            query_ = reports.parse(acc, ep.path, doc)
            attributes, related = reports.compute(acc, query_)
    except reports.ReportError as err:
        raise invalid(err.detail, pointer=err.pointer) from None

    size = api.config.report_page_size if spec["page_cursor"] else len(attributes["results"])
    signature = api.cursors.query_signature(f"{ep.path}@{ep.revision}",
                                            orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode(),
                                            "", size)
    offset = 0
    if cursor_text is not None:
        try:
            offset = api.cursors.check(cursor_text, signature)
        except CursorError as err:
            raise invalid(f"Invalid page cursor: {err}.", "page_cursor") from None
    results = attributes["results"]
    page = results[offset:offset + size] if size else results
    base = acc.base_url + path
    kept = [(k, v) for k, v in query if k != "page_cursor"]
    links: dict[str, Any] = {"self": _url(base, query)}
    if size and offset + size < len(results):
        links["next"] = _url(base, kept + [("page_cursor",
                                            api.cursors.issue(signature, offset + size))])
    attrs = {**attributes, "results": page}
    if fields is not None:
        attrs = {k: v for k, v in attrs.items() if k in fields}
    data: dict[str, Any] = {"type": spec["type"], "attributes": attrs}
    if spec["relationships"]:
        ids = _related(page, related, spec["relationships"])
        data["relationships"] = {name: {"data": [{"type": kind, "id": x} for x in ids[name]]}
                                 for name, kind in spec["relationships"].items()}
    return Response(200, orjson.dumps({"data": data, "links": links}))


def _url(base: str, query: list[tuple[str, str]]) -> str:
    if not query:
        return base
    return base + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)


def _related(page: list[dict[str, Any]], related: dict[str, list[str]],
             shapes: dict[str, str]) -> dict[str, list[str]]:
    """Ids of the campaigns (flows, flow messages) the results of this page count."""
    keys = {"campaigns": "campaign_id", "flows": "flow_id", "flow-messages": "flow_message_id"}
    out: dict[str, list[str]] = {}
    for name in shapes:
        seen = {row["groupings"].get(keys[name]) for row in page}
        out[name] = [x for x in related.get(name, []) if x in seen]
    return out
