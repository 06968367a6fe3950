"""Every served operation answers documents that validate against the spec's schemas,
per revision: each held revision (2023-10-15, 2026-07-15) against its own spec.

OpenAPI 3.0's `nullable: true` is read as "null is also valid", and two documented
readings of the spec are applied to its schemas before validating:
- `oneOf` is read as `anyOf`: the spec's alternatives overlap (e.g. campaign
  `send_options` is a oneOf of two identical objects), so strict `oneOf` rejects every
  possible value.
- `links.next` may be null: Klaviyo sends `"next": null` on the last page, which the
  spec's CollectionLinks (`type: string`) cannot express.
For requests with sparse fieldsets (`fields[type]=...`) the `required` lists of
`attributes` are dropped: JSON:API sparse fieldsets omit unrequested attributes.
Schemas allow extra attributes, so each served attribute name is also checked against the
revision's `fields[type]` enum (a 2023 name left in a 2026 answer fails there).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from klaviyo_emulator import Emulator
from klaviyo_emulator.revision_endpoints import ENDPOINTS_BY_REVISION
from tests.emulator.conftest import LIMITED, REVISIONS, Http, load_spec

JSONAPI = "application/vnd.api+json"


def _anyof(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("nullable") is True:  # OpenAPI 3.0: null is also valid
            rest = {k: v for k, v in node.items() if k != "nullable"}
            return {"anyOf": [_anyof(rest), {"type": "null"}]}
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


_COMPONENTS: dict[tuple[str, bool], dict] = {}


def components_of(revision: str, sparse: bool = False) -> dict:
    """The spec's components as read for validation (see the module doc), cached."""
    key = (revision, sparse)
    if key not in _COMPONENTS:
        comps = _anyof(copy.deepcopy(load_spec(revision)["components"]))
        comps["schemas"]["CollectionLinks"]["properties"]["next"] = {
            "anyOf": [{"type": "string", "format": "uri"}, {"type": "null"}]}
        _COMPONENTS[key] = _no_required_attributes(comps) if sparse else comps
    return _COMPONENTS[key]


@pytest.fixture(scope="module")
def sparse_components() -> dict:
    return components_of("2023-10-15", sparse=True)


@pytest.fixture(scope="module")
def components() -> dict:
    return components_of("2023-10-15")


def spec_path(spec: dict, path: str) -> str:
    """The spec's spelling of a path (newer specs drop the trailing slash)."""
    return path if path in spec["paths"] else path.rstrip("/")


def response_schema(spec: dict, method: str, path: str, status: str) -> dict:
    """The JSON schema of one response (200, 4XX or 5XX) of an operation."""
    resp = spec["paths"][spec_path(spec, path)][method.lower()]["responses"][status]
    if "$ref" in resp:
        resp = spec["components"]["responses"][resp["$ref"].split("/")[-1]]
    content = resp["content"]
    return (content.get("application/json") or content["application/vnd.api+json"])["schema"]


def field_names(spec: dict, method: str, path: str) -> dict[str, set[str]]:
    """type -> top-level attribute names its `fields[type]` parameter allows."""
    out: dict[str, set[str]] = {}
    for p in spec["paths"][spec_path(spec, path)][method.lower()].get("parameters", []):
        if p["name"].startswith("fields["):
            out[p["name"][7:-1]] = {v.split(".")[0] for v in p["schema"]["items"]["enum"]}
    return out


def check_attribute_names(spec: dict, method: str, path: str, doc: dict) -> None:
    """Every served attribute is a `fields[type]` name of its type in this revision."""
    allowed = field_names(spec, method, path)
    for res in [*doc["data"], *doc.get("included", [])]:
        names = allowed.get(res["type"])
        if names is None:
            continue
        extra = set(res.get("attributes", {})) - names - {"joined_group_at"}
        assert not extra, f"{res['type']} {res['id']}: attributes {sorted(extra)} not in {path}"


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
    sms = next(a for a in acc.small["flow-action"].values()
               if a["attributes"]["action_type"] == "SEND_SMS")
    flow = next(f for f in acc.small["flow"].values() if f["rel"]["flow-actions"])
    group = {k: max(acc.small[k], key=lambda g: len(acc.members(k, g))) for k in
             ("list", "segment")}
    return {"campaign": next(iter(acc.small["campaign"])), "flow": flow["id"],
            "flow-action": action["id"], "list": group["list"], "segment": group["segment"],
            "sms-action": sms["id"], "push-campaign": next(iter(acc.newer["campaign"])),
            "sms-campaign": next(c["id"] for c in acc.small["campaign"].values()
                                 if c["channel"] == "sms")}


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

PUSH = {"filter": "equals(messages.channel,'mobile_push')"}
CASES_2026: list[tuple[str, str, dict]] = [
    ("/api/campaigns", "/api/campaigns", EMAIL),
    ("/api/campaigns", "/api/campaigns/", {**EMAIL, "include": "campaign-messages,tags",
                                           "page[size]": "7"}),
    ("/api/campaigns", "/api/campaigns",
     {"filter": "equals(messages.channel,'sms')", "include": "campaign-messages"}),
    ("/api/campaigns", "/api/campaigns", {**PUSH, "include": "campaign-messages"}),
    ("/api/campaigns", "/api/campaigns",
     {**EMAIL, "fields[campaign]": "name,send_strategy,tracking_options",
      "include": "campaign-messages", "fields[campaign-message]": "definition,send_times"}),
    ("/api/campaigns/{id}/campaign-messages", "/api/campaigns/{campaign}/campaign-messages", {}),
    ("/api/campaigns/{id}/campaign-messages", "/api/campaigns/{sms-campaign}/campaign-messages",
     {"include": "campaign,template"}),
    ("/api/campaigns/{id}/campaign-messages", "/api/campaigns/{push-campaign}/campaign-messages",
     {"include": "campaign"}),
    ("/api/templates", "/api/templates", {}),
    ("/api/templates", "/api/templates", {"sort": "-updated", "fields[template]": "name,amp"}),
    ("/api/profiles", "/api/profiles", {}),
    ("/api/profiles", "/api/profiles",
     {"additional-fields[profile]": "subscriptions,predictive_analytics", "page[size]": "100"}),
    ("/api/profiles", "/api/profiles", {"fields[profile]": "email,location.city"}),
    ("/api/events", "/api/events", {}),
    ("/api/events", "/api/events", {"include": "metric,profile,attributions", "sort": "datetime",
                                    "page[size]": "1000"}),
    ("/api/events", "/api/events/", {"fields[event]": "datetime,uuid", "include": "metric",
                                     "fields[metric]": "name"}),
    ("/api/metrics", "/api/metrics", {}),
    ("/api/segments", "/api/segments", {}),
    ("/api/segments", "/api/segments", {"include": "tags", "sort": "-updated"}),
    ("/api/lists", "/api/lists", {}),
    ("/api/lists", "/api/lists", {"include": "tags", "sort": "name"}),
    ("/api/lists/{id}/profiles", "/api/lists/{list}/profiles", {}),
    ("/api/lists/{id}/profiles", "/api/lists/{list}/profiles",
     {"additional-fields[profile]": "subscriptions,predictive_analytics"}),
    ("/api/segments/{id}/profiles", "/api/segments/{segment}/profiles",
     {"sort": "-joined_group_at"}),
    ("/api/flows", "/api/flows", {}),
    ("/api/flows", "/api/flows", {"include": "flow-actions,tags"}),
    ("/api/flows/{id}/flow-actions", "/api/flows/{flow}/flow-actions", {}),
    ("/api/flow-actions/{id}/flow-messages", "/api/flow-actions/{flow-action}/flow-messages",
     {}),
    ("/api/flow-actions/{id}/flow-messages", "/api/flow-actions/{sms-action}/flow-messages",
     {"page[size]": "50"}),
    ("/api/tags", "/api/tags", {}),
    ("/api/tags", "/api/tags", {"include": "tag-group", "page[size]": "3"}),
    ("/api/accounts", "/api/accounts", {}),
    ("/api/accounts", "/api/accounts/", {"fields[account]": "timezone,public_api_key"}),
]
CASES_BY_REVISION = {"2023-10-15": CASES, "2026-07-15": CASES_2026}
ALL_CASES = [(rev, *case) for rev, cases in CASES_BY_REVISION.items() for case in cases]


@pytest.mark.parametrize("revision", REVISIONS)
def test_every_served_operation_is_checked(revision: str) -> None:
    served = {ep.path for ep in ENDPOINTS_BY_REVISION[revision] if ep.method == "GET"}
    assert {c[0] for c in CASES_BY_REVISION[revision]} == served


@pytest.mark.parametrize("revision,template,concrete,params", ALL_CASES,
                         ids=[f"{c[0]} {c[1]}?{'&'.join(c[3])}" for c in ALL_CASES])
def test_get_responses_validate(emu: Emulator, revision: str, template: str, concrete: str,
                                params: dict) -> None:
    http = Http(emu, revision)
    spec = load_spec(revision)
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
    if "page[size]" in params and doc["links"].get("next"):
        assert len(doc["data"]) == int(params["page[size]"])
    sparse = any(name.startswith("fields[") for name in params)
    comps = components_of(revision, sparse)
    validate(spec, comps, "GET", template, "200", doc, sparse)
    check_attribute_names(spec, "GET", template, doc)
    if doc["links"].get("next"):
        nxt = http.get(doc["links"]["next"])
        assert nxt.status_code == 200
        validate(spec, comps, "GET", template, "200", nxt.json(), sparse)


@pytest.mark.parametrize("revision", REVISIONS)
def test_metric_aggregates_validate(emu: Emulator, revision: str) -> None:
    http = Http(emu, revision)
    placed = next(m["id"] for m in emu.account.records("metric")
                  if m["attributes"]["name"] == "Placed Order")
    body = {"data": {"type": "metric-aggregate", "attributes": {
        "metric_id": placed, "measurements": ["count", "sum_value", "unique"],
        "interval": "day", "by": ["$attributed_channel"],
        "filter": ["greater-or-equal(datetime,2023-10-20T00:00:00)",
                   "less-than(datetime,2023-10-25T00:00:00)"]}}}
    path = "/api/metric-aggregates/" if revision == "2023-10-15" else "/api/metric-aggregates"
    r = http.post(path, body)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"] == JSONAPI
    validate(load_spec(revision), components_of(revision), "POST", "/api/metric-aggregates/",
             "200", r.json())
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


ERRORS_2026 = [
    ("unknown revision", "/api/events", {}, {"revision": "2024-11-01"}, 404),
    ("newer than held", "/api/events", {}, {"revision": "2026-10-15"}, 404),
    ("flow messages page 100", "/api/flow-actions/{flow-action}/flow-messages",
     {"page[size]": "100"}, {}, 400),
    ("events page 1001", "/api/events", {"page[size]": "1001"}, {}, 400),
    ("templates page 11", "/api/templates", {"page[size]": "11"}, {}, 400),
    ("push needs a channel", "/api/campaigns", {"filter": "equals(name,'x')"}, {}, 400),
]
ALL_ERRORS = [("2023-10-15", *e) for e in ERRORS] + [("2026-07-15", *e) for e in ERRORS_2026]


@pytest.mark.parametrize("revision,name,path,params,headers,status", ALL_ERRORS,
                         ids=[f"{e[0]} {e[1]}" for e in ALL_ERRORS])
def test_error_responses_validate(emu: Emulator, revision: str, name: str, path: str,
                                  params: dict, headers: dict, status: int) -> None:
    http = Http(emu, revision)
    spec = load_spec(revision)
    path = path.replace("{flow-action}", ids(emu)["flow-action"])
    r = http.get(path, params, headers=headers)
    assert r.status_code == status, r.text[:300]
    assert r.headers["Content-Type"] == JSONAPI
    doc = r.json()
    template = path if spec_path(spec, path) in spec["paths"] else "/api/events/"
    if "flow-actions" in path:
        template = ("/api/flows/{id}/flow-actions/" if "/api/flows/" in path
                    else "/api/flow-actions/{id}/flow-messages/")
    validate(spec, components_of(revision), "GET", template, "4XX", doc)
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


# ------------------------------------------------------------- the reporting API (2026)
def _report_cases(emu: Emulator) -> list[tuple[str, dict]]:
    placed = next(m["id"] for m in emu.account.records("metric")
                  if m["attributes"]["name"] == "Placed Order")
    week = {"start": "2023-10-25T00:00:00", "end": "2023-10-31T00:00:00"}
    return [
        ("/api/campaign-values-reports", {"statistics": ["opens", "open_rate", "conversion_value"],
                                          "timeframe": {"key": "last_30_days"},
                                          "conversion_metric_id": placed}),
        ("/api/flow-values-reports", {"statistics": ["clicks", "average_order_value"],
                                      "timeframe": week, "conversion_metric_id": placed,
                                      "group_by": ["flow_id", "flow_message_id", "flow_name",
                                                   "tag_name"]}),
        ("/api/flow-series-reports", {"statistics": ["delivered", "click_rate"], "timeframe": week,
                                      "interval": "daily", "conversion_metric_id": placed}),
        ("/api/form-values-reports", {"statistics": ["viewed_form", "submit_rate"],
                                      "timeframe": week, "group_by": ["form_id", "form_version_id"]}),
        ("/api/form-series-reports", {"statistics": ["submits"], "timeframe": week,
                                      "interval": "hourly"}),
        ("/api/segment-values-reports", {"statistics": ["total_members", "members_added"],
                                         "timeframe": {"key": "last_month"}}),
        ("/api/segment-series-reports", {"statistics": ["net_members_changed"], "timeframe": week,
                                         "interval": "weekly"}),
    ]


def test_every_report_operation_is_checked(emu: Emulator) -> None:
    served = {ep.path for ep in ENDPOINTS_BY_REVISION["2026-07-15"] if ep.path.endswith("-reports")}
    assert {path for path, _ in _report_cases(emu)} == served and len(served) == 7


def test_report_responses_validate(emu: Emulator) -> None:
    http = Http(emu, "2026-07-15")
    spec = load_spec("2026-07-15")
    comps = components_of("2026-07-15")
    for path, attrs in _report_cases(emu):
        kind = path[5:-1]
        payload = {"data": {"type": kind, "attributes": attrs}}
        r = http.post(path, payload)
        assert r.status_code == 200 and r.headers["Content-Type"] == JSONAPI, r.text[:300]
        doc = r.json()
        assert doc["data"]["attributes"]["results"], f"{path} served no results"
        validate(spec, comps, "POST", path, "200", doc)
        bad = {"data": {"type": kind, "attributes": {**attrs, "statistics": ["nope"]}}}
        r = http.post(path, bad)
        assert r.status_code == 400
        validate(spec, comps, "POST", path, "4XX", r.json())
    r = Http(emu, "2023-10-15").post("/api/flow-values-reports", {"data": {}})
    assert r.status_code == 404
    validate(load_spec("2023-10-15"), components_of("2023-10-15"), "GET", "/api/events/", "4XX",
             r.json())
