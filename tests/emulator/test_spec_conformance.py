"""Every served operation answers documents that validate against the spec's schemas.

Two documented readings of the spec are applied to its schemas before validating:
- `oneOf` is read as `anyOf`: the spec's alternatives overlap (e.g. campaign
  `send_options` is a oneOf of two identical objects), so strict `oneOf` rejects every
  possible value.
- `links.next` may be null: Klaviyo sends `"next": null` on the last page, which the
  spec's CollectionLinks (`type: string`) cannot express.
For requests with sparse fieldsets (`fields[type]=...`) the `required` lists of
`attributes` are dropped: JSON:API sparse fieldsets omit unrequested attributes.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from klaviyo_emulator import Emulator
from tests.emulator.conftest import LIMITED, Http

JSONAPI = "application/vnd.api+json"


def _anyof(node: Any) -> Any:
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): _anyof(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_anyof(v) for v in node]
    return node


def _no_required_attributes(node: Any) -> Any:
    """Drops `required` from every `attributes` object schema (sparse fieldsets)."""
    if isinstance(node, dict):
        out = {k: _no_required_attributes(v) for k, v in node.items()}
        attrs = out.get("properties", {}).get("attributes")
        if isinstance(attrs, dict):
            attrs.pop("required", None)
        return out
    if isinstance(node, list):
        return [_no_required_attributes(v) for v in node]
    return node


@pytest.fixture(scope="module")
def sparse_components(components: dict) -> dict:
    return _no_required_attributes(components)


@pytest.fixture(scope="module")
def components(spec: dict) -> dict:
    comps = _anyof(copy.deepcopy(spec["components"]))
    comps["schemas"]["CollectionLinks"]["properties"]["next"] = {
        "anyOf": [{"type": "string", "format": "uri"}, {"type": "null"}]}
    return comps


def response_schema(spec: dict, method: str, path: str, status: str) -> dict:
    """The JSON schema of one response (200, 4XX or 5XX) of an operation."""
    resp = spec["paths"][path][method.lower()]["responses"][status]
    if "$ref" in resp:
        resp = spec["components"]["responses"][resp["$ref"].split("/")[-1]]
    return resp["content"]["application/json"]["schema"]


def validate(spec: dict, components: dict, method: str, path: str, status: str,
             doc: Any, sparse: bool = False) -> None:
    """Asserts that `doc` validates (errors listed with their JSON paths)."""
    schema = _anyof(response_schema(spec, method, path, status))
    if sparse:
        schema = _no_required_attributes(schema)
    schema = {**schema, "components": components}
    errors = sorted(Draft202012Validator(schema).iter_errors(doc), key=lambda e: e.path)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:5])


def ids(emu: Emulator) -> dict[str, str]:
    """Parent ids for nested paths (non-empty children where possible)."""
    acc = emu.account
    action = next(a for a in acc.small["flow-action"].values() if a["rel"]["flow-messages"])
    flow = next(f for f in acc.small["flow"].values() if f["rel"]["flow-actions"])
    group = {k: max(acc.small[k], key=lambda g: len(acc.members(k, g))) for k in
             ("list", "segment")}
    return {"campaign": next(iter(acc.small["campaign"])), "flow": flow["id"],
            "flow-action": action["id"], "list": group["list"], "segment": group["segment"]}


EMAIL = {"filter": "equals(messages.channel,'email')"}
CASES: list[tuple[str, str, dict]] = [
    ("/api/campaigns/", "/api/campaigns/", EMAIL),
    ("/api/campaigns/", "/api/campaigns/", {**EMAIL, "include": "campaign-messages,tags"}),
    ("/api/campaigns/", "/api/campaigns/",
     {"filter": "equals(messages.channel,'sms')", "fields[campaign]": "name,send_strategy.method"}),
    ("/api/campaigns/{id}/campaign-messages/", "/api/campaigns/{campaign}/campaign-messages/", {}),
    ("/api/campaigns/{id}/campaign-messages/", "/api/campaigns/{campaign}/campaign-messages/",
     {"include": "campaign,template"}),
    ("/api/templates/", "/api/templates/", {}),
    ("/api/templates/", "/api/templates/", {"sort": "-updated", "fields[template]": "name"}),
    ("/api/profiles/", "/api/profiles/", {}),
    ("/api/profiles/", "/api/profiles/",
     {"additional-fields[profile]": "subscriptions,predictive_analytics", "page[size]": "100"}),
    ("/api/profiles/", "/api/profiles/", {"fields[profile]": "email,location.city"}),
    ("/api/events/", "/api/events/", {}),
    ("/api/events/", "/api/events/", {"include": "metric,profile", "sort": "datetime"}),
    ("/api/events/", "/api/events/", {"fields[event]": "datetime,uuid", "include": "metric",
                                      "fields[metric]": "name"}),
    ("/api/metrics/", "/api/metrics/", {}),
    ("/api/segments/", "/api/segments/", {}),
    ("/api/segments/", "/api/segments/", {"include": "tags"}),
    ("/api/lists/", "/api/lists/", {}),
    ("/api/lists/", "/api/lists/", {"include": "tags"}),
    ("/api/lists/{id}/profiles/", "/api/lists/{list}/profiles/", {}),
    ("/api/lists/{id}/profiles/", "/api/lists/{list}/profiles/",
     {"additional-fields[profile]": "subscriptions,predictive_analytics"}),
    ("/api/segments/{id}/profiles/", "/api/segments/{segment}/profiles/",
     {"sort": "-joined_group_at"}),
    ("/api/flows/", "/api/flows/", {}),
    ("/api/flows/", "/api/flows/", {"include": "flow-actions,tags"}),
    ("/api/flows/{id}/flow-actions/", "/api/flows/{flow}/flow-actions/", {}),
    ("/api/flow-actions/{id}/flow-messages/", "/api/flow-actions/{flow-action}/flow-messages/",
     {}),
    ("/api/tags/", "/api/tags/", {}),
    ("/api/tags/", "/api/tags/", {"include": "tag-group"}),
    ("/api/accounts/", "/api/accounts/", {}),
    ("/api/accounts/", "/api/accounts/", {"fields[account]": "timezone,public_api_key"}),
]


@pytest.mark.parametrize("template,concrete,params", CASES,
                         ids=[f"{c[0]}?{'&'.join(c[2])}" for c in CASES])
def test_get_responses_validate(emu: Emulator, http: Http, spec: dict, components: dict,
                                sparse_components: dict, template: str, concrete: str,
                                params: dict) -> None:
    path = concrete
    for kind, value in ids(emu).items():
        path = path.replace("{" + kind + "}", value)
    r = http.get(path, params)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"] == JSONAPI
    doc = r.json()
    assert doc["data"], f"{path} served no data; the schema check would be vacuous"
    if "include" in params:
        assert doc["included"], "include= must fill included[]"
    sparse = any(name.startswith("fields[") for name in params)
    comps = sparse_components if sparse else components
    validate(spec, comps, "GET", template, "200", doc, sparse)
    if doc["links"].get("next"):
        nxt = http.get(doc["links"]["next"])
        assert nxt.status_code == 200
        validate(spec, comps, "GET", template, "200", nxt.json(), sparse)


def test_metric_aggregates_validate(emu: Emulator, http: Http, spec: dict,
                                    components: dict) -> None:
    placed = next(m["id"] for m in emu.account.records("metric")
                  if m["attributes"]["name"] == "Placed Order")
    body = {"data": {"type": "metric-aggregate", "attributes": {
        "metric_id": placed, "measurements": ["count", "sum_value", "unique"],
        "interval": "day", "by": ["$attributed_channel"],
        "filter": ["greater-or-equal(datetime,2023-10-20T00:00:00)",
                   "less-than(datetime,2023-10-25T00:00:00)"]}}}
    r = http.post("/api/metric-aggregates/", body)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"] == JSONAPI
    validate(spec, components, "POST", "/api/metric-aggregates/", "200", r.json())
    assert r.json()["data"]["attributes"]["data"]


ERRORS = [
    ("bad filter", "/api/events/", {"filter": "equals(datetime,'x')"}, {}, 400),
    ("no channel", "/api/campaigns/", {}, {}, 400),
    ("no revision", "/api/events/", {}, {"revision": None}, 400),
    ("no key", "/api/events/", {}, {"Authorization": None}, 401),
    ("scope", "/api/profiles/", {}, {"Authorization": f"Klaviyo-API-Key {LIMITED}"}, 403),
    ("unknown path", "/api/nothing-here/", {}, {}, 404),
    ("unknown parent", "/api/flows/NOPE00/flow-actions/", {}, {}, 404),
]


@pytest.mark.parametrize("name,path,params,headers,status", ERRORS,
                         ids=[e[0] for e in ERRORS])
def test_error_responses_validate(http: Http, spec: dict, components: dict, name: str,
                                  path: str, params: dict, headers: dict, status: int) -> None:
    r = http.get(path, params, headers=headers)
    assert r.status_code == status, r.text[:300]
    assert r.headers["Content-Type"] == JSONAPI
    doc = r.json()
    template = path if path in spec["paths"] else "/api/events/"
    if "flow-actions" in path:
        template = "/api/flows/{id}/flow-actions/"
    validate(spec, components, "GET", template, "4XX", doc)
    err = doc["errors"][0]
    assert err["status"] == status and len(err["id"]) == 36


def test_throttled_and_server_errors_validate(emu: Emulator, http: Http, spec: dict,
                                              components: dict) -> None:
    emu.force_429(1, retry_after=2)
    r = http.get("/api/metrics/")
    assert r.status_code == 429
    validate(spec, components, "GET", "/api/metrics/", "4XX", r.json())
    emu.faults.rate, emu.faults.counter = 1.0, 0
    try:
        seen = set()
        for _ in range(40):
            try:
                r = http.get("/api/metrics/")
            except Exception:  # resets and truncations  # noqa: BLE001
                http.session.close()
                continue
            if r.status_code >= 500:
                seen.add(r.status_code)
                validate(spec, components, "GET", "/api/metrics/", "5XX", r.json())
        assert seen == {500, 503}
    finally:
        emu.faults.rate = 0.0
