"""The endpoint table matches the spec: scopes, tiers, enums, page params, filters."""

from __future__ import annotations

import pytest

from klaviyo_emulator.endpoints import ENDPOINTS, TIER_LIMITS, TIERS
from klaviyo_emulator.filter_rules import FILTER_RULES
from klaviyo_emulator.spec_tables import SPEC_OPERATIONS

SERVED_GET = [
    "/api/campaigns/", "/api/campaigns/{id}/campaign-messages/", "/api/templates/",
    "/api/profiles/", "/api/events/", "/api/metrics/", "/api/segments/", "/api/lists/",
    "/api/lists/{id}/profiles/", "/api/segments/{id}/profiles/", "/api/flows/",
    "/api/flows/{id}/flow-actions/", "/api/flow-actions/{id}/flow-messages/", "/api/tags/",
    "/api/accounts/",
]


def extract(op: dict) -> dict:
    """The same facts as spec_tables, read from a spec operation."""
    out = {"operation_id": op["operationId"], "scopes": tuple(op["x-klaviyo-scopes"]),
           "burst": op["x-klaviyo-ratelimit"]["burst"],
           "steady": op["x-klaviyo-ratelimit"]["steady"], "fields": {},
           "additional_fields": {}, "include": (), "sort": (), "page_size": None,
           "page_cursor": False, "filter": None}
    for p in op.get("parameters", []):
        name, sch = p["name"], p.get("schema", {})
        if name.startswith("fields["):
            out["fields"][name[7:-1]] = tuple(sch["items"]["enum"])
        elif name.startswith("additional-fields["):
            out["additional_fields"][name[18:-1]] = tuple(sch["items"]["enum"])
        elif name == "include":
            out["include"] = tuple(sch["items"]["enum"])
        elif name == "sort":
            out["sort"] = tuple(sch["enum"])
        elif name == "page[size]":
            out["page_size"] = (sch["default"], sch["minimum"], sch["maximum"])
        elif name == "page[cursor]":
            out["page_cursor"] = True
        elif name == "filter":
            out["filter"] = "required" if p.get("required") else "optional"
    return out


def test_every_required_operation_is_in_the_table() -> None:
    served = {(ep.method, ep.path) for ep in ENDPOINTS}
    assert {("GET", p) for p in SERVED_GET} | {("POST", "/api/metric-aggregates/")} == served


@pytest.mark.parametrize("key", sorted(SPEC_OPERATIONS), ids=lambda k: f"{k[0]} {k[1]}")
def test_transcription_equals_the_spec(spec: dict, key: tuple[str, str]) -> None:
    method, path = key
    assert SPEC_OPERATIONS[key] == extract(spec["paths"][path][method.lower()])


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_endpoint_rows_follow_the_spec(spec: dict, ep) -> None:
    op = spec["paths"][ep.path][ep.method.lower()]
    limits = op["x-klaviyo-ratelimit"]
    assert TIER_LIMITS[ep.tier] == (int(limits["burst"].split("/")[0]),
                                    int(limits["steady"].split("/")[0]))
    assert TIERS[(limits["burst"], limits["steady"])] == ep.tier
    assert set(ep.scopes) == set(op["x-klaviyo-scopes"])
    names = {p["name"] for p in op.get("parameters", [])}
    assert ep.page.has_param == ("page[size]" in names)
    assert ep.cursor == ("page[cursor]" in names)
    assert (ep.filter_rules is not None) == ("filter" in names)
    if ep.filter_rules is not None:
        assert ep.filter_rules is FILTER_RULES[ep.path]


def test_fixed_page_sizes_follow_reference() -> None:
    fixed = {ep.path: ep.page.fixed for ep in ENDPOINTS if ep.method == "GET"}
    assert fixed["/api/events/"] == 200 and fixed["/api/metrics/"] == 200
    for path in ("/api/lists/", "/api/segments/", "/api/templates/", "/api/campaigns/"):
        assert fixed[path] == 10
    for path in ("/api/profiles/", "/api/flows/", "/api/lists/{id}/profiles/"):
        assert fixed[path] is None
