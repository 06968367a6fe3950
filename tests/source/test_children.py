"""The child tables (campaign messages and tags, flow actions and messages, list and segment
membership, global exclusions) and tags against the emulator: loaded rows equal the
emulator's, children follow their parents' incremental runs, membership keeps a cursor per
group, campaign messages come from `include=`."""

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import dlt
import pytest

from klaviyo import klaviyo_source
from klaviyo.children import with_parents
from klaviyo.settings import CHILD_REPORTS
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import query

UTC = timezone.utc
START = "2000-01-01T00:00:00Z"
CHILDREN = [*CHILD_REPORTS, "tags"]
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


def run(emu: Emulator, pipeline: dlt.Pipeline, reports: List[str]) -> Dict[str, int]:
    """Runs the source over a cleared request log; returns rows normalized per table."""
    emu.clear_log()
    source = klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports=reports, start_date=START)
    pipeline.run(source).raise_on_failed_jobs()
    return dict(pipeline.last_trace.last_normalize_info.row_counts)


def paths(emu: Emulator, pattern: str) -> List[str]:
    """Paths of the logged requests matching a regular expression."""
    return [r.path for r in emu.request_log if re.fullmatch(pattern, r.path)]


def rel(resource: Dict[str, Any], name: str) -> Any:
    data = resource["relationships"][name]["data"]
    return [d["id"] for d in data] if isinstance(data, list) else data["id"]


def truth(emu: Emulator, table: str) -> Set[Tuple[Any, ...]]:
    """The emulator's rows of a child table, as tuples of its key columns."""
    acc = emu.account
    if table == "campaign_messages":
        return {(m["id"], rel(m, "campaign")) for m in acc.records("campaign-message")}
    if table == "campaign_tags":
        return {(c["id"], t) for c in acc.records("campaign") for t in rel(c, "tags")}
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
}


def loaded(pipeline: dlt.Pipeline, table: str) -> List[Tuple[Any, ...]]:
    return query(pipeline, f"SELECT {KEYS[table]} FROM {table}")


@pytest.fixture(scope="module")
def first_run(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Tuple[dlt.Pipeline, list]:
    """Every child table and tags loaded once; the pipeline and that run's request log."""
    pipeline = new_pipeline(tmp_path_factory.mktemp("children"))
    run(emulator, pipeline, CHILDREN)
    return pipeline, emulator.request_log


@pytest.mark.parametrize("table", CHILDREN)
def test_each_child_table_loads_exactly_the_emulators_records(emulator: Emulator, first_run: Any, table: str) -> None:
    pipeline, _ = first_run
    rows = loaded(pipeline, table)
    assert rows, f"the emulator holds {table}"
    assert len(rows) == len(set(rows)), "duplicate keys"
    assert set(rows) == truth(emulator, table)


def test_campaign_messages_and_tags_come_from_include_on_the_campaign_pages(first_run: Any) -> None:
    _, log = first_run
    campaigns = [r for r in log if r.path.startswith("/api/campaigns/")]
    assert campaigns and all(r.path == "/api/campaigns/" for r in campaigns), "no request per campaign"
    assert all(r.query["include"] == ["campaign-messages,tags"] for r in campaigns)


def test_flow_messages_skip_actions_that_send_nothing(emulator: Emulator, first_run: Any) -> None:
    _, log = first_run
    asked = {r.path.split("/")[3] for r in log if r.path.startswith("/api/flow-actions/")}
    actions = {a["id"]: a["attributes"]["action_type"] for a in emulator.account.records("flow-action")}
    skipped = set(CHILD_REPORTS["flow_messages"].skip["action_type"])
    assert asked == {a for a, kind in actions.items() if kind not in skipped}
    assert asked != set(actions), "the account has actions that send nothing"


def test_selecting_a_child_selects_the_reports_it_follows(emulator: Emulator) -> None:
    assert with_parents(["flow_messages"]) == ("flows", "flow_actions", "flow_messages")
    assert with_parents(["list_profiles", "global_exclusions"]) == ("list_profiles", "global_exclusions")
    source = klaviyo_source(api_key=emulator.api_key, base_url=emulator.base_url, reports="campaign_tags")
    assert set(source.selected_resources) == {"campaigns_email", "campaigns_sms"}


def test_children_follow_their_parents_incremental_runs(tmp_path: Path) -> None:
    # A fresh account (this test mutates it) with two flows.
    config = dict(CONFIG, flows=2)
    with Emulator(EmulatorConfig(seed=8, now=datetime.now(UTC) - timedelta(hours=1), **config)) as emu:
        _children_follow_their_parents(emu, new_pipeline(tmp_path))


def _children_follow_their_parents(emulator: Emulator, pipeline: dlt.Pipeline) -> None:
    reports = ["flow_messages", "campaign_messages", "campaign_tags"]
    run(emulator, pipeline, reports)

    counts = run(emulator, pipeline, reports)
    assert not paths(emulator, r"/api/(flows/[^/]+/flow-actions|flow-actions/[^/]+/flow-messages)/")
    assert {t: counts.get(t, 0) for t in ("flow_actions", "flow_messages", "campaign_messages", "campaign_tags")} == dict.fromkeys(
        ("flow_actions", "flow_messages", "campaign_messages", "campaign_tags"), 0)

    changes = emulator.mutate(seed=21, create=0, update=1, delete=0)
    (flow_id,), (campaign_id,) = changes["flow"]["updated"], changes["campaign"]["updated"]
    counts = run(emulator, pipeline, reports)
    assert paths(emulator, r"/api/flows/[^/]+/flow-actions/") == [f"/api/flows/{flow_id}/flow-actions/"]
    actions = {a for a, f in truth(emulator, "flow_actions") if f == flow_id}
    kinds = {a["id"]: a["attributes"]["action_type"] for a in emulator.account.records("flow-action")}
    sending = {a for a in actions if kinds[a] not in CHILD_REPORTS["flow_messages"].skip["action_type"]}
    assert sending, "the changed flow sends messages"
    assert {p.split("/")[3] for p in paths(emulator, r"/api/flow-actions/[^/]+/flow-messages/")} == sending
    assert counts["flow_actions"] == len(actions)
    messages = {m for m, c in truth(emulator, "campaign_messages") if c == campaign_id}
    assert counts["campaign_messages"] == len(messages)
    for table in ("flow_actions", "flow_messages", "campaign_messages", "campaign_tags"):
        rows = loaded(pipeline, table)
        assert len(rows) == len(set(rows)) and set(rows) == truth(emulator, table), table


def test_membership_reads_each_group_from_its_own_cursor(tmp_path: Path) -> None:
    # A fresh account: this test deletes a list.
    with Emulator(EmulatorConfig(seed=8, now=datetime.now(UTC) - timedelta(hours=1), **CONFIG)) as emu:
        pipeline = new_pipeline(tmp_path)
        run(emu, pipeline, ["list_profiles"])
        state = pipeline.state["sources"]["klaviyo"]["resources"]["list_profiles"]["joined_group_at"]
        newest = {g: max(j for _, j in emu.account.list_members(g)) for g in (r["id"] for r in emu.account.records("list"))}
        assert {g: datetime.fromisoformat(v) for g, v in state.items()} == newest

        run(emu, pipeline, ["list_profiles"])
        filters = {r.path.split("/")[3]: r.query["filter"][0] for r in emu.request_log if r.path.endswith("/profiles/")}
        assert filters.keys() == newest.keys()
        for group, condition in filters.items():
            stamp = newest[group].strftime("%Y-%m-%dT%H:%M:%S")
            assert f"greater-or-equal(joined_group_at,{stamp}Z)" in condition, condition

        created = emu.mutate(seed=5, create=1, update=0, delete=0)
        run(emu, pipeline, ["list_profiles"])
        (new_profile,) = created["profile"]["created"]
        assert new_profile in {p for _, p, _ in loaded(pipeline, "list_profiles")}, "it joined a list"

        (gone_list,) = emu.mutate(seed=6, create=0, update=0, delete=1)["list"]["deleted"]
        run(emu, pipeline, ["list_profiles"])
        state = pipeline.state["sources"]["klaviyo"]["resources"]["list_profiles"]["joined_group_at"]
        with_members = {r["id"] for r in emu.account.records("list") if emu.account.list_members(r["id"])}
        assert gone_list not in state and set(state) == with_members
        rows = loaded(pipeline, "list_profiles")
        assert len(rows) == len(set(rows))
        # the deleted list's memberships stay: removals are not visible through this endpoint
        assert truth(emu, "list_profiles") < set(rows)
        assert any(group == gone_list for group, _, _ in rows)


def test_global_exclusions_are_incremental_on_the_suppression_timestamp(emulator: Emulator, tmp_path: Path) -> None:
    pipeline = new_pipeline(tmp_path)
    run(emulator, pipeline, ["global_exclusions"])
    cursor = pipeline.state["sources"]["klaviyo"]["resources"]["global_exclusions"]["incremental"]["suppression_timestamp"]["last_value"]
    assert cursor == max(t for _, t in truth(emulator, "global_exclusions"))
    counts = run(emulator, pipeline, ["global_exclusions"])
    (request,) = [r for r in emulator.request_log if r.path == "/api/profiles/"]
    stamp = cursor.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert f"greater-or-equal(subscriptions.email.marketing.suppression.timestamp,{stamp}Z)" in request.query["filter"][0]
    assert counts.get("global_exclusions", 0) == 0
