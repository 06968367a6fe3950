"""Repairs what a kill -9 can leave in a dlt pipeline's working directory.

1. dlt's normalize step commits a package in two moves: it renames the normalized package
   into the load storage, then deletes the extracted package it came from (dlt logs
   "Committing storage, do not kill this process" in between). A process killed between the
   two, or in the middle of the recursive delete, leaves a half-deleted extracted package
   whose data already sits in the load storage; the next run then fails in normalize on the
   missing files. dlt 1.31 has no repair for this.
2. Tables declared deduplicated (`x-stage-data-deduplicated`, the immutable reports) skip
   dlt's dedup of the staging table in the merge. dlt runs load jobs at least once: a job
   whose insert into the staging table committed just before a kill runs again when the
   package is resumed, and its rows would then be inserted twice. A package whose load had
   begun therefore gets the staging dedup back before it is resumed.

The command calls `repair_interrupted_packages` before each run; call it yourself before
`pipeline.run` when you run the source from your own code.
"""

from typing import Any, Literal, cast

import dlt

from .settings import STAGE_DEDUPLICATED

# Job folders of a package whose load has begun (a fresh package has only new_jobs).
_BEGUN: tuple[Literal["started_jobs", "completed_jobs", "failed_jobs"], ...] = ("started_jobs", "completed_jobs", "failed_jobs")


def repair_interrupted_packages(pipeline: dlt.Pipeline) -> list[str]:
    """Repairs the packages an interrupted run left behind (see the module's docstring).

    Returns:
        The load ids repaired (nothing else is touched: an extracted package that has not
        reached the load storage is kept, and dlt normalizes it on the next run).
    """
    try:
        extracted = pipeline.list_extracted_load_packages()
        load_storage = pipeline._get_load_storage()
        committed = set(load_storage.list_normalized_packages()) | set(load_storage.list_loaded_packages())
    except FileNotFoundError:  # a new working directory: nothing to repair
        return []
    repaired = []
    for load_id in extracted:
        if load_id in committed:
            pipeline._get_normalize_storage().extracted_packages.delete_package(load_id)
            repaired.append(load_id)
    packages = load_storage.normalized_packages
    for load_id in load_storage.list_normalized_packages():
        jobs = packages.get_load_package_jobs(load_id)
        begun = any(jobs.get(state) for state in _BEGUN) or any(j.retry_count for j in jobs.get("new_jobs", []))
        if not begun:
            continue
        schema = packages.load_schema(load_id)
        deduplicated = [table for table in schema.tables.values() if cast(dict[str, Any], table).pop(STAGE_DEDUPLICATED, None)]
        if deduplicated:
            packages.save_schema(load_id, schema)
            repaired.append(load_id)
    return repaired
