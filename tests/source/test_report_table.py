"""Each row of the report table held against Klaviyo's OpenAPI spec of its revision: the
path exists with the method the row uses, the rate-limit tier and the scope are the spec's,
and what the row sends (sort, page size, filter operators on the cursor and its fixed
filters, include, sparse fieldsets and additional fields, id scans) is what the spec allows.

Parametrized by revision: a revision's rows (`ROWS`) are checked against its spec (`SPECS`),
so the rows of a later revision are added as one more entry of each.
"""

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

import pytest

from klaviyo.settings import CHILD_REPORTS, OTHER_REPORTS, REPORTS, TIERS, ChildReport, Report, Tier
from tests.conftest import REPO, spec_path

# Klaviyo's OpenAPI document of each revision the table has rows for: vendored in the
# repository (klaviyo_emulator/specs/), else beside the checkout (the project's shared folder).
SPECS: Dict[str, Path] = {"2023-10-15": spec_path("2023-10-15")}
SHARED_SPECS = REPO.parent / "shared" / "klaviyo-api"
# The rows of each revision: (row name, the report, the child table it reads, if any).
Row = Tuple[str, Report, Optional[ChildReport]]
ROWS: Dict[str, List[Row]] = {
    "2023-10-15": [
        *((name, report, None) for name, report in {**REPORTS, **OTHER_REPORTS}.items()),
        *((name, child.report, child) for name, child in CHILD_REPORTS.items()),
    ],
}
COMPARISONS = {"greater-or-equal", "greater-than", "less-or-equal", "less-than"}
METHODS = {"jsonapi": "get", "post": "post"}
_CONDITION = re.compile(r"^([a-z-]+)\(([^,]+),")


@lru_cache(maxsize=None)
def _load(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def spec(revision: str) -> Dict[str, Any]:
    """The parsed spec of `revision`; the test skips (naming where it looked) when absent."""
    paths = [SPECS[revision], SHARED_SPECS / SPECS[revision].name]
    for path in paths:
        if path.exists():
            return _load(path)
    pytest.skip(f"Klaviyo's OpenAPI spec {revision} not found at {' or '.join(map(str, paths))}")


def _params(operation: Mapping[str, Any]) -> Dict[str, Mapping[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters") or []}


def _enum(parameter: Optional[Mapping[str, Any]]) -> Set[str]:
    """The values a parameter allows (its enum, or its array items' enum)."""
    schema = (parameter or {}).get("schema") or {}
    return set(schema.get("enum") or (schema.get("items") or {}).get("enum") or [])


def filter_operators(parameter: Optional[Mapping[str, Any]]) -> Dict[str, Set[str]]:
    """Field -> operators, from the `filter` parameter's description
    ("Allowed field(s)/operator(s):<br>`datetime`: `greater-or-equal`, ...<br>...")."""
    allowed: Dict[str, Set[str]] = {}
    for line in str((parameter or {}).get("description") or "").split("<br>"):
        match = re.match(r"\s*`([^`]+)`\s*:\s*(.*)$", line)
        if match:
            allowed[match.group(1)] = set(re.findall(r"`([^`]+)`", match.group(2)))
    return allowed


def _tier(limits: Mapping[str, str]) -> Tier:
    """`{"burst": "350/s", "steady": "3500/m"}` as a `Tier`."""
    return Tier(int(limits["burst"].split("/")[0]), int(limits["steady"].split("/")[0]))


def problems(report: Report, child: Optional[ChildReport], document: Mapping[str, Any]) -> List[str]:
    """Every way the row departs from the spec (empty when it agrees)."""
    found: List[str] = []
    paths = document["paths"]
    # Klaviyo serves a path with and without its trailing slash; specs after 2023-10-15 drop it.
    path_item = paths.get(report.path) or paths.get(report.path.rstrip("/"))
    operation = (path_item or {}).get(METHODS[report.pagination])
    if operation is None:
        return [f"{METHODS[report.pagination].upper()} {report.path} is not in the spec"]
    limits = operation.get("x-klaviyo-ratelimit") or {}
    if TIERS[report.tier] != _tier(limits):
        found.append(f"tier {report.tier} {TIERS[report.tier]} but the spec says {limits}")
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
    if report.predictive is not None and report.predictive.tier not in (None, *TIERS):
        found.append(f"predictive tier {report.predictive.tier!r} is not a tier")
    if child is not None and child.source == "include":
        includes = {v for parent in child.parents for v in str(REPORTS[parent].params.get("include") or "").split(",")}
        if child.include not in includes or child.include not in _enum(params.get("include")):
            found.append(f"include {child.include!r} not asked by its parents ({sorted(includes)}) or not in the spec")
    return found


CASES = [(revision, row) for revision, rows in ROWS.items() for row in rows]


@pytest.mark.parametrize(("revision", "row"), CASES, ids=[f"{revision}-{row[0]}" for revision, row in CASES])
def test_each_row_agrees_with_the_spec_of_its_revision(revision: str, row: Row) -> None:
    name, report, child = row
    if report.pagination == "v1":
        pytest.skip(f"{name}: the legacy v1 API is not in Klaviyo's OpenAPI spec")
    assert problems(report, child, spec(revision)) == []


def test_every_table_has_a_row_for_every_revision() -> None:
    names = set(REPORTS) | set(OTHER_REPORTS) | set(CHILD_REPORTS)
    for revision, rows in ROWS.items():
        assert {name for name, _, _ in rows} == names, revision
        assert revision in SPECS


def test_the_checks_catch_a_row_that_departs_from_the_spec() -> None:
    from dataclasses import replace

    document = spec("2023-10-15")
    events = REPORTS["events"]
    assert problems(events, None, document) == []
    wrong = replace(
        events, path="/api/events/", tier="L", scope="events:write", sort="updated", page_size=500,
        cursor_ops=("greater-than", "equals"), params={"include": "metric,campaign"},
    )
    found = problems(wrong, None, document)
    assert [f.split(" ")[0] for f in found] == ["tier", "scope", "sort", "page", "cursor", "include='metric,campaign':"], found
    assert problems(replace(events, path="/api/event/"), None, document) == ["GET /api/event/ is not in the spec"]
    profiles = replace(REPORTS["profiles"], page_size=101, filters=("equals(updated,2024-01-01T00:00:00Z)",))
    assert problems(profiles, None, document) == [
        "page size 101 outside 1..100", "filter 'equals(updated,2024-01-01T00:00:00Z)': updated allows ['greater-than', 'less-than']"]
