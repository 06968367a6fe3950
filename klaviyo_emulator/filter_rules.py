"""Allowed `filter` fields and operators per GET endpoint (Klaviyo revision 2023-10-15).

Transcribed from each path's `filter` parameter description in the OpenAPI spec
("Allowed field(s)/operator(s): ..."). This module is data only; the parser that
enforces it lives in `filters.py`. `tests/emulator/test_filter_rules.py` checks the
table against the spec so a typo fails.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = frozenset({"string", "datetime", "boolean", "number"})


@dataclass(frozen=True)
class FieldRule:
    """Operators allowed on one filterable field, and the type of its values.

    Attributes:
        ops: Allowed operator names, e.g. {"equals", "any"}.
        kind: Value type: "string", "datetime", "boolean" or "number".
    """

    ops: frozenset[str]
    kind: str


@dataclass(frozen=True)
class RequiredCondition:
    """A condition an endpoint's filter must contain, else Klaviyo answers 400.

    Attributes:
        field: The field the condition is on.
        op: The operator it must use.
        values: The values accepted for it (empty = any value).
    """

    field: str
    op: str
    values: frozenset[str] = frozenset()


def _rule(kind: str, *ops: str) -> FieldRule:
    """Builds a FieldRule from a kind and operator names."""
    return FieldRule(frozenset(ops), kind)


_CMP = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")
_EQ_CMP = ("equals", *_CMP)
_TEXT = ("contains", "ends-with", "equals", "starts-with")


def _s(*ops: str) -> FieldRule:
    return _rule("string", *ops)


def _dt(*ops: str) -> FieldRule:
    return _rule("datetime", *ops)


def _b(*ops: str) -> FieldRule:
    return _rule("boolean", *ops)


def _n(*ops: str) -> FieldRule:
    return _rule("number", *ops)


_GROUP_PROFILES: dict[str, FieldRule] = {
    "email": _s("any", "equals"),
    "phone_number": _s("any", "equals"),
    "push_token": _s("any", "equals"),
    "_kx": _s("equals"),
    "joined_group_at": _dt(*_CMP),
}

_LISTS_SEGMENTS: dict[str, FieldRule] = {
    "name": _s("any", "equals"),
    "id": _s("any", "equals"),
    "created": _dt("greater-than"),
    "updated": _dt("greater-than"),
}

_SUPPRESSION = "subscriptions.email.marketing.suppression"
_LIST_SUPPRESSIONS = "subscriptions.email.marketing.list_suppressions"

FILTER_RULES: dict[str, dict[str, FieldRule]] = {
    "/api/campaigns/": {
        "messages.channel": _s("equals"),
        "name": _s("contains"),
        "status": _s("any", "equals"),
        "archived": _b("equals"),
        "created_at": _dt(*_CMP),
        "scheduled_at": _dt(*_CMP),
        "updated_at": _dt(*_CMP),
    },
    "/api/events/": {
        "metric_id": _s("equals"),
        "profile_id": _s("equals"),
        "datetime": _dt(*_CMP),
        # `timestamp` is the event's integer epoch seconds.
        "timestamp": _n(*_CMP),
    },
    "/api/flows/": {
        "id": _s("any"),
        "name": _s(*_TEXT),
        "status": _s("equals"),
        "archived": _b("equals"),
        "created": _dt(*_EQ_CMP),
        "updated": _dt(*_EQ_CMP),
        "trigger_type": _s("equals"),
    },
    "/api/flows/{id}/flow-actions/": {
        "id": _s("any"),
        "action_type": _s("any", "equals"),
        "status": _s("equals"),
        "created": _dt(*_EQ_CMP),
        "updated": _dt(*_EQ_CMP),
    },
    "/api/flows/{id}/relationships/flow-actions/": {
        "action_type": _s("equals"),
        "status": _s("equals"),
        "created": _dt(*_EQ_CMP),
        "updated": _dt(*_EQ_CMP),
    },
    "/api/flow-actions/{id}/flow-messages/": {
        "id": _s("any"),
        "name": _s(*_TEXT),
        "created": _dt(*_EQ_CMP),
        "updated": _dt(*_EQ_CMP),
    },
    "/api/flow-actions/{id}/relationships/flow-messages/": {
        "name": _s(*_TEXT),
        "created": _dt(*_EQ_CMP),
        "updated": _dt(*_EQ_CMP),
    },
    "/api/lists/": dict(_LISTS_SEGMENTS),
    "/api/segments/": dict(_LISTS_SEGMENTS),
    "/api/lists/{id}/profiles/": dict(_GROUP_PROFILES),
    "/api/lists/{id}/relationships/profiles/": dict(_GROUP_PROFILES),
    "/api/segments/{id}/profiles/": dict(_GROUP_PROFILES),
    "/api/segments/{id}/relationships/profiles/": dict(_GROUP_PROFILES),
    "/api/metrics/": {
        "integration.name": _s("equals"),
        "integration.category": _s("equals"),
    },
    "/api/profiles/": {
        "id": _s("any", "equals"),
        "email": _s("any", "equals"),
        "phone_number": _s("any", "equals"),
        "external_id": _s("any", "equals"),
        "_kx": _s("equals"),
        "created": _dt("greater-than", "less-than"),
        "updated": _dt("greater-than", "less-than"),
        f"{_SUPPRESSION}.timestamp": _dt(*_CMP),
        f"{_SUPPRESSION}.reason": _s("equals"),
        f"{_LIST_SUPPRESSIONS}.list_id": _s("equals"),
        f"{_LIST_SUPPRESSIONS}.reason": _s("equals"),
        f"{_LIST_SUPPRESSIONS}.timestamp": _dt(*_CMP),
    },
    "/api/tags/": {
        "name": _s(*_TEXT),
    },
    "/api/templates/": {
        "id": _s("any", "equals"),
        "name": _s("any", "equals"),
        "created": _dt(*_EQ_CMP),
        "updated": _dt(*_EQ_CMP),
    },
}
"""Path template (as in the spec) -> filterable field -> rule."""

FILTER_REQUIRED: dict[str, tuple[RequiredCondition, ...]] = {
    # The spec marks the campaigns filter `required: true`; Klaviyo answers 400 unless it
    # holds a channel condition. `mobile_push` only exists in later revisions.
    "/api/campaigns/": (
        RequiredCondition("messages.channel", "equals", frozenset({"email", "sms"})),
    ),
}
"""Path template -> conditions its filter must contain (the filter is then mandatory)."""

# Rules for the `filter` strings of POST /api/metric-aggregates/: a datetime window plus
# `equals` on any groupable dimension (the `by` enum of MetricAggregateQuery).
AGGREGATE_DIMENSIONS: tuple[str, ...] = (
    "$attributed_channel",
    "$attributed_flow",
    "$attributed_message",
    "$attributed_variation",
    "$campaign_channel",
    "$flow",
    "$flow_channel",
    "$message",
    "$message_send_cohort",
    "$variation",
    "$variation_send_cohort",
    "Bounce Type",
    "Campaign Name",
    "Client Canonical",
    "Client Name",
    "Client Type",
    "Email Domain",
    "Failure Source",
    "Failure Type",
    "From Number",
    "From Phone Region",
    "List",
    "Message Name",
    "Message Type",
    "Method",
    "Subject",
    "To Number",
    "To Phone Region",
    "URL",
    "form_id",
)

AGGREGATE_FILTER_RULES: dict[str, FieldRule] = {
    "datetime": _dt("greater-or-equal", "less-than"),
    **{name: _s("equals") for name in AGGREGATE_DIMENSIONS},
}
"""Field rules for the filter strings of a metric-aggregate query."""
