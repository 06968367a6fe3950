"""Throughput of the Klaviyo emulator serving full pages of /api/events/.

Starts `python -m klaviyo_emulator --port 0 --events N --event-weight W` as a subprocess (once
per weight: realistic and light by default), then 2-4 client threads (requests.Session each,
keep-alive) follow `links.next` chains for ~10 s and the script prints pages/s, events/s, the
emulator's CPU per page and per event, and the JSON bytes per event (and on the wire with
--gzip). Pages: 200 events in 2023-10-15, 1000 in 2026-07-15 (--revision).

Every thread walks its own datetime window, and each new walk uses a window not asked
before, so the emulator's page cache does not flatter the result. --reuse measures the
cached path instead: each thread repeats one 60-page walk.

    python bench/emulator_throughput.py [--events 200000] [--threads 2] [--seconds 10] [--reuse]
        [--revision 2023-10-15|2026-07-15] [--event-weight realistic|light|both] [--gzip]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import zlib
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
PAGE_SIZES = {"2023-10-15": 200, "2026-07-15": 1000}
"""Events per full page: 2023-10-15's fixed 200, 2026-07-15's largest page[size]."""


def start_emulator(events: int, weight: str, gzip: bool) -> tuple[subprocess.Popen, str]:
    """Starts the emulator CLI; returns the process and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "klaviyo_emulator", "--port", "0", "--events", str(events),
         "--event-weight", weight, *(["--gzip"] if gzip else [])],
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
                  headers={**HEADERS, "revision": "2023-10-15"}, timeout=30)
        r.raise_for_status()
        out.append(datetime.fromisoformat(r.json()["data"][0]["attributes"]["datetime"]))
    return out[0], out[1]


def worker(base: str, k: int, threads: int, first: datetime, last: datetime, until: float,
           reuse: bool, stats: dict, lock: threading.Lock, revision: str, gzip: bool) -> None:
    """Follows next-links over shifting windows until `until`."""
    session = requests.Session()
    headers = {**HEADERS, "revision": revision, "Accept-Encoding": "gzip" if gzip else "identity"}
    size = PAGE_SIZES[revision]
    span = (last - first) / threads
    pages = events = wire = plain = 0
    latencies: list[float] = []
    walk = 0
    while time.time() < until:
        shift = timedelta(seconds=0 if reuse else walk * 7 + k)
        start = first + span * k + shift
        flt = f"greater-or-equal(datetime,{start.astimezone(UTC).isoformat()})"
        url: str | None = f"{base}/api/events/"
        params: dict | None = {"filter": flt, "sort": "datetime"}
        if revision != "2023-10-15":
            params["page[size]"] = str(size)
        walked = 0
        while url and time.time() < until and not (reuse and walked == REUSE_PAGES):
            walked += 1
            t0 = time.perf_counter()
            r = session.get(url, params=params, headers=headers, timeout=30, stream=True)
            raw = r.raw.read(decode_content=False)  # the body as sent
            body = zlib.decompress(raw, 31) if r.headers.get("Content-Encoding") == "gzip" else raw
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            doc = orjson.loads(body)
            n = len(doc["data"])
            if n == size:
                pages += 1
            events += n
            wire += len(raw)
            plain += len(body)
            url, params = doc["links"].get("next"), None
        walk += 1
    with lock:
        stats["pages"] += pages
        stats["events"] += events
        stats["latencies"].extend(latencies)
        stats["wire"] += wire
        stats["plain"] += plain


def measure(args: argparse.Namespace, weight: str) -> None:
    """One emulator of `weight`, walked by the client threads; prints its figures."""
    proc, base = start_emulator(args.events, weight, args.gzip)
    try:
        first, last = event_range(base)
        server = psutil.Process(proc.pid)
        cpu0 = sum(server.cpu_times()[:2])
        stats = {"pages": 0, "events": 0, "latencies": [], "wire": 0, "plain": 0}
        lock = threading.Lock()
        t0 = time.time()
        until = t0 + args.seconds
        pool = [threading.Thread(target=worker, args=(base, k, args.threads, first, last, until,
                                                      args.reuse, stats, lock, args.revision,
                                                      args.gzip))
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
    size = PAGE_SIZES[args.revision]
    events = max(1, stats["events"])
    print(f"emulator: {args.events} events, {weight} weight, revision {args.revision}, "
          f"{args.threads} client threads, {elapsed:.1f} s, "
          f"{'cached' if args.reuse else 'uncached'} walks, gzip {'on' if args.gzip else 'off'}")
    print(f"full {size}-event pages/s: {stats['pages'] / elapsed:.0f}")
    print(f"events/s: {stats['events'] / elapsed:.0f}")
    print(f"emulator CPU per page: {server_cpu / max(1, stats['pages']) * 1000:.2f} ms "
          f"({server_cpu / elapsed * 100:.0f}% of one core; capacity ~"
          f"{max(1, stats['pages']) / max(server_cpu, 1e-9):.0f} pages/s per core)")
    print(f"emulator CPU per event: {server_cpu / events * 1e6:.1f} µs")
    wire = f", {stats['wire'] / events:.0f} B on the wire (gzip)" if stats["wire"] != stats["plain"] else ""
    print(f"bytes per event: {stats['plain'] / events:.0f} B of JSON (page envelope included){wire}")
    print(f"latency ms: p50 {statistics.median(lat) * 1000:.1f}, "
          f"p95 {lat[int(len(lat) * 0.95) - 1] * 1000:.1f}")


def main() -> None:
    """Runs the benchmark (once per weight) and prints the results."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2, choices=(1, 2, 3, 4))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--reuse", action="store_true", help="repeat the same walks (cached)")
    ap.add_argument("--revision", choices=tuple(PAGE_SIZES), default="2023-10-15",
                    help="2023-10-15: 200-event pages (default); 2026-07-15: 1000-event pages")
    ap.add_argument("--event-weight", choices=("realistic", "light", "both"), default="both",
                    help="the emulator's --event-weight; both: one run each (default)")
    ap.add_argument("--gzip", action="store_true", help="emulator --gzip, clients ask for gzip")
    args = ap.parse_args()
    for weight in (("realistic", "light") if args.event_weight == "both" else (args.event_weight,)):
        measure(args, weight)


if __name__ == "__main__":
    main()
