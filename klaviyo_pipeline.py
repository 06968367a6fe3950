"""Load Klaviyo into a warehouse with dlt: the command users run.

    python klaviyo_pipeline.py --demo                       # no key: the local emulator
    SOURCES__KLAVIYO__API_KEY=pk_... python klaviyo_pipeline.py
    python klaviyo_pipeline.py --reports events --start 2024-01-02T23:20:49Z --end 2024-01-09T00:00:00Z

Pipeline name `klaviyo`, so `dlt pipeline klaviyo info|trace|schema|show` find it; the demo is
pipeline `klaviyo_demo`, dataset `klaviyo_demo_data`, file `klaviyo_demo.duckdb` (never shared
with a real account's).
"""

import argparse
import gc
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination import Destination
from dlt.common.destination.capabilities import TLoaderFileFormat
from dlt.common.destination.exceptions import UnknownDestinationModule
from dlt.common.exceptions import MissingDependencyException
from dlt.common.pipeline import TRefreshMode, get_dlt_pipelines_dir
from dlt.pipeline.exceptions import PipelineStepFailed

from klaviyo import KlaviyoApiError, KlaviyoConfigError, backfill_pending, klaviyo_source
from klaviyo.recovery import repair_interrupted_packages
from klaviyo.settings import ALL_REPORT_NAMES, DEFAULT_REVISION, REVISIONS

DEFAULT_DATASET = "klaviyo_data"


def demo_reports() -> str:
    """The demo's selection: the account is small, so every table of the configured revision,
    the opt-in ones too (not the retired v1 API)."""
    table = REVISIONS.get(str(dlt.config.get("sources.klaviyo.revision") or DEFAULT_REVISION), REVISIONS[DEFAULT_REVISION])
    return ",".join(name for name in table.names if name != "campaigns_v1")

# Records per backfill chunk (one pipeline run and commit each): a crash redoes at most one chunk
# (~20 s of events at 1000 a page), and each run costs a probe request and dlt's per-run work.
# DuckDB leaves a part-filled row group at the end of each chunk's insert; its checkpoint merges
# two such ends when at most three row groups' worth of rows lie between them, rewriting those
# rows. Chunks hold far more (the command's row groups are 10,240 rows: klaviyo_duckdb.py), so a
# backfill writes each event once (with 250,000-record chunks and DuckDB's default 122,880-row
# groups, every chunk was written twice: bench/README.md, "Issue #14").
CHUNK_RECORDS = 500_000

# DuckDB settings of the loader's connection (dlt's `global_config` of the DuckDB credentials):
# a bounded buffer pool keeps the loader's memory flat in the size of a load (DuckDB spills to
# disk beyond it); measured in bench/README.md (1M events: peak RSS 284 MB with 64MB, 344 MB
# with 128MB, same load time). One thread: 64MB with 2 threads once ran out of memory in a
# 1M-event merge. dlt counts every field of the credentials as a secret and refuses them in
# config.toml (ValueNotSecretException), so the command sets them on the destination it builds;
# a `global_config` in secrets.toml or DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG
# overrides them key by key.
DUCKDB_GLOBAL_CONFIG: dict[str, Any] = {"memory_limit": "64MB", "threads": 1, "preserve_insertion_order": False}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description="Load Klaviyo reports into a warehouse with dlt.",
        epilog="Real use: SOURCES__KLAVIYO__API_KEY=pk_... python klaviyo_pipeline.py",
    )
    parser.add_argument("--demo", action="store_true",
        help="run against the built-in Klaviyo emulator (no key needed) into klaviyo_demo.duckdb (pipeline klaviyo_demo, dataset klaviyo_demo_data)")
    parser.add_argument("--reports",
        help=f"comma-separated reports (default: all but campaigns_v1 and segment_profiles; --demo: all but campaigns_v1); any of {','.join(ALL_REPORT_NAMES)}")
    parser.add_argument("--start", help="custom dates start, exclusive, YYYY-MM-DDTHH:MM:SSZ (alone: first-run start)")
    parser.add_argument("--end", help="custom dates end, inclusive, YYYY-MM-DDTHH:MM:SSZ (needs --start)")
    parser.add_argument("--destination", default="duckdb", help="dlt destination (duckdb, postgres, filesystem, bigquery, snowflake, ...)")
    parser.add_argument("--dataset", help=f"dataset (schema) name (default {DEFAULT_DATASET}; --demo: klaviyo_demo_data)")
    parser.add_argument("--detect-deletes", action="store_true",
        help="re-read the ids of the dimension tables and mark rows Klaviyo no longer returns (_klaviyo_deleted)")
    parser.add_argument("--hard-deletes", action="store_true", help="like --detect-deletes, but remove those rows")
    parser.add_argument("--chunk-records", type=int, default=CHUNK_RECORDS,
        help=f"resumable backfills: commit a long range in chunks of about this many records, one run each (default {CHUNK_RECORDS}; 0 = one run)")
    parser.add_argument("--aggregate-query", action="append", default=[], metavar="FILE", help="JSON file with named metric-aggregate queries (repeatable)")
    parser.add_argument("--pipelines-dir", help=f"dlt pipelines working directory (default dlt's, here {get_dlt_pipelines_dir()})")
    parser.add_argument("--progress", default="auto", choices=PROGRESS_CHOICES,
        help="dlt progress display (default auto: tqdm bars on a terminal, log lines otherwise: one per step every 10 s"
        " and one per table when a step ends; enlighten and alive_progress need their package)")
    parser.add_argument("--export-schema-path", metavar="DIR",
        help="write the dlt schema as DIR/klaviyo.schema.yaml after the run (the repository keeps schemas/export)")
    return parser.parse_args(argv)


PROGRESS_CHOICES = ("auto", "log", "tqdm", "enlighten", "alive_progress", "none")


def _progress(choice: str) -> Any:
    """dlt's progress collector for `--progress`: a name dlt knows, None (no display), or for
    `log` the command's own `ProgressLog` (a few true lines per step; see klaviyo_progress.py)."""
    if choice == "auto":
        choice = "tqdm" if sys.stderr.isatty() else "log"
    if choice == "log":
        from klaviyo_progress import ProgressLog

        return ProgressLog()
    return None if choice == "none" else choice


def configure_process() -> None:
    """Process-wide settings of the command (the source itself changes no global state):
    Arrow allocates through the system allocator, which hands freed pages back to the OS;
    Arrow's default mimalloc pool keeps ~70 MB more at peak in an events backfill. And the
    system allocator keeps two arenas (`_limit_malloc_arenas`)."""
    import pyarrow

    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    _limit_malloc_arenas()
    # Python's cycle collector: the modules' objects (dlt, pyarrow, duckdb: ~1M of them) are
    # frozen out of its full passes, and its first generation runs every 50,000 allocations
    # instead of 700. The pages' records are allocated by the million and hold no cycles, yet
    # every 700 of them started a pass: 5-9% of a backfill's CPU (perf, bench/README.md).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


# glibc's mallopt parameter for the number of arenas (M_ARENA_MAX in malloc.h).
_M_ARENA_MAX = -8


def _limit_malloc_arenas() -> None:
    """At most two malloc arenas, as `MALLOC_ARENA_MAX=2` would set (the variable must be set
    before the process starts, hence mallopt). glibc gives each thread that allocates an arena of
    its own (up to 8 per core); the readers' threads then keep freed page buffers in as many
    heaps, which glibc rarely returns: a 1M-event backfill peaked at 480 MB with them and 352 MB
    with two (bench/README.md). A no-op off glibc."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): its own allocator
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, 2)


def run(args: argparse.Namespace) -> dict[str, int]:
    """Runs the pipeline; returns rows loaded per table."""
    configure_process()
    with ExitStack() as stack:
        source_args: dict[str, Any] = {
            "reports": args.reports,
            "start_date": args.start,
            "end_date": args.end,
            "detect_deletes": args.detect_deletes or args.hard_deletes,
            "hard_deletes": args.hard_deletes,
        }
        destination: Any = duckdb_destination() if args.destination == "duckdb" else args.destination
        dataset = args.dataset or DEFAULT_DATASET
        if args.demo:
            from klaviyo_demo import DEMO_DATASET, DEMO_DUCKDB, start_demo

            dataset = args.dataset or DEMO_DATASET
            demo = stack.enter_context(start_demo())
            source_args.update(api_key=demo.api_key, base_url=demo.base_url)
            source_args["aggregate_queries"] = demo.aggregate_queries
            source_args["reports"] = args.reports or demo_reports()
            if args.destination == "duckdb":
                destination = duckdb_destination(os.path.abspath(DEMO_DUCKDB))  # here, not where the pipeline first ran
        if args.aggregate_query:
            source_args["aggregate_queries"] = _merge_query_files(args.aggregate_query)
        source_args["chunk_records"] = args.chunk_records or None
        make_source = lambda: klaviyo_source(**{k: v for k, v in source_args.items() if v is not None})  # noqa: E731
        make_source()  # validates every argument before anything is written
        settings: dict[str, Any] = dict(
            destination=_with_file_format(destination, _file_format(args.destination)),
            dataset_name=dataset,
            **({"pipelines_dir": args.pipelines_dir} if args.pipelines_dir else {}),
            progress=_progress(args.progress),
            export_schema_path=args.export_schema_path,
        )
        if args.demo:
            from klaviyo_demo import demo_pipeline

            pipeline = demo_pipeline(**settings)  # its own name, state and dataset
        else:
            # `dlt deploy` reads this call from the source: the name must be a literal, and
            # `pipelines_dir` may only appear as a literal (so it is passed through **kwargs).
            pipeline = dlt.pipeline(pipeline_name="klaviyo", **settings)
        started = time.monotonic()
        counts: dict[str, int] = {}
        for load_id in repair_interrupted_packages(pipeline):
            print(f"Repaired package {load_id}, left behind by an interrupted run", flush=True)
        if pipeline.has_pending_data:
            # an interrupted run left extracted or normalized data: dlt loads it first (and
            # extracts nothing new in that run), then the loop below continues the backfill
            print("Finishing the data an interrupted run left behind", flush=True)
            info = pipeline.run(loader_file_format=_file_format(args.destination))
            _add_counts(counts, pipeline)
        # The demo's account is generated anew on every start: its first run replaces the
        # demo tables and cursors of any earlier demo (dlt's refresh), so the result never
        # depends on what an earlier run left in the working directory or the database.
        # None (no refresh) is dlt's default, though its signature types the argument without it
        refresh = cast(TRefreshMode, "drop_sources" if args.demo else None)
        while True:
            info = pipeline.run(make_source(), loader_file_format=_file_format(args.destination), refresh=refresh)
            refresh = cast(TRefreshMode, None)  # later chunks continue the refreshed tables
            info.raise_on_failed_jobs()
            _add_counts(counts, pipeline)
            pending = backfill_pending(pipeline)
            if not pending:
                break
            # each chunk is committed with its rows: a crash from here on loses at most one chunk
            resumes = ", ".join(f"{name} from {when}" for name, when in sorted(pending.items()))
            print(f"Backfill chunk committed; next run resumes {resumes}", flush=True)
        elapsed = time.monotonic() - started
        _print_summary(pipeline, counts, elapsed, _location(pipeline, info), args.pipelines_dir)
        return counts


def _add_counts(counts: dict[str, int], pipeline: dlt.Pipeline) -> None:
    """Adds the rows the pipeline's last run normalized to `counts`."""
    normalize_info = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    for table, rows in (normalize_info.row_counts if normalize_info else {}).items():
        counts[table] = counts.get(table, 0) + rows


def duckdb_destination(database: str | None = None) -> dlt.destinations.duckdb:
    """dlt's DuckDB destination with `DUCKDB_GLOBAL_CONFIG` (and any configured `global_config`
    over it), loading events file by file (`klaviyo_duckdb`: each row written once). `database`:
    the file's path; None keeps dlt's own resolution (credentials from secrets.toml or
    DESTINATION__DUCKDB__CREDENTIALS, else `<pipeline name>.duckdb` in the cwd)."""
    configured = dlt.secrets.get("destination.duckdb.credentials.global_config", dict) or {}
    # a mapping: dlt fills the fields it omits (the database) from the configured credentials
    credentials: dict[str, Any] = {"global_config": {**DUCKDB_GLOBAL_CONFIG, **configured}}
    if database is not None:
        credentials["database"] = database
    from klaviyo_duckdb import duckdb

    return duckdb(credentials=credentials)


def _merge_query_files(files: list[str]) -> dict[str, Any]:
    import json

    from klaviyo.aggregates import load_queries

    merged: dict[str, Any] = {}
    for path in files:
        load_queries(path)  # validates, with a one-line error naming the file
        with open(path, encoding="utf-8") as handle:
            body = json.load(handle)
        merged.update({"query": body} if "data" in body else body)
    return merged


def _file_format(destination: str) -> TLoaderFileFormat:
    """Parquet where the destination takes it (several times cheaper per row than the
    default insert files); the destination's own default elsewhere (None: dlt's signature
    types the argument without None, though None is its default)."""
    return cast(TLoaderFileFormat, "parquet" if destination in ("duckdb", "filesystem", "bigquery", "snowflake") else None)


def _with_file_format(destination: Any, file_format: str | None) -> Any:
    """The destination with `file_format` as its preferred format: `run(loader_file_format=)`
    reaches only the resources' own tables, while child tables a resource routes by name
    would otherwise get the destination's default (jsonl on filesystem). The staging format
    too, for BigQuery or Snowflake loading through a bucket (`staging_type = "filesystem"`).
    A name is resolved (and checked) here."""
    preferred = {"preferred_loader_file_format": file_format, "preferred_staging_file_format": file_format} if file_format else {}
    if isinstance(destination, str):
        return _destination(destination, preferred)
    destination.caps_params.update(preferred)
    return destination


def _destination(name: str, options: dict[str, Any]) -> Destination:
    """dlt's destination for `--destination` (a type like `postgres`, or a named destination
    configured with `destination_type`). An unknown name, or a destination whose packages are
    not installed, is bad input: one line naming the fix (dlt says it in a traceback, later)."""
    try:
        destination = Destination.from_reference(name, **options)
    except UnknownDestinationModule:
        raise KlaviyoConfigError(
            f"--destination {name!r} is not a dlt destination; use one of: {', '.join(_destination_names())}"
            f" (or a named destination with destination_type set in .dlt/config.toml)"
        ) from None
    assert destination is not None  # dlt returns None only for a None reference
    try:
        _ = destination.client_class  # imports the destination's client and its packages
    except (ModuleNotFoundError, MissingDependencyException) as error:
        extra = destination.destination_type.rsplit(".", 1)[-1]
        missing = f" ({error.name} is missing)" if isinstance(error, ModuleNotFoundError) and error.name else ""
        raise KlaviyoConfigError(
            f"--destination {name} needs packages that are not installed{missing};"
            f' install them with: pip install "dlt[{extra}]=={dlt.__version__}"'
        ) from None
    return destination


def _destination_names() -> list[str]:
    """Names of the destination types dlt knows (its registry; `destination`, the decorator
    for custom sinks, is left out: it needs code, not a name)."""
    from dlt.common.destination.reference import DestinationReference

    return sorted({ref.rsplit(".", 1)[-1] for ref in DestinationReference.DESTINATIONS} - {"destination"})


def _location(pipeline: dlt.Pipeline, info: Any) -> str:
    """Where the data went: the DuckDB file's absolute path, else the destination's
    displayable location (dlt hides passwords in it)."""
    if pipeline.destination.destination_name == "duckdb":
        database = getattr(pipeline.destination_client().config.credentials, "database", None)
        if isinstance(database, str) and database != ":memory:":
            return os.path.abspath(database)
    return str(info.destination_displayable_credentials or "")


def _print_summary(pipeline: dlt.Pipeline, counts: dict[str, int], elapsed: float, location: str, pipelines_dir: str | None = None) -> None:
    """Rows per table, elapsed time, destination, dataset, location, and how to inspect it."""
    print(f"Loaded into {pipeline.destination.destination_name} dataset {pipeline.dataset_name} in {elapsed:.1f} s:")
    if location:
        print(f"  location: {location}")
    tables = {t: n for t, n in sorted(counts.items()) if not t.startswith("_dlt")}
    width = max([40, *map(len, tables)])
    for table, rows in tables.items():
        print(f"  {table:<{width}} {rows:>10} rows")
    if tables:
        print(f"  {'total':<{width}} {sum(tables.values()):>10} rows")
    else:
        print("  nothing new")
    print(_inspect_hint(pipeline.pipeline_name, pipelines_dir))


def _inspect_hint(pipeline_name: str, pipelines_dir: str | None) -> str:
    """The closing `Inspect:` line, a command that works as printed (from the same directory):
    `dlt` when PATH finds this Python's dlt (an activated virtualenv), else that script's path
    (`.venv/bin/dlt`). `show` also needs the virtualenv's bin on PATH (dlt starts `marimo` by
    name), so without it the line says to activate the virtualenv first."""
    bin_dir = Path(sys.executable).parent
    script = shutil.which("dlt", path=str(bin_dir))
    found = shutil.which("dlt")
    where = f" --pipelines-dir {shlex.quote(pipelines_dir)}" if pipelines_dir else ""
    args = f"pipeline{where} {pipeline_name} info"
    if script and found and os.path.samefile(script, found):
        return f"Inspect: dlt {args}   (or trace, schema, show)"
    command = _shell_path(script) if script else f"{_shell_path(sys.executable)} -m dlt"
    activate = bin_dir / "activate"
    show = f"; for show, the dashboard, first activate the virtualenv: . {_shell_path(str(activate))}" if activate.exists() else ""
    return f"Inspect: {command} {args}   (or trace, schema{show})"


def _shell_path(path: str) -> str:
    """`path` for a shell command: relative to the current directory when inside it."""
    relative = os.path.relpath(path)
    return shlex.quote(path if relative.startswith("..") else relative)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit code 0 on success, 1 with a one-line error otherwise."""
    args = parse_args(argv)
    try:
        run(args)
    except (KlaviyoConfigError, KlaviyoApiError) as error:
        print(f"error: {_said(error)}", file=sys.stderr)
        return 1
    except ConfigFieldMissingException as error:
        print(f"error: missing configuration {', '.join(error.fields)}; set SOURCES__KLAVIYO__API_KEY"
              " or [sources.klaviyo] api_key in .dlt/secrets.toml, or try --demo", file=sys.stderr)
        return 1
    except PipelineStepFailed as error:
        cause = _root_cause(error)
        print(f"error: {_said(cause)}", file=sys.stderr)
        return 1
    return 0


# The flags that set the source's arguments: errors name what the user typed.
FLAGS = {"start_date": "--start", "end_date": "--end", "chunk_records": "--chunk-records"}


def _said(error: BaseException) -> str:
    """The error's one line, arguments called by the command's flags."""
    return error.worded(FLAGS) if isinstance(error, KlaviyoConfigError) else str(error)


def _root_cause(error: BaseException) -> BaseException:
    """The innermost Klaviyo error behind dlt's wrappers (or the error itself)."""
    seen = error
    while seen is not None:
        if isinstance(seen, (KlaviyoConfigError, KlaviyoApiError)):
            return seen
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return error


if __name__ == "__main__":
    sys.exit(main())
