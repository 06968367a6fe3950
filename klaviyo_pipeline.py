"""Load Klaviyo into a warehouse with dlt: the command users run.

    python klaviyo_pipeline.py --demo                       # no key: the local emulator
    SOURCES__KLAVIYO__API_KEY=pk_... python klaviyo_pipeline.py
    python klaviyo_pipeline.py --reports events --start 2024-01-02T23:20:49Z --end 2024-01-09T00:00:00Z

Pipeline name `klaviyo`, so `dlt pipeline klaviyo info|trace|schema|show` find it.
"""

import argparse
import os
import sys
import time
from contextlib import ExitStack
from typing import Any, Dict, List, Optional, Sequence

import dlt
from dlt.common.configuration.exceptions import ConfigFieldMissingException
from dlt.common.destination import Destination
from dlt.pipeline.exceptions import PipelineStepFailed

from klaviyo import KlaviyoApiError, KlaviyoConfigError, backfill_pending, klaviyo_source
from klaviyo.recovery import repair_interrupted_packages
from klaviyo.settings import DEFAULT_REVISION, REVISIONS

ALL_REPORT_NAMES = REVISIONS[DEFAULT_REVISION].names


def demo_reports() -> str:
    """The demo's selection: the account is small, so every table of the configured revision,
    the opt-in ones too (not the retired v1 API)."""
    table = REVISIONS.get(str(dlt.config.get("sources.klaviyo.revision") or DEFAULT_REVISION), REVISIONS[DEFAULT_REVISION])
    return ",".join(name for name in table.names if name != "campaigns_v1")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description="Load Klaviyo reports into a warehouse with dlt.",
        epilog="Real use: SOURCES__KLAVIYO__API_KEY=pk_... python klaviyo_pipeline.py",
    )
    parser.add_argument("--demo", action="store_true", help="run against the built-in Klaviyo emulator (no key needed) into klaviyo.duckdb")
    parser.add_argument("--reports", help=f"comma-separated reports (default: all but campaigns_v1 and segment_profiles; --demo: all but campaigns_v1); any of {','.join(ALL_REPORT_NAMES)}")
    parser.add_argument("--start", help="custom dates start, exclusive, YYYY-MM-DDTHH:MM:SSZ (alone: first-run start)")
    parser.add_argument("--end", help="custom dates end, inclusive, YYYY-MM-DDTHH:MM:SSZ (needs --start)")
    parser.add_argument("--destination", default="duckdb", help="dlt destination (duckdb, postgres, filesystem, bigquery, snowflake, ...)")
    parser.add_argument("--dataset", default="klaviyo_data", help="dataset (schema) name")
    parser.add_argument("--detect-deletes", action="store_true", help="re-read the ids of the dimension tables and mark rows Klaviyo no longer returns (_klaviyo_deleted)")
    parser.add_argument("--hard-deletes", action="store_true", help="like --detect-deletes, but remove those rows")
    parser.add_argument("--chunk-records", type=int, default=250_000, help="resumable backfills: commit a long range in chunks of about this many records, one run each (default 250000; 0 = one run)")
    parser.add_argument("--aggregate-query", action="append", default=[], metavar="FILE", help="JSON file with named metric-aggregate queries (repeatable)")
    parser.add_argument("--pipelines-dir", help="dlt pipelines working directory (default ~/.dlt/pipelines)")
    parser.add_argument("--progress", default="auto", choices=PROGRESS_CHOICES, help="dlt progress display (default auto: tqdm bars on a terminal, periodic log lines otherwise; enlighten and alive_progress need their package)")
    parser.add_argument("--export-schema-path", metavar="DIR", help="write the dlt schema as DIR/klaviyo.schema.yaml after the run (the repository keeps schemas/export)")
    return parser.parse_args(argv)


PROGRESS_CHOICES = ("auto", "log", "tqdm", "enlighten", "alive_progress", "none")


def _progress(choice: str) -> Optional[str]:
    """dlt's progress collector name for `--progress` (None = no progress display)."""
    if choice == "auto":
        return "tqdm" if sys.stderr.isatty() else "log"
    return None if choice == "none" else choice


def configure_process() -> None:
    """Process-wide settings of the command (the source itself changes no global state):
    Arrow allocates through the system allocator, which hands freed pages back to the OS;
    Arrow's default mimalloc pool keeps ~70 MB more at peak in an events backfill."""
    import pyarrow

    pyarrow.set_memory_pool(pyarrow.system_memory_pool())


def run(args: argparse.Namespace) -> Dict[str, int]:
    """Runs the pipeline; returns rows loaded per table."""
    configure_process()
    with ExitStack() as stack:
        source_args: Dict[str, Any] = {
            "reports": args.reports,
            "start_date": args.start,
            "end_date": args.end,
            "detect_deletes": args.detect_deletes or args.hard_deletes,
            "hard_deletes": args.hard_deletes,
        }
        destination: Any = args.destination
        if args.demo:
            from klaviyo_demo import start_demo

            demo = stack.enter_context(start_demo())
            source_args.update(api_key=demo.api_key, base_url=demo.base_url)
            source_args["aggregate_queries"] = demo.aggregate_queries
            source_args["reports"] = args.reports or demo_reports()
            if args.destination == "duckdb":
                destination = dlt.destinations.duckdb(os.path.abspath("klaviyo.duckdb"))  # here, not where the pipeline first ran
        if args.aggregate_query:
            source_args["aggregate_queries"] = _merge_query_files(args.aggregate_query)
        source_args["chunk_records"] = args.chunk_records or None
        make_source = lambda: klaviyo_source(**{k: v for k, v in source_args.items() if v is not None})  # noqa: E731
        make_source()  # validates every argument before anything is written
        # `dlt deploy` reads this call from the source: the name must be a literal, and
        # `pipelines_dir` may only appear as a literal (so it is passed through **kwargs).
        pipeline = dlt.pipeline(
            pipeline_name="klaviyo",
            destination=_with_file_format(destination, _file_format(args.destination)),
            dataset_name=args.dataset,
            **({"pipelines_dir": args.pipelines_dir} if args.pipelines_dir else {}),
            progress=_progress(args.progress),
            export_schema_path=args.export_schema_path,
        )
        started = time.monotonic()
        counts: Dict[str, int] = {}
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
        refresh: Optional[str] = "drop_sources" if args.demo else None
        while True:
            info = pipeline.run(make_source(), loader_file_format=_file_format(args.destination), refresh=refresh)
            refresh = None
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


def _add_counts(counts: Dict[str, int], pipeline: dlt.Pipeline) -> None:
    """Adds the rows the pipeline's last run normalized to `counts`."""
    normalize_info = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    for table, rows in (normalize_info.row_counts if normalize_info else {}).items():
        counts[table] = counts.get(table, 0) + rows


def _merge_query_files(files: List[str]) -> Dict[str, Any]:
    import json

    from klaviyo.aggregates import load_queries

    merged: Dict[str, Any] = {}
    for path in files:
        load_queries(path)  # validates, with a one-line error naming the file
        with open(path, encoding="utf-8") as handle:
            body = json.load(handle)
        merged.update({"query": body} if "data" in body else body)
    return merged


def _file_format(destination: str) -> Optional[str]:
    """Parquet where the destination takes it (several times cheaper per row than the
    default insert files); the destination's own default elsewhere."""
    return "parquet" if destination in ("duckdb", "filesystem", "bigquery", "snowflake") else None


def _with_file_format(destination: Any, file_format: Optional[str]) -> Any:
    """The destination with `file_format` as its preferred format: `run(loader_file_format=)`
    reaches only the resources' own tables, while child tables a resource routes by name
    would otherwise get the destination's default (jsonl on filesystem). The staging format
    too, for BigQuery or Snowflake loading through a bucket (`staging_type = "filesystem"`)."""
    if file_format is None:
        return destination
    preferred = {"preferred_loader_file_format": file_format, "preferred_staging_file_format": file_format}
    if isinstance(destination, str):
        return Destination.from_reference(destination, **preferred)
    destination.caps_params.update(preferred)
    return destination


def _location(pipeline: dlt.Pipeline, info: Any) -> str:
    """Where the data went: the DuckDB file's absolute path, else the destination's
    displayable location (dlt hides passwords in it)."""
    if pipeline.destination.destination_name == "duckdb":
        database = pipeline.destination_client().config.credentials.database  # type: ignore[attr-defined]
        if isinstance(database, str) and database != ":memory:":
            return os.path.abspath(database)
    return str(info.destination_displayable_credentials or "")


def _print_summary(pipeline: dlt.Pipeline, counts: Dict[str, int], elapsed: float, location: str, pipelines_dir: Optional[str] = None) -> None:
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
    where = f" --pipelines-dir {pipelines_dir}" if pipelines_dir else ""
    print(f"Inspect: dlt pipeline{where} {pipeline.pipeline_name} info | trace | schema | show")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: exit code 0 on success, 1 with a one-line error otherwise."""
    args = parse_args(argv)
    try:
        run(args)
    except (KlaviyoConfigError, KlaviyoApiError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ConfigFieldMissingException as error:
        print(f"error: missing configuration {', '.join(error.fields)}; set SOURCES__KLAVIYO__API_KEY or [sources.klaviyo] api_key in .dlt/secrets.toml, or try --demo", file=sys.stderr)
        return 1
    except PipelineStepFailed as error:
        cause = _root_cause(error)
        print(f"error: {cause}", file=sys.stderr)
        return 1
    return 0


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
