"""The emulator's event weight (realistic: the extra properties of a real e-commerce account on
top of each event's own) and its gzip answers."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
from dlt.common.normalizers.naming.snake_case import NamingConvention

from klaviyo_emulator import Emulator, render_2026, weight
from klaviyo_emulator.filter_rules import AGGREGATE_DIMENSIONS
from klaviyo_emulator.store import Account
from tests.emulator.conftest import Http, small_config

NEW = "2026-07-15"
N = 3000


@pytest.fixture(scope="module")
def heavy() -> Iterator[Emulator]:
    with Emulator(small_config(events=N, event_weight="realistic")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def light() -> Account:
    acc = Account(small_config(events=N, event_weight="light"))
    acc.base_url = "http://127.0.0.1:1"
    return acc


def props_of(acc: Account, i: int) -> dict[str, Any]:
    """event_properties of event i as 2026-07-15 serves it (the fast path)."""
    return orjson.loads(render_2026.event_json(acc, i))["attributes"]["event_properties"]


def test_serialized_and_dict_forms_are_equal(heavy: Emulator) -> None:
    acc = heavy.account
    indexes = [*range(300), *sorted(acc.unresolved)]
    for i in indexes:
        assert orjson.loads(acc.event_json(i)) == acc.event_resource(i)
        assert orjson.loads(render_2026.event_json(acc, i)) == render_2026.event_resource(acc, i)
        served = render_2026.event_resource(acc, i)["attributes"]
        assert acc.events.attributes(i) == {k: served[k] for k in ("timestamp", "event_properties",
                                                                     "datetime", "uuid")}
    records = {r["id"]: r for r, _ in zip(acc.records("event", revision=NEW), range(300), strict=False)}
    assert all(orjson.loads(render_2026.event_json(acc, i)) == records[acc.events.event_id(i)]
               for i in range(300) if acc.events.event_id(i) in records)


def test_http_pages_and_sparse_fieldsets_carry_the_same_properties(heavy: Emulator) -> None:
    for revision, path in (("2023-10-15", "/api/events/"), (NEW, "/api/events")):
        http = Http(heavy, revision)
        full = http.ok(path, {"sort": "datetime"})["data"]
        sparse = http.ok(path, {"sort": "datetime", "fields[event]": "event_properties,datetime"})["data"]
        only_dt = http.ok(path, {"sort": "datetime", "fields[event]": "datetime"})["data"]
        assert [e["attributes"]["event_properties"] for e in full] == [
            e["attributes"]["event_properties"] for e in sparse]
        assert all(set(e["attributes"]) == {"datetime"} for e in only_dt)
        assert statistics.median(len(e["attributes"]["event_properties"]) for e in full) >= 30


def test_extra_properties_never_change_the_own_ones(heavy: Emulator, light: Account) -> None:
    """Every light property is served unchanged; extra keys are new, no aggregate dimension, and
    no two keys of one object share a snake_case column name (dlt's naming)."""
    acc = heavy.account
    naming = NamingConvention()

    def check_names(obj: Any) -> None:
        if isinstance(obj, dict):
            names = [naming.normalize_identifier(k) for k in obj]
            assert len(names) == len(set(names)), sorted(obj)
            for value in obj.values():
                check_names(value)
        elif isinstance(obj, list):
            for value in obj:
                check_names(value)

    for i in range(N):
        own, served = props_of(light, i), props_of(acc, i)
        assert {k: served[k] for k in own} == own
        extra = set(served) - set(own)
        assert len(extra) >= 15 and not extra & set(AGGREGATE_DIMENSIONS)
        check_names(served)


def test_aggregates_are_the_same_with_either_weight(heavy: Emulator, light: Account) -> None:
    for mid in heavy.account.metric_ids:
        assert list(heavy.account.agg_rows(mid, None, None)) == list(light.agg_rows(mid, None, None))


def test_realistic_weight_sizes_and_order_items(heavy: Emulator) -> None:
    acc = heavy.account
    sizes = [len(render_2026.event_json(acc, i)) for i in range(N)]
    counts = [len(props_of(acc, i)) for i in range(N)]
    assert 1300 <= statistics.median(sizes) <= 1900
    assert sum(30 <= c <= 60 for c in counts) > N / 2
    orders = [i for i in range(N) if acc.events.families[acc.events.metric_index(i)] in weight.ORDER_FAMILIES]
    assert orders
    detail = [props_of(acc, i)["Items Detail"] for i in orders]
    assert all(3 <= len(items) <= 10 and all(len(item) >= 12 for item in items) for items in detail)
    assert min(len(orjson.dumps(items)) for items in detail) > 1000
    assert statistics.median(len(orjson.dumps(items)) for items in detail) > 2500
    assert statistics.median(sizes[i] for i in orders) > 4000


def test_realistic_values_are_hostile(heavy: Emulator) -> None:
    acc = heavy.account
    kinds: dict[str, set[type]] = {}
    text = b""
    for i in range(N):
        data = render_2026.event_json(acc, i)
        text += data
        for key, value in props_of(acc, i).items():
            kinds.setdefault(key, set()).add(type(value))
    assert {int, str} <= kinds["Postal Code"] and {int, str} <= kinds["$source"]
    assert type(None) in kinds["Browser"] and dict in kinds["Consent"] and bool in kinds["Is Mobile"]
    decoded = text.decode()
    for sample in ("é", "ü", "東京", "🎁", "セール"):
        assert sample in decoded, sample


def test_weight_is_a_function_of_the_seed(heavy: Emulator) -> None:
    again = Account(small_config(events=N, event_weight="realistic"))
    other = Account(small_config(events=N, event_weight="realistic", seed=43))
    again.base_url = other.base_url = heavy.account.base_url
    assert [again.event_json(i) for i in range(200)] == [heavy.account.event_json(i) for i in range(200)]
    assert weight.pool(42).fragments("email") != weight.pool(43).fragments("email")
    assert len(set(weight.pool(42).fragments("order"))) == weight.POOL_SIZE


def test_bad_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="event_weight must be 'realistic' or 'light'"):
        Emulator(small_config(event_weight="heavy"))


@pytest.mark.parametrize("enabled", [True, False])
def test_gzip_only_when_asked_and_enabled(enabled: bool) -> None:
    with Emulator(small_config(events=2000, gzip=enabled, event_weight="realistic")) as emu:
        headers = {"Authorization": f"Klaviyo-API-Key {emu.api_key}", "revision": NEW}
        url = emu.base_url + "/api/events"
        for _ in range(2):  # the second answers come from the page cache
            asked = requests.get(url, headers=headers, timeout=30)  # requests asks for gzip
            plain = requests.get(url, headers={**headers, "Accept-Encoding": "identity"}, timeout=30)
            refused = requests.get(url, headers={**headers, "Accept-Encoding": "gzip;q=0"}, timeout=30)
            assert asked.status_code == plain.status_code == refused.status_code == 200
            assert asked.json() == plain.json() == refused.json()
            assert asked.headers.get("Content-Encoding") == ("gzip" if enabled else None)
            assert "Content-Encoding" not in plain.headers and "Content-Encoding" not in refused.headers
        error = requests.get(url, headers={**headers, "revision": "1999-01-01"}, timeout=30)
        assert error.status_code == 404 and error.json()["errors"]
        assert error.headers.get("Content-Encoding") == ("gzip" if enabled else None)
        log = [e for e in emu.request_log if e.path == "/api/events" and e.status == 200]
    assert all(e.plain_bytes == len(plain.content) for e in log)
    for e in log:
        if enabled and e.headers.get("accept-encoding", "").split(",")[0] == "gzip":
            assert e.bytes < e.plain_bytes / 3
        else:
            assert e.bytes == e.plain_bytes
