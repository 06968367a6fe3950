"""The child tables (campaign messages and tags, flow actions and messages, list and segment
membership, global exclusions; event attributions in 2026-07-15) and tags against the emulator,
per API revision: loaded rows equal the emulator's, children follow their parents' incremental
runs, membership keeps a cursor per group, campaign messages come from `include=`, and the
tables a revision reshaped keep the columns of 2023-10-15."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest

from klaviyo import klaviyo_source
from klaviyo.children import with_parents
from klaviyo.settings import DEFAULT_REVISION, REVISIONS
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import query

UTC = UTC
START = "2000-01-01T00:00:00Z"
NEW, OLD = "2026-07-15", "2023-10-15"
CHILDREN = {revision: [*table.children, "tags"] for revision, table in REVISIONS.items()}
CASES = [(revision, table) for revision in REVISIONS for table in CHILDREN[revision]]
# The account's "now" lies an hour back: every membership and mutation is older than a run's
# start minus the safety margin. Few flows: their endpoints allow 3 requests/s.
CONFIG = dict(profiles=150, events=50, campaigns=12, flows=3, lists=5, segments=4, tags=6)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(seed=7, now=datetime.now(UTC) - timedelta(hours=1), **CONFIG)) as emu:
        yield emu


def new_pipeline(tmp: Path, name: str = "klaviyo_children") -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name, destination=dlt.destinations.duckdb(str(tmp / f"{name}.duckdb")),
        dataset_name="klaviyo_data", pipelines_dir=str(tmp / "pipelines"),
    )


def run(emu: Emulator, pipeline: dlt.Pipeline, reports: list[str], revision: str = DEFAULT_REVISION) -> dict[str, int]:
    """Runs the source over a cleared request log; returns rows normalized per table."""
    emu.clear_log()
    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports=reports, start_date=START, revision=revision)
    pipeline.run(source).raise_on_failed_jobs()
    return dict(pipeline.last_trace.last_normalize_info.row_counts)


def paths(emu: Emulator, pattern: str) -> list[str]:
    """Paths of the logged requests matching a regular expression."""
    return [r.path for r in emu.request_log if re.fullmatch(pattern, r.path)]


def rel(resource: dict[str, Any], name: str) -> Any:
    data = resource["relationships"][name]["data"]
    return [d["id"] for d in data] if isinstance(data, list) else data["id"]


def action_types(emu: Emulator, revision: str) -> dict[str, str]:
    """Flow action id -> its type as the revision names it (`action_type`, `definition.type`)."""
    actions = emu.account.records("flow-action", revision=revision)
    if revision == OLD:
        return {a["id"]: a["attributes"]["action_type"] for a in actions}
    return {a["id"]: a["attributes"]["definition"]["type"] for a in actions}


def truth(emu: Emulator, table: str, revision: str = DEFAULT_REVISION) -> set[tuple[Any, ...]]:
    """The emulator's rows of a child table in `revision`, as tuples of its key columns."""
    acc = emu.account
    if table == "campaign_messages":
        return {(m["id"], rel(m, "campaign")) for m in acc.records("campaign-message", revision=revision)}
    if table == "campaign_tags":
        return {(c["id"], t) for c in acc.records("campaign", revision=revision) for t in rel(c, "tags")}
    if table == "event_attributions":
        return {(a["event_id"], a["attribution_id"], a["campaign_id"], a["flow_message_id"]) for a in acc.attribution_rows()}
    if table == "flow_actions":
        return {(a["id"], rel(a, "flow")) for a in acc.records("flow-action")}
    if table == "flow_messages":
        return {(m["id"], rel(m, "flow-action")) for m in acc.records("flow-message")}
    if table in ("list_profiles", "segment_profiles"):
        kind, members = ("list", acc.list_members) if table == "list_profiles" else ("segment", acc.segment_members)
        return {(g["id"], p, joined) for g in acc.records(kind) for p, joined in members(g["id"])}
    if table == "global_exclusions":
        suppressed = {}
        for p in acc.records("profile"):
            stamps = [s["timestamp"] for s in p["attributes"]["subscriptions"]["email"]["marketing"]["suppression"]]
            if stamps:
                suppressed[p["id"]] = datetime.fromisoformat(max(stamps))
        return set(suppressed.items())
    assert table == "tags"
    return {(t["id"], rel(t, "tag-group")) for t in acc.records("tag")}


KEYS = {
    "campaign_messages": "id, campaign_id",
    "campaign_tags": "campaign_id, tag_id",
    "flow_actions": "id, flow_id",
    "flow_messages": "id, flow_action_id",
    "list_profiles": "list_id, profile_id, joined_group_at",
    "segment_profiles": "segment_id, profile_id, joined_group_at",
    "global_exclusions": "id, suppression_timestamp",
    "tags": "id, tag_group_id",
    "event_attributions": "event_id, attribution_id, campaign_id, flow_message_id",
}


def loaded(pipeline: dlt.Pipeline, table: str) -> list[tuple[Any, ...]]:
    return query(pipeline, f"SELECT {KEYS[table]} FROM {table}")


@pytest.fixture(scope="module", params=list(REVISIONS))
def first_run(request: pytest.FixtureRequest, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> tuple[dlt.Pipeline, list, str]:
    """Every child table and tags loaded once per revision; the pipeline, that run's request
    log and the revision."""
    revision: str = request.param
    pipeline = new_pipeline(tmp_path_factory.mktemp("children"), f"klaviyo_children_{revision.replace('-', '_')}")
    run(emulator, pipeline, CHILDREN[revision], revision)
    return pipeline, emulator.request_log, revision


@pytest.mark.parametrize("table", sorted({t for tables in CHILDREN.values() for t in tables}))
def test_each_child_table_loads_exactly_the_emulators_records(emulator: Emulator, first_run: Any, table: str) -> None:
    pipeline, _, revision = first_run
    if table not in CHILDREN[revision]:
        pytest.skip(f"{table} is not a table of {revision}")
    rows = loaded(pipeline, table)
    assert rows, f"the emulator holds {table}"
    assert len(rows) == len(set(rows)), "duplicate keys"
    assert set(rows) == truth(emulator, table, revision)


def test_campaign_messages_and_tags_come_from_include_on_the_campaign_pages(first_run: Any) -> None:
    _, log, revision = first_run
    path = REVISIONS[revision].reports["campaigns_email"].path
    campaigns = [r for r in log if r.path.startswith("/api/campaigns")]
    assert campaigns and all(r.path == path for r in campaigns), "no request per campaign"
    assert all(r.query["include"] == ["campaign-messages,tags"] for r in campaigns)


def test_flow_messages_skip_actions_that_send_nothing(emulator: Emulator, first_run: Any) -> None:
    _, log, revision = first_run
    asked = {r.path.split("/")[3] for r in log if r.path.startswith("/api/flow-actions/")}
    actions = action_types(emulator, revision)
    skipped = set(REVISIONS[revision].children["flow_messages"].skip["action_type"])
    assert asked == {a for a, kind in actions.items() if kind not in skipped}
    assert asked != set(actions), "the account has actions that send nothing"
    pages = [r for r in log if r.path.startswith("/api/flow-actions/")]
    assert {r.query["page[size]"][0] for r in pages} == {"100" if revision == OLD else "50"}


def test_selecting_a_child_selects_the_reports_it_follows(emulator: Emulator) -> None:
    assert with_parents(["flow_messages"]) == ("flows", "flow_actions", "flow_messages")
    assert with_parents(["list_profiles", "global_exclusions"]) == ("list_profiles", "global_exclusions")
    assert with_parents(["event_attributions"]) == ("events", "event_attributions")
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports="campaign_tags")
    assert set(source.selected_resources) == {"campaigns_email", "campaigns_sms", "campaigns_push"}
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports="campaign_tags", revision=OLD)
    assert set(source.selected_resources) == {"campaigns_email", "campaigns_sms"}


def test_the_reshaped_tables_keep_the_2023_columns(emulator: Emulator, first_run: Any, tmp_path: Path) -> None:
    """campaign_messages, flow_actions and flow_messages, read from 2026-07-15's `definition`,
    hold the values 2023-10-15 gives under the same column names."""
    pipeline, _, revision = first_run
    if revision == OLD:
        pytest.skip("compares 2026-07-15 with 2023-10-15")
    old = new_pipeline(tmp_path, "klaviyo_children_old")
    run(emulator, old, ["campaign_messages", "flow_messages"], OLD)
    same = {
        "campaign_messages": "id, campaign_id, channel, content__subject, content__preview_text, content__from_email,"
                             " content__from_label, content__body, content__media_url, template_id, send_times::VARCHAR,"
                             " created_at, updated_at",
        "flow_messages": "id, flow_action_id, name, channel, content__subject, content__preview_text, content__from_email,"
                         " content__body, template_id, created, updated",
        "flow_actions": "id, flow_id, created, updated",
    }
    sms = "render_options__shorten_links, render_options__add_org_prefix, render_options__add_info_link, render_options__add_opt_out_language"
    for table, columns in same.items():
        before = set(query(old, f"SELECT {columns} FROM {table}"))
        after = set(query(pipeline, f"SELECT {columns} FROM {table}"))
        assert before and before <= after, table  # 2026 adds the push campaigns' messages
        assert len(after - before) == (len(truth(emulator, table, NEW)) - len(truth(emulator, table, OLD))), table
    for table, columns, where in (
        ("campaign_messages", "label", "channel = 'email'"),  # 2026's SMS messages have no label
        ("campaign_messages", sms, "channel = 'sms'"),
        ("flow_actions", sms, "action_type IN ('SEND_SMS', 'send-sms')"),
        # 2026 gives a status and send options to the actions that send (2023 to all)
        ("flow_actions", "status, send_options__use_smart_sending, send_options__is_transactional",
         "action_type IN ('SEND_EMAIL', 'SEND_SMS', 'send-email', 'send-sms')"),
    ):
        before = set(query(old, f"SELECT id, {columns} FROM {table} WHERE {where}"))
        assert before and before == set(query(pipeline, f"SELECT id, {columns} FROM {table} WHERE {where}")), table
    kinds = dict(query(pipeline, "SELECT id, action_type FROM flow_actions"))
    assert kinds == action_types(emulator, NEW)
    push = query(pipeline, "SELECT content__title, content__body, notification_type FROM campaign_messages WHERE channel = 'mobile_push'")
    assert push and all(title and body and kind == "standard" for title, body, kind in push)


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_children_follow_their_parents_incremental_runs(tmp_path: Path, revision: str) -> None:
    # A fresh account (this test mutates it) with two flows.
    config = dict(CONFIG, flows=2)
    with Emulator(EmulatorConfig(seed=8, now=datetime.now(UTC) - timedelta(hours=1), **config)) as emu:
        _children_follow_their_parents(emu, new_pipeline(tmp_path), revision)


def _children_follow_their_parents(emulator: Emulator, pipeline: dlt.Pipeline, revision: str) -> None:
    reports = ["flow_messages", "campaign_messages", "campaign_tags"]
    run(emulator, pipeline, reports, revision)

    counts = run(emulator, pipeline, reports, revision)
    assert not paths(emulator, r"/api/(flows/[^/]+/flow-actions|flow-actions/[^/]+/flow-messages)/?")
    assert {t: counts.get(t, 0) for t in ("flow_actions", "flow_messages", "campaign_messages", "campaign_tags")} == dict.fromkeys(
        ("flow_actions", "flow_messages", "campaign_messages", "campaign_tags"), 0)

    changes = emulator.mutate(seed=21, create=0, update=1, delete=0)
    (flow_id,), (campaign_id,) = changes["flow"]["updated"], changes["campaign"]["updated"]
    counts = run(emulator, pipeline, reports, revision)
    children = REVISIONS[revision].children
    assert paths(emulator, r"/api/flows/[^/]+/flow-actions/?") == [children["flow_actions"].report.path.format(id=flow_id)]
    actions = {a for a, f in truth(emulator, "flow_actions", revision) if f == flow_id}
    kinds = action_types(emulator, revision)
    sending = {a for a in actions if kinds[a] not in children["flow_messages"].skip["action_type"]}
    assert sending, "the changed flow sends messages"
    assert {p.split("/")[3] for p in paths(emulator, r"/api/flow-actions/[^/]+/flow-messages/?")} == sending
    assert counts["flow_actions"] == len(actions)
    messages = {m for m, c in truth(emulator, "campaign_messages", revision) if c == campaign_id}
    assert counts["campaign_messages"] == len(messages)
    for table in ("flow_actions", "flow_messages", "campaign_messages", "campaign_tags"):
        rows = loaded(pipeline, table)
        assert len(rows) == len(set(rows)) and set(rows) == truth(emulator, table, revision), table


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_membership_reads_each_group_from_its_own_cursor(tmp_path: Path, revision: str) -> None:
    # A fresh account: this test deletes a list.
    with Emulator(EmulatorConfig(seed=8, now=datetime.now(UTC) - timedelta(hours=1), **CONFIG)) as emu:
        pipeline = new_pipeline(tmp_path)
        run(emu, pipeline, ["list_profiles"], revision)
        state = pipeline.state["sources"]["klaviyo"]["resources"]["list_profiles"]["joined_group_at"]
        newest = {g: max(j for _, j in emu.account.list_members(g)) for g in (r["id"] for r in emu.account.records("list"))}
        assert {g: datetime.fromisoformat(v) for g, v in state.items()} == newest

        run(emu, pipeline, ["list_profiles"], revision)
        filters = {r.path.split("/")[3]: r.query["filter"][0] for r in emu.request_log if r.path.rstrip("/").endswith("/profiles")}
        assert filters.keys() == newest.keys()
        for group, condition in filters.items():
            stamp = newest[group].strftime("%Y-%m-%dT%H:%M:%S")
            assert f"greater-or-equal(joined_group_at,{stamp}Z)" in condition, condition

        created = emu.mutate(seed=5, create=1, update=0, delete=0)
        run(emu, pipeline, ["list_profiles"], revision)
        (new_profile,) = created["profile"]["created"]
        assert new_profile in {p for _, p, _ in loaded(pipeline, "list_profiles")}, "it joined a list"

        (gone_list,) = emu.mutate(seed=6, create=0, update=0, delete=1)["list"]["deleted"]
        run(emu, pipeline, ["list_profiles"], revision)
        state = pipeline.state["sources"]["klaviyo"]["resources"]["list_profiles"]["joined_group_at"]
        with_members = {r["id"] for r in emu.account.records("list") if emu.account.list_members(r["id"])}
        assert gone_list not in state and set(state) == with_members
        rows = loaded(pipeline, "list_profiles")
        assert len(rows) == len(set(rows))
        # the deleted list's memberships stay: removals are not visible through this endpoint
        assert truth(emu, "list_profiles") < set(rows)
        assert any(group == gone_list for group, _, _ in rows)


@pytest.mark.parametrize("revision", list(REVISIONS))
def test_global_exclusions_are_incremental_on_the_suppression_timestamp(emulator: Emulator, tmp_path: Path, revision: str) -> None:
    pipeline = new_pipeline(tmp_path)
    run(emulator, pipeline, ["global_exclusions"], revision)
    cursor = pipeline.state["sources"]["klaviyo"]["resources"]["global_exclusions"]["incremental"]["suppression_timestamp"]["last_value"]
    assert cursor == max(t for _, t in truth(emulator, "global_exclusions"))
    counts = run(emulator, pipeline, ["global_exclusions"], revision)
    (request,) = [r for r in emulator.request_log if r.path == REVISIONS[revision].children["global_exclusions"].report.path]
    stamp = cursor.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert f"greater-or-equal(subscriptions.email.marketing.suppression.timestamp,{stamp}Z)" in request.query["filter"][0]
    assert counts.get("global_exclusions", 0) == 0
