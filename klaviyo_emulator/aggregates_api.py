"""POST /api/metric-aggregates/: validate the body and compute from the served events."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import orjson

from klaviyo_emulator.aggregates import AggEvent, AggregateError, compute, parse_query
from klaviyo_emulator.endpoints import Endpoint
from klaviyo_emulator.filter_rules import AGGREGATE_DIMENSIONS
from klaviyo_emulator.util import to_dt

if TYPE_CHECKING:
    from klaviyo_emulator.api import Api, Response

_DIMENSIONS = frozenset(AGGREGATE_DIMENSIONS)


def handle(api: Api, ep: Endpoint, body: bytes, headers: Mapping[str, str]) -> Response:
    """Answers 200 with `PostMetricAggregateResponse`, or a JSON:API error."""
    from klaviyo_emulator.api import ApiError, Response, json_body

    doc = json_body(headers, body, "application/json")
    acc = api.account
    with acc.lock:
        known = [m for m in acc.metric_ids if m in acc.small["metric"]]
    try:
        query = parse_query(doc, known, acc.now)
    except AggregateError as err:
        code = "not_found" if err.status == 404 else "invalid"
        title = "Not found." if err.status == 404 else "Invalid input."
        raise ApiError(err.status, code, title, err.detail,
                       {"pointer": err.pointer or "/"}) from None
    events = agg_events(api, query.metric_id, query.start, query.end)
    result = compute(query, events, f"{acc.base_url}{ep.path}")
    return Response(200, orjson.dumps(result))


def agg_events(api: Api, metric_id: str, start, end) -> Iterator[AggEvent]:
    """The metric's events in [start, end) as AggEvent objects (same data as /api/events/)."""
    acc = api.account
    ids = acc.profiles.ids
    for p, ts, props in acc.agg_rows(metric_id, start, end):
        value = props.get("$value", 0.0)
        dims = {k: str(v) for k, v in props.items() if k in _DIMENSIONS}
        yield AggEvent(metric_id, ids[p], to_dt(ts),
                       float(value) if isinstance(value, (int, float)) else 0.0, dims)
