"""Airbyte's `source-klaviyo` on the same emulated account as bench/throughput.py (issue #14).

Starts the emulator as throughput.py does (its `start_emulator`: the same seed, sizes, Klaviyo's
rate limits and 150 ms latency for a given `--events N --days D`), then runs the connector's
`read` of the `events` stream alone (a configured catalog with that one stream, incremental with
no state: a first sync, from the first day of the account) in its own venv, and prints two lines
in throughput.py's style: records read (distinct ids), wall seconds, records/s, requests sent
(the emulator's log), the connector's peak RSS and CPU (`wait4`), the emulator's CPU, and the
distinct ids against the emulator's events.

The connector runs in its own venv, never the project's:

    python3.11 -m venv /tmp/airbyte-venv && /tmp/airbyte-venv/bin/pip install airbyte-source-klaviyo==2.13.1
    python bench/airbyte.py --events 200000

It talks to https://a.klaviyo.com; bench/airbyte_runner.py points it at the emulator (see there).
It sends its own `revision` header (2.13.1: 2024-10-15, a retired revision that the emulator
answers as 2026-07-15, as Klaviyo answers a retired revision with a later supported one) and no
`page[size]` for events, so it gets the revision's default page (200).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

# The emulator's start-up, load average, log reader and CPU figure are throughput.py's, so that
# both benchmarks run on the same account and are measured the same way.
from throughput import REPO, emulator_cpu, load_average, requests_in, start_emulator  # noqa: E402

sys.path.insert(0, str(REPO))
from klaviyo_emulator.revision_endpoints import route  # noqa: E402
from klaviyo_emulator.revisions import resolve  # noqa: E402

VENV = "/tmp/airbyte-venv"
PACKAGE = "airbyte-source-klaviyo"
EVENTS_PATH = "/api/events"
CATALOG = {"streams": [{
    "stream": {"name": "events", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"],
               "source_defined_cursor": True, "default_cursor_field": ["datetime"], "source_defined_primary_key": [["id"]]},
    "sync_mode": "incremental", "cursor_field": ["datetime"], "destination_sync_mode": "append", "primary_key": [["id"]],
}]}


def connector_versions(python: str) -> str:
    """'source-klaviyo X (airbyte-cdk Y)' as installed in the connector's venv."""
    code = "from importlib.metadata import version as v; print(v('airbyte-source-klaviyo'), v('airbyte-cdk'))"
    found = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"{PACKAGE} is not installed in {Path(python).parents[1]}: "
                         f"{Path(python).parents[1]}/bin/pip install {PACKAGE}==2.13.1")
    klaviyo, cdk = found.stdout.split()
    return f"source-klaviyo {klaviyo} (airbyte-cdk {cdk})"


def account_start(days: int) -> str:
    """Midnight UTC of the account's first day (its events span the `days` before the emulator's
    start, which comes after this call), as the connector's `start_date` format wants it."""
    first = datetime.now(UTC) - timedelta(days=days)
    return first.strftime("%Y-%m-%dT00:00:00Z")


def run_connector(python: str, base_url: str, config: dict[str, Any], workdir: str) -> dict[str, Any]:
    """Runs the connector's `read` to its end, reading its stdout as it comes (the messages a
    destination would get): records, distinct ids, the errors. Wall seconds, CPU seconds and
    peak RSS (MB) are of the connector's process (`wait4`); `reader_cpu` is this process's CPU
    seconds spent reading its messages (on a 2-core machine it competes with the connector)."""
    config_file, catalog_file = os.path.join(workdir, "config.json"), os.path.join(workdir, "catalog.json")
    Path(config_file).write_text(json.dumps(config))
    Path(catalog_file).write_text(json.dumps(CATALOG))
    command = [python, str(BENCH / "airbyte_runner.py"), base_url, "read", "--config", config_file, "--catalog", catalog_file]
    ids: set[str] = set()
    records, errors, status = 0, [], ""
    started, reader_before = time.monotonic(), time.process_time()
    with open(os.path.join(workdir, "stderr.txt"), "w+b") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(b'{"type":"RECORD"'):
                records += 1
                ids.add(orjson.loads(line)["record"]["data"]["id"])
                continue
            message = orjson.loads(line) if line.startswith(b"{") else {}
            if message.get("type") == "TRACE" and message["trace"].get("type") == "ERROR":
                errors.append(message["trace"]["error"]["message"])
            elif message.get("type") == "TRACE" and message["trace"].get("type") == "STREAM_STATUS":
                status = message["trace"]["stream_status"]["status"]
        _, exit_status, usage = os.wait4(process.pid, 0)
        wall, reader_cpu = time.monotonic() - started, time.process_time() - reader_before
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace").splitlines()[-20:]
    code = os.waitstatus_to_exitcode(exit_status)
    if code != 0 or errors or status != "COMPLETE":
        raise SystemExit(f"the connector failed (exit {code}, stream status {status or 'none'}): {errors[-3:]}\n" + "\n".join(tail))
    return dict(records=records, distinct=len(ids), wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024,
                reader_cpu=reader_cpu)


def read_end(entries: list[dict[str, Any]]) -> str:
    """The latest `less-or-equal(datetime,...)` bound of the connector's slices (its 'now')."""
    bounds = [part.split(",", 1)[1].rstrip(")") for e in entries for f in e["query"].get("filter", [])
              for part in f.split("),") if part.startswith("less-or-equal(datetime,")]
    return max(bounds, key=lambda b: datetime.strptime(b, "%Y-%m-%dT%H:%M:%S%z"))


def events_after(base_url: str, bound: str) -> int:
    """Events of the emulator dated after `bound` (the account's future-dated events, which no
    read up to its own start time sees), counted by paging the emulator after the measurement."""
    query = urllib.parse.urlencode({"filter": f"greater-than(datetime,{bound})", "page[size]": 1000, "fields[event]": "datetime"})
    url: str | None = f"{base_url}{EVENTS_PATH}?{query}"
    count = 0
    while url:
        request = urllib.request.Request(url, headers={"Authorization": "Klaviyo-API-Key pk_demo", "revision": "2026-07-15"})
        with urllib.request.urlopen(request) as response:
            page = json.load(response)
        count += len(page["data"])
        url = page["links"].get("next")
    return count


def measure(args: argparse.Namespace, python: str, emulator: Any, log_file: str, versions: str) -> None:
    start = args.start or account_start(args.days)
    config = {"api_key": "pk_demo", "start_date": start, "num_workers": args.num_workers}
    load_before = load_average()
    cpu_before = emulator_cpu(emulator.pid)
    since = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        result = run_connector(python, emulator.base_url, config, workdir)
    emulator_seconds = emulator_cpu(emulator.pid) - cpu_before
    load_after = load_average()
    entries = requests_in(log_file, since)
    ours = [e for e in entries if e["path"].rstrip("/") == EVENTS_PATH]
    if len(ours) != len(entries):
        others = sorted({e["path"] for e in entries} - {e["path"] for e in ours})
        print(f"note: the connector also requested {others}", flush=True)
    ok = [e for e in ours if e["status"] == 200]
    throttled = sum(1 for e in entries if e["status"] == 429)
    revisions = sorted({e["headers"].get("revision", "none") for e in ours})
    answered = ", ".join(f"{r} answered as {resolve(r)}" for r in revisions)
    sizes = sorted({q for e in ours for q in e["query"].get("page[size]", [])})
    page = route(resolve(revisions[0]), "GET", EVENTS_PATH)[0].page  # type: ignore[union-attr]
    page_size = int(sizes[0]) if sizes else page.fixed or page.default
    sent = f"page[size]={','.join(sizes)}" if sizes else f"no page[size] sent: the revision's default, {page_size}"
    slices = len({tuple(e["query"].get("filter", [])) for e in ours})  # a slice = one datetime window, its pages share it
    span = max(e["finished"] for e in ok) - min(e["started"] for e in ok)
    end = read_end(ours)
    after = events_after(emulator.base_url, end)  # after `entries` were read: not in the figures
    per_second = result["records"] / result["wall"]
    print(
        f"{'airbyte':<10} events: {result['records']:>9} records ({result['distinct']} distinct) in {result['wall']:7.1f} s (process)"
        f" | {per_second:9.0f} rec/s | {len(ok) / result['wall'] * 60:7.0f} req/min | 429s {throttled}"
        f" | peak RSS {result['rss_mb']:6.0f} MB | CPU {result['cpu']:6.1f} s ({result['cpu'] / max(result['records'], 1) * 1e5:5.1f} s/100k)"
        f" | emulator CPU {emulator_seconds:5.1f} s | load {load_before} -> {load_after}\n"
        f"{'':<10} {versions}, revision {answered}, {args.num_workers} workers, from {start}: {slices} slices (datetime windows)"
        f" | {len(ours)} requests ({len(ours) / max(result['records'], 1) * 1000:.2f} per 1000 events,"
        f" {len(ours) * page_size / max(result['records'], 1):.2f} per full page; {sent})"
        f" from first to last in {span:.1f} s: {result['records'] / span:.0f} rec/s | reader CPU {result['reader_cpu']:.1f} s"
        f" | emulator: {args.events} events, {after} dated after the read's end {end}: {args.events - after} to read,"
        f" {args.events - after - result['distinct']} missed",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--profiles", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--no-rate-limits", action="store_true", help="emulator without rate limits")
    parser.add_argument("--num-workers", type=int, default=10,
                        help="the connector's num_workers (default 10, its spec's default, which Airbyte's form fills in)")
    parser.add_argument("--start", default=None, help="the connector's start_date (default: midnight UTC of the account's first day)")
    parser.add_argument("--venv", default=VENV, help=f"the connector's venv (default {VENV})")
    args = parser.parse_args()
    python = os.path.join(args.venv, "bin", "python")
    if not os.path.exists(python):
        raise SystemExit(f"no venv at {args.venv}: python3.11 -m venv {args.venv} && {args.venv}/bin/pip install {PACKAGE}==2.13.1")
    versions = connector_versions(python)
    with tempfile.TemporaryDirectory() as logs:
        log_file = os.path.join(logs, "requests.jsonl")
        emulator = start_emulator(args, log_file)
        try:
            measure(args, python, emulator, log_file, versions)
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
