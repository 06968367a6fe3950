"""The child tables of the report table (`settings.CHILD_REPORTS`, per revision `RevisionTable.children`),
wired to their parents' resources.

- "include" (campaign_messages, campaign_tags; event_attributions in 2026-07-15): the parent
  pages carry `included[]`; a step placed after the parent resource's incremental step splits
  the included resources off the rows that step let through (row dicts, or the JSON column of
  Arrow pages) into their own tables. No request per campaign or event.
- "parent" (flow_actions, flow_messages): `dlt.transformer`s fed by the rows their parent
  resource yields in this run, so unchanged parents are not re-read; one collection request
  (or more pages) per parent, paced by the shared rate limiter.
- "members" and "suppressed" live in `members.py` and `exclusions.py`.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import dlt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.typing import TDataItems
from dlt.extract.items_transform import ItemTransform
from dlt.sources import DltResource

from .client import KlaviyoApi
from .exclusions import exclusions_resource
from .extract import plan_jobs, read_jobs
from .hints import TColumns, report_columns
from .members import member_resource
from .options import SourceOptions
from .records import INCLUDED, to_rows
from .settings import ChildReport, RevisionTable, report_table
from .windows import Window


def with_parents(names: Sequence[str], table: RevisionTable | None = None) -> tuple[str, ...]:
    """The selection plus the parents of its "include" and "parent" children (a child
    follows its parents' incremental runs, so they are read and loaded with it), parents
    first, in `table` (default: the default revision's)."""
    out: dict[str, None] = {}
    children = (table or report_table()).children

    def add(name: str) -> None:
        child = children.get(name)
        if child is not None and child.source in ("include", "parent"):
            for parent in child.parents:
                add(parent)
        out[name] = None

    for name in names:
        add(name)
    return tuple(out)


def child_columns(child: ChildReport) -> TColumns:
    """Column hints of a child table: its key columns, then as for any report."""
    return report_columns(child.report, child.primary_key)


def keyed(rows: list[dict[str, Any]], child: ChildReport, parent_id: str) -> list[dict[str, Any]]:
    """Rows with the parent's id in `parent_key` and their own `id` in `id_column`."""
    for row in rows:
        if child.id_column != "id":
            row[child.id_column] = row.pop("id")
        row[child.parent_key] = parent_id
    return rows


class _SplitIncluded(ItemTransform[TDataItems, dict[str, Any]]):
    """Takes the included resources off a parent page's rows and yields them as child rows.

    Placed after the incremental step (dlt's affinity 1; `add_limit` is 1.1), so the
    children of a parent row the incremental step dropped (unchanged) are dropped with it.
    """

    placement_affinity: ClassVar[float] = 1.05

    def __init__(self, children: Sequence[ChildReport]) -> None:
        super().__init__(lambda item: item)
        self.children = children

    def __call__(self, item: TDataItems, meta: Any = None) -> Iterator[TDataItems]:  # type: ignore[override]
        if isinstance(item, pa.Table):
            yield from self._split_arrow(item)
            return
        if not isinstance(item, list):
            yield item
            return
        tables = self._child_rows((row["id"], row.pop(INCLUDED, None)) for row in item)
        yield item
        for name, rows in tables.items():
            if rows:
                yield dlt.mark.with_table_name(rows, name)

    def _split_arrow(self, table: pa.Table) -> Iterator[TDataItems]:
        """An Arrow page carries the included resources as JSON text in its `INCLUDED` column
        (`records.to_arrow`): the column is dropped and its resources become child rows."""
        if INCLUDED not in table.column_names:
            yield table
            return
        # only the rows that carry resources become Python objects (most events carry none)
        carrying = table.select(["id", INCLUDED]).filter(pc.is_valid(table.column(INCLUDED)))
        carried = zip(carrying.column("id").to_pylist(), carrying.column(INCLUDED).to_pylist(), strict=True)
        tables = self._child_rows((id_, orjson.loads(text)) for id_, text in carried if text)
        yield table.drop_columns([INCLUDED])
        for name, rows in tables.items():
            if rows:
                yield dlt.mark.with_table_name(rows, name)

    def _child_rows(self, parents: Iterable[tuple[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Child rows per table from (parent id, {relationship: [included resource, ...]})."""
        tables: dict[str, list[dict[str, Any]]] = {child.name: [] for child in self.children}
        for parent_id, carried in parents:
            related: Mapping[str, list[Mapping[str, Any]]] = carried or {}
            for child in self.children:
                resources = related.get(child.include or "")
                if resources:
                    rows = to_rows({"data": resources}, child.report, Window(None, None))
                    tables[child.name] += keyed(rows, child, parent_id)
        return tables


def attach_included(parent: DltResource, names: Sequence[str], table: RevisionTable | None = None) -> DltResource:
    """Adds the split step to a parent whose requests carry `include=`: the selected "include"
    children (of `table`, default: the default revision's) become table variants of the parent
    resource; the others are dropped."""
    children = [
        c for c in (table or report_table()).children.values()
        if c.source == "include" and parent.name in c.parents and c.name in names
    ]
    for child in children:
        # a variant starts as a copy of the parent's hints: drop the parent's columns first
        parent.apply_hints(table_name=child.name, columns={}, create_table_variant=True)
        parent.apply_hints(
            table_name=child.name, primary_key=list(child.primary_key), write_disposition="merge",
            columns=child_columns(child), create_table_variant=True,
        )
    return parent.add_step(_SplitIncluded(children))


def _per_parent(api: KlaviyoApi, child: ChildReport) -> Any:
    """The transformer function of a "parent" child: each parent row's collection."""

    def read(rows: TDataItems) -> Iterator[TDataItems]:
        for row in rows if isinstance(rows, list) else [rows]:
            if any(row.get(attribute) in values for attribute, values in child.skip.items()):
                continue
            path = child.report.path.format(id=quote(str(row["id"]), safe=""))
            report = replace(child.report, path=path)
            jobs = plan_jobs(report, [Window(None, None)])
            for page in read_jobs(api, report, jobs, workers=1):
                yield keyed(page, child, row["id"])

    return read


def related_resources(
    api: KlaviyoApi,
    options: SourceOptions,
    parents: Mapping[str, DltResource],
    run_started: datetime,
) -> Iterator[DltResource]:
    """The selected child tables of the run's revision, plus the split step on every parent whose
    requests carry `include=` (it also strips the carried resources when no child is selected).

    Args:
        api: The source's client.
        options: The validated source options (selection, dates, workers, lookback).
        parents: The report resources of this source instance, by name.
        run_started: When the run started (cursors never pass it, minus the safety margin).
    """
    table = options.table
    for name, resource in parents.items():
        if name in table.reports and table.reports[name].params.get("include"):
            attach_included(resource, options.reports, table)
    made: dict[str, DltResource] = dict(parents)
    for name in with_parents(options.reports, table):
        child = table.children.get(name)
        if child is None:
            continue
        if child.source == "parent":
            transformer = dlt.transformer(
                _per_parent(api, child), name=child.name, primary_key=list(child.primary_key),
                write_disposition="merge", columns=child_columns(child),
            )
            made[name] = made[child.parents[0]] | transformer
            yield made[name]
        elif child.source == "members":
            yield member_resource(api, child, options, run_started)
        elif child.source == "suppressed":
            yield exclusions_resource(api, child, options, run_started)
