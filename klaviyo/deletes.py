"""Delete detection (opt-in, `detect_deletes=True`): rows Klaviyo no longer returns.

For each selected table whose row has an `id_scan` (profiles, campaigns, flows, lists,
segments, templates, metrics, global exclusions; never events) a resource `<table>_deletes`:

1. asks the destination, through the running pipeline's `sql_client`, whether the table
   exists (if not, nothing was loaded, nothing can be deleted, and no request is sent);
2. reads every id Klaviyo holds, cheaply (`ids.read_ids`: one short attribute a record);
3. streams the loaded ids (those not flagged yet) from the destination and keeps the ones
   Klaviyo did not return;
4. writes them back into the same table (merge on `id`): soft delete (default) re-writes those
   rows as loaded, with `_klaviyo_deleted = true` and `_klaviyo_deleted_at` = the run's start;
   hard delete (`hard_deletes=True`) sends `{id, _klaviyo_deleted: true}` and dlt's
   `hard_delete` column hint removes the row.

Ids are compared as Arrow string arrays (about 30 bytes an id); nothing goes into pipeline
state. A merge replaces whole rows, so a soft-deleted row keeps its columns but loses its
nested child-table rows (e.g. a deleted profile's `profiles__subscriptions__...` rows with
`flatten_properties`). The
destination must support merge (SQL destinations do; plain files do not).
"""

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from dlt.common.typing import TDataItems
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.sources import DltResource

from .account import check_account
from .client import KlaviyoApi
from .errors import KlaviyoConfigError
from .ids import read_ids
from .settings import Report, RevisionTable, report_table

DELETED = "_klaviyo_deleted"
DELETED_AT = "_klaviyo_deleted_at"
_ID_CHUNK = 100_000  # loaded ids compared at a time
_ROW_CHUNK = 500  # soft-deleted rows read back per query

logger = logging.getLogger(__name__)


def delete_resources(
    api: KlaviyoApi,
    names: Sequence[str],
    detect: bool,
    hard: bool,
    run_started: datetime,
    workers: int,
    table: RevisionTable | None = None,
) -> Iterator[DltResource]:
    """One `<table>_deletes` resource per selected table that has an id scan (none unless
    `detect`).

    Args:
        api: The source's client.
        names: The selected reports.
        detect: Whether delete detection is on (`detect_deletes`).
        hard: Remove the rows (dlt `hard_delete`) instead of flagging them.
        run_started: Written to `_klaviyo_deleted_at` of the rows flagged in this run.
        workers: Variants of a report scanned at the same time.
        table: The run's report table (default: the default revision's).

    Raises:
        KlaviyoConfigError: `hard` without `detect`.
    """
    if hard and not detect:
        raise KlaviyoConfigError("hard_deletes needs detect_deletes=True (or --detect-deletes)")
    if not detect:
        return
    table = table or report_table()
    for name in names:
        report = table.row(name)
        if report.id_scan:
            yield _delete_resource(api, report, hard, run_started, workers)


def _delete_resource(
    api: KlaviyoApi, report: Report, hard: bool, run_started: datetime, workers: int
) -> DltResource:
    table = report.name

    def read() -> Iterator[TDataItems]:
        pipeline = _active_pipeline()
        if pipeline is None:
            return  # iterated outside a pipeline: no destination to compare with
        check_account(api)
        flagged = _flag_column(pipeline, table)
        if flagged is None:
            return  # nothing loaded yet: nothing can have been deleted
        present = [pa.array(ids, pa.string()) for ids in read_ids(api, report, workers)]
        gone = _gone_ids(pipeline, table, flagged, pa.concat_arrays(present) if present else None)
        if not gone:
            return
        logger.info("Klaviyo no longer returns %d rows of %s", len(gone), table)
        if hard:
            yield [{"id": id_, DELETED: True, DELETED_AT: run_started} for id_ in gone]
        else:
            for start in range(0, len(gone), _ROW_CHUNK):
                yield _flagged_rows(pipeline, table, gone[start : start + _ROW_CHUNK], run_started)

    return dlt.resource(
        read,
        name=f"{table}_deletes",
        table_name=table,
        primary_key="id",
        write_disposition="merge",
        columns={
            "id": {"data_type": "text", "nullable": False},
            DELETED: {"data_type": "bool", "hard_delete": hard},
            DELETED_AT: {"data_type": "timestamp"},
        },
    )()


def _active_pipeline() -> dlt.Pipeline | None:
    """The pipeline running this extraction (or, when the source is iterated outside a
    pipeline, the one last activated in this thread, whose destination is compared); None
    when no pipeline is active. `dlt.current.pipeline()` would create a default pipeline then."""
    context = Container()[PipelineContext]
    return cast(dlt.Pipeline, context.pipeline()) if context.is_active() else None


def _flag_column(pipeline: dlt.Pipeline, table: str) -> bool | None:
    """None when the table is not in the destination, else whether it has `_klaviyo_deleted`."""
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            return None
        sql = f"SELECT * FROM {client.make_qualified_table_name(table)} WHERE 1 = 0"
        try:
            with client.execute_query(sql) as cursor:
                names = [str(d[0]).lower() for d in cursor.description]
        except DatabaseUndefinedRelation:
            return None
    return DELETED in names


def _gone_ids(
    pipeline: dlt.Pipeline, table: str, flagged: bool, present: pa.Array | None
) -> list[str]:
    """Loaded (and not yet flagged) ids that are not in `present`. When Klaviyo returned no id
    at all while rows are loaded, nothing is flagged (a wrong key or account is likelier
    than an emptied account) and a warning says so."""
    gone: list[str] = []
    loaded = 0
    with pipeline.sql_client() as client:
        id_ = client.escape_column_name("id")
        sql = f"SELECT {id_} FROM {client.make_qualified_table_name(table)}"
        if flagged:
            sql += f" WHERE COALESCE({client.escape_column_name(DELETED)}, FALSE) = FALSE"
        with client.execute_query(sql) as cursor:
            for chunk in cursor.iter_fetch(_ID_CHUNK):
                ids = pa.array([str(row[0]) for row in chunk], pa.string())
                loaded += len(ids)
                if present is not None:
                    ids = ids.filter(pc.invert(pc.is_in(ids, value_set=present)))
                gone += ids.to_pylist()
    if present is None and loaded:
        logger.warning(
            "Klaviyo returned no %s at all while %d rows are loaded; marking none deleted",
            table, loaded,
        )
        return []
    return gone


def _flagged_rows(
    pipeline: dlt.Pipeline, table: str, ids: list[str], when: datetime
) -> list[dict[str, Any]]:
    """The loaded rows of `ids`, as they are (without dlt's own columns), flagged deleted."""
    with pipeline.sql_client() as client:
        quoted = ",".join("'" + id_.replace("'", "''") + "'" for id_ in ids)
        sql = (
            f"SELECT * FROM {client.make_qualified_table_name(table)}"
            f" WHERE {client.escape_column_name('id')} IN ({quoted})"
        )
        with client.execute_query(sql) as cursor:
            columns = [str(d[0]).lower() for d in cursor.description]
            values = cursor.fetchall()
    rows = []
    for row_values in values:
        row = {c: v for c, v in zip(columns, row_values, strict=False) if v is not None and not c.startswith("_dlt_")}
        rows.append({**row, DELETED: True, DELETED_AT: when})
    return rows
