"""Throughput benchmark: events (or profiles) from the emulator into DuckDB, at Klaviyo's pace.

Starts the emulator as a subprocess with Klaviyo's rate limits and a per-response latency,
then runs the pipeline in a child process twice — windowed and parallel, then a sequential
baseline (one window, one worker) — and prints one line per run:

    python bench/throughput.py                       # events, N=200,000
    python bench/throughput.py --events 1000000 --skip-baseline
    python bench/throughput.py --report profiles --profiles 70000
    python bench/throughput.py --incremental-check   # a backfill, then a run with nothing new

Figures: records/s, requests/min, ratio to the tier's steady ceiling (requests/min x page
size), 429s received, peak RSS of the pipeline process, CPU seconds per 100k records (pipeline
process; the emulator's CPU is printed apart), wall time.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CEILINGS = {"events": (3500, 200), "profiles": (700, 100)}  # steady requests/min, page size


def start_emulator(args: argparse.Namespace, log_file: str) -> "subprocess.Popen[str]":
    command = [
        sys.executable, "-m", "klaviyo_emulator", "--port", "0",
        "--events", str(args.events), "--profiles", str(args.profiles), "--days", str(args.days),
        "--latency-ms", str(args.latency_ms), "--log", log_file, "--seed", "7",
    ]
    if not args.no_rate_limits:
        command += ["--rate-limits", "klaviyo"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    process.base_url = line.strip().rsplit(" ", 1)[-1]  # type: ignore[attr-defined]
    return process


def run_child(report: str, base_url: str, workers: int, min_window_minutes: Optional[float], workdir: str) -> Dict[str, Any]:
    """Runs one pipeline in a child process and returns its measurements (a second call with
    the same `workdir` runs the same pipeline again: an incremental run)."""
    code = f"""
import json, os, resource, sys, time
sys.path.insert(0, {str(REPO)!r})
import dlt
from klaviyo import klaviyo_source
from klaviyo_pipeline import configure_process, duckdb_destination
configure_process()
from klaviyo.ratelimit import RateLimiter
source = klaviyo_source(api_key="pk_demo", base_url={base_url!r}, reports=[{report!r}],
                        workers={workers}, min_window_minutes={min_window_minutes!r}, start_date="2000-01-01T00:00:00Z")
pipeline = dlt.pipeline("bench_{report}_{workers}", destination=duckdb_destination(os.path.join({workdir!r}, "bench.duckdb")),
                        dataset_name="klaviyo_data", pipelines_dir=os.path.join({workdir!r}, "pipelines"))
started = time.monotonic()
info = pipeline.run(source, loader_file_format="parquet")
wall = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_SELF)
children = resource.getrusage(resource.RUSAGE_CHILDREN)
new_rows = pipeline.last_trace.last_normalize_info.row_counts.get({report!r}, 0)
steps = {{step.step: (step.finished_at - step.started_at).total_seconds() for step in pipeline.last_trace.steps}}
with pipeline.sql_client() as client:
    rows, distinct = client.execute_sql("SELECT count(*), count(DISTINCT id) FROM {report}")[0]
limiter = RateLimiter.for_account({base_url!r}, "pk_demo")
print(json.dumps(dict(wall=wall, cpu=usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime,
                      rss_mb=max(usage.ru_maxrss, children.ru_maxrss) / 1024,
                      rows=rows, distinct=distinct, new_rows=new_rows, steps=steps, throttled=limiter.throttled(), waited=limiter.waited_s)))
"""
    # cwd = the repository, so that .dlt/config.toml applies as it does for klaviyo_pipeline.py;
    # the DuckDB destination is the command's own (its memory bound, DUCKDB_GLOBAL_CONFIG)
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    process_wall = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"pipeline failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall"] = process_wall
    return result


def requests_in(log_file: str, since: float, path: str) -> List[Dict[str, Any]]:
    entries = []
    with open(log_file, encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            if entry.get("path") == path and entry.get("started", 0) >= since:
                entries.append(entry)
    return entries


def emulator_cpu(pid: int) -> float:
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except Exception:  # noqa: BLE001 - a figure, not a failure
        return float("nan")


def measure(label: str, args: argparse.Namespace, emulator: Any, log_file: str, workers: int, min_window_minutes: Optional[float], workdir: Optional[str] = None) -> Dict[str, Any]:
    path = f"/api/{args.report}/"
    cpu_before = emulator_cpu(emulator.pid)
    since = time.time()
    if workdir is None:
        with tempfile.TemporaryDirectory() as workdir:
            result = run_child(args.report, emulator.base_url, workers, min_window_minutes, workdir)
    else:
        result = run_child(args.report, emulator.base_url, workers, min_window_minutes, workdir)
    entries = requests_in(log_file, since, path)
    requests_ok = [e for e in entries if e.get("status") == 200]
    throttled = sum(1 for e in entries if e.get("status") == 429)
    steady, page = CEILINGS[args.report]
    per_second = result["rows"] / result["wall"]
    ceiling = steady / 60 * page
    line = (
        f"{label:<10} {args.report}: {result['rows']:>9} rows ({result['distinct']} distinct) in {result['wall']:7.1f} s"
        f" | {per_second:9.0f} rec/s | {len(requests_ok) / result['wall'] * 60:7.0f} req/min"
        f" | ratio to steady ceiling {per_second / ceiling:5.2f} | 429s {throttled}"
        f" | peak RSS {result['rss_mb']:6.0f} MB | CPU {result['cpu'] / max(result['rows'], 1) * 1e5:5.1f} s/100k"
        f" | emulator CPU {emulator_cpu(emulator.pid) - cpu_before:5.1f} s"
    )
    steps = result.get("steps", {})
    span = max(e["finished"] for e in requests_ok) - min(e["started"] for e in requests_ok) if requests_ok else float("nan")
    line += (
        f"\n{'':<10} steps: extract {steps.get('extract', float('nan')):.1f} s, normalize {steps.get('normalize', float('nan')):.1f} s,"
        f" load {steps.get('load', float('nan')):.1f} s | {len(requests_ok)} requests ({len(requests_ok) * page / max(result['rows'], 1):.2f} per full page)"
        f" from first to last in {span:.1f} s: {result['rows'] / span:.0f} rec/s, ratio {result['rows'] / span / ceiling:.2f}"
    )
    print(line, flush=True)
    result.update(per_second=per_second, throttled_seen=throttled, requests=len(entries), line=line)
    return result


def incremental_check(args: argparse.Namespace, emulator: Any, log_file: str) -> None:
    """A backfill, then the same pipeline again with nothing new: prints the second run's
    wall time (pipeline.run, and the whole process with Python's and dlt's start-up)."""
    with tempfile.TemporaryDirectory() as workdir:
        measure("backfill", args, emulator, log_file, args.workers, args.min_window_minutes, workdir)
        since = time.time()
        second = run_child(args.report, emulator.base_url, args.workers, args.min_window_minutes, workdir)
        entries = requests_in(log_file, since, f"/api/{args.report}/")
    print(
        f"incremental run with nothing new, {args.report}: {second['new_rows']} new rows, {len(entries)} requests"
        f" | pipeline.run {second['wall']:5.2f} s | whole process {second['process_wall']:5.2f} s"
        f" | peak RSS {second['rss_mb']:4.0f} MB | goal <= 3 s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", choices=sorted(CEILINGS), default="events")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--profiles", type=int, default=500)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--min-window-minutes", type=float, default=None)
    parser.add_argument("--skip-baseline", action="store_true", help="no sequential baseline run")
    parser.add_argument("--no-rate-limits", action="store_true", help="emulator without rate limits")
    parser.add_argument("--incremental-check", action="store_true", help="a backfill, then a timed run with nothing new")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        log_file = os.path.join(logs, "requests.jsonl")
        emulator = start_emulator(args, log_file)
        try:
            if args.incremental_check:
                incremental_check(args, emulator, log_file)
                return
            parallel = measure("parallel", args, emulator, log_file, args.workers, args.min_window_minutes)
            if not args.skip_baseline:
                time.sleep(61)  # let the steady window drain so both runs start alike
                baseline = measure("sequential", args, emulator, log_file, 1, None)
                print(f"speed-up parallel / sequential: {parallel['per_second'] / baseline['per_second']:.1f}x")
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
