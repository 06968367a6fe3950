"""Each row of the report table held against Klaviyo's OpenAPI spec of its revision: the
path exists with the method the row uses, the rate-limit tier (the revision's tiers) and the
scope are the spec's, and what the row sends (sort, page size, filter operators on the cursor
and its fixed filters, include, sparse fieldsets and additional fields, id scans) is what the
spec allows.

Parametrized by revision: a revision's rows (`ROWS`, from `settings.REVISIONS`, with the
account check's request) are checked against its spec (`SPECS`), so a later revision is one
more entry of each. Also: the tables keep their names and keys across revisions, and every
date-time of the profiles' subscriptions is a timestamp column.
"""

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from klaviyo.settings import DEFAULT_REVISION, REPORTS, REVISIONS, ChildReport, Report, RevisionTable, Tier
from tests.conftest import REPO, spec_path

# Klaviyo's OpenAPI document of each revision the table has rows for: vendored in the
# repository (klaviyo_emulator/specs/), else beside the checkout (the project's shared folder).
SPECS: dict[str, Path] = {revision: spec_path(revision) for revision in REVISIONS}
SHARED_SPECS = REPO.parent / "shared" / "klaviyo-api"
# The rows of each revision: (row name, the report, the child table it reads, if any).
Row = tuple[str, Report, ChildReport | None]


def rows(table: RevisionTable) -> list[Row]:
    """Every row a revision's table sends requests with: reports, others, children, the account check."""
    return [
        *((name, report, None) for name, report in {**table.reports, **table.others}.items()),
        *((name, child.report, child) for name, child in table.children.items()),
        (table.account.name, table.account, None),
    ]


ROWS: dict[str, list[Row]] = {revision: rows(table) for revision, table in REVISIONS.items()}
COMPARISONS = {"greater-or-equal", "greater-than", "less-or-equal", "less-than"}
METHODS = {"jsonapi": "get", "post": "post"}
_CONDITION = re.compile(r"^([a-z-]+)\(([^,]+),")


@cache
def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def spec(revision: str) -> dict[str, Any]:
    """The parsed spec of `revision`; the test skips (naming where it looked) when absent."""
    paths = [SPECS[revision], SHARED_SPECS / SPECS[revision].name]
    for path in paths:
        if path.exists():
            return _load(path)
    pytest.skip(f"Klaviyo's OpenAPI spec {revision} not found at {' or '.join(map(str, paths))}")


def _params(operation: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters") or []}


def _enum(parameter: Mapping[str, Any] | None) -> set[str]:
    """The values a parameter allows (its enum, or its array items' enum)."""
    schema = (parameter or {}).get("schema") or {}
    return set(schema.get("enum") or (schema.get("items") or {}).get("enum") or [])


def filter_operators(parameter: Mapping[str, Any] | None) -> dict[str, set[str]]:
    """Field -> operators, from the `filter` parameter's description
    ("Allowed field(s)/operator(s):<br>`datetime`: `greater-or-equal`, ...<br>...")."""
    allowed: dict[str, set[str]] = {}
    for line in str((parameter or {}).get("description") or "").split("<br>"):
        match = re.match(r"\s*`([^`]+)`\s*:\s*(.*)$", line)
        if match:
            allowed[match.group(1)] = set(re.findall(r"`([^`]+)`", match.group(2)))
    return allowed


def _tier(limits: Mapping[str, str]) -> Tier:
    """`{"burst": "350/s", "steady": "3500/m"}` as a `Tier`."""
    return Tier(int(limits["burst"].split("/")[0]), int(limits["steady"].split("/")[0]))


def problems(report: Report, child: ChildReport | None, document: Mapping[str, Any], table: RevisionTable) -> list[str]:
    """Every way the row of `table` departs from the spec of its revision (empty when it agrees)."""
    found: list[str] = []
    paths = document["paths"]
    tiers = table.tiers
    # Klaviyo serves a path with and without its trailing slash; the row must be written as
    # the spec writes it (2023-10-15 with the slash, 2026-07-15 without).
    path_item = paths.get(report.path)
    operation = (path_item or {}).get(METHODS[report.pagination])
    if operation is None:
        return [f"{METHODS[report.pagination].upper()} {report.path} is not in the spec"]
    limits = operation.get("x-klaviyo-ratelimit") or {}
    if tiers[report.tier] != _tier(limits):
        found.append(f"tier {report.tier} {tiers[report.tier]} but the spec says {limits}")
    scopes = set(operation.get("x-klaviyo-scopes") or [])
    if set(report.scope.split(" and ")) != scopes:
        found.append(f"scope {report.scope!r} but the spec says {sorted(scopes)}")
    if report.pagination != "jsonapi":
        return found  # a POST query: its body is checked by the aggregates' own validation
    params = _params(operation)
    sorts = _enum(params.get("sort"))
    for sort in (report.sort, report.id_scan.get("sort")):
        if sort is not None and sort not in sorts:
            found.append(f"sort {sort!r} not in {sorted(sorts)}")
    if report.page_size is not None:
        schema = (params.get("page[size]") or {}).get("schema")
        if schema is None:
            found.append(f"page size {report.page_size} sent but the endpoint has no page[size]")
        elif not schema.get("minimum", 1) <= report.page_size <= schema["maximum"]:
            found.append(f"page size {report.page_size} outside {schema.get('minimum', 1)}..{schema['maximum']}")
    allowed = filter_operators(params.get("filter"))
    if report.cursor is not None:
        spec_ops = allowed.get(report.cursor, set()) & COMPARISONS
        if set(report.cursor_ops) != spec_ops:
            found.append(f"cursor {report.cursor} operators {sorted(report.cursor_ops)}, the spec's {sorted(spec_ops)}")
    for condition in (*report.filters, *(v for v in report.variants if v)):
        match = _CONDITION.match(condition)
        operator, field = match.groups() if match else ("", "")
        if operator not in allowed.get(field, set()):
            found.append(f"filter {condition!r}: {field or '?'} allows {sorted(allowed.get(field, set()))}")
    predictive = report.predictive.params if report.predictive else {}
    for values in (report.params, report.id_scan, predictive):
        for name, value in values.items():
            if name == "include" or name.startswith(("fields[", "additional-fields[")):
                enum = _enum(params.get(name))
                unknown = [v for v in str(value).split(",") if v not in enum]
                if unknown:
                    found.append(f"{name}={value!r}: {unknown} not in {sorted(enum)}")
            elif name != "sort" or values is not report.id_scan:
                found.append(f"parameter {name} is not checked against the spec")
    if report.predictive is not None and report.predictive.tier not in (None, *tiers):
        found.append(f"predictive tier {report.predictive.tier!r} is not a tier")
    if child is not None and child.source == "include":
        parents = [table.reports[parent] for parent in child.parents]
        includes = {v for parent in parents for v in str(parent.params.get("include") or "").split(",")}
        if child.include not in includes or child.include not in _enum(params.get("include")):
            found.append(f"include {child.include!r} not asked by its parents ({sorted(includes)}) or not in the spec")
        if any((p.path, p.tier) != (report.path, report.tier) for p in parents):
            found.append(f"path or tier differs from its parents' ({sorted({(p.path, p.tier) for p in parents})})")
    return found


CASES = [(revision, row) for revision, rows in ROWS.items() for row in rows]


@pytest.mark.parametrize(("revision", "row"), CASES, ids=[f"{revision}-{row[0]}" for revision, row in CASES])
def test_each_row_agrees_with_the_spec_of_its_revision(revision: str, row: Row) -> None:
    name, report, child = row
    if report.pagination == "v1":
        pytest.skip(f"{name}: the legacy v1 API is not in Klaviyo's OpenAPI spec")
    assert problems(report, child, spec(revision), REVISIONS[revision]) == []


def test_every_table_of_a_revision_has_a_row_checked_against_its_spec() -> None:
    assert set(ROWS) == set(SPECS) == set(REVISIONS)
    for revision, table in REVISIONS.items():
        assert {name for name, _, _ in ROWS[revision]} == {*table.names, "accounts"}, revision


def test_tables_keep_their_names_and_keys_across_revisions() -> None:
    old, new = REVISIONS["2023-10-15"], REVISIONS["2026-07-15"]
    assert DEFAULT_REVISION == "2026-07-15"
    assert set(new.names) - set(old.names) == {"campaigns_push", "event_attributions"}
    assert set(old.names) <= set(new.names)
    for name in old.names:
        assert new.row(name).primary_key == old.row(name).primary_key, name
    assert new.children["event_attributions"].primary_key == ("event_id", "attribution_id")


def _date_times(document: Mapping[str, Any], schema: Any, prefix: str) -> list[str]:
    """Flattened names (`a__b`) of the date-time attributes of a spec schema."""
    schemas = document["components"]["schemas"]
    while "$ref" in schema:
        schema = schemas[schema["$ref"].split("/")[-1]]
    found = [prefix] if schema.get("format") == "date-time" else []
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key, []):
            found += _date_times(document, part, prefix)
    for name, sub in (schema.get("properties") or {}).items():
        found += _date_times(document, sub, f"{prefix}__{name}")
    return found


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_every_date_time_of_the_profiles_subscriptions_is_a_timestamp_column(revision: str) -> None:
    document = spec(revision)
    stamps = set(_date_times(document, document["components"]["schemas"]["Subscriptions"], "subscriptions"))
    assert stamps and stamps <= set(REVISIONS[revision].reports["profiles"].timestamps)


def test_the_checks_catch_a_row_that_departs_from_the_spec() -> None:
    from dataclasses import replace

    document = spec("2023-10-15")
    table = REVISIONS["2023-10-15"]
    events = REPORTS["events"]
    assert problems(events, None, document, table) == []
    wrong = replace(
        events, path="/api/events/", tier="L", scope="events:write", sort="updated", page_size=500,
        cursor_ops=("greater-than", "equals"), params={"include": "metric,campaign"},
    )
    found = problems(wrong, None, document, table)
    assert [f.split(" ")[0] for f in found] == ["tier", "scope", "sort", "page", "cursor", "include='metric,campaign':"], found
    assert problems(replace(events, path="/api/event/"), None, document, table) == ["GET /api/event/ is not in the spec"]
    assert problems(replace(events, params={"page[bogus]": "1"}), None, document, table) == ["parameter page[bogus] is not checked against the spec"]
    # a path as another revision writes it, a tier of another revision, an include its parents do not ask
    new, new_document = REVISIONS["2026-07-15"], spec("2026-07-15")
    assert problems(events, None, new_document, new) == ["GET /api/events/ is not in the spec"]
    templates = new.reports["templates"]
    assert problems(templates, None, new_document, new) == []
    assert [f.split(" ")[0] for f in problems(templates, None, new_document, table)] == ["tier"]
    attributions = new.children["event_attributions"]
    assert problems(attributions.report, replace(attributions, include="campaign-messages"), new_document, new) != []
    profiles = replace(REPORTS["profiles"], page_size=101, filters=("equals(updated,2024-01-01T00:00:00Z)",))
    assert problems(profiles, None, document, table) == [
        "page size 101 outside 1..100", "filter 'equals(updated,2024-01-01T00:00:00Z)': updated allows ['greater-than', 'less-than']"]
