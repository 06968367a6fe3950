"""The endpoint table of every held revision, and routing by revision.

2023-10-15 is `endpoints.ENDPOINTS` (unchanged). 2026-07-15 is built here from
`spec_tables_2026_07_15` (generated from that revision's spec: scopes, tiers, enums, page
params, the allowed filter fields and operators) plus what the spec leaves to the server
(resource kind, fixed page sizes, default order, archived handling, value types of filter
fields). Paths match with and without the trailing slash in every revision: newer specs
drop it and Klaviyo routes both.
"""

from __future__ import annotations

import re
from functools import cache

from klaviyo_emulator import spec_tables_2026_07_15 as spec2026
from klaviyo_emulator.endpoints import _SERVER_SIDE, ENDPOINTS, TIER_LIMITS, Endpoint, PageRule
from klaviyo_emulator.filter_rules import FILTER_REQUIRED, FieldRule, RequiredCondition
from klaviyo_emulator.revisions import HELD

REVISION_2026 = "2026-07-15"

TIERS_2026: dict[tuple[str, str], str] = {
    ("1/s", "15/m"): "XS",
    ("3/s", "60/m"): "S",
    ("10/s", "150/m"): "M",
    ("75/s", "750/m"): "L",
    ("350/s", "3500/m"): "XL",
    ("1/s", "2/m"): "REPORTING",
}
TIER_LIMITS_2026: dict[str, tuple[int, int]] = {
    "XS": (1, 15), "S": (3, 60), "M": (10, 150), "L": (75, 750), "XL": (350, 3500),
    "REPORTING": (1, 2),
}
"""Tier -> (burst per 1 s, steady per 60 s) in 2026-07-15 (L went from 700/m to 750/m).
The reporting API's tier also has a daily limit (225/d; `EmulatorConfig.report_daily_limit`)."""
REPORTING_TIER = "REPORTING"
REPORT_PAGE_SIZE = 500
"""Nominal page of a reporting answer (`EmulatorConfig.report_page_size` rules)."""

TIER_LIMITS_BY_REVISION: dict[str, dict[str, tuple[int, int]]] = {
    "2023-10-15": TIER_LIMITS, REVISION_2026: TIER_LIMITS_2026}

# Page sizes of 2026-07-15 operations that declare no `page[size]` ("Returns a maximum of
# 200 results per page" for metrics; the campaign's messages come in one page).
_FIXED_2026: dict[str, int] = {"/api/metrics": 200, "/api/campaigns/{id}/campaign-messages": 50}

_DATETIME_FIELDS = frozenset({"created", "updated", "created_at", "updated_at", "scheduled_at",
                              "datetime", "joined_group_at"})
_BOOLEAN_FIELDS = frozenset({"archived", "is_active", "is_starred"})


def field_kind(name: str) -> str:
    """Value type of a filter field (the spec's descriptions give operators, not types)."""
    if name in _DATETIME_FIELDS or name.endswith(".timestamp"):
        return "datetime"
    if name == "timestamp":
        return "number"
    if name in _BOOLEAN_FIELDS:
        return "boolean"
    return "string"


def _filter_rules(ops: dict[str, tuple[str, ...]]) -> dict[str, FieldRule]:
    return {name: FieldRule(frozenset(allowed), field_kind(name)) for name, allowed in ops.items()}


FILTER_REQUIRED_2026: dict[str, tuple[RequiredCondition, ...]] = {
    # "A channel filter is required to list campaigns" (email, sms or mobile_push).
    "/api/campaigns": (RequiredCondition("messages.channel", "equals",
                                         frozenset({"email", "sms", "mobile_push"})),),
}
FILTER_REQUIRED_BY_REVISION: dict[str, dict[str, tuple[RequiredCondition, ...]]] = {
    "2023-10-15": FILTER_REQUIRED, REVISION_2026: FILTER_REQUIRED_2026}


def _build_2026() -> list[Endpoint]:
    rows = []
    for (method, path), spec in spec2026.SPEC_OPERATIONS.items():
        body = spec2026.REPORT_BODIES.get((method, path))
        if body is not None:  # the reporting API: a POST whose body says everything
            kind, parent, page, default_sort, archived = (
                body["type"], None, PageRule(fixed=REPORT_PAGE_SIZE), "", False)
        else:
            kind, parent, page, default_sort, archived = _SERVER_SIDE[path + "/"]
        if spec["page_size"] is not None:
            default, minimum, maximum = spec["page_size"]
            page = PageRule(None, default, minimum, maximum)
        elif path in _FIXED_2026:
            page = PageRule(fixed=_FIXED_2026[path])
        ops = spec2026.FILTER_OPS.get((method, path))
        rows.append(Endpoint(
            method=method, path=path, kind=kind, parent=parent, scopes=tuple(spec["scopes"]),
            tier=TIERS_2026[(spec["burst"], spec["steady"])], page=page,
            sorts=tuple(spec["sort"]), default_sort=default_sort,
            includes=tuple(spec["include"]), fields=dict(spec["fields"]),
            additional=dict(spec["additional_fields"]),
            filter_rules=_filter_rules(ops) if spec["filter"] else None,
            cursor=bool(spec["page_cursor"]), archived_default=archived,
            revision=REVISION_2026,
        ))
    return rows


ENDPOINTS_2026: list[Endpoint] = _build_2026()
"""Every served /api operation of revision 2026-07-15."""

ENDPOINTS_BY_REVISION: dict[str, list[Endpoint]] = {
    "2023-10-15": ENDPOINTS, REVISION_2026: ENDPOINTS_2026}
assert set(ENDPOINTS_BY_REVISION) == set(HELD)


def _strip(path: str) -> str:
    """A path without its one trailing slash ("/api/events/" -> "/api/events")."""
    return path[:-1] if path.endswith("/") and len(path) > 1 else path


@cache
def _pattern(template: str) -> re.Pattern[str]:
    """Regex of a template matching concrete paths with or without the trailing slash."""
    return re.compile("^" + re.escape(_strip(template)).replace(r"\{id\}", "([^/]+)") + "/?$")


def route(revision: str, method: str, path: str) -> tuple[Endpoint | None, str | None, bool]:
    """The endpoint of a request path in a revision (trailing slash optional).

    Returns:
        (endpoint, path id, path_known): endpoint None with path_known True means the
        path exists but not for this method (405).
    """
    known = False
    for ep in ENDPOINTS_BY_REVISION[revision]:
        m = _pattern(ep.path).match(path)
        if m:
            known = True
            if ep.method == method:
                return ep, (m.group(1) if m.groups() else None), True
    return None, None, known


def path_known(path: str) -> bool:
    """True when some held revision serves the path (any method)."""
    return any(route(rev, "", path)[2] for rev in HELD)


def allowed_methods(revision: str, path: str) -> list[str]:
    """Methods served on a concrete path in a revision (for the Allow header of a 405)."""
    return sorted({ep.method for ep in ENDPOINTS_BY_REVISION[revision]
                   if _pattern(ep.path).match(path)})
