"""Where the CPU of an events backfill goes: the command under Linux `perf`, every thread and the
kernel counted (DuckDB's loader, Arrow and the JSON decoder are native code, which py-spy's
Python stacks would not show).

Starts the emulator as `throughput.py` does (Klaviyo's limits, 150 ms latency, realistic events
unless `--event-weight light`), runs `klaviyo_pipeline.py` once under `perf record` and prints
the CPU per event of each part: the share of samples per library (DSO) and the top symbols.

    python bench/profile.py --events 200000            # needs `perf` (linux-perf / linux-tools)
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import REPO, START, start_emulator  # noqa: E402

# perf's library names -> what the time is
PARTS = {
    "libpython": "Python interpreter (the source's, dlt's, requests' code; start-up imports)",
    "_duckdb": "DuckDB (the load: parquet read, JSON check, zstd/FSST compression, vacuum)",
    "[kernel": "kernel (socket reads, file writes, page faults, thread wake-ups)",
    "libc": "libc (memcpy, malloc)",
    "_core": "msgspec (decoding pages)",
    "libarrow": "Arrow (columns, casts, concatenation)",
    "libparquet": "parquet writer",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--revision", default="2026-07-15")
    parser.add_argument("--event-weight", choices=("realistic", "light"), default="realistic")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--top", type=int, default=25, help="symbols to list")
    args = parser.parse_args()
    if not shutil.which("perf"):
        raise SystemExit("perf is not installed (Debian: apt-get install linux-perf); it samples native code and the kernel")
    args.profiles, args.no_rate_limits, args.report = 500, False, "events"
    with tempfile.TemporaryDirectory() as workdir:
        emulator = start_emulator(args, os.path.join(workdir, "emulator.log"))
        try:
            os.makedirs(os.path.join(workdir, ".dlt"))
            shutil.copy(REPO / ".dlt" / "config.toml", os.path.join(workdir, ".dlt", "config.toml"))
            env = dict(os.environ, SOURCES__KLAVIYO__API_KEY="pk_demo", SOURCES__KLAVIYO__BASE_URL=emulator.base_url, SOURCES__KLAVIYO__REVISION=args.revision)  # type: ignore[attr-defined]
            data = os.path.join(workdir, "perf.data")
            pipelines = os.path.join(workdir, "pipelines")
            command = [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--reports", "events", "--start", START]
            command += ["--pipelines-dir", pipelines, "--progress", "log"]
            subprocess.run(["perf", "record", "-F", "499", "-o", data, "--", *command], cwd=workdir, env=env, check=True, capture_output=True)
            perf_report = ["perf", "report", "-i", data, "--sort", "dso,sym", "--stdio", "-F", "sample,dso,sym"]
            report = subprocess.run(perf_report, capture_output=True, text=True, check=True).stdout
        finally:
            emulator.kill()
    samples: Counter[str] = Counter()
    symbols: Counter[str] = Counter()
    for line in report.splitlines():
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        count, dso, symbol = int(fields[0]), fields[1], " ".join(fields[2:])
        part = next((name for prefix, name in PARTS.items() if dso.startswith(prefix)), "other")
        samples[part] += count
        symbols[f"{dso} {symbol}"] += count
    total = sum(samples.values())
    seconds = total / 499
    per_event = seconds / args.events * 1e6
    print(f"{args.events} events ({args.revision}, {args.event_weight}): {total} samples at 499 Hz = {seconds:.1f} s CPU = {per_event:.1f} µs/event")
    for part, count in samples.most_common():
        print(f"  {count / total:6.1%}  {count / 499 / args.events * 1e6:5.1f} µs/event  {part}")
    print("top symbols:")
    for symbol, count in symbols.most_common(args.top):
        print(f"  {count / total:6.1%}  {symbol[:110]}")


if __name__ == "__main__":
    main()
