"""Chaos benchmark: an events backfill killed with SIGKILL at random moments, then rerun until
it completes; prints kills survived, lost ids, duplicate ids and the time overhead against a
clean run of the same backfill.

    python bench/chaos.py                     # 1,000,000 events, 5 kills
    python bench/chaos.py --events 200000 --kills 3

The emulator runs in this process (its ground truth gives the expected ids); each pipeline run
is `klaviyo_pipeline.py` in a child process, with --chunk-records so that committed chunks
survive the kills. The emulator injects faults too (--fault-rate, default 0.02).
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from klaviyo.settings import CURSOR_SAFETY_MARGIN  # noqa: E402
from klaviyo_emulator import Emulator, EmulatorConfig  # noqa: E402

UTC = UTC


def command(emu: Emulator, workdir: Path, chunk: int) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--reports", "events", "--start", "2000-01-01T00:00:00Z",
            "--chunk-records", str(chunk), "--pipelines-dir", str(workdir / "pipelines"), "--progress", "none"]
    env = {**os.environ, "SOURCES__KLAVIYO__API_KEY": emu.api_key, "SOURCES__KLAVIYO__BASE_URL": emu.base_url,
           "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.1"}
    return argv, env


def loaded_ids(workdir: Path) -> list[str]:
    with duckdb.connect(str(workdir / "klaviyo.duckdb"), read_only=True) as db:
        return [r[0] for r in db.execute("SELECT id FROM klaviyo_data.events").fetchall()]


def run_to_completion(emu: Emulator, workdir: Path, chunk: int) -> float:
    argv, env = command(emu, workdir, chunk)
    started = time.monotonic()
    done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"run failed: {done.stderr[-2000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--chunk-records", type=int, default=100_000)
    parser.add_argument("--fault-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    config = EmulatorConfig(seed=args.seed, events=args.events, profiles=2000, days=30, fault_rate=args.fault_rate)
    with Emulator(config) as emu, tempfile.TemporaryDirectory() as clean_dir, tempfile.TemporaryDirectory() as chaos_dir:
        clean_s = run_to_completion(emu, Path(clean_dir), args.chunk_records)
        print(f"clean run: {clean_s:.1f} s, {len(loaded_ids(Path(clean_dir)))} events", flush=True)
        argv, env = command(emu, Path(chaos_dir), args.chunk_records)
        before = datetime.now(UTC)
        started = time.monotonic()
        kills = 0
        while kills < args.kills:
            process = subprocess.Popen(argv, cwd=chaos_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(rng.uniform(0.1, 0.5) * clean_s)
            if process.poll() is not None:
                break  # it finished before the kill
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        reruns = 0
        while True:
            reruns += 1
            done = subprocess.run(argv, cwd=chaos_dir, env=env, capture_output=True, text=True)
            if done.returncode == 0:
                break
            print(f"rerun {reruns} failed: {done.stderr.strip()[-300:]}", flush=True)
            if reruns > 10:
                raise SystemExit("the backfill did not complete")
        chaos_s = time.monotonic() - started
        after = datetime.now(UTC)
        ids = loaded_ids(Path(chaos_dir))
        truth_at_most = {e["id"] for e in emu.account.events_between(None, after)}
        truth_surely = {e["id"] for e in emu.account.events_between(None, before - CURSOR_SAFETY_MARGIN)}
        lost = len(truth_surely - set(ids))
        unexpected = len(set(ids) - truth_at_most)
        duplicates = len(ids) - len(set(ids))
        print(
            f"chaos: {args.events} events, kills survived {kills}, reruns {reruns}, loaded {len(ids)},"
            f" lost ids {lost}, duplicate ids {duplicates}, unexpected ids {unexpected},"
            f" time {chaos_s:.1f} s vs clean {clean_s:.1f} s (overhead {chaos_s / clean_s - 1:+.0%})",
            flush=True,
        )


if __name__ == "__main__":
    main()
