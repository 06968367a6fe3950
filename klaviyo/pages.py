"""JSON:API pages of the Arrow reports (events, profiles), decoded by msgspec into structs.

Why not orjson into dicts, as for the other reports: a 1000-event page of an e-commerce account
is ~1.5 MB of JSON, most of it `event_properties` (30-60 properties, item arrays), which the
source stores whole as a JSON column. Parsing it into Python objects only to serialize it again
cost most of the CPU of a read, and the millions of dicts and lists that the pages in flight
held made each of Python's full garbage collections walk them all (it doubled the parse time
at 16 workers). Here each resource is a struct that the collector does not track, its
attributes stay raw JSON slices of the page (`msgspec.Raw`) until `records.to_arrow` builds
their columns (JSON columns are then the page's own text, never parsed), and relationships keep
only their `{type, id}` references (their `links` are skipped unparsed).
"""

from typing import Any

import msgspec


class Ref(msgspec.Struct, gc=False):
    """A resource identifier object: `{"type": ..., "id": ...}`."""

    id: str
    type: str = ""


class Relationship(msgspec.Struct, gc=False):
    """A relationship: its `data`, one reference, a list of them or null (`links` skipped)."""

    data: Ref | list[Ref] | None = None


class Resource(msgspec.Struct, gc=False):
    """One resource of a page's `data[]`: each attribute is kept as its raw JSON text."""

    id: str
    type: str = ""
    attributes: dict[str, msgspec.Raw] = {}
    relationships: dict[str, Relationship] = {}


class _Page(msgspec.Struct, gc=False):
    data: list[Resource] = []
    links: dict[str, Any] = {}
    included: list[Any] = []


_PAGE = msgspec.json.Decoder(_Page)
# Decodes raw attribute values (any JSON); one decoder, reused.
VALUES = msgspec.json.Decoder()
DecodeError = msgspec.DecodeError


def decode_page(body: bytes) -> dict[str, Any]:
    """A page's body as a document `{"data": [Resource, ...], "links": {...}, "included": [...]}`
    (`included[]` as plain dicts: a few per page). Raises `DecodeError` for a body that is not
    a JSON:API collection page."""
    page = _PAGE.decode(body)
    return {"data": page.data, "links": page.links, "included": page.included}


def attribute(resource: Resource, name: str) -> Any:
    """One attribute's value, decoded (None when absent)."""
    raw = resource.attributes.get(name)
    return None if raw is None else VALUES.decode(raw)
