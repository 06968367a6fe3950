"""The account: ground truth shared by the HTTP layer and by tests.

Holds the small collections (dict records), the compact profiles, the lazy events, the
list/segment memberships and the mutation overlay. `records()` yields resources exactly
as the API serves them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson

from klaviyo_emulator import documents, newer_data, render_2026, weight
from klaviyo_emulator.catalog import Catalog
from klaviyo_emulator.config import EmulatorConfig
from klaviyo_emulator.events import Events, Sources
from klaviyo_emulator.profiles import ADDITIONAL, Profiles
from klaviyo_emulator.util import fmt_ts, h64_int, ns_key, to_dt, to_ts

Record = dict[str, Any]

SMALL_KINDS = ("account", "campaign", "campaign-message", "tag", "tag-group", "template",
               "metric", "segment", "list", "flow", "flow-action", "flow-message")
KINDS = ("account", "campaign", "campaign-message", "tag", "template", "profile", "event",
         "metric", "segment", "list", "flow", "flow-action", "flow-message")
OLDEST_REVISION = "2023-10-15"
NEWER_KINDS = ("attribution",)
"""Kinds only newer revisions serve (`records(kind, revision="2026-07-15")`)."""


class Account:
    """Synthetic Klaviyo account, a pure function of (seed, now, sizes) plus mutations.

    Attributes:
        now: The account's "now" (aware UTC datetime).
        base_url: Base URL used in links (set by the server; "https://a.klaviyo.com" before).
        small: kind -> id -> internal record, for every kind except profiles and events.
        profiles: Compact profiles.
        events: Lazy events.
        version: Bumped by every mutation (invalidates caches).
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.seed = config.seed
        self.now = config.resolved_now()
        self.now_ts = to_ts(self.now)
        self.base_url = "https://a.klaviyo.com"
        self.lock = threading.RLock()
        self.version = 0
        self.last_mutation_ts = 0
        sizes = {k: getattr(config, k) for k in ("campaigns", "flows", "lists", "segments",
                                                  "templates", "metrics", "tags")}
        cat = Catalog(config.seed, self.now_ts, sizes, config.ties)
        self.metric_family = dict(cat.metric_family)
        self.small: dict[str, dict[str, Record]] = {k: {} for k in SMALL_KINDS}
        for kind, recs in (("account", cat.accounts), ("metric", cat.metrics),
                           ("tag-group", cat.tag_groups),
                           ("tag", cat.tags), ("template", cat.templates),
                           ("list", cat.lists), ("segment", cat.segments),
                           ("campaign", cat.campaigns),
                           ("campaign-message", cat.campaign_messages),
                           ("flow", cat.flows), ("flow-action", cat.flow_actions),
                           ("flow-message", cat.flow_messages)):
            for rec in recs:
                self.small[kind][rec["id"]] = rec
        self.profiles = Profiles(config.seed, self.now_ts, config.profiles, config.ties)
        self.profiles.list_ids = [r["id"] for r in cat.lists]
        self.metric_ids = [m["id"] for m in cat.metrics]
        self.events = Events(
            config.seed, self.now_ts, config.events, config.days, self.metric_ids,
            [cat.metric_family[m] for m in self.metric_ids],
            [cat.metric_weight[m] for m in self.metric_ids],
            max(1, config.profiles), _sources(cat), config.ties, config.event_weight)
        self.hidden_metrics: set[int] = set()
        # What only revisions after 2023-10-15 show (see newer_data): push campaigns,
        # attributions of conversions, events whose metric cannot be resolved.
        push, push_messages = newer_data.push_campaigns(cat, config.campaigns)
        action_flow = {a["id"]: a["rel"]["flow"] for a in cat.flow_actions}
        self.newer: dict[str, dict[str, Record]] = {
            "campaign": {r["id"]: r for r in push},
            "campaign-message": {r["id"]: r for r in push_messages}}
        self.unresolved = newer_data.unresolved_events(config.seed, self.events)
        self.attributions = newer_data.Attributions(
            config.seed, self.events.families,
            sorted((m["id"], m["rel"]["campaign"]) for m in cat.campaign_messages + push_messages),
            {m["id"]: action_flow[m["rel"]["flow-action"]] for m in cat.flow_messages})
        self._members: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self.extra_members: dict[tuple[str, str], list[tuple[int, int]]] = {}
        # Set by mutations, read by the reporting API (reports.py): when each deleted profile
        # was deleted (epoch seconds), and revised attributions (event id -> attributions).
        self.profile_deleted_at: dict[int, int] = {}
        self.attribution_overrides: dict[str, list[dict[str, str]]] = {}

    @property
    def account_id(self) -> str:
        """Id of the account itself (`GET /api/accounts/`), distinct per seed."""
        return next(iter(self.small["account"]))

    # ------------------------------------------------------------------ lookups
    def get(self, kind: str, rid: str) -> Record | None:
        """Internal record of a small kind (push campaigns included), or None."""
        rec = self.small.get(kind, {}).get(rid)
        return rec if rec is not None else self.newer.get(kind, {}).get(rid)

    def scope(self, kind: str, revision: str = OLDEST_REVISION) -> list[Record]:
        """Internal records of a small kind that a revision serves (2023-10-15: no push)."""
        recs = list(self.small[kind].values())
        if revision != OLDEST_REVISION and kind in self.newer:
            recs += list(self.newer[kind].values())
        return recs

    def profile_index(self, pid: str) -> int | None:
        """Index of a live profile id, or None."""
        idx = self.profiles.index.get(pid)
        if idx is None or idx in self.profiles.deleted:
            return None
        return idx

    def event_visible(self, i: int, revision: str = OLDEST_REVISION) -> bool:
        """False for events whose metric or profile was deleted (Klaviyo drops them).

        From 2026-07-15 on, events of a deleted metric are served without a metric (as
        the events of `unresolved` are); 2023-10-15 leaves them out.
        """
        ev = self.events
        if revision != OLDEST_REVISION:
            return not (self.profiles.deleted and ev.profile_index(i) in self.profiles.deleted)
        if self.hidden_metrics and ev.metric_index(i) in self.hidden_metrics:
            return False
        if self.profiles.deleted and ev.profile_index(i) in self.profiles.deleted:
            return False
        return True

    # --------------------------------------------------------------- rendering
    def profile_resource(self, i: int, additional: tuple[str, ...] = (),
                         fields: tuple[str, ...] | None = None,
                         extra: dict[str, Any] | None = None,
                         relationships: bool = True) -> Record:
        """JSON:API profile object of profile index i."""
        attrs = documents.sparse(self.profiles.attributes(i, additional), fields)
        if extra:
            attrs.update(extra)
        pid = self.profiles.ids[i]
        rec: Record = {"type": "profile", "id": pid, "attributes": attrs}
        if relationships:
            return documents.resource(self.base_url, rec, attrs)
        return {"type": "profile", "id": pid, "attributes": attrs,
                "links": {"self": documents.self_link(self.base_url, "profile", pid)}}

    def event_resource(self, i: int, fields: tuple[str, ...] | None = None) -> Record:
        """JSON:API event object of event index i."""
        eid, ts, props, uid, m, p, extra = self.events.render_parts(i)
        if extra and (fields is None or "event_properties" in fields):
            props.update(weight.extra_dict(extra))
        own = f"{self.base_url}/api/events/{eid}"
        attrs = {"timestamp": ts, "event_properties": props, "datetime": fmt_ts(ts),
                 "uuid": uid}
        if fields is not None:
            attrs = documents.sparse(attrs, fields)
        return {
            "type": "event", "id": eid, "attributes": attrs,
            "relationships": {
                "profile": {"data": {"type": "profile", "id": self.profiles.ids[p]},
                            "links": {"self": own + "/relationships/profile/",
                                      "related": own + "/profile/"}},
                "metric": {"data": {"type": "metric", "id": self.metric_ids[m]},
                           "links": {"self": own + "/relationships/metric/",
                                     "related": own + "/metric/"}},
            },
            "links": {"self": own + "/"},
        }

    def small_resource(self, rec: Record, fields: tuple[str, ...] | None = None) -> Record:
        """JSON:API object of a small-kind record."""
        return documents.resource(self.base_url, rec, documents.sparse(rec["attributes"], fields))

    def event_json(self, i: int) -> bytes:
        """Serialized event object (all attributes), equal to `event_resource(i)`.

        The hot path of /api/events/: f-strings instead of nested dicts, and bytes (the
        ASCII envelope around the UTF-8 properties: no wide str of a page to join and encode).
        """
        eid, ts, props, uid, m, p, extra = self.events.render_parts(i)
        own = f"{self.base_url}/api/events/{eid}"
        head = (f'{{"type":"event","id":"{eid}","attributes":{{"timestamp":{ts},'
                f'"event_properties":')
        tail = (
            f',"datetime":"{fmt_ts(ts)}","uuid":"{uid}"}},'
            f'"relationships":{{"profile":{{"data":{{"type":"profile",'
            f'"id":"{self.profiles.ids[p]}"}},"links":{{"self":"{own}/relationships/profile/",'
            f'"related":"{own}/profile/"}}}},"metric":{{"data":{{"type":"metric",'
            f'"id":"{self.metric_ids[m]}"}},"links":{{"self":"{own}/relationships/metric/",'
            f'"related":"{own}/metric/"}}}}}},"links":{{"self":"{own}/"}}}}'
        )
        return b"".join((head.encode(), weight.splice(orjson.dumps(props), extra), tail.encode()))

    # ------------------------------------------------------------ ground truth
    def records(self, kind: str, revision: str = OLDEST_REVISION,
                **filters: Any) -> Iterator[Record]:
        """Resources of one kind exactly as served (all attributes, incl. additional fields).

        Args:
            kind: One of KINDS (or NEWER_KINDS with a newer revision: "attribution", the
                attributions of every served event, as `include=attributions` serves them).
            revision: The revision whose shapes (and visible records: push campaigns,
                events whose metric cannot be resolved) to render; default 2023-10-15.
            **filters: Equality filters on `id`, an attribute name, a relationship as
                `<name>_id` (e.g. campaign_id=, metric_id=, profile_id=, flow_id=), or
                `channel` ("email"/"sms"/"mobile_push") for campaigns.
        """
        newer = revision != OLDEST_REVISION
        if kind not in KINDS and not (newer and kind in NEWER_KINDS):
            raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
        if kind in ("event", "attribution"):
            with self.lock:
                count = len(self.events)
            out: Iterator[Record] = self._event_chunks(0, count, revision=revision,
                                                       attributions=kind == "attribution")
        elif kind == "profile":
            with self.lock:
                alive = self.profiles.alive()
            out = self._profile_chunks(alive, revision=revision)
        else:
            channel = filters.pop("channel", None) if kind == "campaign" else None
            render = ((lambda r: render_2026.resource(self, r)) if newer
                      else self.small_resource)
            with self.lock:
                out = iter([orjson.loads(orjson.dumps(render(r)))  # copies
                            for r in self.scope(kind, revision)
                            if channel is None or r.get("channel") == channel])
        for res in out:
            if _matches(res, filters):
                yield res

    def attribution_rows(self) -> list[dict[str, str | None]]:
        """Every attribution of the served events (2026-07-15), flat and ascending by event:
        `attribution_id`, `event_id`, `campaign_id`, `campaign_message_id`, `flow_id`,
        `flow_message_id` (None where it does not apply)."""
        rows = []
        for res in self.records("attribution", revision="2026-07-15"):
            rel = res["relationships"]
            row: dict[str, str | None] = {"attribution_id": res["id"]}
            for name in ("event", "campaign", "campaign-message", "flow", "flow-message"):
                row[name.replace("-", "_") + "_id"] = rel[name]["data"]["id"] if name in rel else None
            rows.append(row)
        return rows

    def unresolved_event_ids(self) -> set[str]:
        """Ids of the events 2026-07-15 serves without a metric (see newer_data)."""
        with self.lock:
            found = set(self.unresolved)
            if self.hidden_metrics:
                found |= {i for i in range(len(self.events))
                          if self.events.metric_index(i) in self.hidden_metrics}
            return {self.events.event_id(i) for i in found
                    if self.event_visible(i, "2026-07-15")}

    def events_between(self, start: datetime | None, end: datetime | None,
                       revision: str = OLDEST_REVISION) -> Iterator[Record]:
        """Events with start <= datetime < end (aware datetimes; None = open), ascending."""
        with self.lock:
            lo, hi = self.event_range(start, end)
        yield from self._event_chunks(lo, hi, revision=revision)

    def _event_chunks(self, lo: int, hi: int, chunk: int = 2000,
                      revision: str = OLDEST_REVISION,
                      attributions: bool = False) -> Iterator[Record]:
        """Visible events of [lo, hi) (or their attributions), rendered lazily (1M events
        need no list in memory)."""
        newer = revision != OLDEST_REVISION
        for start in range(lo, hi, chunk):
            with self.lock:
                visible = [i for i in range(start, min(hi, start + chunk))
                           if self.event_visible(i, revision)]
                if attributions:
                    out = []
                    for i in visible:
                        eid, *_, found = render_2026.event_parts(self, i)
                        out += [render_2026.attribution_resource(self, eid, a) for a in found]
                elif newer:
                    out = [render_2026.event_resource(self, i) for i in visible]
                else:
                    out = [self.event_resource(i) for i in visible]
            yield from out

    def _profile_chunks(self, indexes: list[int], chunk: int = 1000,
                        revision: str = OLDEST_REVISION) -> Iterator[Record]:
        """Profiles (with every additional field), rendered lazily."""
        newer = revision != OLDEST_REVISION
        for start in range(0, len(indexes), chunk):
            with self.lock:
                out = [render_2026.profile_resource(self, i, ADDITIONAL) if newer
                       else self.profile_resource(i, ADDITIONAL)
                       for i in indexes[start:start + chunk] if i not in self.profiles.deleted]
            yield from out

    def event_range(self, start: datetime | None, end: datetime | None) -> tuple[int, int]:
        """Index range [lo, hi) of events with start <= datetime < end."""
        ev = self.events
        lo = 0 if start is None else ev.first_at_or_after(_ceil_ts(start))
        hi = len(ev) if end is None else ev.first_at_or_after(_ceil_ts(end))
        return lo, max(lo, hi)

    def list_members(self, list_id: str) -> list[tuple[str, datetime]]:
        """Members of a list as (profile_id, joined_group_at), by profile id."""
        return self._member_pairs("list", list_id)

    def segment_members(self, segment_id: str) -> list[tuple[str, datetime]]:
        """Members of a segment as (profile_id, joined_group_at), by profile id."""
        return self._member_pairs("segment", segment_id)

    def _member_pairs(self, kind: str, gid: str) -> list[tuple[str, datetime]]:
        with self.lock:
            ids = self.profiles.ids
            pairs = [(ids[i], to_dt(ts)) for i, ts in self.members(kind, gid)]
        return sorted(pairs)

    def members(self, kind: str, gid: str, include_deleted: bool = False) -> list[tuple[int, int]]:
        """Live members of a list/segment as (profile index, joined epoch seconds) (with
        `include_deleted`, also the memberships of profiles deleted since)."""
        if gid not in self.small[kind]:
            return []
        key = (kind, gid)
        base = self._members.get(key)
        if base is None:
            base = self._members[key] = self._generate_members(kind, gid)
        rows = base + self.extra_members.get(key, [])
        deleted = self.profiles.deleted
        return [r for r in rows if r[0] not in deleted] if deleted and not include_deleted else rows

    def _generate_members(self, kind: str, gid: str) -> list[tuple[int, int]]:
        rec = self.small[kind][gid]
        pct = rec.get("member_pct", 10)
        group_created = to_ts(datetime.fromisoformat(rec["attributes"]["created"]))
        key = ns_key(self.seed, "member", kind, gid)
        created = self.profiles.created
        ties = self.config.ties
        # the `ties` knob: that share of the members was added by one bulk import, at a seeded
        # time of the last 90 days (not before the group existed)
        bulk_at = max(group_created, self.now_ts - 3600 - h64_int(key, -1) % (90 * 86_400))
        rows = []
        for i in range(min(self.config.profiles, len(created))):
            h = h64_int(key, i)
            if h % 100 < pct:
                start = max(created[i], group_created)
                if ties > 0 and (h >> 40) % 1_000_000 < ties * 1_000_000 and start <= bulk_at:
                    rows.append((i, bulk_at))
                    continue
                # a group created by a mutation is newer than the account's "now": its members
                # joined at its creation
                rows.append((i, start + (h >> 8) % max(1, self.now_ts - start + 1)))
        return rows

    # ----------------------------------------------------------- aggregates
    def agg_rows(self, metric_id: str, start: datetime | None,
                 end: datetime | None) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """(profile index, epoch seconds, event_properties) of one metric's events (the events'
        own properties: the extra ones of the realistic weight hold no aggregate dimension)."""
        with self.lock:
            try:
                m = self.metric_ids.index(metric_id)
            except ValueError:
                return
            lo, hi = self.event_range(start, end)
            ev = self.events
            rows = []
            for i in range(lo, hi):
                if ev.metric_index(i) == m and self.event_visible(i):
                    rows.append((ev.profile_index(i), ev.ts(i),
                                 ev.parts(i)[2]))
        yield from rows


def _ceil_ts(value: datetime) -> int:
    """Smallest integer epoch second >= value."""
    ts = value.timestamp()
    return int(ts) if ts == int(ts) else int(ts) + 1 if ts > 0 else int(ts)


def _sources(cat: Catalog) -> Sources:
    """Dimension sources for events, from the initial catalog."""
    email_c, sms_c = [], []
    for msg in cat.campaign_messages:
        camp = next(c for c in cat.campaigns if c["id"] == msg["rel"]["campaign"])
        name = camp["attributes"]["name"]
        if msg["attributes"]["channel"] == "email":
            email_c.append((msg["id"], name, msg["attributes"]["content"]["subject"]))
        else:
            sms_c.append((msg["id"], name))
    action_flow = {a["id"]: a["rel"]["flow"] for a in cat.flow_actions}
    email_f, sms_f = [], []
    for msg in cat.flow_messages:
        flow_id = action_flow[msg["rel"]["flow-action"]]
        if msg["attributes"]["channel"] == "email":
            email_f.append((flow_id, msg["id"], msg["attributes"]["content"]["subject"]))
        else:
            sms_f.append((flow_id, msg["id"]))
    return Sources(tuple(email_c), tuple(sms_c), tuple(email_f), tuple(sms_f),
                   tuple((r["id"], r["attributes"]["name"]) for r in cat.lists))


def _matches(res: Record, filters: dict[str, Any]) -> bool:
    """Equality filters of `Account.records`."""
    for key, want in filters.items():
        if key == "id":
            got = res["id"]
        elif key in res.get("attributes", {}):
            got = res["attributes"][key]
        elif key.endswith("_id"):
            rel = res.get("relationships", {}).get(key[:-3].replace("_", "-"), {})
            data = rel.get("data")
            got = data["id"] if isinstance(data, dict) else [d["id"] for d in data or []]
            if isinstance(got, list):
                if want not in got:
                    return False
                continue
        else:
            raise ValueError(f"cannot filter {res['type']} by {key!r}")
        if got != want:
            return False
    return True
