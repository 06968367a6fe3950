"""The reporting API (revision 2026-07-15): request validation and the computed reports.

`run(acc, report, attributes)` is the ground truth used by the HTTP handler
(`reports_api.py`) and by tests (`Emulator.report`): it validates the body attributes
against the spec (`spec_tables_2026_07_15.REPORT_BODIES`) and counts the account's facts
(`report_facts.py`). What each statistic means, how timeframes and intervals are cut and
where the emulator departs from Klaviyo: REPORTS.md.

Timeframes cover whole days in the account's timezone (UTC here): a custom `start`/`end`
keeps only their dates (offsets ignored, as the spec says) and covers both end days, so
`start` 2023-10-01T00:00 and `end` 2023-10-02T00:00 count two days. At most one year.
"""

from __future__ import annotations

import bisect
import calendar
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from klaviyo_emulator import report_facts
from klaviyo_emulator.filter_rules import FieldRule
from klaviyo_emulator.filters import Condition, FilterError, parse_filter
from klaviyo_emulator.spec_tables_2026_07_15 import REPORT_BODIES
from klaviyo_emulator.util import fmt_ts

if TYPE_CHECKING:
    from klaviyo_emulator.store import Account

UTC = UTC
DAY = 86_400
_ATTR = "/data/attributes"
SEGMENT_DATA_SINCE = date(2023, 6, 1)
"""Segment reports have no data before this day (the spec); earlier timeframes are a 400."""
INTERVAL_MAX_DAYS = {"hourly": 7, "daily": 60, "monthly": 364}
"""Longest timeframe per series interval, in days (spec: 7 days, 60 days, 52 weeks; weekly
is bound by the one-year limit only)."""

PATHS: dict[str, str] = {path.rsplit("/", 1)[-1][:-len("-reports")]: path
                         for _, path in REPORT_BODIES}
"""Report name ("campaign-values", "flow-series", ...) -> path."""

ADDITIVE: frozenset[str] = frozenset({
    "recipients", "delivered", "bounced", "failed", "bounced_or_failed", "opens", "clicks",
    "unsubscribes", "spam_complaints", "conversions", "conversion_value",
    "message_segment_count_sum", "text_message_credit_usage_amount", "text_message_spend",
    "viewed_form", "viewed_form_step", "closed_form", "qualified_form", "submits",
    "submitted_form_step", "members_added", "members_removed", "net_members_changed"})
"""Statistics whose values over disjoint timeframes add up to the value over their union
(uniques, rates and `total_members` do not)."""


class ReportError(ValueError):
    """A report request Klaviyo answers 400: `detail` and the body's JSON `pointer`."""

    def __init__(self, detail: str, pointer: str = _ATTR) -> None:
        super().__init__(detail)
        self.detail = detail
        self.pointer = pointer


@dataclass(frozen=True)
class Query:
    """A validated report request.

    Attributes:
        path: The operation's path, e.g. "/api/flow-series-reports".
        family: "campaign", "flow", "form" or "segment".
        statistics: Requested statistics, in request order, once each.
        start: First second covered (a day start, epoch seconds).
        end: First second after the timeframe (a day start).
        interval: Series interval ("hourly", "daily", "weekly", "monthly") or None.
        group_by: Grouping attributes, in request order (the spec's default if none).
        conditions: The `filter`'s conditions (AND).
        conversion_metric: Metric index of `conversion_metric_id` (campaigns, flows).
    """

    path: str
    family: str
    statistics: tuple[str, ...]
    start: int
    end: int
    interval: str | None
    group_by: tuple[str, ...]
    conditions: tuple[Condition, ...]
    conversion_metric: int | None


# ------------------------------------------------------------------------------- entry
def path_of(report: str) -> str:
    """The path of a report name ("flow-series", "flow-series-report" or the path)."""
    name = report.removeprefix("/api/").rstrip("/")
    name = name.removesuffix("-reports").removesuffix("-report")
    if name not in PATHS:
        raise ValueError(f"unknown report {report!r}; one of {', '.join(PATHS)}")
    return PATHS[name]


def run(acc: Account, report: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """`data.attributes` of a report (all results, no paging): `results` (and `date_times`).

    Raises:
        ReportError: The request is one Klaviyo refuses (400).
    """
    path = path_of(report)
    body = {"data": {"type": REPORT_BODIES[("POST", path)]["type"], "attributes": attributes}}
    return compute(acc, parse(acc, path, body))[0]


def parse(acc: Account, path: str, body: Any) -> Query:
    """Validates a request body of the report at `path` (ReportError on the first problem)."""
    spec = REPORT_BODIES[("POST", path)]
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ReportError("'data' is required and must be an object", "/data")
    data = body["data"]
    if data.get("type") != spec["type"]:
        raise ReportError(f"'type' must be '{spec['type']}', got {data.get('type')!r}",
                          "/data/type")
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        raise ReportError("'attributes' is required and must be an object")
    for name in attrs:
        if name not in spec["attributes"]:
            raise ReportError(f"'{name}' is not a valid attribute of {spec['type']}; allowed: "
                              f"{', '.join(spec['attributes'])}", f"{_ATTR}/{name}")
    for name in spec["required"]:
        if attrs.get(name) is None:
            raise ReportError(f"'{name}' is required", f"{_ATTR}/{name}")
    family = spec["type"].split("-")[0]
    statistics = _enum_list(attrs, "statistics", spec["statistics"])
    if not statistics:
        raise ReportError("'statistics' must name at least one statistic", f"{_ATTR}/statistics")
    interval = attrs.get("interval")
    if spec["interval"] is not None and interval not in spec["interval"]:
        raise ReportError(f"{interval!r} is not a valid interval; allowed: "
                          f"{', '.join(spec['interval'])}", f"{_ATTR}/interval")
    start, end = timeframe(attrs["timeframe"], acc.now, spec["timeframe_keys"])
    _check_span(start, end, interval, family)
    group_by = _group_by(attrs.get("group_by"), spec)
    conditions = _filter(attrs.get("filter"), spec)
    metric = None
    if "conversion_metric_id" in spec["attributes"]:
        metric_id = attrs["conversion_metric_id"]
        if (not isinstance(metric_id, str) or metric_id not in acc.metric_ids
                or metric_id not in acc.small["metric"]):
            raise ReportError(f"'conversion_metric_id' {metric_id!r} is not a metric of this "
                              "account", f"{_ATTR}/conversion_metric_id")
        metric = acc.metric_ids.index(metric_id)
    return Query(path, family, statistics, start, end, interval, group_by, tuple(conditions),
                 metric)


# --------------------------------------------------------------------------- validation
def _enum_list(attrs: dict[str, Any], name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    value = attrs.get(name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReportError(f"'{name}' must be a list of strings", f"{_ATTR}/{name}")
    for item in value:
        if item not in allowed:
            raise ReportError(f"'{item}' is not a valid value of '{name}'; allowed: "
                              f"{', '.join(allowed)}", f"{_ATTR}/{name}")
    return tuple(dict.fromkeys(value))


def _group_by(value: Any, spec: dict[str, Any]) -> tuple[str, ...]:
    if spec["group_by"] is None:
        return ("segment_id",)
    if value is None:
        return spec["group_by_default"]
    group_by = _enum_list({"group_by": value}, "group_by", spec["group_by"])
    missing = [g for g in spec["group_by_required"] if g not in group_by]
    if missing:
        raise ReportError(f"'group_by' must include {', '.join(spec['group_by_required'])} "
                          f"(missing: {', '.join(missing)})", f"{_ATTR}/group_by")
    for name, needs in spec["group_by_prerequisites"].items():
        if name in group_by and not all(n in group_by for n in needs):
            raise ReportError(f"group_by '{name}' needs {', '.join(needs)} too",
                              f"{_ATTR}/group_by")
    return group_by


_LIST_FIELDS = frozenset({"tag_id", "tag_name"})


def _filter(value: Any, spec: dict[str, Any]) -> list[Condition]:
    if value is None:
        return []
    if not isinstance(value, str):
        raise ReportError("'filter' must be a string", f"{_ATTR}/filter")
    rules = {name: FieldRule(frozenset(ops), "string") for name, ops in spec["filter"].items()}
    try:
        conditions = parse_filter(value, rules)
    except FilterError as err:
        raise ReportError(err.detail, f"{_ATTR}/filter") from None
    seen: set[str] = set()
    most = spec["filter_max_items"]
    for cond in conditions:
        if cond.field in seen:
            raise ReportError(f"Invalid filter: only one filter per attribute ('{cond.field}' "
                              "is filtered twice)", f"{_ATTR}/filter")
        seen.add(cond.field)
        values = cond.value if isinstance(cond.value, list) else [cond.value]
        if most is not None and len(values) > most:
            raise ReportError(f"Invalid filter: at most {most} values per list filter "
                              f"('{cond.field}' has {len(values)})", f"{_ATTR}/filter")
        allowed = spec["filter_values"].get(cond.field)
        bad = [v for v in values if allowed and v not in allowed]
        if bad:
            raise ReportError(f"Invalid filter: {bad[0]!r} is not a valid {cond.field}; "
                              f"allowed: {', '.join(allowed)}", f"{_ATTR}/filter")
    return conditions


_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?"
                      r"(Z|[+-]\d{2}:?\d{2})?$")


def _day(text: Any, name: str) -> date:
    """The local date of a custom timeframe bound (its offset is ignored)."""
    m = _DATE_RE.match(text) if isinstance(text, str) else None
    try:
        return date.fromisoformat(m.group(1)) if m else _raise(name, text)
    except ValueError:
        return _raise(name, text)


def _raise(name: str, text: Any) -> date:
    raise ReportError(f"'timeframe.{name}' must be a datetime such as 2023-10-01T00:00:00, "
                      f"got {text!r}", f"{_ATTR}/timeframe/{name}")


def _months_back(day: date, months: int) -> date:
    month0 = day.year * 12 + day.month - 1 - months
    year, month = divmod(month0, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _add_year(day: date) -> date:
    return _months_back(day, -12)


def key_days(key: str, today: date) -> tuple[date, date]:
    """(first day, last day) of a timeframe key, both included (REPORTS.md): `last_N_days`
    and `last_N_months` end yesterday, `this_*` and `today` end today, weeks start on
    Monday."""
    yesterday = today - timedelta(days=1)
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)
    days = {"last_7_days": 7, "last_30_days": 30, "last_90_days": 90, "last_365_days": 365}
    if key in days:
        return today - timedelta(days=days[key]), yesterday
    spans = {
        "today": (today, today), "yesterday": (yesterday, yesterday),
        "last_3_months": (_months_back(today, 3), yesterday),
        "last_12_months": (_months_back(today, 12), yesterday),
        "this_week": (monday, today), "last_week": (monday - timedelta(days=7),
                                                    monday - timedelta(days=1)),
        "this_month": (first, today),
        "last_month": (_months_back(first, 1), first - timedelta(days=1)),
        "this_year": (date(today.year, 1, 1), today),
        "last_year": (date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)),
    }
    return spans[key]


def timeframe(value: Any, now: datetime, keys: Iterable[str]) -> tuple[int, int]:
    """(start, end) epoch seconds of a `timeframe`: whole UTC days, end exclusive."""
    pointer = f"{_ATTR}/timeframe"
    if not isinstance(value, dict):
        raise ReportError("'timeframe' must be an object with 'key', or 'start' and 'end'",
                          pointer)
    if "key" in value:
        if set(value) != {"key"}:
            raise ReportError("'timeframe' takes either 'key' or 'start' and 'end'", pointer)
        if value["key"] not in keys:
            raise ReportError(f"{value['key']!r} is not a valid timeframe key; allowed: "
                              f"{', '.join(keys)}", f"{pointer}/key")
        first, last = key_days(value["key"], now.astimezone(UTC).date())
    else:
        unknown = set(value) - {"start", "end"}
        if unknown or set(value) != {"start", "end"}:
            raise ReportError("'timeframe' takes either 'key' or both 'start' and 'end'"
                              + (f" (not {', '.join(sorted(unknown))})" if unknown else ""),
                              pointer)
        first, last = _day(value["start"], "start"), _day(value["end"], "end")
        if last < first:
            raise ReportError("'timeframe.end' must not be before 'timeframe.start'", pointer)
        if last >= _add_year(first):
            raise ReportError("The timeframe must be at most one year (Klaviyo counts both "
                              "end days)", pointer)
    start = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp())
    return start, start + ((last - first).days + 1) * DAY


def _check_span(start: int, end: int, interval: str | None, family: str) -> None:
    days = (end - start) // DAY
    most = INTERVAL_MAX_DAYS.get(interval or "")
    if most is not None and days > most:
        raise ReportError(f"A {interval} series covers at most {most} days; this timeframe "
                          f"covers {days}", f"{_ATTR}/timeframe")
    first = datetime.fromtimestamp(start, UTC).date()
    if family == "segment" and first < SEGMENT_DATA_SINCE:
        raise ReportError(f"Segment data is unavailable before {SEGMENT_DATA_SINCE}; use a "
                          f"timeframe that starts on or after it (this one starts {first})",
                          f"{_ATTR}/timeframe")


# ------------------------------------------------------------------------------ buckets
def bucket_starts(start: int, end: int, interval: str | None) -> list[int]:
    """Start of each series bucket (epoch seconds): hours, days, weeks from Monday or
    months from the 1st, the first one cut at the timeframe's start; [start] for values."""
    if interval in (None, "hourly", "daily"):
        step = {None: end - start, "hourly": 3600, "daily": DAY}[interval]
        return list(range(start, end, max(1, step)))
    out = [start]
    day = datetime.fromtimestamp(start, UTC).date()
    while True:
        if interval == "weekly":
            day = day + timedelta(days=7 - day.weekday())
        else:
            day = _months_back(day.replace(day=1), -1)
        ts = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        if ts >= end:
            return out
        out.append(ts)


# ----------------------------------------------------------------------------- compute
class _Cell:
    """Counters of one grouping in one bucket."""

    __slots__ = ("counts", "uniques")

    def __init__(self) -> None:
        self.counts: dict[str, float] = defaultdict(float)
        self.uniques: dict[str, set[int]] = defaultdict(set)

    def add(self, kind: str, profile: int, amount: float = 1) -> None:
        self.counts[kind] += amount
        self.uniques[kind].add(profile)


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def _message_stats(c: _Cell) -> dict[str, Callable[[], Any]]:
    n, u = c.counts, c.uniques
    delivered, bounced, failed = int(n["delivered"]), int(n["bounced"]), 0
    recipients = delivered + bounced + failed
    value = round(n["conversion_value"], 2)
    spend = round(n["credits"] * report_facts.SMS_CREDIT_PRICE, 2)
    return {
        "recipients": lambda: recipients, "delivered": lambda: delivered,
        "bounced": lambda: bounced, "failed": lambda: failed,
        "bounced_or_failed": lambda: bounced + failed,
        "delivery_rate": lambda: _ratio(delivered, recipients),
        "bounce_rate": lambda: _ratio(bounced, recipients),
        "failed_rate": lambda: _ratio(failed, recipients),
        "bounced_or_failed_rate": lambda: _ratio(bounced + failed, recipients),
        "opens": lambda: int(n["open"]), "opens_unique": lambda: len(u["open"]),
        "open_rate": lambda: _ratio(len(u["open"]), delivered),
        "clicks": lambda: int(n["click"]), "clicks_unique": lambda: len(u["click"]),
        "click_rate": lambda: _ratio(len(u["click"]), delivered),
        "click_to_open_rate": lambda: _ratio(len(u["click"]), len(u["open"])),
        "unsubscribes": lambda: int(n["unsubscribe"]),
        "unsubscribe_uniques": lambda: len(u["unsubscribe"]),
        "unsubscribe_rate": lambda: _ratio(len(u["unsubscribe"]), delivered),
        "spam_complaints": lambda: 0, "spam_complaint_rate": lambda: 0.0,
        "conversions": lambda: int(n["conversion"]),
        "conversion_uniques": lambda: len(u["conversion"]),
        "conversion_value": lambda: value,
        "conversion_rate": lambda: _ratio(len(u["conversion"]), delivered),
        "average_order_value": lambda: _ratio(value, n["conversion"]),
        "revenue_per_recipient": lambda: _ratio(value, delivered),
        "message_segment_count_sum": lambda: int(n["segments"]),
        "text_message_credit_usage_amount": lambda: int(n["credits"]),
        "text_message_spend": lambda: spend,
        "text_message_roi": lambda: _ratio(value, spend),
    }


def _form_stats(c: _Cell) -> dict[str, Callable[[], Any]]:
    n, u = c.counts, c.uniques

    def count(kind: str) -> Callable[[], Any]:
        return lambda: int(n[kind])

    def unique(kind: str) -> Callable[[], Any]:
        return lambda: len(u[kind])
    out: dict[str, Callable[[], Any]] = {}
    for stat, kind in (("viewed_form", "viewed"), ("viewed_form_step", "viewed_step"),
                       ("closed_form", "closed"), ("qualified_form", "qualified"),
                       ("submitted_form_step", "submitted_step")):
        out[stat], out[stat + "_uniques"] = count(kind), unique(kind)
    out["submits"] = count("submit")
    out["submit_rate"] = lambda: _ratio(n["submit"], n["viewed"])
    return out


def _message_keys(msg: report_facts.Message, group_by: tuple[str, ...]) -> list[tuple]:
    """The grouping keys of a message (one per tag when grouping by tag)."""
    parent, name = ("campaign", "campaign_message") if msg.family == "campaign" else (
        "flow", "flow_message")
    scalar = {f"{parent}_id": msg.parent_id, f"{parent}_name": msg.parent_name,
              f"{name}_id": msg.id, f"{name}_name": msg.name,
              "send_channel": msg.send_channel, "group": msg.group,
              "group_name": msg.group_name, "text_message_format": msg.text_message_format,
              "variation": msg.id, "variation_name": msg.name}
    tags: list[tuple[str | None, str | None]] = list(zip(msg.tag_ids, msg.tag_names, strict=False)) or [
        (None, None)]
    if not any(g in _LIST_FIELDS for g in group_by):
        tags = tags[:1]
    keys = []
    for tag_id, tag_name in tags:
        row = {**scalar, "tag_id": tag_id, "tag_name": tag_name}
        keys.append(tuple(row[g] for g in group_by))
    return keys


def _matches(conditions: Iterable[Condition], get: Callable[[str], Any]) -> bool:
    for cond in conditions:
        have = get(cond.field)
        want = cond.value if isinstance(cond.value, list) else [cond.value]
        if isinstance(have, tuple):  # a list attribute (tags)
            ok = (all(w in have for w in want) if cond.op == "contains-all"
                  else any(w in have for w in want))
        else:
            ok = have in want
        if not ok:
            return False
    return True


def _message_getter(msg: report_facts.Message) -> Callable[[str], Any]:
    parent, name = ("campaign", "campaign_message") if msg.family == "campaign" else (
        "flow", "flow_message")
    fields = {f"{parent}_id": msg.parent_id, f"{parent}_name": msg.parent_name,
              f"{name}_id": msg.id, f"{name}_name": msg.name,
              "send_channel": msg.send_channel, "text_message_format": msg.text_message_format,
              "variation": msg.id, "variation_name": msg.name, "tag_id": msg.tag_ids,
              "tag_name": msg.tag_names}
    return fields.get


def compute(acc: Account, q: Query) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(`data.attributes`, related ids per relationship name) of the report of a validated
    query: every result, sorted by the groupings, statistics in request order; related:
    the campaigns (flows and flow messages) the results count."""
    facts = report_facts.facts(acc)
    starts = bucket_starts(q.start, q.end, q.interval)
    cells: dict[tuple, dict[int, _Cell]] = defaultdict(dict)

    def cell(key: tuple, ts: int) -> _Cell:
        b = _bucket(starts, ts)
        row = cells[key]
        if b not in row:
            row[b] = _Cell()
        return row[b]

    related: dict[str, set[str]] = defaultdict(set)
    if q.family in ("campaign", "flow"):
        keys: dict[str, list[tuple] | None] = {}
        for msg in facts.messages.values():
            ok = msg.family == q.family and _matches(q.conditions, _message_getter(msg))
            keys[msg.id] = _message_keys(msg, q.group_by) if ok else None
        for ts, kind, mid, p, value, m in facts.message_range(q.start, q.end):
            msg_keys = keys.get(mid)
            if not msg_keys or (kind == "conversion" and m != q.conversion_metric):
                continue
            msg = facts.messages[mid]
            for key in msg_keys:
                c = cell(key, ts)
                c.add(kind, p)
                if kind == "conversion":
                    c.counts["conversion_value"] += value
                elif kind == "delivered" and msg.segments:
                    c.counts["segments"] += msg.segments
                    c.counts["credits"] += msg.credits
            if q.family == "campaign":
                related["campaigns"].add(msg.parent_id)
            else:
                related["flows"].add(msg.parent_id)
                related["flow-messages"].add(msg.id)
        stats = _message_stats
    elif q.family == "form":
        allowed = {f.id: {v for v in f.versions
                          if _matches(q.conditions, {"form_id": f.id, "form_version_id": v}.get)}
                   for f in facts.forms.values()}
        for ts, kind, form_id, version, p, n in facts.form_range(q.start, q.end):
            if version in allowed.get(form_id, ()):
                key = tuple({"form_id": form_id, "form_version_id": version}[g]
                            for g in q.group_by)
                cell(key, ts).add(kind, p, n)
        stats = _form_stats
    else:
        return _segments(facts, q, starts), {}
    results = []
    for key in sorted(cells, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        row = cells[key]
        per_bucket = [stats(row.get(b) or _Cell()) for b in range(len(starts))]
        values = {s: [f[s]() for f in per_bucket] for s in q.statistics}
        results.append({"groupings": dict(zip(q.group_by, key, strict=False)),
                        "statistics": values if q.interval else {s: v[0] for s, v in
                                                                 values.items()}})
    out: dict[str, Any] = {"results": results}
    if q.interval:
        out["date_times"] = [fmt_ts(ts) for ts in starts]
    return out, {name: sorted(ids) for name, ids in related.items()}


def _bucket(starts: list[int], ts: int) -> int:
    """Index of the bucket holding `ts` (starts ascending, ts >= starts[0])."""
    return bisect.bisect_right(starts, ts) - 1


def _segments(facts: report_facts.Facts, q: Query, starts: list[int]) -> dict[str, Any]:
    """Segment values or series: joins, leaves, their difference, members at the end."""
    ends = starts[1:] + [q.end]
    results = []
    for gid, history in facts.segments.items():
        if not _matches(q.conditions, {"segment_id": gid}.get):
            continue
        times = [h[0] for h in history]
        joins, leaves = [0], [0]  # prefix counts over `history`
        for _, d, _ in history:
            joins.append(joins[-1] + (d > 0))
            leaves.append(leaves[-1] + (d < 0))
        stats: dict[str, list[int]] = {s: [] for s in q.statistics}
        for b_start, b_end in zip(starts, ends, strict=False):
            lo, hi = bisect.bisect_left(times, b_start), bisect.bisect_left(times, b_end)
            added, removed = joins[hi] - joins[lo], leaves[hi] - leaves[lo]
            total = joins[hi] - leaves[hi]
            row = {"members_added": added, "members_removed": removed,
                   "net_members_changed": added - removed, "total_members": total}
            for s in q.statistics:
                stats[s].append(row[s])
        results.append({"groupings": {"segment_id": gid},
                        "statistics": stats if q.interval else {s: v[0] for s, v in
                                                                stats.items()}})
    out: dict[str, Any] = {"results": results}
    if q.interval:
        out["date_times"] = [fmt_ts(ts) for ts in starts]
    return out
