"""Pages through every report with Klaviyo's official SDK for revision 2026-07-15.

Run by `test_sdk_2026.py` in a subprocess whose PYTHONPATH holds klaviyo-api 24.0.0 (it
cannot share a venv with 6.0.0: same import name). Usage::

    python sdk2026_client.py BASE_URL API_KEY  ->  prints one JSON object on stdout

The SDK deserializes every answer into its pydantic models (the default), so a response
that does not fit the 2026-07-15 models fails here. Output: report -> list of ids (plus
the attributions, the revision header sent and the aggregate answer).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from klaviyo_api import KlaviyoAPI


def as_dict(doc: Any) -> dict[str, Any]:
    """A response model (or dict) as the JSON document it was parsed from."""
    return doc if isinstance(doc, dict) else doc.to_dict()


def follow(call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every page of one list call, as documents (the cursor passed as its value, since
    the SDK extracts it from a links.next URL only for https:// hosts)."""
    docs: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        doc = as_dict(call(*args, **kwargs, page_cursor=cursor) if cursor
                      else call(*args, **kwargs))
        docs.append(doc)
        nxt = (doc.get("links") or {}).get("next")
        if not nxt:
            return docs
        cursor = parse_qs(urlsplit(nxt).query)["page[cursor]"][0]
    raise RuntimeError("pagination did not end")


def ids(docs: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for doc in docs for item in doc["data"]]


def main(base_url: str, api_key: str) -> dict[str, Any]:
    sdk = KlaviyoAPI(api_key, max_delay=1, max_retries=1, test_host=base_url)
    out: dict[str, Any] = {"revision": KlaviyoAPI._REVISION}
    events = follow(sdk.Events.get_events, page_size=1000, sort="datetime",
                    include=["attributions", "metric", "profile"])
    out["events"] = ids(events)
    out["event_page_sizes"] = [len(d["data"]) for d in events]
    out["attributions"] = [i["id"] for d in events for i in d.get("included") or []
                           if i["type"] == "attribution"]
    out["events_without_metric"] = [e["id"] for d in events for e in d["data"]
                                    if "metric" not in (e.get("relationships") or {})]
    out["profiles"] = ids(follow(sdk.Profiles.get_profiles, page_size=100,
                                 additional_fields_profile=["subscriptions",
                                                            "predictive_analytics"]))
    for channel in ("email", "sms", "mobile_push"):
        for archived in ("false", "true"):
            docs = follow(sdk.Campaigns.get_campaigns, include=["campaign-messages", "tags"],
                          filter=f"and(equals(messages.channel,'{channel}'),"
                                 f"equals(archived,{archived}))")
            out.setdefault(f"campaigns_{channel}", []).extend(ids(docs))
            out.setdefault("campaign_messages", []).extend(
                i["id"] for d in docs for i in d.get("included") or []
                if i["type"] == "campaign-message")
    out["templates"] = ids(follow(sdk.Templates.get_templates))
    out["metrics"] = ids(follow(sdk.Metrics.get_metrics))
    out["segments"] = ids(follow(sdk.Segments.get_segments))
    out["lists"] = ids(follow(sdk.Lists.get_lists))
    out["tags"] = ids(follow(sdk.Tags.get_tags))
    flows = ids(follow(sdk.Flows.get_flows, filter="equals(archived,false)"))
    flows += ids(follow(sdk.Flows.get_flows, filter="equals(archived,true)"))
    out["flows"] = flows
    out["flow_actions"] = [a for f in flows for a in ids(follow(sdk.Flows.get_actions_for_flow, f))]
    out["flow_messages"] = [m for a in out["flow_actions"] for m in ids(
        follow(sdk.Flows.get_flow_action_messages, a, page_size=50))]
    out["list_profiles"] = {g: ids(follow(sdk.Lists.get_profiles_for_list, g, page_size=100))
                            for g in out["lists"]}
    out["segment_profiles"] = {
        g: ids(follow(sdk.Segments.get_profiles_for_segment, g, page_size=100))
        for g in out["segments"]}
    placed = next(m for d in follow(sdk.Metrics.get_metrics) for m in d["data"]
                  if m["attributes"]["name"] == "Placed Order")
    body = {"data": {"type": "metric-aggregate", "attributes": {
        "metric_id": placed["id"], "measurements": ["count"], "interval": "day",
        "filter": ["greater-or-equal(datetime,2023-10-01T00:00:00)",
                   "less-than(datetime,2023-11-01T00:00:00)"]}}}
    agg = as_dict(sdk.Metrics.query_metric_aggregates(body))
    out["aggregate_total"] = sum(sum(row["measurements"]["count"])
                                 for row in agg["data"]["attributes"]["data"])
    out["reports"] = reports(sdk, placed["id"])
    return out


REPORTS: dict[str, dict[str, Any]] = {
    "campaign-values": {"statistics": ["opens", "conversion_value"],
                        "timeframe": {"key": "last_30_days"}},
    "flow-values": {"statistics": ["clicks", "click_rate"], "timeframe": {"key": "last_30_days"}},
    "flow-series": {"statistics": ["delivered"], "timeframe": {"key": "last_7_days"},
                    "interval": "daily"},
    "form-values": {"statistics": ["viewed_form", "submits"], "timeframe": {"key": "last_30_days"}},
    "form-series": {"statistics": ["submits"], "timeframe": {"key": "last_7_days"},
                    "interval": "weekly"},
    "segment-values": {"statistics": ["total_members"], "timeframe": {"key": "last_30_days"}},
    "segment-series": {"statistics": ["members_added"], "timeframe": {"key": "last_7_days"},
                       "interval": "daily"},
}
"""One request of each reporting family (the body attributes; campaign and flow reports
also get the conversion metric)."""


def reports(sdk: KlaviyoAPI, conversion_metric_id: str) -> dict[str, Any]:
    """Report name -> `data.attributes` of the SDK's answer (parsed into its models)."""
    out = {}
    for name, attributes in REPORTS.items():
        attrs = dict(attributes)
        if name.startswith(("campaign", "flow")):
            attrs["conversion_metric_id"] = conversion_metric_id
        call = getattr(sdk.Reporting, "query_" + name.replace("-", "_"))
        doc = as_dict(call({"data": {"type": f"{name}-report", "attributes": attrs}}))
        out[name] = doc["data"]["attributes"]
    return out


if __name__ == "__main__":
    # the SDK parses `date_times` of series reports into datetimes: back to their text
    print(json.dumps(main(sys.argv[1], sys.argv[2]), default=lambda d: d.isoformat()))
