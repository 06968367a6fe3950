"""FILTER_RULES must match the spec's `filter` parameter descriptions exactly."""

from __future__ import annotations

import re
from typing import Any

import pytest

from klaviyo_emulator.filter_rules import (
    AGGREGATE_DIMENSIONS,
    AGGREGATE_FILTER_RULES,
    FILTER_REQUIRED,
    FILTER_RULES,
    KINDS,
)
from tests.conftest import load_spec

# Paths the emulator must cover (the brief's list); those with a GET filter must be in the table.
WANTED = [
    "/api/events/",
    "/api/profiles/",
    "/api/campaigns/",
    "/api/campaigns/{id}/campaign-messages/",
    "/api/templates/",
    "/api/metrics/",
    "/api/segments/",
    "/api/lists/",
    "/api/lists/{id}/profiles/",
    "/api/segments/{id}/profiles/",
    "/api/flows/",
    "/api/flows/{id}/flow-actions/",
    "/api/flow-actions/{id}/flow-messages/",
    "/api/tags/",
]


def spec() -> dict[str, Any]:
    """Klaviyo's OpenAPI spec 2023-10-15, read once (skips the test when the file is absent)."""
    return load_spec()


def filter_param(path: str) -> dict[str, Any] | None:
    """The `filter` parameter of GET `path`, or None."""
    for param in spec()["paths"][path]["get"].get("parameters", []):
        if param.get("name") == "filter":
            return param
    return None


def spec_rules(path: str) -> dict[str, set[str]]:
    """Parses 'Allowed field(s)/operator(s)' of a filter description into field -> ops."""
    param = filter_param(path)
    assert param is not None, path
    desc = param["description"]
    assert "Allowed field(s)/operator(s):" in desc
    allowed = desc.split("Allowed field(s)/operator(s):", 1)[1]
    out: dict[str, set[str]] = {}
    for line in allowed.split("<br>"):
        line = line.strip()
        if not line:
            continue
        m = re.fullmatch(r"`([^`]+)`\s*:\s*(.+)", line)
        assert m, f"unparsed line {line!r} in {path}"
        ops = re.findall(r"`([^`]+)`", m.group(2))
        assert ops and m.group(2).replace("`", "").replace(",", " ").split() == ops
        out[m.group(1)] = set(ops)
    return out


def test_spec_parser_reads_a_known_description() -> None:
    rules = spec_rules("/api/profiles/")
    assert rules["created"] == {"greater-than", "less-than"}
    assert rules["subscriptions.email.marketing.suppression.reason"] == {"equals"}
    assert len(rules) == 12


@pytest.mark.parametrize("path", sorted(FILTER_RULES))
def test_rules_match_spec(path: str) -> None:
    assert path in spec()["paths"], f"{path} is not a spec path"
    expected = spec_rules(path)
    actual = {field: set(rule.ops) for field, rule in FILTER_RULES[path].items()}
    assert actual == expected


def test_every_wanted_path_with_a_filter_is_covered() -> None:
    for path in WANTED:
        assert path in spec()["paths"], path
        if filter_param(path) is not None:
            assert path in FILTER_RULES, path
        else:
            assert path not in FILTER_RULES, path
    assert filter_param("/api/campaigns/{id}/campaign-messages/") is None


def test_kinds_are_known_and_sensible() -> None:
    for path, fields in FILTER_RULES.items():
        for field, rule in fields.items():
            assert rule.kind in KINDS, (path, field)
            if field.endswith(("created", "updated", "_at", "datetime")):
                assert rule.kind == "datetime", (path, field)
            if field == "archived":
                assert rule.kind == "boolean", (path, field)
    assert FILTER_RULES["/api/events/"]["timestamp"].kind == "number"
    assert FILTER_RULES["/api/events/"]["datetime"].kind == "datetime"
    suppression = "subscriptions.email.marketing.suppression.timestamp"
    assert FILTER_RULES["/api/profiles/"][suppression].kind == "datetime"


def test_filter_required_matches_spec() -> None:
    required_in_spec = {
        path
        for path in FILTER_RULES
        if (filter_param(path) or {}).get("required") is True
    }
    assert required_in_spec == set(FILTER_REQUIRED) == {"/api/campaigns/"}
    (cond,) = FILTER_REQUIRED["/api/campaigns/"]
    assert (cond.field, cond.op, cond.values) == ("messages.channel", "equals", {"email", "sms"})


def test_aggregate_dimensions_match_spec_enum() -> None:
    attrs = spec()["components"]["schemas"]["MetricAggregateQueryResourceObject"]["properties"][
        "attributes"
    ]["properties"]
    assert list(AGGREGATE_DIMENSIONS) == attrs["by"]["items"]["enum"]
    assert set(AGGREGATE_FILTER_RULES) == {"datetime", *AGGREGATE_DIMENSIONS}
    assert AGGREGATE_FILTER_RULES["datetime"].ops == {"greater-or-equal", "less-than"}
