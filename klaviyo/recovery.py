"""Repairs what a kill -9 can leave in a dlt pipeline's working directory.

dlt's normalize step commits a package in two moves: it renames the normalized package into
the load storage, then deletes the extracted package it came from (dlt logs "Committing
storage, do not kill this process" in between). A process killed between the two, or in the
middle of the recursive delete, leaves a half-deleted extracted package whose data already
sits in the load storage; the next run then fails in normalize on the missing files. dlt 1.31
has no repair for this, so the command calls `repair_interrupted_packages` before each run.
"""

from typing import List

import dlt


def repair_interrupted_packages(pipeline: dlt.Pipeline) -> List[str]:
    """Deletes extracted packages that were already committed to the load storage.

    Returns:
        The load ids of the leftovers removed (nothing else is touched: an extracted package
        that has not reached the load storage is kept, and dlt normalizes it on the next run).
    """
    try:
        extracted = pipeline.list_extracted_load_packages()
        if not extracted:
            return []
        load_storage = pipeline._get_load_storage()
        committed = set(load_storage.list_normalized_packages()) | set(load_storage.list_loaded_packages())
    except FileNotFoundError:  # a new working directory: nothing to repair
        return []
    repaired = []
    for load_id in extracted:
        if load_id in committed:
            pipeline._get_normalize_storage().extracted_packages.delete_package(load_id)
            repaired.append(load_id)
    return repaired
