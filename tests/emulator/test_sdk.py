"""Klaviyo's official Python SDK (klaviyo-api 6.0.0, revision 2023-10-15) as a client.

The SDK's wrapper extracts `page[cursor]` from a `links.next` URL only when it contains
"https://"; against the emulator's http URL the test passes the cursor value itself,
parsed from `links.next`, which is what the wrapper would send for an https URL.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from klaviyo_api import KlaviyoAPI

from klaviyo_emulator import Emulator


@pytest.fixture(scope="module")
def sdk(emu: Emulator) -> KlaviyoAPI:
    return KlaviyoAPI(emu.api_key, max_delay=1, max_retries=1, test_host=emu.base_url)


def cursor_of(doc: dict) -> str | None:
    """The page[cursor] value of links.next (None on the last page)."""
    nxt = doc["links"].get("next")
    if not nxt:
        return None
    return parse_qs(urlsplit(nxt).query)["page[cursor]"][0]


def follow(call, **kwargs) -> list[dict]:
    """Every item over all pages of one SDK list call."""
    items: list[dict] = []
    cursor = None
    for _ in range(1000):
        doc = call(**kwargs, page_cursor=cursor) if cursor else call(**kwargs)
        assert isinstance(doc, dict) and isinstance(doc["data"], list)
        items += doc["data"]
        cursor = cursor_of(doc)
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def ids(records) -> set[str]:
    return {r["id"] for r in records}


def test_events_with_includes_over_all_pages(sdk: KlaviyoAPI, emu: Emulator) -> None:
    items = follow(sdk.Events.get_events, sort="datetime", include=["metric", "profile"])
    assert [e["id"] for e in items] == [e["id"] for e in emu.account.records("event")]
    first = sdk.Events.get_events(include=["metric", "profile"])
    types = {i["type"] for i in first["included"]}
    assert types == {"metric", "profile"}


def test_profiles_with_additional_fields(sdk: KlaviyoAPI, emu: Emulator) -> None:
    items = follow(sdk.Profiles.get_profiles, page_size=100,
                   additional_fields_profile=["subscriptions"])
    assert ids(items) == ids(emu.account.records("profile"))
    assert all("subscriptions" in p["attributes"] for p in items)
    assert all("predictive_analytics" not in p["attributes"] for p in items)


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_campaigns_by_channel(sdk: KlaviyoAPI, emu: Emulator, channel: str) -> None:
    items = follow(sdk.Campaigns.get_campaigns, filter=f"equals(messages.channel,'{channel}')")
    truth = {c["id"] for c in emu.account.records("campaign", channel=channel)
             if not c["attributes"]["archived"]}
    assert ids(items) == truth and truth


def test_metrics_lists_flows(sdk: KlaviyoAPI, emu: Emulator) -> None:
    assert ids(follow(sdk.Metrics.get_metrics)) == ids(emu.account.records("metric"))
    assert ids(follow(sdk.Lists.get_lists)) == ids(emu.account.records("list"))
    live = {f["id"] for f in emu.account.records("flow") if not f["attributes"]["archived"]}
    assert ids(follow(sdk.Flows.get_flows)) == live


def test_sdk_sees_klaviyo_errors(sdk: KlaviyoAPI) -> None:
    from openapi_client.exceptions import ApiException
    with pytest.raises(ApiException) as info:
        sdk.Campaigns.get_campaigns(filter="equals(name,'x')")
    assert info.value.status == 400


def test_query_metric_aggregates_is_sent_and_answered_200(sdk: KlaviyoAPI,
                                                          emu: Emulator) -> None:
    metric = emu.account.metric_ids[0]
    body = {"data": {"type": "metric-aggregate", "attributes": {
        "metric_id": metric, "measurements": ["count"],
        "filter": ["greater-or-equal(datetime,2023-10-01T00:00:00)",
                   "less-than(datetime,2023-11-01T00:00:00)"]}}}
    emu.clear_log()
    result = sdk.Metrics.query_metric_aggregates(body)
    # SDK 6.0.0 only maps 201 for this call, so it returns None for Klaviyo's real 200.
    assert result is None
    last = emu.request_log[-1]
    assert (last.path, last.status) == ("/api/metric-aggregates/", 200)
    assert last.headers["user-agent"].startswith("klaviyo-api-python")
