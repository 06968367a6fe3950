"""The endpoint table: one row per served operation.

Spec facts (scopes, rate-limit tier, sort/include/fields enums, declared page params)
come from `spec_tables.SPEC_OPERATIONS`; this module adds what the spec leaves to the
server: the resource kind, fixed page sizes, default order and archived handling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from klaviyo_emulator.filter_rules import FILTER_RULES
from klaviyo_emulator.spec_tables import SPEC_OPERATIONS

TIERS: dict[tuple[str, str], str] = {
    ("1/s", "15/m"): "XS",
    ("3/s", "60/m"): "S",
    ("10/s", "150/m"): "M",
    ("75/s", "700/m"): "L",
    ("350/s", "3500/m"): "XL",
}
TIER_LIMITS: dict[str, tuple[int, int]] = {
    "XS": (1, 15), "S": (3, 60), "M": (10, 150), "L": (75, 700), "XL": (350, 3500),
}
"""Tier -> (burst per 1 s, steady per 60 s)."""


@dataclass(frozen=True)
class PageRule:
    """Page size of a collection.

    Attributes:
        fixed: Server-fixed size when the spec declares no `page[size]` (else None).
        default: Default `page[size]`.
        minimum: Smallest accepted `page[size]`.
        maximum: Largest accepted `page[size]`.
    """

    fixed: int | None = None
    default: int = 0
    minimum: int = 1
    maximum: int = 0

    @property
    def has_param(self) -> bool:
        """True when `page[size]` is a declared parameter."""
        return self.fixed is None


@dataclass(frozen=True)
class Endpoint:
    """One served operation.

    Attributes:
        method: "GET" or "POST".
        path: Path template as in the spec, e.g. "/api/lists/{id}/profiles/".
        kind: JSON:API type of `data` items.
        parent: Kind named by `{id}` in the path, if any.
        scopes: Scopes the key needs (all of them).
        tier: Rate-limit tier (XS..XL).
        page: Page-size rule.
        sorts: Allowed `sort` values (with and without "-").
        default_sort: Order without `sort` ("id", "-datetime", ...).
        includes: Allowed `include` values.
        fields: `fields[type]` -> allowed values.
        additional: `additional-fields[type]` -> allowed values.
        filter_rules: Allowed filter fields/operators (None: no `filter` param).
        cursor: Whether `page[cursor]` is a declared parameter.
        archived_default: Hide archived records unless the filter names `archived`.
        revision: The API revision whose spec this row follows.
    """

    method: str
    path: str
    kind: str
    parent: str | None
    scopes: tuple[str, ...]
    tier: str
    page: PageRule
    sorts: tuple[str, ...]
    default_sort: str
    includes: tuple[str, ...]
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    additional: dict[str, tuple[str, ...]] = field(default_factory=dict)
    filter_rules: dict | None = None
    cursor: bool = True
    archived_default: bool = False
    revision: str = "2023-10-15"

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Regex matching concrete paths of this template."""
        return re.compile("^" + re.escape(self.path).replace(r"\{id\}", "([^/]+)") + "$")


# path -> (kind, parent kind, page rule, default sort, archived_default)
_SERVER_SIDE: dict[str, tuple[str, str | None, PageRule, str, bool]] = {
    "/api/campaigns/": ("campaign", None, PageRule(fixed=10), "id", True),
    "/api/campaigns/{id}/campaign-messages/": ("campaign-message", "campaign",
                                               PageRule(fixed=50), "id", False),
    "/api/templates/": ("template", None, PageRule(fixed=10), "id", False),
    "/api/profiles/": ("profile", None, PageRule(None, 20, 1, 100), "id", False),
    "/api/events/": ("event", None, PageRule(fixed=200), "-datetime", False),
    "/api/metrics/": ("metric", None, PageRule(fixed=200), "id", False),
    "/api/segments/": ("segment", None, PageRule(fixed=10), "id", False),
    "/api/lists/": ("list", None, PageRule(fixed=10), "id", False),
    "/api/lists/{id}/profiles/": ("profile", "list", PageRule(None, 20, 1, 100), "id", False),
    "/api/segments/{id}/profiles/": ("profile", "segment", PageRule(None, 20, 1, 100), "id",
                                     False),
    "/api/flows/": ("flow", None, PageRule(None, 50, 1, 50), "id", True),
    "/api/flows/{id}/flow-actions/": ("flow-action", "flow", PageRule(None, 50, 1, 50), "id",
                                      False),
    "/api/flow-actions/{id}/flow-messages/": ("flow-message", "flow-action",
                                              PageRule(None, 50, 1, 100), "id", False),
    "/api/tags/": ("tag", None, PageRule(fixed=50), "id", False),
    "/api/metric-aggregates/": ("metric-aggregate", None, PageRule(fixed=500), "", False),
}


def _build() -> list[Endpoint]:
    rows = []
    for (method, path), spec in SPEC_OPERATIONS.items():
        kind, parent, page, default_sort, archived = _SERVER_SIDE[path]
        if spec["page_size"] is not None:
            default, minimum, maximum = spec["page_size"]
            page = PageRule(None, default, minimum, maximum)
        rows.append(Endpoint(
            method=method,
            path=path,
            kind=kind,
            parent=parent,
            scopes=tuple(spec["scopes"]),
            tier=TIERS[(spec["burst"], spec["steady"])],
            page=page,
            sorts=tuple(spec["sort"]),
            default_sort=default_sort,
            includes=tuple(spec["include"]),
            fields=dict(spec["fields"]),
            additional=dict(spec["additional_fields"]),
            filter_rules=FILTER_RULES.get(path) if spec["filter"] else None,
            cursor=bool(spec["page_cursor"]),
            archived_default=archived,
        ))
    return rows


ENDPOINTS: list[Endpoint] = _build()
"""Every served /api operation (v1 and admin routes are handled separately)."""

PREDICTIVE_TIER = "M"
"""Profiles requested with additional-fields[profile]=predictive_analytics drop to M."""

PLURAL: dict[str, str] = {
    "campaign": "campaigns", "campaign-message": "campaign-messages", "tag": "tags",
    "tag-group": "tag-groups", "template": "templates", "profile": "profiles",
    "event": "events", "metric": "metrics", "segment": "segments", "list": "lists",
    "flow": "flows", "flow-action": "flow-actions", "flow-message": "flow-messages",
}
"""JSON:API type -> URL collection name."""

INCLUDE_KIND: dict[str, str] = {
    "campaign-messages": "campaign-message", "tags": "tag", "metric": "metric",
    "profile": "profile", "flow-actions": "flow-action", "tag-group": "tag-group",
    "campaign": "campaign", "template": "template",
}
"""`include` value -> JSON:API type of the included resources."""


def route(method: str, path: str) -> tuple[Endpoint | None, str | None, bool]:
    """Finds the endpoint for a request path.

    Returns:
        (endpoint, path id, path_known): endpoint None with path_known True means the
        path exists but not for this method (405).
    """
    known = False
    for ep in ENDPOINTS:
        m = ep.pattern.match(path)
        if m:
            known = True
            if ep.method == method:
                return ep, (m.group(1) if m.groups() else None), True
    return None, None, known


def allowed_methods(path: str) -> list[str]:
    """Methods served on a concrete path (for the Allow header of a 405)."""
    return sorted({ep.method for ep in ENDPOINTS if ep.pattern.match(path)})
