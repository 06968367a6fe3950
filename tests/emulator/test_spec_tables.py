"""The endpoint table matches the spec: scopes, tiers, enums, page params, filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from klaviyo_emulator.endpoints import ENDPOINTS, TIER_LIMITS, TIERS
from klaviyo_emulator.filter_rules import FILTER_RULES
from klaviyo_emulator.gen_spec_tables import extract  # the generator's reading of an operation
from klaviyo_emulator.spec_tables import SPEC_OPERATIONS

SERVED_GET = [
    "/api/campaigns/", "/api/campaigns/{id}/campaign-messages/", "/api/templates/",
    "/api/profiles/", "/api/events/", "/api/metrics/", "/api/segments/", "/api/lists/",
    "/api/lists/{id}/profiles/", "/api/segments/{id}/profiles/", "/api/flows/",
    "/api/flows/{id}/flow-actions/", "/api/flow-actions/{id}/flow-messages/", "/api/tags/",
    "/api/accounts/",
]


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


# --------------------------------------------------------------------- every held revision
from klaviyo_emulator import gen_spec_tables, spec_tables_2026_07_15  # noqa: E402
from klaviyo_emulator.revision_endpoints import ENDPOINTS_BY_REVISION, TIER_LIMITS_BY_REVISION, TIERS_2026  # noqa: E402
from tests.emulator.conftest import REVISIONS, load_spec  # noqa: E402


@pytest.mark.parametrize("revision", REVISIONS)
def test_generated_modules_are_current(revision: str) -> None:
    """`python -m klaviyo_emulator.gen_spec_tables` would not change the module."""
    module = Path(gen_spec_tables.__file__).parent / gen_spec_tables.MODULES[revision]
    assert module.read_text() == gen_spec_tables.render(revision)


def test_held_specs_are_the_shared_ones() -> None:
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "klaviyo-api"
    if not shared.exists():
        pytest.skip(f"no shared specs at {shared}")
    for revision in REVISIONS:
        name = f"openapi-{revision}.json"
        held = Path(gen_spec_tables.__file__).parent / "specs" / name
        assert held.read_bytes() == (shared / name).read_bytes(), name


@pytest.mark.parametrize("key", sorted(spec_tables_2026_07_15.SPEC_OPERATIONS),
                         ids=lambda k: f"{k[0]} {k[1]}")
def test_2026_transcription_equals_the_spec(key: tuple[str, str]) -> None:
    method, path = key
    spec = load_spec("2026-07-15")
    assert spec_tables_2026_07_15.SPEC_OPERATIONS[key] == extract(
        spec["paths"][path][method.lower()])


@pytest.mark.parametrize("key", sorted(spec_tables_2026_07_15.FILTER_OPS),
                         ids=lambda k: f"{k[0]} {k[1]}")
def test_2026_filter_operators_equal_the_description(key: tuple[str, str]) -> None:
    method, path = key
    params = load_spec("2026-07-15")["paths"][path][method.lower()].get("parameters", [])
    desc = next((p["description"] for p in params if p["name"] == "filter"), "")
    want: dict[str, tuple[str, ...]] = {}
    for line in desc.split("<br>")[1:]:  # "`field`: `op`, `op`" lines after the header
        if ":" in line and line.startswith("`"):
            name, ops = line.split(":", 1)
            want[name.strip("` ")] = tuple(o.strip("` ") for o in ops.split(","))
    assert spec_tables_2026_07_15.FILTER_OPS[key] == want


@pytest.mark.parametrize("revision", REVISIONS)
def test_every_revision_serves_the_same_operations(revision: str) -> None:
    """Both serve the same operations, and 2026-07-15 the reporting API besides."""
    served = {(ep.method, ep.path.rstrip("/")) for ep in ENDPOINTS_BY_REVISION[revision]}
    assert served == {(m, p.rstrip("/")) for m, p in gen_spec_tables.SERVED_BY_REVISION[revision]}
    reporting = {("POST", p) for _, p in gen_spec_tables.REPORTS}
    assert (served & reporting == reporting) == (revision == "2026-07-15")
    assert revision == "2026-07-15" or not served & reporting


@pytest.mark.parametrize("key", sorted(spec_tables_2026_07_15.REPORT_BODIES),
                         ids=lambda k: f"{k[0]} {k[1]}")
def test_report_bodies_follow_the_spec(key: tuple[str, str]) -> None:
    """The request-body facts of each report equal what its schema and descriptions say."""
    spec = load_spec("2026-07-15")
    op = spec["paths"][key[1]]["post"]
    body = spec_tables_2026_07_15.REPORT_BODIES[key]
    schema = gen_spec_tables.deref(spec, op["requestBody"]["content"]["application/vnd.api+json"]
                                   ["schema"])["properties"]["data"]
    attrs = schema["properties"]["attributes"]
    assert body["type"] == schema["properties"]["type"]["enum"][0] == key[1][5:-1]
    assert body["required"] == tuple(attrs["required"])
    assert body["statistics"] == tuple(attrs["properties"]["statistics"]["items"]["enum"])
    assert body["daily"] == op["x-klaviyo-ratelimit"]["daily"] == "225/d"
    group_desc = attrs["properties"].get("group_by", {}).get("description", "")
    for name in (*body["group_by_default"], *body["group_by_required"]):
        assert name in body["group_by"] and name in group_desc
    filter_desc = attrs["properties"]["filter"]["description"]
    assert body["filter"] and all(name in filter_desc and all(op in filter_desc for op in ops)
                                  for name, ops in body["filter"].items())
    assert body["page_cursor"] == key[1].startswith(("/api/campaign", "/api/flow"))


def test_reporting_tier_and_daily_limit() -> None:
    from klaviyo_emulator.config import EmulatorConfig
    rows = [ep for ep in ENDPOINTS_BY_REVISION["2026-07-15"] if ep.path.endswith("-reports")]
    assert len(rows) == 7 and {ep.tier for ep in rows} == {"REPORTING"}
    assert TIER_LIMITS_BY_REVISION["2026-07-15"]["REPORTING"] == (1, 2)
    assert EmulatorConfig().report_daily_limit == 225


@pytest.mark.parametrize("ep", ENDPOINTS_BY_REVISION["2026-07-15"],
                         ids=lambda e: f"{e.method} {e.path}")
def test_2026_endpoint_rows_follow_the_spec(ep) -> None:
    op = load_spec("2026-07-15")["paths"][ep.path][ep.method.lower()]
    limits = op["x-klaviyo-ratelimit"]
    assert TIER_LIMITS_BY_REVISION["2026-07-15"][ep.tier] == (
        int(limits["burst"].split("/")[0]), int(limits["steady"].split("/")[0]))
    assert TIERS_2026[(limits["burst"], limits["steady"])] == ep.tier
    assert set(ep.scopes) == set(op["x-klaviyo-scopes"])
    params = {p["name"]: p for p in op.get("parameters", [])}
    assert ep.page.has_param == ("page[size]" in params)
    if ep.page.has_param:
        sch = params["page[size]"]["schema"]
        assert (ep.page.default, ep.page.minimum, ep.page.maximum) == (
            sch["default"], sch["minimum"], sch["maximum"])
    assert ep.cursor == ("page[cursor]" in params)
    assert (ep.filter_rules is not None) == ("filter" in params)
    if ep.filter_rules is not None:
        assert {f: tuple(sorted(r.ops)) for f, r in ep.filter_rules.items()} == {
            f: tuple(sorted(o)) for f, o in spec_tables_2026_07_15.FILTER_OPS[
                (ep.method, ep.path)].items()}


def test_2026_page_sizes_and_tiers_of_the_brief() -> None:
    rows = {ep.path: ep for ep in ENDPOINTS_BY_REVISION["2026-07-15"]}
    assert (rows["/api/events"].page.default, rows["/api/events"].page.maximum) == (200, 1000)
    assert rows["/api/flow-actions/{id}/flow-messages"].page.maximum == 50
    assert rows["/api/flow-actions/{id}/flow-messages"].cursor
    assert rows["/api/campaigns"].page.maximum == 100
    assert rows["/api/templates"].page.maximum == 10 and rows["/api/templates"].tier == "L"
    assert rows["/api/tags"].page.maximum == 50
    assert rows["/api/profiles"].tier == "L"
    assert TIER_LIMITS_BY_REVISION["2026-07-15"]["L"] == (75, 750)
    assert TIER_LIMITS_BY_REVISION["2023-10-15"]["L"] == (75, 700)
