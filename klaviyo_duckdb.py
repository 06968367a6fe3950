"""The command's DuckDB destination: dlt's, with one load path of its own for tables of records
that never change (events).

Why: dlt merges a table by copying the load's rows into a staging table, then deleting the
table's rows with the same keys and inserting the staged rows, so every row is written (and
compressed) twice. With 1000 events a page of 1.5-2 KB each, those two writes were 39 of the 59
µs of CPU per event of a 1M-event backfill (bench/README.md, "Where the time goes"), and dlt has
no setting that loads a merge table without its staging copy. So for a table whose loads are
declared immutable by the source (`klaviyo.settings.IMMUTABLE`: records that never change, each
key once per load) each load file is its own staging: one transaction deletes the table's rows
whose keys the file holds and inserts the file's rows. The result is merge's (a re-read record
replaces the loaded one), each row is written once, and the job is idempotent: retried after a
crash between its commit and dlt's record of it, it deletes what its first attempt inserted.

The JSON columns of those tables are stored with zstd (`USING COMPRESSION zstd`, set when the
column is created): for JSON text of a few hundred bytes and more it is written ~1.6x faster
than DuckDB's automatic choice (DICT_FSST, used when the average text is under
`zstd_min_string_length`, 4096 bytes) and takes a third of the space (measured on the realistic
events of the emulator: 200k events, 1.6 against 2.6 s of CPU, 47 against 135 MB).

The database file is opened with row groups of `ROW_GROUP_SIZE` rows (`_RowGroupPool`): DuckDB
fills a row group uncompressed in its buffer pool, and a 122,880-row group of these events does
not fit the command's 64 MB pool.

Everything else (configuration, state, `dlt pipeline` commands, `pipeline.dataset()`) is dlt's
DuckDB: the destination reports dlt's type, `dlt.destinations.duckdb`, and the file is an
ordinary DuckDB database.
"""

import os
from collections.abc import Sequence
from typing import Any, cast

import dlt
import duckdb as duckdb_module
from dlt.common.destination.capabilities import DestinationCapabilitiesContext
from dlt.common.destination.client import LoadJob, PreparedTableSchema
from dlt.common.destination.configuration import ParquetFormatConfiguration
from dlt.common.destination.reference import DestinationReference
from dlt.common.schema import Schema
from dlt.common.schema.typing import TColumnSchema, TTableSchema
from dlt.common.schema.utils import get_columns_names_with_prop, get_nested_tables
from dlt.common.storages.load_storage import ParsedLoadJobFileName
from dlt.destinations.impl.duckdb.configuration import DuckDbClientConfiguration, DuckDbConnectionPool, DuckDbCredentials
from dlt.destinations.impl.duckdb.duck import DuckDbClient, DuckDbCopyJob
from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient
from dlt.destinations.job_impl import FollowupJobRequest
from duckdb import DuckDBPyConnection

from klaviyo.settings import IMMUTABLE

# Column hints whose meaning dlt's merge job implements (a row that deletes, dedup order):
# a table with any of them keeps dlt's merge.
_MERGE_ONLY_HINTS = ("hard_delete", "dedup_sort")


class _FileMergeJob(DuckDbCopyJob):
    """Loads one parquet file into a merge table in one transaction: deletes the rows whose
    primary key the file holds, then inserts the file's rows (dlt's copy statement)."""

    def __init__(self, file_path: str, primary_key: Sequence[str]) -> None:
        super().__init__(file_path)
        self._primary_key = primary_key

    def run(self) -> None:
        sql_client: DuckDbSqlClient = self._job_client.sql_client
        table = sql_client.make_qualified_table_name(self.load_table_name)
        same_key = " AND ".join(f"t.{c} = f.{c}" for c in map(sql_client.escape_column_name, self._primary_key))
        with sql_client.begin_transaction():
            sql_client.execute_sql(f"DELETE FROM {table} AS t WHERE EXISTS (SELECT 1 FROM read_parquet('{self._file_path}') AS f WHERE {same_key})")
            super().run()


# Rows per DuckDB row group of the database file (DuckDB's default: 122,880). DuckDB holds the
# row group it is filling uncompressed in its buffer pool: ~160 MB of 1.3 KB events, which the
# command's 64 MB pool spills to disk (compressed) and reads back. At 10,240 rows (~13 MB; room
# for events of 5 KB) it fits: inserting 1M events cost 6.4 µs of CPU each instead of 11.3
# (7.7 at 16,384 rows), for a file ~11% larger (bench/README.md, "Issue #14"). DuckDB takes the
# size only when the file is attached.
ROW_GROUP_SIZE = 10_240


class _RowGroupPool(DuckDbConnectionPool):
    """dlt's connection pool of a DuckDB file, opening the file through `ATTACH ... (ROW_GROUP_SIZE
    n)` in an in-memory database (the only way DuckDB takes a row group size) under the catalog
    name DuckDB gives the file itself (its stem), made each connection's current catalog."""

    def __init__(self, credentials: DuckDbCredentials) -> None:
        super().__init__(credentials)
        stem = os.path.splitext(os.path.basename(str(credentials.database)))[0]
        self.catalog = '"' + stem.replace('"', '""') + '"'

    def borrow_conn(
        self, global_config: dict[str, Any] | None = None, local_config: dict[str, Any] | None = None, pragmas: list[str] | None = None
    ) -> DuckDBPyConnection:
        with self._conn_lock:
            if self._conn is None:  # dlt's pool would connect to the file itself
                path = str(self.credentials.database).replace("'", "''")
                options = f"ROW_GROUP_SIZE {ROW_GROUP_SIZE}" + (", READ_ONLY" if self.credentials.read_only else "")
                connection = duckdb_module.connect(":memory:")
                connection.execute(f"ATTACH '{path}' AS {self.catalog} ({options})")
                self._conn = connection
            return super().borrow_conn(global_config, local_config, pragmas)  # type: ignore[arg-type]

    def _apply_local_config(
        self, conn: DuckDBPyConnection, local_config: dict[str, Any] | None = None, pragmas: list[str] | None = None
    ) -> None:
        conn.execute(f"USE {self.catalog}")  # each connection's own setting: clones start in memory
        super()._apply_local_config(conn, local_config, pragmas)  # type: ignore[arg-type]


class FileMergeDuckDbClient(DuckDbClient):
    """dlt's DuckDB job client, loading the merge tables declared deduplicated file by file
    (`_FileMergeJob`) instead of through the staging dataset, and opening the database file with
    row groups of `ROW_GROUP_SIZE` rows (`_RowGroupPool`)."""

    def __init__(self, schema: Schema, config: DuckDbClientConfiguration, capabilities: DestinationCapabilitiesContext) -> None:
        credentials = config.credentials
        pool = credentials.conn_pool
        if pool is not None and type(pool) is DuckDbConnectionPool and pool._conn is None and pool._conn_owner:
            credentials.conn_pool = _RowGroupPool(credentials)
        super().__init__(schema, config, capabilities)

    def _file_merged(self, table: PreparedTableSchema) -> bool:
        """Whether the table's loads go file by file: a merge table (delete-insert) of records
        that never change (the source's `IMMUTABLE` hint: each key once per load), with a
        primary key, no nested tables and none of merge's row hints."""
        columns = table.get("columns", {}).values()
        keys = get_columns_names_with_prop(cast(TTableSchema, table), "primary_key")
        return (
            table.get("write_disposition") == "merge"
            and table.get("x-merge-strategy", "delete-insert") == "delete-insert"  # type: ignore[comparison-overlap]
            and bool(table.get(IMMUTABLE))
            and bool(keys)
            and not any(c.get(hint) for c in columns for hint in _MERGE_ONLY_HINTS)
            and len(get_nested_tables(self.schema.tables, str(table["name"]))) == 1
        )

    def should_load_data_to_staging_dataset(self, table_name: str) -> bool:
        if self._file_merged(self.prepare_load_table(table_name)):
            return False
        return super().should_load_data_to_staging_dataset(table_name)

    def create_load_job(self, table: PreparedTableSchema, file_path: str, load_id: str, restore: bool = False) -> LoadJob:
        if self._file_merged(table) and ParsedLoadJobFileName.parse(file_path).file_format == "parquet":
            return _FileMergeJob(file_path, get_columns_names_with_prop(cast(TTableSchema, table), "primary_key"))
        return super().create_load_job(table, file_path, load_id, restore)

    def _create_merge_followup_jobs(self, table_chain: Sequence[PreparedTableSchema]) -> list[FollowupJobRequest]:
        if self._file_merged(table_chain[0]):
            return []  # the file jobs merged already
        return super()._create_merge_followup_jobs(table_chain)

    def _get_column_def_sql(self, c: TColumnSchema, table: PreparedTableSchema = None) -> str:  # type: ignore[assignment]
        definition = super()._get_column_def_sql(c, table)
        if c.get("data_type") == "json" and table is not None and self._file_merged(table):
            name = self.sql_client.escape_column_name(str(c["name"]))
            return definition.replace(f"{name} JSON", f"{name} JSON USING COMPRESSION zstd", 1)
        return definition


class duckdb(dlt.destinations.duckdb):  # noqa: N801 (dlt's destination factories are lower case)
    """dlt's DuckDB destination with `FileMergeDuckDbClient` (see the module's docstring), and
    parquet load files written without compression: they are read once, locally, by DuckDB, and
    snappy cost ~1.6 µs of CPU per 2 KB event (perf, bench/README.md) for files that live
    seconds. A configured `[data_writer] compression` still applies."""

    def _raw_capabilities(self) -> DestinationCapabilitiesContext:
        capabilities = super()._raw_capabilities()
        capabilities.parquet_format = ParquetFormatConfiguration(compression="none")
        return capabilities

    @property
    def client_class(self) -> type[DuckDbClient]:
        return FileMergeDuckDbClient

    @property
    def destination_type(self) -> str:
        """dlt's DuckDB type: the pipeline's state, `dlt pipeline` and `pipeline.dataset()` see
        the destination as dlt's DuckDB, which it is for everything but the load jobs."""
        return DestinationReference.normalize_type("duckdb")
