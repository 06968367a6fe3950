"""Mutations: create, update and delete records so incremental loads have work to do.

Every mutation happens at one "mutation time" strictly later than every `updated` /
`updated_at` value in the account; new events are dated after the latest existing event.
With `tie=True`, created records instead take the latest existing cursor value of their kind
(events' `datetime`, profiles' `updated`, campaigns' `updated_at` per channel, the `updated`
of the other kinds, the first list's `joined_group_at`; new profiles are also suppressed on
the latest suppression timestamp): new records that tie with what an incremental load
stored as its cursor.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from klaviyo_emulator import catalog
from klaviyo_emulator.events import ExtraEvent
from klaviyo_emulator.store import Account
from klaviyo_emulator.util import b62, fmt_ts, h64, to_ts, ulid

MUTABLE = ("profile", "campaign", "template", "flow", "list", "segment", "metric")
_STAMP = {"campaign": "updated_at"}


def _max_updated(acc: Account) -> int:
    """Latest updated/updated_at over every record, in epoch seconds."""
    from datetime import datetime
    best = max(acc.profiles.updated, default=0)
    for kind, recs in acc.small.items():
        field = _STAMP.get(kind, "updated")
        for rec in recs.values():
            value = rec["attributes"].get(field)
            if isinstance(value, str):
                best = max(best, to_ts(datetime.fromisoformat(value)))
    return best


def mutate(acc: Account, seed: int = 1, create: int | Mapping[str, int] = 10, update: int = 10,
           delete: int = 3, tie: bool = False, late: int = 0,
           late_seconds: int = 3600, revise_attribution: int = 0,
           revise_days: int = 5) -> dict[str, Any]:
    """Applies one batch of mutations; returns the affected ids per kind and action.

    Args:
        acc: The account.
        seed: Seed of this batch (same seed and state -> same changes).
        create: Records to create per kind (events included), or kind -> count (kinds left
            out: none), e.g. {"event": 600}.
        update: Records to update per kind (events excluded).
        delete: Records to delete per kind (events excluded).
        tie: Created records take the latest existing cursor value of their kind instead of
            the mutation time (see the module's docstring).
        late: Events written with a past datetime (as Klaviyo's Create Event accepts, and as
            its eventually consistent listing shows events that appear after their datetime):
            listed from now on, among the events of their datetime (`out["event"]["late"]`).
        late_seconds: How long before the mutation time the late events are dated (one second
            apart from there on).
        revise_attribution: Orders (`Placed Order` events) of the last `revise_days` days
            whose attribution Klaviyo revises, as its attribution keeps moving for days:
            each attribution moves to another message of its kind (campaign or flow), and an
            order without one gains a campaign attribution (`out["event"]["revised"]`). The
            2026-07-15 events (`include=attributions`) and the reporting API show it.
        revise_days: The window of `revise_attribution`, in days before the mutation time.
    """
    counts = create if isinstance(create, Mapping) else dict.fromkeys((*MUTABLE, "event"), create)
    unknown = set(counts) - {*MUTABLE, "event"}
    if unknown:
        raise ValueError(f"cannot create {sorted(unknown)}; kinds: {[*MUTABLE, 'event']}")
    with acc.lock:
        at = max(acc.now_ts, acc.last_mutation_ts, _max_updated(acc)) + 1
        if acc.config.now is None:
            at = max(at, int(time.time()))
        acc.last_mutation_ts = at
        rng = random.Random(h64(acc.seed, "mutate", seed, acc.version))
        latest = _latest_values(acc) if tie else {}
        out: dict[str, Any] = {"mutated_at": fmt_ts(at)}
        for kind in MUTABLE:
            out[kind] = {"created": [], "updated": [], "deleted": []}
            existing = _live_ids(acc, kind)
            gone = rng.sample(existing, min(delete, len(existing)))
            rest = [x for x in existing if x not in set(gone)]
            out[kind]["updated"] = _update(acc, kind, rng.sample(rest, min(update, len(rest))),
                                           at, rng)
            out[kind]["deleted"] = _delete(acc, kind, gone, at)
            out[kind]["created"] = [_create(acc, kind, at, rng, latest)
                                    for _ in range(counts.get(kind, 0))]
        out["event"] = {"created": _create_events(acc, counts.get("event", 0), at, rng,
                                                  latest.get("event")),
                        "late": _late_events(acc, late, at - late_seconds, rng),
                        "revised": _revise_attributions(acc, revise_attribution,
                                                        at - revise_days * 86_400, at, rng)}
        acc.version += 1
        return out


def _latest_values(acc: Account) -> dict[str, Any]:
    """The latest cursor value (epoch seconds) of each kind, before a mutation: what a
    complete incremental load stored as its cursor. Keys: kinds, `campaign-email` and
    `campaign-sms`, `joined` (the first list's members) and `suppressed`."""
    from datetime import datetime

    def stamp(value: Any) -> int | None:
        return to_ts(datetime.fromisoformat(value)) if isinstance(value, str) else None

    latest: dict[str, Any] = {"event": acc.events.max_ts()}
    alive = acc.profiles.alive()
    latest["profile"] = max((acc.profiles.updated[i] for i in alive), default=None)
    for kind in ("template", "flow", "list", "segment"):
        latest[kind] = max((stamp(r["attributes"]["updated"]) or 0 for r in acc.small[kind].values()), default=None)
    for channel in ("email", "sms"):
        latest[f"campaign-{channel}"] = max((stamp(r["attributes"]["updated_at"]) or 0 for r in acc.small["campaign"].values()
                                             if r.get("channel") == channel), default=None)
    lists = list(acc.small["list"])
    latest["joined"] = max((ts for _, ts in acc.members("list", lists[0])), default=None) if lists else None
    suppressions = (stamp(s.get("timestamp")) for i in alive for s in
                    acc.profiles.attributes(i, ("subscriptions",))["subscriptions"]["email"]["marketing"]["suppression"])
    latest["suppressed"] = max((s for s in suppressions if s is not None), default=None)
    return latest


def _live_ids(acc: Account, kind: str) -> list[str]:
    if kind == "profile":
        return [acc.profiles.ids[i] for i in acc.profiles.alive()]
    return list(acc.small[kind])


def _shim(acc: Account, at: int) -> SimpleNamespace:
    """What catalog.make_* need from a Catalog, built from the current state."""
    tags = list(acc.small["tag"].values())
    templates = list(acc.small["template"].values())

    def pick_tags(r: random.Random, most: int = 2) -> list[str]:
        k = r.randint(0, min(most, len(tags))) if tags else 0
        return [t["id"] for t in r.sample(tags, k)]

    return SimpleNamespace(seed=acc.seed, now=at, templates=templates,
                           pick_tags=pick_tags, tags=tags)


def _create(acc: Account, kind: str, at: int, rng: random.Random,
            latest: Mapping[str, Any] | None = None) -> str:
    """Creates one record at `at`, or on the latest values of `latest` (tied mutations)."""
    latest = latest or {}
    salt = rng.getrandbits(62)
    if kind == "profile":
        when = latest.get("profile") or at
        idx = acc.profiles.add(ulid(when * 1000 + rng.randint(0, 999), salt), when, when)
        if latest.get("suppressed"):  # suppressed on the latest suppression timestamp
            acc.profiles.suppressed_at[idx] = latest["suppressed"]
        lists = list(acc.small["list"])
        if lists:
            acc.extra_members.setdefault(("list", lists[0]), []).append((idx, latest.get("joined") or at))
        return acc.profiles.ids[idx]
    if kind == "campaign":
        ms = rng.randint(0, 999)
        channel = rng.choice(("email", "sms"))
        at = latest.get(f"campaign-{channel}") or at
        shim = _shim(acc, at)
        cid = ulid(at * 1000 + ms, salt)
        audiences = list(acc.small["list"]) + list(acc.small["segment"])
        camp, msg = catalog.make_campaign(rng, shim, cid, salt % 10_000, channel, at, at, audiences)
        camp["attributes"]["scheduled_at"] = camp["attributes"]["send_time"] = at
        camp["attributes"]["send_strategy"]["options_static"]["datetime"] = fmt_ts(at)
        msg["attributes"]["send_times"][0]["datetime"] = fmt_ts(at)
        catalog.fmt_times(camp, ("created_at", "updated_at", "scheduled_at", "send_time"))
        catalog.fmt_times(msg, ("created_at", "updated_at"))
        acc.small["campaign"][cid] = camp
        acc.small["campaign-message"][msg["id"]] = msg
        return cid
    at = latest.get(kind) or at
    shim = _shim(acc, at)
    if kind == "template":
        rec = catalog.make_template(rng, b62(salt, 6), salt % 1000, at, at)
    elif kind == "flow":
        rec = catalog.make_flow(rng, b62(salt, 6), salt % 10, at, at, shim.pick_tags(rng))
        for n in range(rng.randint(1, 3)):
            action, messages = catalog.make_flow_action(rng, shim, rec, salt + n, at)
            action["attributes"]["updated"] = action["attributes"]["created"] = at
            for obj in [action, *messages]:
                obj["attributes"]["created"] = obj["attributes"]["updated"] = at
                catalog.fmt_times(obj, ("created", "updated"))
                acc.small[obj["type"]][obj["id"]] = obj
    elif kind in ("list", "segment"):
        rec = {"type": kind, "id": b62(salt, 6),
               "attributes": {"name": f"New {kind} {salt % 1000}", "created": at,
                              "updated": at},
               "rel": {"tags": shim.pick_tags(rng)}, "member_pct": 5}
    else:  # metric
        rec = catalog.make_metric(b62(salt, 6), f"Custom Metric {salt % 1000} ✨",
                                  catalog.INTEGRATIONS["api"], at, at)
        acc.metric_ids.append(rec["id"])
        acc.events.families.append("custom")
    catalog.fmt_times(rec, ("created", "updated"))
    acc.small[kind][rec["id"]] = rec
    return rec["id"]


def _update(acc: Account, kind: str, ids: list[str], at: int,
            rng: random.Random) -> list[str]:
    stamp = fmt_ts(at)
    for rid in ids:
        if kind == "profile":
            i = acc.profiles.index[rid]
            over = acc.profiles.overrides.setdefault(i, {})
            over["first_name"] = rng.choice(("Renée", "Mateus", "Zoë", "Kenji", "Åsa"))
            props = dict(acc.profiles.attributes(i)["properties"])
            props["Last Mutation"] = stamp
            over["properties"] = props
            over["updated"] = stamp
            acc.profiles.updated[i] = at
            continue
        rec = acc.small[kind][rid]
        attrs = rec["attributes"]
        if kind == "campaign":
            attrs["name"] = attrs["name"].split(" (edited")[0] + f" (edited {at})"
            attrs["updated_at"] = stamp
        else:
            if kind == "template":
                attrs["html"] = attrs["html"].replace("</body>", f"<!-- edit {at} --></body>")
            elif kind == "flow":
                attrs["status"] = rng.choice(("live", "manual", "draft"))
            else:
                attrs["name"] = attrs["name"].split(" (renamed")[0] + f" (renamed {at})"
            attrs["updated"] = stamp
    return ids


def _delete(acc: Account, kind: str, ids: list[str], at: int) -> list[str]:
    for rid in ids:
        if kind == "profile":
            acc.profiles.deleted.add(acc.profiles.index[rid])
            acc.profile_deleted_at[acc.profiles.index[rid]] = at
            continue
        rec = acc.small[kind].pop(rid)
        if kind == "campaign":
            for mid in rec["rel"]["campaign-messages"]:
                acc.small["campaign-message"].pop(mid, None)
        elif kind == "flow":
            for aid in rec["rel"]["flow-actions"]:
                action = acc.small["flow-action"].pop(aid, None)
                for mid in (action or {"rel": {"flow-messages": []}})["rel"]["flow-messages"]:
                    acc.small["flow-message"].pop(mid, None)
        elif kind == "metric":
            acc.hidden_metrics.add(acc.metric_ids.index(rid))
    return ids


def _create_events(acc: Account, count: int, at: int, rng: random.Random,
                   tie: int | None = None) -> list[str]:
    """Creates `count` events after the latest one (or all on `tie`, the latest datetime)."""
    ev = acc.events
    last = ev.max_ts()
    start = (last if last is not None else acc.now_ts - 60) + 1
    live_metrics, alive = _event_sources(acc)
    if not live_metrics or not alive:
        return []
    ids = []
    for k in range(count):
        ts = start + (k * max(0, at - start)) // count if at > start else start + k
        if tie is not None:
            ts = tie
        extra = ExtraEvent(ts, rng.choice(live_metrics), rng.choice(alive), rng.getrandbits(62))
        ev.extra.append(extra)
        ids.append(ev.event_id(len(ev) - 1))
    return ids


def _event_sources(acc: Account) -> tuple[list[int], Any]:
    """The metrics (indexes) not deleted and the live profiles a new event may belong to."""
    live_metrics = [m for m, mid in enumerate(acc.metric_ids) if mid in acc.small["metric"]]
    return live_metrics, acc.profiles.alive()


def _late_events(acc: Account, count: int, start: int, rng: random.Random) -> list[str]:
    """`count` events dated `start`, `start` + 1 s, ... slotted in among the existing ones."""
    ev = acc.events
    live_metrics, alive = _event_sources(acc)
    if not live_metrics or not alive:
        return []
    ids = []
    for k in range(count):
        late = ExtraEvent(start + k, rng.choice(live_metrics), rng.choice(alive), rng.getrandbits(62))
        ids.append(ev.event_id(ev.add_late(late)))
    return ids


def _revise_attributions(acc: Account, count: int, start: int, end: int,
                         rng: random.Random) -> list[str]:
    """Moves the attributions of `count` orders dated within [start, end] (see `mutate`);
    returns their event ids."""
    from klaviyo_emulator import render_2026

    if count <= 0:
        return []
    ev = acc.events
    orders = []
    for i in range(ev.first_at_or_after(start), len(ev)):
        if ev.ts(i) > end:
            break
        m = ev.metric_index(i)
        if acc.events.families[m] == "order" and acc.event_visible(i, "2026-07-15"):
            eid, *_, m_resolved, _, found = render_2026.event_parts(acc, i)
            if m_resolved >= 0:
                orders.append((eid, found))
    campaign_msgs = [(mid, cid) for mid, cid in acc.attributions.campaign_messages
                     if acc.get("campaign-message", mid) is not None]
    flow_msgs = sorted((mid, acc.small["flow-action"][msg["rel"]["flow-action"]]["rel"]["flow"])
                       for mid, msg in acc.small["flow-message"].items()
                       if msg["rel"]["flow-action"] in acc.small["flow-action"])
    revised = []
    for eid, found in rng.sample(orders, min(count, len(orders))):
        new = []
        for a in found or [{"id": "", "campaign-message": ""}]:
            pool, names = ((flow_msgs, ("flow-message", "flow")) if "flow-message" in a
                           else (campaign_msgs, ("campaign-message", "campaign")))
            choices = [x for x in pool if x[0] != a.get(names[0])]
            if not choices:
                new.append(dict(a))
                continue
            mid, parent = rng.choice(choices)
            aid = f"{h64(acc.seed, 'revised', eid, a['id'], acc.version):016x}{rng.getrandbits(64):016x}"
            new.append({"id": aid, names[1]: parent, names[0]: mid})
        acc.attribution_overrides[eid] = new
        revised.append(eid)
    return revised
