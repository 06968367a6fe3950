"""The example queries of docs/data-model.md, taken from its ```sql blocks and run on the
demo data in DuckDB; their answers are recomputed from the emulator's records."""

import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from klaviyo_demo import DEMO_DATASET, DEMO_DUCKDB
from tests.conftest import REPO
from tests.integration.conftest import DemoRun, isolated_env

DOC = REPO / "docs" / "data-model.md"
UTC = UTC
NAMES = {"revenue_by_flow", "list_growth", "campaign_sends_by_channel", "daily_events_by_metric"}


def doc_queries() -> dict[str, str]:
    """Named example queries: ```sql blocks whose first line is `-- name: what it answers`."""
    queries = {}
    for block in re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        named = re.match(r"--\s*(\w+):", block)
        if named:
            queries[named.group(1)] = block
    return queries


def run(demo: DemoRun, sql: str) -> tuple[datetime, list[dict[str, Any]]]:
    """`now()` of the query's transaction and its rows as dicts (the doc's `SET`s applied)."""
    with duckdb.connect(str(demo.workdir / DEMO_DUCKDB), read_only=True) as db:
        db.execute(f"SET search_path = '{DEMO_DATASET}'; SET TimeZone = 'UTC'")
        db.begin()
        (now,) = db.execute("SELECT now()").fetchone()
        cursor = db.execute(sql)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=False)) for r in cursor.fetchall()]
        db.commit()
    return now, rows


def loaded_events(demo: DemoRun) -> list[dict[str, Any]]:
    """The emulator's records of the events the demo loaded with a metric, with their metric
    names (events whose metric Klaviyo cannot resolve are loaded with a NULL metric_id, which
    the queries' joins on `metrics` leave out)."""
    with duckdb.connect(str(demo.workdir / DEMO_DUCKDB), read_only=True) as db:
        ids: set[str] = {r[0] for r in db.execute(f"SELECT id FROM {DEMO_DATASET}.events WHERE metric_id IS NOT NULL").fetchall()}
    metrics = {m["id"]: m["attributes"]["name"] for m in demo.emulator.account.records("metric")}
    out = []
    for event in demo.emulator.account.records("event"):
        if event["id"] in ids:
            attrs = event["attributes"]
            out.append({"id": event["id"], "metric": metrics[event["relationships"]["metric"]["data"]["id"]],
                        "datetime": datetime.fromisoformat(attrs["datetime"]).astimezone(UTC),
                        "props": attrs["event_properties"]})
    assert len(out) == len(ids) > 1000
    return out


def test_the_guide_has_the_four_example_queries() -> None:
    assert set(doc_queries()) == NAMES


def test_the_guides_commands_run_with_what_readmes_install_gives(duckdb_demo: DemoRun, tmp_path: Path) -> None:
    """The guide's shell commands name the virtualenv's Python (no `python` or `duckdb` is on
    PATH after README's install); its query line opens the demo's file and answers from it."""
    (block,) = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    commands = [line for line in block.splitlines() if line.strip()]
    assert all(line.startswith(".venv/bin/python ") for line in commands), commands
    demo, *queries = commands
    assert re.match(r"\.venv/bin/python klaviyo_pipeline\.py --demo\b", demo)  # run in-process by the duckdb_demo fixture
    workdir = duckdb_demo.workdir
    if not (workdir / ".venv").exists():
        (workdir / ".venv").symlink_to(Path(sys.executable).parent.parent, target_is_directory=True)
    env = isolated_env(tmp_path)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p and Path(p).resolve() != Path(sys.executable).parent.resolve())
    (query,) = queries
    out = subprocess.run(["bash", "-c", query], cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
                         input='print("events:", db.sql("SELECT count(*) FROM events").fetchall()[0][0])\n')
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"events: {duckdb_demo.summary['events']}" in out.stdout.splitlines()


def test_revenue_by_flow(duckdb_demo: DemoRun) -> None:
    now, rows = run(duckdb_demo, doc_queries()["revenue_by_flow"])
    flows = {f["id"]: f["attributes"]["name"] for f in duckdb_demo.emulator.account.records("flow")}
    expected: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for event in loaded_events(duckdb_demo):
        flow = event["props"].get("$attributed_flow")
        if event["metric"] == "Placed Order" and flow in flows and event["datetime"] >= now - timedelta(days=30):
            expected[flow][0] += 1
            expected[flow][1] += Decimal(str(event["props"]["$value"]))
    assert len(expected) >= 2
    assert {r["flow_id"]: (r["flow_name"], r["orders"], r["revenue"]) for r in rows} == {
        f: (flows[f], n, total.quantize(Decimal("0.01"))) for f, (n, total) in expected.items()}
    assert [r["revenue"] for r in rows] == sorted((r["revenue"] for r in rows), reverse=True)


def _month(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def test_list_growth(duckdb_demo: DemoRun) -> None:
    _, rows = run(duckdb_demo, doc_queries()["list_growth"])
    emu = duckdb_demo.emulator
    lists = {item["id"]: item["attributes"]["name"] for item in emu.account.records("list")}
    expected = Counter((list_id, _month(joined)) for list_id in lists for _, joined in emu.account.list_members(list_id))
    assert len({key[0] for key in expected}) >= 2 and len({key[1] for key in expected}) >= 6
    assert {(r["list_id"], r["month"]): r["new_members"] for r in rows} == dict(expected)
    for list_id in {key[0] for key in expected}:
        sizes = [r["members_to_date"] for r in sorted(rows, key=lambda r: r["month"]) if r["list_id"] == list_id]
        months = sorted(m for (group, m) in expected if group == list_id)
        assert sizes == [sum(n for (group, m), n in expected.items() if group == list_id and m <= month) for month in months]
        assert sizes[-1] == len(emu.account.list_members(list_id))
    assert all(r["list_name"] == lists[r["list_id"]] for r in rows)


def test_campaign_sends_by_channel(duckdb_demo: DemoRun) -> None:
    _, rows = run(duckdb_demo, doc_queries()["campaign_sends_by_channel"])
    emu = duckdb_demo.emulator
    channel_of, messages_of = {}, defaultdict(set)
    for message in emu.account.records("campaign-message"):
        campaign = message["relationships"]["campaign"]["data"]["id"]
        channel_of[campaign] = message["attributes"]["channel"]
        messages_of[campaign].add(message["id"])
    received = Counter(e["props"].get("$message") for e in loaded_events(duckdb_demo) if e["metric"] in ("Received Email", "Received SMS"))
    expected: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0])
    for campaign in emu.account.records("campaign"):
        attrs = campaign["attributes"]
        if attrs["status"] != "Sent":
            continue
        key = (channel_of[campaign["id"]], _month(datetime.fromisoformat(attrs["send_time"])))
        expected[key][0] += 1
        expected[key][1] += sum(received[m] for m in messages_of[campaign["id"]])
    assert {channel for channel, _ in expected} == {"email", "sms"}
    assert sum(d for _, d in expected.values()) > 0
    assert {(r["channel"], r["month"]): [r["campaigns_sent"], r["deliveries"]] for r in rows} == dict(expected)


def test_daily_events_by_metric(duckdb_demo: DemoRun) -> None:
    _, rows = run(duckdb_demo, doc_queries()["daily_events_by_metric"])
    expected = Counter((e["datetime"].replace(hour=0, minute=0, second=0, microsecond=0), e["metric"]) for e in loaded_events(duckdb_demo))
    assert {(r["day"], r["metric"]): r["events"] for r in rows} == dict(expected)
    assert len({day for day, _ in expected}) >= 28 and len({m for _, m in expected}) >= 10
