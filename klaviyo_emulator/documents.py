"""JSON:API rendering: resource objects, relationships, sparse fieldsets, errors."""

from __future__ import annotations

import uuid
from typing import Any

from klaviyo_emulator.endpoints import PLURAL

Record = dict[str, Any]

# type -> relationship name -> (related type, to_many, links_only)
RELATIONSHIPS: dict[str, dict[str, tuple[str, bool, bool]]] = {
    "campaign": {"campaign-messages": ("campaign-message", True, False),
                 "tags": ("tag", True, False)},
    "campaign-message": {"campaign": ("campaign", False, False),
                         "template": ("template", False, False)},
    "tag": {"tag-group": ("tag-group", False, False)},
    "list": {"tags": ("tag", True, False)},
    "segment": {"tags": ("tag", True, False)},
    "flow": {"flow-actions": ("flow-action", True, False), "tags": ("tag", True, False)},
    "flow-action": {"flow": ("flow", False, False),
                    "flow-messages": ("flow-message", True, False)},
    "flow-message": {"flow-action": ("flow-action", False, False),
                     "template": ("template", False, False)},
    "profile": {"lists": ("list", True, True), "segments": ("segment", True, True)},
    "event": {"profile": ("profile", False, False), "metric": ("metric", False, False)},
}
"""How each type's relationships are shaped (REFERENCE.md "relationships shape")."""


def self_link(base: str, kind: str, rid: str) -> str:
    """`links.self` of a resource, e.g. "http://127.0.0.1:8765/api/events/4cSRrnNQJ9S/"."""
    return f"{base}/api/{PLURAL[kind]}/{rid}/"


def relationship(base: str, kind: str, rid: str, name: str, target: Any) -> dict[str, Any]:
    """One relationship object; `target` is an id, a list of ids, or None (links only)."""
    own = f"{base}/api/{PLURAL[kind]}/{rid}"
    rel_type, to_many, links_only = RELATIONSHIPS[kind][name]
    out: dict[str, Any] = {}
    if not links_only:
        if to_many:
            out["data"] = [{"type": rel_type, "id": x} for x in target]
        else:
            out["data"] = {"type": rel_type, "id": target}
    out["links"] = {"self": f"{own}/relationships/{name}/", "related": f"{own}/{name}/"}
    return out


def resource(base: str, rec: Record, attributes: dict[str, Any] | None = None) -> Record:
    """JSON:API resource object of an internal record (`type`, `id`, `attributes`, `rel`).

    Args:
        base: Base URL, e.g. "http://127.0.0.1:8765".
        rec: Internal record.
        attributes: Attributes to serve instead of rec["attributes"] (sparse fieldsets).
    """
    kind, rid = rec["type"], rec["id"]
    out: Record = {"type": kind, "id": rid,
                   "attributes": rec["attributes"] if attributes is None else attributes}
    shapes = RELATIONSHIPS.get(kind)
    if shapes:
        rels = {}
        rec_rel = rec.get("rel", {})
        for name, (_, _, links_only) in shapes.items():
            target = rec_rel.get(name)
            if target is None and not links_only:
                continue
            rels[name] = relationship(base, kind, rid, name, target)
        out["relationships"] = rels
    out["links"] = {"self": self_link(base, kind, rid)}
    return out


def sparse(attrs: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """Attributes restricted to `fields` (dotted names select nested keys).

    Args:
        attrs: Full attributes.
        fields: Requested `fields[type]` values, or None for everything.
    """
    if fields is None:
        return attrs
    out: dict[str, Any] = {}
    for name in fields:
        parts = name.split(".")
        src: Any = attrs
        for part in parts:
            if not isinstance(src, dict) or part not in src:
                src = _MISSING
                break
            src = src[part]
        if src is _MISSING:
            continue
        dst = out
        for part in parts[:-1]:
            nxt = dst.get(part)
            if not isinstance(nxt, dict):
                nxt = dst[part] = {}
            dst = nxt
        dst[parts[-1]] = src
    return out


_MISSING = object()


def error(status: int, code: str, title: str, detail: str,
          source: dict[str, str] | None = None) -> dict[str, Any]:
    """One JSON:API error object (id is a fresh UUID)."""
    err: dict[str, Any] = {"id": str(uuid.uuid4()), "status": status, "code": code,
                           "title": title, "detail": detail}
    err["source"] = source if source is not None else {"pointer": "/data/"}
    return err


def errors_doc(*errs: dict[str, Any]) -> dict[str, Any]:
    """The error document `{"errors": [...]}`."""
    return {"errors": list(errs)}
