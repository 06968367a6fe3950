"""Collection listing: scope, filter, sort (ties by id), keyset pages, includes.

A page position is a keyset: the (sort value, id) of the last item served (events: the
event index). Resuming after it is stable even when records are created or deleted
between pages.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from klaviyo_emulator import render_2026
from klaviyo_emulator.endpoints import INCLUDE_KIND, Endpoint
from klaviyo_emulator.filters import Condition, compile_conditions, datetime_bounds
from klaviyo_emulator.profiles import ADDITIONAL
from klaviyo_emulator.store import OLDEST_REVISION, Account
from klaviyo_emulator.util import fmt_ts, to_dt

Record = dict[str, Any]


@dataclass
class Request:
    """A validated listing request.

    Attributes:
        endpoint: The operation.
        parent_id: `{id}` of a nested path.
        conditions: Parsed filter conditions.
        sort: Sort value ("-updated"), or the endpoint default.
        size: Page size.
        after: Keyset position from the cursor (None = first page).
        fields: type -> requested sparse fields.
        include: Requested includes.
        additional: Requested additional fields of profiles.
    """

    endpoint: Endpoint
    parent_id: str | None
    conditions: list[Condition]
    sort: str
    size: int
    after: Any
    fields: dict[str, tuple[str, ...]]
    include: tuple[str, ...]
    additional: tuple[str, ...]


@dataclass
class Page:
    """One page: resource objects, included objects, keyset of the next page.

    `data` holds dicts, or serialized JSON objects (UTF-8 bytes) when `raw` is True.
    """

    data: list[Any]
    included: list[Record]
    next_after: Any
    raw: bool = False


class NotFound(Exception):
    """The `{id}` of a nested path does not exist."""


def dig(obj: Any, path: str) -> Any:
    """Value at a dotted path; through lists it returns the list of found values."""
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list):
            vals = [x.get(part) for x in obj if isinstance(x, dict)]
            obj = [v for v in vals if v is not None]
        else:
            return None
    return obj


class Lister:
    """Serves collection pages from an Account."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self._sorted: dict[tuple[Any, ...], tuple[list, list]] = {}

    # ------------------------------------------------------------------ public
    def page(self, req: Request) -> Page:
        """Computes one page (raises NotFound for an unknown parent id)."""
        with self.account.lock:
            if req.endpoint.kind == "event":
                return self._events(req)
            return self._generic(req)

    # ----------------------------------------------------------------- generic
    def _generic(self, req: Request) -> Page:
        ep = req.endpoint
        conds = list(req.conditions)
        if ep.archived_default and not any(c.field == "archived" for c in conds):
            conds.append(Condition("equals", "archived", False))
        getter = self._getter(ep)
        test = compile_conditions(conds)
        ordered, keys = self._ordered(req)
        desc = req.sort.startswith("-")
        field = req.sort.lstrip("-")
        lo, hi = self._narrow(keys, conds, field)
        if req.after is not None:
            pos = tuple(req.after)
            if desc:
                hi = min(hi, bisect.bisect_left(keys, pos))
            else:
                lo = max(lo, bisect.bisect_right(keys, pos))
        indexes = range(hi - 1, lo - 1, -1) if desc else range(lo, hi)
        chosen: list[tuple[str, str, Any]] = []
        more = False
        for k in indexes:
            row = ordered[k]
            if test(lambda f, h=row[2]: getter(h, f)):
                if len(chosen) == req.size:
                    more = True
                    break
                chosen.append(row)
        data = [self._render(ep, row[2], req) for row in chosen]
        included = self._included(ep, [row[2] for row in chosen], req)
        next_after = [chosen[-1][0], chosen[-1][1]] if more else None
        return Page(data, included, next_after)

    def _scope(self, ep: Endpoint, parent_id: str | None) -> list[Any]:
        """Handles of the collection (records, profile indexes or member rows)."""
        acc = self.account
        if ep.kind == "profile":
            if ep.parent is None:
                return acc.profiles.alive()
            if parent_id not in acc.small[ep.parent]:
                raise NotFound(parent_id)
            return acc.members(ep.parent, parent_id)
        recs = acc.scope(ep.kind, ep.revision)
        if ep.parent is None:
            return recs
        if parent_id not in {r["id"] for r in acc.scope(ep.parent, ep.revision)}:
            raise NotFound(parent_id)
        return [r for r in recs if r["rel"].get(ep.parent) == parent_id]

    def _ordered(self, req: Request) -> tuple[list[tuple[str, str, Any]],
                                              list[tuple[str, str]]]:
        """Scope sorted ascending by (sort value, id), and those keys; cached per version."""
        ep = req.endpoint
        field = req.sort.lstrip("-")
        key = (ep.path, req.parent_id, field, self.account.version)
        hit = self._sorted.get(key)
        if hit is None:
            handles = self._scope(ep, req.parent_id)
            value = self._sort_value(ep, field)
            ident = self._id(ep)
            rows = sorted(((value(h), ident(h), h) for h in handles), key=lambda r: r[:2])
            if len(self._sorted) > 64:
                self._sorted.clear()
            hit = self._sorted[key] = (rows, [(v, i) for v, i, _ in rows])
        return hit

    def _narrow(self, keys: list[tuple[str, str]], conds: Sequence[Condition],
                field: str) -> tuple[int, int]:
        """Index range that can hold matches when the filter bounds the sort field."""
        lo, hi = 0, len(keys)
        lower, _, upper, _ = datetime_bounds(conds, field)
        if isinstance(lower, datetime):
            lo = bisect.bisect_left(keys, (fmt_ts(math.floor(lower.timestamp())),))
        if isinstance(upper, datetime):
            hi = bisect.bisect_left(keys, (fmt_ts(math.ceil(upper.timestamp()) + 1),))
        return lo, max(lo, hi)

    # ----------------------------------------------------------- accessors
    def _id(self, ep: Endpoint) -> Callable[[Any], str]:
        ids = self.account.profiles.ids
        if ep.kind == "profile" and ep.parent is None:
            return lambda i: ids[i]
        if ep.kind == "profile":
            return lambda row: ids[row[0]]
        return lambda rec: rec["id"]

    def _sort_value(self, ep: Endpoint, field: str) -> Callable[[Any], str]:
        acc = self.account
        prof = acc.profiles
        if field == "id":
            return self._id(ep)
        if ep.kind == "profile" and ep.parent is None:
            if field in ("created", "updated"):
                arr = prof.created if field == "created" else prof.updated
                return lambda i: fmt_ts(arr[i])
            return lambda i: _text(dig(prof.attributes(i, ADDITIONAL), field))
        if ep.kind == "profile":
            if field == "joined_group_at":
                return lambda row: fmt_ts(row[1])
            return lambda row: _text(dig(prof.attributes(row[0]), field))
        return lambda rec: _text(rec["attributes"].get(field))

    def _getter(self, ep: Endpoint) -> Callable[[Any, str], Any]:
        acc = self.account
        prof = acc.profiles
        if ep.kind == "profile" and ep.parent is None:
            def get_profile(i: int, field: str) -> Any:
                if field == "id":
                    return prof.ids[i]
                if field in ("created", "updated"):
                    return to_dt((prof.created if field == "created" else prof.updated)[i])
                if field == "_kx":
                    return None
                return dig(prof.attributes(i, ADDITIONAL), field)
            return get_profile
        if ep.kind == "profile":
            def get_member(row: tuple[int, int], field: str) -> Any:
                if field == "joined_group_at":
                    return to_dt(row[1])
                if field == "profile_id":
                    return prof.ids[row[0]]
                if field in ("push_token", "_kx"):
                    return None
                return dig(prof.attributes(row[0]), field)
            return get_member

        newer = ep.revision != OLDEST_REVISION

        def get_record(rec: Record, field: str) -> Any:
            if field == "id":
                return rec["id"]
            if field == "messages.channel":
                return rec.get("channel")
            value = dig(rec["attributes"], field)
            if value is None and newer:  # a field only the newer shape has (is_active, ...)
                value = dig(render_2026.attributes(acc, rec), field)
            return value
        return get_record

    # ------------------------------------------------------------- rendering
    def _render(self, ep: Endpoint, handle: Any, req: Request) -> Record:
        acc = self.account
        fields = req.fields.get(ep.kind)
        newer = ep.revision != OLDEST_REVISION
        profile = (lambda *a, **k: render_2026.profile_resource(acc, *a, **k)) if newer else (
            acc.profile_resource)
        if ep.kind == "profile" and ep.parent is None:
            return profile(handle, req.additional, fields)
        if ep.kind == "profile":
            extra = {"joined_group_at": fmt_ts(handle[1])}
            if fields is not None and "joined_group_at" not in fields:
                extra = {}
            return profile(handle[0], req.additional, fields, extra, relationships=False)
        if newer:
            return render_2026.resource(acc, handle, fields)
        return acc.small_resource(handle, fields)

    def _included(self, ep: Endpoint, handles: list[Any], req: Request) -> list[Record]:
        """`included[]` for small kinds (campaign-messages, tags, flow-actions, ...)."""
        if not req.include:
            return []
        acc = self.account
        newer = ep.revision != OLDEST_REVISION
        if ep.kind == "profile":
            return []  # push tokens and conversations (2026-07-15 includes): the account has none
        render = ((lambda rec, f: render_2026.resource(acc, rec, f)) if newer
                  else acc.small_resource)
        out: list[Record] = []
        seen: set[tuple[str, str]] = set()
        for rec in handles:
            for name in req.include:
                kind = INCLUDE_KIND.get(name)
                if kind is None:  # flow-triggers, image: the account holds none
                    continue
                target = rec["rel"].get(name)
                ids = target if isinstance(target, list) else [target] if target else []
                for rid in ids:
                    if (kind, rid) in seen:
                        continue
                    other = acc.get(kind, rid)
                    if other is None:
                        continue
                    seen.add((kind, rid))
                    out.append(render(other, req.fields.get(kind)))
        return out

    # ----------------------------------------------------------------- events
    def _events(self, req: Request) -> Page:
        acc = self.account
        ev = acc.events
        conds = req.conditions
        lo, hi = 0, len(ev)
        for field in ("datetime", "timestamp"):
            lower, lower_inc, upper, upper_inc = datetime_bounds(conds, field)
            if lower is not None:
                x = lower.timestamp() if isinstance(lower, datetime) else float(lower)
                bound = math.ceil(x) if lower_inc else math.floor(x) + 1
                lo = max(lo, ev.first_at_or_after(bound))
            if upper is not None:
                x = upper.timestamp() if isinstance(upper, datetime) else float(upper)
                bound = math.floor(x) + 1 if upper_inc else math.ceil(x)
                hi = min(hi, ev.first_at_or_after(bound))
        rest = [c for c in conds if c.field not in ("datetime", "timestamp")]
        test = compile_conditions(rest)
        metric_ids, profile_ids = acc.metric_ids, acc.profiles.ids
        revision = req.endpoint.revision
        newer = revision != OLDEST_REVISION
        resolved = render_2026.metric_resolved

        def get(i: int, field: str) -> Any:
            if field in ("metric_id", "metric"):
                m = ev.metric_index(i)
                return metric_ids[m] if not newer or resolved(acc, i, m) else None
            if field in ("profile_id", "profile"):
                return profile_ids[ev.profile_index(i)]
            return None

        desc = req.sort.startswith("-")
        if req.after is not None:
            if desc:
                hi = min(hi, int(req.after))
            else:
                lo = max(lo, int(req.after) + 1)
        indexes = range(hi - 1, lo - 1, -1) if desc else range(lo, hi)
        chosen: list[int] = []
        more = False
        check = bool(rest)
        visible = acc.event_visible
        for i in indexes:
            if check and not test(lambda f, i=i: get(i, f)):
                continue
            if not visible(i, revision):
                continue
            if len(chosen) == req.size:
                more = True
                break
            chosen.append(i)
        fields = req.fields.get("event")
        raw = fields is None
        if newer:
            return self._events_newer(req, chosen, more, fields)
        data = ([acc.event_json(i) for i in chosen] if raw
                else [acc.event_resource(i, fields) for i in chosen])
        included: list[Record] = []
        if req.include:
            seen: set[str] = set()
            for i in chosen:
                if "metric" in req.include:
                    mid = metric_ids[ev.metric_index(i)]
                    if ("m" + mid) not in seen and mid in acc.small["metric"]:
                        seen.add("m" + mid)
                        included.append(acc.small_resource(acc.small["metric"][mid],
                                                           req.fields.get("metric")))
                if "profile" in req.include:
                    p = ev.profile_index(i)
                    pid = profile_ids[p]
                    if ("p" + pid) not in seen and p not in acc.profiles.deleted:
                        seen.add("p" + pid)
                        included.append(acc.profile_resource(p, (), req.fields.get("profile")))
        return Page(data, included, chosen[-1] if more else None, raw)

    def _events_newer(self, req: Request, chosen: list[int], more: bool,
                      fields: tuple[str, ...] | None) -> Page:
        """An events page in 2026-07-15's shapes (attributions, unresolved metrics)."""
        acc = self.account
        raw = fields is None
        data: list[Any] = ([render_2026.event_json(acc, i) for i in chosen] if raw
                           else [render_2026.event_resource(acc, i, fields) for i in chosen])
        included: list[Record] = []
        seen: set[str] = set()
        for i in chosen if req.include else ():
            m = acc.events.metric_index(i)
            if "metric" in req.include and render_2026.metric_resolved(acc, i, m):
                mid = acc.metric_ids[m]
                if ("m" + mid) not in seen and mid in acc.small["metric"]:
                    seen.add("m" + mid)
                    included.append(render_2026.resource(acc, acc.small["metric"][mid],
                                                         req.fields.get("metric")))
            if "profile" in req.include:
                p = acc.events.profile_index(i)
                pid = acc.profiles.ids[p]
                if ("p" + pid) not in seen and p not in acc.profiles.deleted:
                    seen.add("p" + pid)
                    included.append(render_2026.profile_resource(acc, p, (),
                                                                 req.fields.get("profile")))
            if "attributions" in req.include:
                eid, *_, found = render_2026.event_parts(acc, i)
                included += [render_2026.attribution_resource(acc, eid, a) for a in found]
        return Page(data, included, chosen[-1] if more else None, raw)


def _text(value: Any) -> str:
    """Sort value as text ("" for missing; lists use their first element)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
