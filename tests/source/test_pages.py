"""Pages of the Arrow reports decoded by msgspec (`klaviyo/pages.py`) into Arrow tables
(`records.to_arrow`): hostile values, JSON columns kept as the page's own text."""

import gc
from datetime import UTC, datetime

import orjson
import pytest

from klaviyo.pages import DecodeError, decode_page
from klaviyo.records import INCLUDED, cursor_value, resource_id, to_arrow
from klaviyo.settings import table_report
from klaviyo.windows import Window

EVENTS = table_report("events", "2026-07-15")
PROFILES = table_report("profiles", "2026-07-15")


def _event(i: int, properties: object, **attributes: object) -> dict[str, object]:
    return {
        "type": "event",
        "id": f"E{i}",
        "attributes": {"timestamp": 1_700_000_000 + i, "event_properties": properties, "datetime": f"2026-01-0{1 + i}T00:00:00+00:00", **attributes},
        "relationships": {
            "metric": {"data": {"type": "metric", "id": f"M{i}"}, "links": {"self": "x", "related": "y"}},
            "profile": {"data": None if i == 2 else {"type": "profile", "id": f"P{i}"}},
            "attributions": {"data": [{"type": "attribution", "id": f"A{i}"}] if i == 1 else []},
        },
        "links": {"self": f"https://a.klaviyo.com/api/events/E{i}"},
    }


PROPERTIES = [
    {"$value": 12.5, "Items": [{"name": "Tasse ☕", "price": 3}], "nested": {"deep": [1, {"x": "ÿ"}]}, "n": None},
    {"$value": "12,50 €", "Kanal": "日本 ✨", "escaped": "a\"b\\c\n"},
    None,
    {},
]


def _page(body: dict[str, object]) -> dict[str, object]:
    return decode_page(orjson.dumps(body))


def test_event_properties_stay_the_pages_own_json_and_every_other_column_is_typed() -> None:
    document = _page({
        "data": [_event(i, p) for i, p in enumerate(PROPERTIES)],
        "links": {"next": "https://a.klaviyo.com/api/events/?page[cursor]=c"},
        "included": [{"type": "attribution", "id": "A1", "relationships": {"campaign": {"data": {"type": "campaign", "id": "C9"}}}}],
    })
    assert document["links"]["next"].endswith("c")
    table = to_arrow(document, EVENTS, Window(None, None))
    assert table is not None
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["E0", "E1", "E2", "E3"]
    # the text is the page's own: it parses back to what was sent; JSON null is a null
    assert [None if r["event_properties"] is None else orjson.loads(r["event_properties"]) for r in rows] == PROPERTIES
    assert [r["datetime"] for r in rows] == [datetime(2026, 1, 1 + i, tzinfo=UTC) for i in range(4)]
    assert [r["timestamp"] for r in rows] == [1_700_000_000 + i for i in range(4)]
    assert [(r["metric_id"], r["profile_id"]) for r in rows] == [("M0", "P0"), ("M1", "P1"), ("M2", None), ("M3", "P3")]
    carried = [r[INCLUDED] and orjson.loads(r[INCLUDED]) for r in rows]
    assert carried[0] is None and carried[2] is None
    assert carried[1] == {"attributions": [{"type": "attribution", "id": "A1", "relationships": {"campaign": {"data": {"type": "campaign", "id": "C9"}}}}]}


def test_a_page_is_trimmed_to_its_window_and_read_helpers_see_ids_and_cursors() -> None:
    document = _page({"data": [_event(i, {}) for i in range(4)], "links": {}})
    data = document["data"]
    assert [resource_id(r) for r in data] == ["E0", "E1", "E2", "E3"]
    assert cursor_value(data[-1], "datetime") == datetime(2026, 1, 4, tzinfo=UTC)
    window = Window(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 4, tzinfo=UTC))
    table = to_arrow(document, EVENTS, window)
    assert table is not None and table.column("id").to_pylist() == ["E1", "E2"]


def test_new_attributes_mixed_types_and_objects_become_columns_as_dlt_would_name_them() -> None:
    # an attribute Klaviyo adds later is kept; an object outside json_columns is flattened; a
    # value of two types on one page is kept as text; lists are JSON text
    events = [
        _event(0, {}, new_flag=True, source={"name": "shopify", "id": 7}, mixed=1.5, tags=["a", "b"]),
        _event(1, {}, new_flag=None, source=None, mixed="n/a", tags=[]),
    ]
    table = to_arrow(_page({"data": events}), EVENTS, Window(None, None))
    assert table is not None
    rows = table.to_pylist()
    assert [r["new_flag"] for r in rows] == [True, None]
    assert [(r["source__name"], r["source__id"]) for r in rows] == [("shopify", 7), (None, None)]
    assert [r["mixed"] for r in rows] == ["1.5", "n/a"]
    assert [r["tags"] for r in rows] == ['["a","b"]', "[]"]


def test_profiles_nested_attributes_are_flattened_and_properties_kept_whole() -> None:
    profile = {
        "type": "profile", "id": "P1",
        "attributes": {
            "email": "zoë@example.com", "updated": "2026-01-01T10:00:00+00:00",
            "location": {"city": "Zürich", "latitude": "47.37", "longitude": 8.54},
            "properties": {"Lieblingsfarbe": "grün", "n": [1, 2]},
        },
    }  # fmt: skip
    table = to_arrow(_page({"data": [profile]}), PROFILES, Window(None, None))
    assert table is not None
    (row,) = table.to_pylist()
    assert (row["email"], row["location__city"], row["location__latitude"], row["location__longitude"]) == ("zoë@example.com", "Zürich", 47.37, 8.54)
    assert orjson.loads(row["properties"]) == {"Lieblingsfarbe": "grün", "n": [1, 2]}
    assert row["_dlt_id"]


def test_a_body_that_is_not_a_collection_page_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_page(b'{"data": [{"id": 5}]}')
    with pytest.raises(DecodeError):
        decode_page(b'{"data": [')


def test_decoded_pages_are_not_tracked_by_the_garbage_collector() -> None:
    # the reason for structs: pages in flight must not make every full collection walk them
    document = _page({"data": [_event(i, p) for i, p in enumerate(PROPERTIES)]})
    assert not any(gc.is_tracked(resource) for resource in document["data"])


def test_json_text_that_is_not_utf8_is_kept_with_its_bad_bytes_replaced() -> None:
    # msgspec keeps event_properties raw without checking its UTF-8; Arrow's string column must
    # not receive invalid bytes (the load would fail), and the rest of the value is kept
    body = b'{"data":[{"id":"E1","attributes":{"event_properties":{"k":"caf\xc3\xa9 \xff"},"datetime":"2026-01-01T00:00:00+00:00"}}]}'
    table = to_arrow(decode_page(body), EVENTS, Window(None, None))
    assert table is not None
    assert orjson.loads(table.column("event_properties")[0].as_py()) == {"k": "café \ufffd"}
