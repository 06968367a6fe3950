"""The report table per API revision: every row agrees with the spec of its revision; the
revision is chosen, checked and sent; a retired revision sent to Klaviyo warns once."""

import logging
import re
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import dlt
import pytest

from klaviyo import KlaviyoConfigError, klaviyo_source
from klaviyo.settings import DEFAULT_REVISION, ID_SCANS, REVISIONS, ChildReport, Report, RevisionTable, Tier
from klaviyo_emulator import Emulator, EmulatorConfig
from klaviyo_emulator.gen_spec_tables import extract, filter_ops
from tests.conftest import load_spec

COMPARISONS = {"greater-or-equal", "greater-than", "less-or-equal", "less-than"}
CONDITION = re.compile(r"^([a-z-]+)\(([^,()]+),")
# Filter fields a spec's `filter` description leaves out: (revision, path) -> field -> operators.
# The 2023-10-15 description of GET /api/profiles/ omits the suppression timestamp, which that
# revision's reference page lists (shared/klaviyo-api/REFERENCE.md, section 5) and the 2026-07-15
# spec lists for the same endpoint.
SPEC_GAPS: Dict[Tuple[str, str], Dict[str, Tuple[str, ...]]] = {
    ("2023-10-15", "/api/profiles/"): {"subscriptions.email.marketing.suppression.timestamp": tuple(sorted(COMPARISONS))},
}


def operation(revision: str, path: str) -> Tuple[Dict[str, Any], Dict[str, Tuple[str, ...]]]:
    """The spec's facts and filter operators of `GET path` (the path exactly as the spec writes it)."""
    spec = load_spec(revision)
    assert path in spec["paths"], f"{revision}: {path} is not a path of the spec (trailing slash?)"
    op = spec["paths"][path]["get"]
    return extract(op), {**filter_ops(op), **SPEC_GAPS.get((revision, path), {})}


def rows(table: RevisionTable) -> Iterator[Tuple[str, Report, ChildReport]]:
    for name, report in table.reports.items():
        yield name, report, None  # type: ignore[misc]
    for name, child in table.children.items():
        yield name, child.read, child


def _conditions(report: Report) -> List[str]:
    return [c for c in (*report.filters, *report.variants) if c]


def check_row(table: RevisionTable, report: Report, op: Dict[str, Any], ops: Mapping[str, Tuple[str, ...]]) -> None:
    """One row against its operation: tier, scope, sort, page size, filter operators, parameters."""
    burst, steady = op["burst"], op["steady"]
    assert table.tiers[report.tier] == Tier(int(burst.rstrip("/s")), int(steady.rstrip("/m"))), "tier"
    assert set(report.scope.split(" and ")) == set(op["scopes"]), "scope"
    assert report.sort is None or report.sort in op["sort"], "sort"
    if op["page_size"] is None:
        assert report.page_size is None, "the endpoint has no page[size]"
    elif report.page_size is not None:
        _, low, high = op["page_size"]
        assert low <= report.page_size <= high, "page size"
    if report.cursor:
        # exactly the comparisons the spec allows: none computed client-side without need
        assert set(report.cursor_ops) == set(ops[report.cursor]) & COMPARISONS, "cursor operators"
    for condition in _conditions(report):
        operator, name = CONDITION.match(condition).groups()  # type: ignore[union-attr]
        assert operator in ops.get(name, ()), f"filter {condition}"
    for key, value in report.params.items():
        values = set(value.split(","))
        if key == "include":
            assert values <= set(op["include"]), key
        elif key.startswith("additional-fields["):
            assert values <= set(op["additional_fields"][key[18:-1]]), key
        elif key.startswith("fields["):
            assert values <= set(op["fields"][key[7:-1]]), key
        else:
            raise AssertionError(f"parameter {key} not checked")


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_every_row_agrees_with_the_spec_of_its_revision(revision: str) -> None:
    table = REVISIONS[revision]
    for name, report, child in rows(table):
        if child is not None and child.via == "include":
            for parent in child.parents:
                parent_row = table.reports[parent]
                assert report.path == parent_row.path and report.tier == parent_row.tier, name
                op, _ = operation(revision, parent_row.path)
                assert child.include in op["include"] and child.include in parent_row.params["include"].split(","), name
            continue
        op, ops = operation(revision, report.path)
        try:
            check_row(table, report, op, ops)
            scan = ID_SCANS.get(name) if name in table.reports or (child and child.via == "suppressed") else None
            if scan:
                fields = {k: v for k, v in scan.items() if k != "sort"}
                check_row(table, Report(name, report.path, report.scope, report.tier, params=fields), op, ops)
                assert scan.get("sort") is None or scan["sort"] in op["sort"], "id scan sort"
        except AssertionError as error:
            raise AssertionError(f"{revision} {name} ({report.path}): {error}") from None


def _date_times(spec: Dict[str, Any], schema: Any, prefix: str) -> Iterator[str]:
    """Flattened names (`a__b`) of the date-time attributes of a spec schema."""
    schemas = spec["components"]["schemas"]
    while "$ref" in schema:
        schema = schemas[schema["$ref"].split("/")[-1]]
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key, []):
            yield from _date_times(spec, part, prefix)
    if schema.get("format") == "date-time":
        yield prefix
    for name, sub in (schema.get("properties") or {}).items():
        yield from _date_times(spec, sub, f"{prefix}__{name}")


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_every_date_time_of_the_profiles_subscriptions_is_a_timestamp_column(revision: str) -> None:
    spec = load_spec(revision)
    stamps = set(_date_times(spec, spec["components"]["schemas"]["Subscriptions"], "subscriptions"))
    assert stamps and stamps <= set(REVISIONS[revision].reports["profiles"].timestamps)


def test_tables_keep_their_names_and_keys_across_revisions() -> None:
    old, new = REVISIONS["2023-10-15"], REVISIONS["2026-07-15"]
    assert DEFAULT_REVISION == "2026-07-15"
    assert set(new.names) - set(old.names) == {"campaigns_push", "event_attributions"}
    assert set(old.names) <= set(new.names)
    for name, child in old.children.items():
        assert new.children[name].primary_key == child.primary_key, name
    assert new.children["event_attributions"].primary_key == ("event_id", "attribution_id")


# ------------------------------------------------------------------------ the revision chosen
@pytest.mark.parametrize(
    "revision, message",
    [
        ("2024-10-15", "revision '2024-10-15' is not one this source speaks; set revision to one of: 2026-07-15 (the default), 2023-10-15"),
        ("2026-07-15.pre", "revision '2026-07-15.pre' is not one this source speaks"),
        ("15-10-2023", "revision '15-10-2023' is malformed; use YYYY-MM-DD, one of: 2026-07-15, 2023-10-15"),
    ],
)
def test_a_revision_the_source_does_not_speak_is_one_line(revision: str, message: str) -> None:
    with pytest.raises(KlaviyoConfigError) as error:
        klaviyo_source(api_key="pk_test_key_1234", base_url="http://127.0.0.1:9", revision=revision)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_reports_of_another_revision_are_named_with_it() -> None:
    with pytest.raises(KlaviyoConfigError, match=r"^The report 'campaigns_push' needs revision 2026-07-15 \(this run uses 2023-10-15\)"):
        klaviyo_source(api_key="pk_test_key_1234", base_url="http://127.0.0.1:9", revision="2023-10-15", reports="events,campaigns_push")
    old = klaviyo_source(api_key="pk_test_key_1234", base_url="http://127.0.0.1:9", revision="2023-10-15")
    new = klaviyo_source(api_key="pk_test_key_1234", base_url="http://127.0.0.1:9")
    assert "campaigns_push" in new.selected_resources and "campaigns_push" not in old.selected_resources


@pytest.mark.parametrize(
    "revision, base_url, warned",
    [
        ("2023-10-15", "https://a.klaviyo.com", 1),
        ("2023-10-15", "https://a.klaviyo.com/", 1),
        ("2023-10-15", "http://127.0.0.1:8765", 0),
        ("2026-07-15", "https://a.klaviyo.com", 0),
    ],
)
def test_a_retired_revision_sent_to_klaviyo_warns_once(caplog: pytest.LogCaptureFixture, revision: str, base_url: str, warned: int) -> None:
    from klaviyo import revisions

    revisions._warn_retired.cache_clear()  # a new process, as far as the warning knows
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # the command builds its source more than once (validation, each chunk)
            source = klaviyo_source(api_key="pk_test_key_1234", base_url=base_url, revision=revision)
            list(source.resources)  # resources are built, nothing is read
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == warned, warnings
    if warned:
        assert warnings[0].startswith("revision 2023-10-15: Klaviyo retired it around 2025-10-15 and answers it as its oldest revision")


@pytest.mark.parametrize("revision", [None, *REVISIONS])
def test_the_revision_is_sent_on_every_request(tmp_path: Any, revision: Any) -> None:
    with Emulator(EmulatorConfig(seed=2, profiles=10, events=120, lists=2)) as emu:
        pipeline = dlt.pipeline("klaviyo_rev", destination=dlt.destinations.duckdb(str(tmp_path / "r.duckdb")),
                                dataset_name="d", pipelines_dir=str(tmp_path / "p"))
        kwargs = {"revision": revision} if revision else {}
        pipeline.run(klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports="metrics,lists,list_profiles", **kwargs))
        table = REVISIONS[revision or DEFAULT_REVISION]
        assert emu.request_log and {r.headers.get("revision") for r in emu.request_log} == {table.revision}
        assert {r.path for r in emu.request_log if "{id}" not in r.path} >= {table.reports["metrics"].path, table.reports["lists"].path}


def test_the_limiter_paces_at_the_tiers_of_the_revision() -> None:
    from klaviyo.ratelimit import RateLimiter

    base_url, key = "http://127.0.0.1:9", "pk_limiter_tiers_test"
    for revision in ("2023-10-15", "2026-07-15", "2023-10-15"):
        klaviyo_source(api_key=key, base_url=base_url, revision=revision)
        limiter = RateLimiter.for_account(base_url, key)
        assert limiter._states["L"].tier == REVISIONS[revision].tiers["L"]
    assert REVISIONS["2026-07-15"].tiers["L"] == Tier(75, 750) and REVISIONS["2023-10-15"].tiers["L"] == Tier(75, 700)
