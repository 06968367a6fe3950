"""Throughput of the Klaviyo emulator serving full 200-event pages of /api/events/.

Starts `python -m klaviyo_emulator --port 0 --events N` as a subprocess, then 2-4 client
threads (requests.Session each, keep-alive) follow `links.next` chains for ~10 s and the
script prints pages/s and events/s.

Every thread walks its own datetime window, and each new walk uses a window not asked
before, so the emulator's page cache does not flatter the result. --reuse measures the
cached path instead: each thread repeats one 60-page walk.

    python bench/emulator_throughput.py [--events 200000] [--threads 2] [--seconds 10] [--reuse]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
REUSE_PAGES = 60
"""--reuse: every thread repeats the same 60-page walk (fits the emulator's page cache)."""
HEADERS = {"Authorization": "Klaviyo-API-Key pk_demo", "revision": "2023-10-15",
           "accept": "application/json"}


def start_emulator(events: int) -> tuple[subprocess.Popen, str]:
    """Starts the emulator CLI; returns the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "klaviyo_emulator", "--port", "0", "--events", str(events)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline().strip()
    prefix = "Klaviyo emulator listening on "
    if not line.startswith(prefix):
        proc.kill()
        raise SystemExit(f"unexpected start line: {line!r}")
    return proc, line[len(prefix):]


def event_range(base: str) -> tuple[datetime, datetime]:
    """Datetimes of the first and the last event."""
    s = requests.Session()
    out = []
    for sort in ("datetime", "-datetime"):
        r = s.get(f"{base}/api/events/", params={"sort": sort, "fields[event]": "datetime"},
                  headers=HEADERS, timeout=30)
        r.raise_for_status()
        out.append(datetime.fromisoformat(r.json()["data"][0]["attributes"]["datetime"]))
    return out[0], out[1]


def worker(base: str, k: int, threads: int, first: datetime, last: datetime, until: float,
           reuse: bool, stats: dict, lock: threading.Lock) -> None:
    """Follows next-links over shifting windows until `until`."""
    session = requests.Session()
    span = (last - first) / threads
    pages = events = 0
    latencies: list[float] = []
    walk = 0
    while time.time() < until:
        shift = timedelta(seconds=0 if reuse else walk * 7 + k)
        start = first + span * k + shift
        flt = f"greater-or-equal(datetime,{start.astimezone(UTC).isoformat()})"
        url: str | None = f"{base}/api/events/"
        params: dict | None = {"filter": flt, "sort": "datetime"}
        walked = 0
        while url and time.time() < until and not (reuse and walked == REUSE_PAGES):
            walked += 1
            t0 = time.perf_counter()
            r = session.get(url, params=params, headers=HEADERS, timeout=30)
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            doc = orjson.loads(r.content)
            n = len(doc["data"])
            if n == 200:
                pages += 1
            events += n
            url, params = doc["links"].get("next"), None
        walk += 1
    with lock:
        stats["pages"] += pages
        stats["events"] += events
        stats["latencies"].extend(latencies)


def main() -> None:
    """Runs the benchmark and prints the result."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2, choices=(1, 2, 3, 4))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reuse", action="store_true", help="repeat the same walks (cached)")
    args = ap.parse_args()
    proc, base = start_emulator(args.events)
    try:
        first, last = event_range(base)
        server = psutil.Process(proc.pid)
        cpu0 = sum(server.cpu_times()[:2])
        stats = {"pages": 0, "events": 0, "latencies": []}
        lock = threading.Lock()
        t0 = time.time()
        until = t0 + args.seconds
        pool = [threading.Thread(target=worker, args=(base, k, args.threads, first, last,
                                                      until, args.reuse, stats, lock))
                for k in range(args.threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.time() - t0
        server_cpu = sum(server.cpu_times()[:2]) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lat = sorted(stats["latencies"]) or [0.0]
    print(f"emulator: {args.events} events, {args.threads} client threads, "
          f"{elapsed:.1f} s, {'cached' if args.reuse else 'uncached'} walks")
    print(f"full 200-event pages/s: {stats['pages'] / elapsed:.0f}")
    print(f"events/s: {stats['events'] / elapsed:.0f}")
    print(f"emulator CPU per page: {server_cpu / max(1, stats['pages']) * 1000:.2f} ms "
          f"({server_cpu / elapsed * 100:.0f}% of one core; capacity ~"
          f"{max(1, stats['pages']) / max(server_cpu, 1e-9):.0f} pages/s per core)")
    print(f"latency ms: p50 {statistics.median(lat) * 1000:.1f}, "
          f"p95 {lat[int(len(lat) * 0.95) - 1] * 1000:.1f}")


if __name__ == "__main__":
    main()
