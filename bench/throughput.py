"""Throughput benchmark: events (or profiles) from the emulator into DuckDB, at Klaviyo's pace.

Starts the emulator as a subprocess with Klaviyo's rate limits and a per-response latency,
then loads its account twice (windowed and parallel, then a sequential baseline: one worker)
and prints two lines per run. Two modes:

- `command` (default): `klaviyo_pipeline.py` itself, as README tells users to run it, in a
  subprocess: its chunked commits (`--chunk-records`, default 500000: a 1M backfill is two or three
  runs), its DuckDB destination and process settings, `--progress log` (what it prints off a
  terminal), the repository's `.dlt/config.toml`, the key and base URL in the environment;
- `run`: one `pipeline.run` of the source in a child process, no chunks (the benchmark's path
  until 2026-12; kept to compare with the figures measured that way).

    python bench/throughput.py                       # events, N=200,000, command + baseline
    python bench/throughput.py --events 1000000 --skip-baseline
    python bench/throughput.py --mode run --events 1000000 --skip-baseline
    python bench/throughput.py --report profiles --profiles 70000
    python bench/throughput.py --incremental-check   # a backfill, then runs with nothing new

Figures: records/s, requests/min, ratio to the steady ceiling of the revision's tier (steady
requests/min x page size), 429s received, peak RSS and CPU of the pipeline's process tree,
the emulator's CPU, and the 1-min load average before and after each run (the machine is
shared: figures taken at a load above 1.5 are suspect).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from klaviyo import settings  # noqa: E402 (after the path above)

# Klaviyo's page size where the source sends no `page[size]` (events in 2023-10-15: 200).
FIXED_PAGE_SIZES = {"/api/events/": 200}
# The account is read from here: every event of the emulator's account (its 30 days).
START = "2000-01-01T00:00:00Z"


def report_row(report: str, revision: str) -> tuple[Any, dict[str, Any]]:
    """The source's report-table row of `report` under `revision` (its path, tier, page size),
    and that revision's rate-limit tiers (per revision where the source has a table for each)."""
    table = getattr(settings, "report_table", None)
    if table is not None:
        try:
            revision_table = table(revision)
        except KeyError:
            raise SystemExit(f"--revision {revision}: the source has no report table for it") from None
        return revision_table.reports[report], revision_table.tiers
    if revision != settings.DEFAULT_REVISION:
        raise SystemExit(f"--revision {revision}: this source has the report table of {settings.DEFAULT_REVISION} only")
    return settings.REPORTS[report], settings.TIERS


def ceiling(report: str, revision: str) -> tuple[int, int]:
    """(steady requests/min, records per page) of `report` under `revision`."""
    row, tiers = report_row(report, revision)
    return tiers[row.tier].steady_per_minute, row.page_size or FIXED_PAGE_SIZES[row.path]


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def start_emulator(args: argparse.Namespace, log_file: str) -> "subprocess.Popen[str]":
    command = [
        sys.executable, "-m", "klaviyo_emulator", "--port", "0",
        "--events", str(args.events), "--profiles", str(args.profiles), "--days", str(args.days),
        "--latency-ms", str(args.latency_ms), "--log", log_file, "--seed", "7",
        "--event-weight", args.event_weight,
    ]
    if args.gzip:
        command.append("--gzip")
    if not args.no_rate_limits:
        command += ["--rate-limits", "klaviyo"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    process.base_url = line.strip().rsplit(" ", 1)[-1]  # type: ignore[attr-defined]
    return process


def run_tree(command: list[str], cwd: str, env: dict[str, str]) -> dict[str, Any]:
    """Runs `command` to its end; its output lines (stdout and stderr), wall seconds, and the
    CPU seconds and peak RSS (MB) of its process tree (`wait4`: the process and every
    descendant it waited for)."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = [line.rstrip("\n") for line in process.stdout]
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed ({process.returncode}):\n" + "\n".join(lines[-40:]))
    return dict(lines=lines, process_wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024)


def run_command(args: argparse.Namespace, base_url: str, workers: int, workdir: str, lookback_hours: float | None) -> dict[str, Any]:
    """Runs `klaviyo_pipeline.py` as a user would, from `workdir` (a copy of the repository's
    `.dlt/config.toml`, so no developer's secrets.toml applies; `klaviyo.duckdb` lands there);
    a second call with the same `workdir` is an incremental run."""
    os.makedirs(os.path.join(workdir, ".dlt"), exist_ok=True)
    shutil.copy(REPO / ".dlt" / "config.toml", os.path.join(workdir, ".dlt", "config.toml"))
    env = dict(os.environ)  # DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG, if set, reaches the command
    env.pop("SOURCES__KLAVIYO__LOOKBACK_HOURS", None)
    env.update(SOURCES__KLAVIYO__API_KEY="pk_demo", SOURCES__KLAVIYO__BASE_URL=base_url, SOURCES__KLAVIYO__REVISION=args.revision)
    if workers != 16:
        env["SOURCES__KLAVIYO__WORKERS"] = str(workers)
    if args.min_window_minutes is not None:
        env["SOURCES__KLAVIYO__MIN_WINDOW_MINUTES"] = str(args.min_window_minutes)
    if lookback_hours is not None:
        env["SOURCES__KLAVIYO__LOOKBACK_HOURS"] = str(lookback_hours)
    command = [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--reports", args.report, "--start", START,
               "--pipelines-dir", os.path.join(workdir, "pipelines"), "--progress", "log"]
    if args.chunk_records is not None:
        command += ["--chunk-records", str(args.chunk_records)]
    result = run_tree(command, workdir, env)
    # ProgressLog's closing line of each step and chunk: "Extract klaviyo: done in 12.3 s | ...",
    # "Load klaviyo in <load id>: done in 1.2 s | ..."
    steps: dict[str, float] = {}
    for line in result["lines"]:
        match = re.match(r"^(Extract|Normalize|Load) [^:]*: done in ([\d.]+) s", line)
        if match:
            steps[match.group(1).lower()] = steps.get(match.group(1).lower(), 0.0) + float(match.group(2))
    loaded = [re.match(rf"^\s+{args.report}\s+(\d+) rows$", line) for line in result["lines"]]
    import duckdb

    with duckdb.connect(os.path.join(workdir, "klaviyo.duckdb"), read_only=True) as connection:
        rows, distinct = connection.execute(f"SELECT count(*), count(DISTINCT id) FROM klaviyo_data.{args.report}").fetchone()  # type: ignore[misc]
    result.update(
        wall=result["process_wall"], rows=rows, distinct=distinct, steps=steps,
        new_rows=sum(int(m.group(1)) for m in loaded if m), chunks=1 + sum("Backfill chunk committed" in line for line in result["lines"]),
    )
    return result


def run_child(args: argparse.Namespace, base_url: str, workers: int, workdir: str, lookback_hours: float | None) -> dict[str, Any]:
    """Runs one `pipeline.run` of the source (no chunks) in a child process and returns its
    measurements (a second call with the same `workdir` is an incremental run)."""
    report, min_window_minutes = args.report, args.min_window_minutes
    code = f"""
import json, os, sys, time
sys.path.insert(0, {str(REPO)!r})
import dlt
from klaviyo import klaviyo_source
from klaviyo_pipeline import configure_process, duckdb_destination
configure_process()
source = klaviyo_source(api_key="pk_demo", base_url={base_url!r}, revision={args.revision!r}, reports=[{report!r}], lookback_hours={lookback_hours!r},
                        workers={workers}, min_window_minutes={min_window_minutes!r}, start_date={START!r})
pipeline = dlt.pipeline("bench_{report}_{workers}", destination=duckdb_destination(os.path.join({workdir!r}, "bench.duckdb")),
                        dataset_name="klaviyo_data", pipelines_dir=os.path.join({workdir!r}, "pipelines"))
started = time.monotonic()
info = pipeline.run(source, loader_file_format="parquet")
wall = time.monotonic() - started
new_rows = pipeline.last_trace.last_normalize_info.row_counts.get({report!r}, 0)
steps = {{step.step: (step.finished_at - step.started_at).total_seconds() for step in pipeline.last_trace.steps}}
with pipeline.sql_client() as client:
    rows, distinct = client.execute_sql("SELECT count(*), count(DISTINCT id) FROM {report}")[0]
    duckdb = client.execute_sql("SELECT current_setting('memory_limit'), current_setting('threads'), current_setting('preserve_insertion_order')")[0]
print(json.dumps(dict(wall=wall, rows=rows, distinct=distinct, new_rows=new_rows, steps=steps, chunks=1, duckdb=list(duckdb))))
"""
    # cwd = the repository, so that .dlt/config.toml applies as it does for klaviyo_pipeline.py;
    # the DuckDB destination is the command's own (its memory bound, DUCKDB_GLOBAL_CONFIG)
    result = run_tree([sys.executable, "-c", code], str(REPO), dict(os.environ))
    result.update(json.loads(result["lines"][-1]))
    return result


def requests_in(log_file: str, since: float, path: str | None = None) -> list[dict[str, Any]]:
    """The emulator's log entries of requests started after `since` (epoch s), of `path` or all."""
    entries = []
    with open(log_file, encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            if entry.get("started", 0) >= since and (path is None or entry.get("path") == path):
                entries.append(entry)
    return entries


def emulator_cpu(pid: int) -> float:
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except Exception:  # noqa: BLE001 - a figure, not a failure
        return float("nan")


Runner = Callable[[argparse.Namespace, str, int, str, float | None], dict[str, Any]]


def measure(label: str, args: argparse.Namespace, emulator: Any, log_file: str, workers: int, workdir: str | None = None) -> dict[str, Any]:
    """One backfill (into a fresh directory unless `workdir` is given); prints its two lines."""
    runner: Runner = run_command if args.mode == "command" else run_child
    path = run_path(args)
    load_before = load_average()
    cpu_before = emulator_cpu(emulator.pid)
    since = time.time()
    if workdir is None:
        with tempfile.TemporaryDirectory() as fresh:
            result = runner(args, emulator.base_url, workers, fresh, None)
    else:
        result = runner(args, emulator.base_url, workers, workdir, None)
    entries = requests_in(log_file, since, path)
    requests_ok = [e for e in entries if e.get("status") == 200]
    throttled = sum(1 for e in requests_in(log_file, since) if e.get("status") == 429)
    steady, page = ceiling(args.report, args.revision)
    per_second = result["rows"] / result["wall"]
    ceiling_per_second = steady / 60 * page
    timed = "process" if args.mode == "command" else "pipeline.run"
    rows = max(result["rows"], 1)
    unit = args.report.rstrip("s")  # "event" / "profile"
    emulator_seconds = emulator_cpu(emulator.pid) - cpu_before
    line = (
        f"{label:<10} {args.report}: {result['rows']:>9} rows ({result['distinct']} distinct) in {result['wall']:7.1f} s ({timed})"
        f" | {per_second:9.0f} rec/s | {len(requests_ok) / result['wall'] * 60:7.0f} req/min"
        f" | ratio to steady ceiling {per_second / ceiling_per_second:5.2f} | 429s {throttled}"
        f" | peak RSS {result['rss_mb']:6.0f} MB | CPU {result['cpu'] / rows * 1e5:5.1f} s/100k ({result['cpu'] / rows * 1e6:5.1f} µs/{unit})"
        f" | emulator CPU {emulator_seconds:5.1f} s ({emulator_seconds / rows * 1e6:5.1f} µs/{unit}) | load {load_before} -> {load_average()}"
    )
    steps = result.get("steps", {})
    span = max(e["finished"] for e in requests_ok) - min(e["started"] for e in requests_ok) if requests_ok else float("nan")
    summed = " (summed over chunks)" if result["chunks"] > 1 else ""
    line += (
        f"\n{'':<10} {args.mode} {args.revision}: {result['chunks']} chunk(s) | steps{summed}: extract {steps.get('extract', float('nan')):.1f} s,"
        f" normalize {steps.get('normalize', float('nan')):.1f} s, load {steps.get('load', float('nan')):.1f} s"
        f" | {len(requests_ok)} requests ({len(requests_ok) * page / max(result['rows'], 1):.2f} per full page of {page})"
        f" from first to last in {span:.1f} s: {result['rows'] / span:.0f} rec/s, ratio {result['rows'] / span / ceiling_per_second:.2f}"
        f" | {len(requests_ok) / rows * 1000:.2f} requests per 1000 {unit}s | {served_bytes(requests_ok, rows, args)}"
    )
    if result.get("duckdb"):
        line += f" | DuckDB memory_limit, threads, preserve_insertion_order: {', '.join(map(str, result['duckdb']))}"
    print(line, flush=True)
    result.update(per_second=per_second, line=line)
    return result


def served_bytes(entries: list[dict[str, Any]], rows: int, args: argparse.Namespace) -> str:
    """Mean JSON bytes per served record (body bytes of the 200 answers of the run's path ÷
    records loaded; the emulator logs each body's size before and after compression), the
    bytes on the wire when gzip applied, and the emulator's event weight and gzip setting."""
    unit = args.report.rstrip("s")
    plain = sum(e.get("plain_bytes", 0) for e in entries)
    sent = sum(e.get("bytes", 0) for e in entries)
    wire = f", {sent / rows:.0f} B/{unit} gzip on the wire" if sent != plain else ""
    weight = f"{args.event_weight} events, " if args.report == "events" else ""
    return f"{plain / rows:.0f} B/{unit} JSON{wire} ({weight}emulator gzip {'on' if args.gzip else 'off'})"


def run_path(args: argparse.Namespace) -> str:
    """The API path of the run's report (2026-07-15 drops 2023-10-15's trailing slash)."""
    return str(report_row(args.report, args.revision)[0].path)


def incremental_check(args: argparse.Namespace, emulator: Any, log_file: str) -> None:
    """A backfill, then the same pipeline twice more with nothing new in the account: with the
    source's default lookback (events: the last 7 days are read again and merged) and with
    `lookback_hours=0`. Prints each run's requests, rows re-read and wall time (the whole
    process: Python's, dlt's and the source's start-up included)."""
    runner: Runner = run_command if args.mode == "command" else run_child
    with tempfile.TemporaryDirectory() as workdir:
        backfill = measure("backfill", args, emulator, log_file, args.workers, workdir)
        for lookback_hours, name in ((None, "default lookback"), (0.0, "lookback_hours=0")):
            load_before = load_average()
            since = time.time()
            second = runner(args, emulator.base_url, args.workers, workdir, lookback_hours)
            entries = requests_in(log_file, since)
            ours = sum(1 for e in entries if e.get("path") == run_path(args))
            print(
                f"no-op run, {name}: {args.report} {second['distinct'] - backfill['distinct']} new ids,"
                f" {second['new_rows']} rows re-read and merged | {ours} {args.report} requests, {len(entries)} in all"
                f" | whole process {second['process_wall']:5.2f} s | peak RSS {second['rss_mb']:4.0f} MB"
                f" | CPU {second['cpu']:5.2f} s | load {load_before} -> {load_average()}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("command", "run"), default="command",
                        help="command: klaviyo_pipeline.py in a subprocess (default); run: one pipeline.run, no chunks")
    parser.add_argument("--report", choices=("events", "profiles"), default="events")
    parser.add_argument("--revision", default=settings.DEFAULT_REVISION, help=f"API revision (default the source's, {settings.DEFAULT_REVISION})")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--profiles", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--event-weight", choices=("realistic", "light"), default="realistic",
                        help="the emulator's --event-weight (default realistic: ~1.5 KB, 30-60 properties per event)")
    parser.add_argument("--gzip", action="store_true", help="the emulator answers gzip to clients that ask (the source's requests do)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--min-window-minutes", type=float, default=None)
    parser.add_argument("--chunk-records", type=int, default=None,
                        help="command mode: the command's --chunk-records (default: the command's own default)")
    parser.add_argument("--skip-baseline", action="store_true", help="no sequential baseline run")
    parser.add_argument("--no-rate-limits", action="store_true", help="emulator without rate limits")
    parser.add_argument("--airbyte", action="store_true",
                        help="then Airbyte's source-klaviyo on the same emulator (bench/airbyte.py; its venv must exist)")
    parser.add_argument("--incremental-check", action="store_true", help="a backfill, then timed runs with nothing new")
    args = parser.parse_args()
    if args.chunk_records is not None and args.mode != "command":
        parser.error("--chunk-records is a flag of the command: use it with --mode command")
    ceiling(args.report, args.revision)  # a revision the source has no table for stops here
    with tempfile.TemporaryDirectory() as logs:
        log_file = os.path.join(logs, "requests.jsonl")
        emulator = start_emulator(args, log_file)
        try:
            if args.incremental_check:
                incremental_check(args, emulator, log_file)
                return
            parallel = measure("parallel", args, emulator, log_file, args.workers)
            if args.airbyte:
                airbyte_on_the_same_account(args, emulator, log_file)
            if not args.skip_baseline:
                time.sleep(61)  # let the steady window drain so both runs start alike
                baseline = measure("sequential", args, emulator, log_file, 1)
                print(f"speed-up parallel / sequential: {parallel['per_second'] / baseline['per_second']:.1f}x")
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)


def airbyte_on_the_same_account(args: argparse.Namespace, emulator: Any, log_file: str) -> None:
    """Airbyte's connector reads the events of the same emulator (the same data) after the
    source's run, once the steady window has drained (bench/airbyte.py's line and figures)."""
    import airbyte  # bench/airbyte.py (it imports this module: imported here, not at the top)

    python = os.path.join(airbyte.VENV, "bin", "python")
    if not os.path.exists(python):
        print(f"airbyte: skipped, no venv at {airbyte.VENV} (see bench/README.md, Airbyte comparison)")
        return
    time.sleep(61)
    airbyte.measure(argparse.Namespace(**vars(args), start=None, num_workers=10), python, emulator, log_file, airbyte.connector_versions(python))


if __name__ == "__main__":
    main()
