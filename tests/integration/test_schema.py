"""The tables' schema: the export kept in the repository equals what a fresh demo run
produces, every column is typed, and free-form properties flatten only on request."""

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import dlt
import duckdb
import msgspec
import orjson
import pytest
import yaml

from klaviyo import klaviyo_source
from klaviyo.settings import DEFAULT_REVISION
from klaviyo_demo import DEMO_DATASET
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO, column, edit_pages, query
from tests.integration.conftest import CliDemo, suppression_counts

EXPORTED = REPO / "schemas" / "export" / "klaviyo.schema.yaml"
REGENERATE = "bash schemas/regenerate.sh"
# Fields that change with every schema version, not with the tables.
VOLATILE = ("version", "version_hash", "previous_hashes")


def _stable(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in VOLATILE}


def _differences(fresh: dict[str, Any], kept: dict[str, Any]) -> list[str]:
    """Readable differences between two schemas, table by table and column by column."""
    out: list[str] = []
    fresh_tables, kept_tables = fresh.get("tables", {}), kept.get("tables", {})
    for name in sorted(set(fresh_tables) | set(kept_tables)):
        if name not in kept_tables or name not in fresh_tables:
            out.append(f"table {name}: {'new' if name in fresh_tables else 'gone'}")
            continue
        a, b = fresh_tables[name], kept_tables[name]
        for col in sorted(set(a.get("columns", {})) | set(b.get("columns", {}))):
            if a.get("columns", {}).get(col) != b.get("columns", {}).get(col):
                out.append(f"{name}.{col}: {b.get('columns', {}).get(col)} -> {a.get('columns', {}).get(col)}")
        for key in sorted((set(a) | set(b)) - {"columns"}):
            if a.get(key) != b.get(key):
                out.append(f"{name} {key}: {b.get(key)} -> {a.get(key)}")
    for key in sorted((set(fresh) | set(kept)) - {"tables", *VOLATILE}):
        if fresh.get(key) != kept.get(key):
            out.append(f"schema {key} differs")
    return out


def test_the_exported_schema_is_what_the_demo_produces(cli_demo: CliDemo) -> None:
    assert EXPORTED.exists(), f"no {EXPORTED.relative_to(REPO)}; create it with: {REGENERATE}"
    fresh = _stable(yaml.safe_load(cli_demo.schema_file.read_text(encoding="utf-8")))
    kept = _stable(yaml.safe_load(EXPORTED.read_text(encoding="utf-8")))
    differences = _differences(fresh, kept)
    assert not differences, "the schema changed; review, then regenerate with: " + REGENERATE + "\n" + "\n".join(differences[:60])
    assert fresh == kept


def test_every_column_of_every_table_has_a_type_and_none_split_into_variants(cli_demo: CliDemo) -> None:
    schema = yaml.safe_load(cli_demo.schema_file.read_text(encoding="utf-8"))
    untyped = [f"{t}.{c}" for t, table in schema["tables"].items() for c, col in table["columns"].items() if not col.get("data_type")]
    assert not untyped
    variants = [f"{t}.{c}" for t, table in schema["tables"].items() for c in table["columns"] if "__v_" in c]
    assert not variants, "a column got values of two types"


EXPECTED_TYPES = {
    ("events", "id"): "VARCHAR",
    ("events", "datetime"): "TIMESTAMP WITH TIME ZONE",
    ("events", "timestamp"): "BIGINT",
    ("events", "event_properties"): "JSON",
    ("events", "metric_id"): "VARCHAR",
    ("events", "profile_id"): "VARCHAR",
    ("events", "_dlt_load_id"): "VARCHAR",
    ("profiles", "properties"): "JSON",
    ("profiles", "updated"): "TIMESTAMP WITH TIME ZONE",
    ("profiles", "last_event_date"): "TIMESTAMP WITH TIME ZONE",
    ("profiles", "location__latitude"): "DOUBLE",
    ("profiles", "location__longitude"): "DOUBLE",
    ("profiles", "subscriptions__email__marketing__can_receive_email_marketing"): "BOOLEAN",
    ("profiles", "subscriptions__email__marketing__consent_timestamp"): "TIMESTAMP WITH TIME ZONE",
    ("campaigns_email", "archived"): "BOOLEAN",
    ("campaigns_email", "send_time"): "TIMESTAMP WITH TIME ZONE",
    ("campaigns_email", "audiences"): "JSON",
    ("campaigns_sms", "updated_at"): "TIMESTAMP WITH TIME ZONE",
    ("flows", "archived"): "BOOLEAN",
    ("metrics", "integration"): "JSON",
    ("metric_aggregates", "date"): "TIMESTAMP WITH TIME ZONE",
    ("metric_aggregates", "value"): "DOUBLE",
    ("metric_aggregates", "_attributed_flow"): "VARCHAR",
}


def test_the_demo_tables_have_warehouse_types(cli_demo: CliDemo) -> None:
    with duckdb.connect(str(cli_demo.duckdb), read_only=True) as db:
        found = {(t, c): d for t, c, d in db.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = ?", [DEMO_DATASET]).fetchall()}
        (lat,) = db.execute(f"SELECT count(location__latitude) FROM {DEMO_DATASET}.profiles").fetchone()
    assert {key: found.get(key) for key in EXPECTED_TYPES} == EXPECTED_TYPES
    assert lat > 0, "coordinates sent as strings and as numbers all land in the double column"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, profiles=150, events=2500, days=10)) as emu:
        yield emu


def _columns(pipeline: dlt.Pipeline, table: str) -> dict[str, str]:
    return dict(query(pipeline, "SELECT column_name, data_type FROM information_schema.columns"
                                " WHERE table_schema = 'klaviyo_data' AND table_name = ?", table))


def test_flatten_properties_from_config_gives_columns_child_tables_and_decimal_money(
    emulator: Emulator, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__KLAVIYO__FLATTEN_PROPERTIES", "true")
    monkeypatch.setenv("SOURCES__KLAVIYO__PREDICTIVE_ANALYTICS", "true")
    pipeline = make_pipeline()
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events", "profiles"], start_date="2000-01-01T00:00:00Z")
    pipeline.run(source).raise_on_failed_jobs()

    events = _columns(pipeline, "events")
    assert "event_properties" not in events
    assert events["event_properties___value"].startswith("DECIMAL")
    loaded = set(column(pipeline, "events"))
    served = [e for e in emulator.account.records("event") if e["id"] in loaded]
    assert len(served) == len(loaded) > 1000
    values = [e["attributes"]["event_properties"].get("$value") for e in served]
    (total,) = query(pipeline, "SELECT sum(event_properties___value) FROM events")[0]
    assert total == sum(Decimal(str(v)) for v in values if v is not None)
    (items,) = query(pipeline, "SELECT count(*) FROM events__event_properties__items")[0]
    assert items == sum(len(e["attributes"]["event_properties"].get("Items") or []) for e in served)

    profiles = _columns(pipeline, "profiles")
    assert "properties" not in profiles and any(c.startswith("properties__") for c in profiles)
    assert profiles["predictive_analytics__total_clv"].startswith("DECIMAL")
    assert profiles["predictive_analytics__expected_date_of_next_order"] == "TIMESTAMP WITH TIME ZONE"
    clv = dict(query(pipeline, "SELECT id, predictive_analytics__total_clv FROM profiles"))
    served_clv = {p["id"]: p["attributes"]["predictive_analytics"]["total_clv"] for p in emulator.account.records("profile") if p["id"] in clv}
    assert clv == {k: Decimal(str(v)) for k, v in served_clv.items()}
    # Row dicts: dlt makes the suppression lists nested child tables.
    for table, rows in suppression_counts(emulator, set(clv)).items():
        assert query(pipeline, f"SELECT count(*) FROM {table}")[0][0] == rows > 0, table


def _served_profiles(emulator: Emulator) -> dict[str, dict[str, Any]]:
    """Profile id -> attributes as the source's default revision serves them."""
    return {p["id"]: p["attributes"] for p in emulator.account.records("profile", revision=DEFAULT_REVISION)}


def _marketing(attributes: dict[str, Any], channel: str = "email") -> dict[str, Any]:
    return ((attributes.get("subscriptions") or {}).get(channel) or {}).get("marketing") or {}


def test_profiles_load_from_arrow_with_flattened_consent_json_suppressions_and_predictive_money(
    emulator: Emulator, make_pipeline: Any
) -> None:
    pipeline = make_pipeline()
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["profiles"],
                            start_date="2000-01-01T00:00:00Z", predictive_analytics=True)
    pipeline.run(source).raise_on_failed_jobs()
    served = _served_profiles(emulator)
    columns = _columns(pipeline, "profiles")
    assert columns["subscriptions__email__marketing__suppression"] == "JSON"
    assert columns["subscriptions__email__marketing__list_suppressions"] == "JSON"
    assert columns["subscriptions__sms__marketing__last_updated"] == "TIMESTAMP WITH TIME ZONE"
    # 2026-07-15's consent channels are timestamps too; its order counts (numbers) stay integers
    assert columns["subscriptions__sms__transactional__consent_timestamp"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["subscriptions__mobile_push__marketing__consent_timestamp"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["predictive_analytics__historic_number_of_orders"] == "BIGINT"
    assert columns["predictive_analytics__total_clv"].startswith("DECIMAL")
    assert not [t for t in pipeline.default_schema.data_table_names() if t.startswith("profiles__")]
    rows = query(pipeline, "SELECT id, subscriptions__email__marketing__suppression, subscriptions__email__marketing__list_suppressions,"
                           " subscriptions__email__marketing__consent_timestamp, location__latitude, location__city,"
                           " predictive_analytics__total_clv, _dlt_id FROM profiles")
    assert sorted(r[0] for r in rows) == sorted(served) and len({r[-1] for r in rows if r[-1]}) == len(served)
    with_lists = 0
    for id_, suppression, list_suppressions, consent_at, latitude, city, clv, _ in rows:
        attributes = served[id_]
        email = _marketing(attributes)
        assert json.loads(suppression) == email.get("suppression"), id_
        assert json.loads(list_suppressions) == email.get("list_suppressions"), id_
        with_lists += bool(email.get("suppression") or email.get("list_suppressions"))
        assert consent_at == datetime.fromisoformat(email["consent_timestamp"]), id_
        location = attributes.get("location") or {}
        assert latitude == (float(location["latitude"]) if location.get("latitude") not in (None, "") else None), id_
        assert city == (location.get("city") or None), id_
        assert clv == Decimal(str(attributes["predictive_analytics"]["total_clv"])), id_
    assert with_lists > 10


def test_properties_stay_json_columns_by_default(emulator: Emulator, make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["events", "profiles"], start_date="2000-01-01T00:00:00Z")
    pipeline.run(source).raise_on_failed_jobs()
    events, profiles = _columns(pipeline, "events"), _columns(pipeline, "profiles")
    assert events["event_properties"] == "JSON" and profiles["properties"] == "JSON"
    assert not [c for c in (*events, *profiles) if c.startswith(("event_properties__", "properties__", "predictive_analytics__"))]
    assert len(events) <= 9 and not any(t.startswith("events__") for t in pipeline.default_schema.data_table_names())


def test_a_profile_value_that_is_not_of_its_declared_type_goes_to_a_variant_column(
    emulator: Emulator, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Coordinates are declared double; one that is not a number must neither fail the run nor
    # be lost: it lands in `location__latitude__v_text`, as dlt puts row dicts' odd values.
    odd: list[str] = []

    def an_odd_latitude_first(document: dict[str, Any]) -> dict[str, Any]:
        for resource in (document.get("data") or [])[:1]:  # `pages.Resource`: raw JSON attributes
            if resource.type == "profile":
                location = orjson.loads(bytes(resource.attributes.get("location") or b"{}")) or {}
                resource.attributes["location"] = msgspec.Raw(orjson.dumps({**location, "latitude": "north-ish"}))
                odd.append(resource.id)
        return document

    edit_pages(monkeypatch, lambda: an_odd_latitude_first)
    pipeline = make_pipeline()
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports=["profiles"], start_date="2000-01-01T00:00:00Z")
    pipeline.run(source).raise_on_failed_jobs()
    rows = {r[0]: r[1:] for r in query(pipeline, "SELECT id, location__latitude, location__latitude__v_text FROM profiles")}
    assert odd and len(rows) == len(_served_profiles(emulator))
    assert all(rows[i] == (None, "north-ish") for i in odd)
    numbers = [r[0] for i, r in rows.items() if i not in odd and r[0] is not None]
    assert len(numbers) > 10 and all(isinstance(n, float) for n in numbers)
    assert all(r[1] is None for i, r in rows.items() if i not in odd)
