"""JSON:API resources -> table rows (dicts for most reports, Arrow tables for the hot ones).

A row is the resource's `id`, its `attributes` flattened into columns, and related ids as
plain columns (`events.metric_id`, `campaigns_email.tag_ids`, ...). Timestamps become aware
datetimes; free-form objects named in the report's `json_columns` stay whole (JSON columns).
"""

import logging
from collections.abc import Mapping
from datetime import datetime
from itertools import accumulate, chain
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.libs.pyarrow import add_constant_column
from dlt.common.normalizers.utils import generate_dlt_ids
from dlt.common.schema.typing import C_DLT_LOAD_ID
from msgspec import Raw

from .pages import VALUES, Ref, Resource, attribute
from .settings import Report
from .windows import UTC, Window

UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


class _ArrowJsonHintFilter(logging.Filter):
    """Drops dlt's per-page warning that an Arrow page's JSON-text column differs from the
    resource's `json` hint, for the resources in `resources`: that difference is intended (the
    hint wins and the destination stores the text as JSON), and the warning would repeat for
    every page of every run."""

    def __init__(self) -> None:
        super().__init__()
        self.resources: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            "when merging arrow schema with dlt schema" in message
            and any(f"In resource: {name}," in message for name in self.resources)
        )


def quiet_arrow_json_hints(resource: str) -> None:
    """Silences dlt's JSON-hint warning for the Arrow pages of `resource` (see
    `_ArrowJsonHintFilter`): installs the filter on dlt's logger the first time (later calls
    reuse it; idempotent) and adds the resource to it. Called when the source builds the
    resource, never at import."""
    logger = logging.getLogger("dlt")
    installed = next((f for f in logger.filters if isinstance(f, _ArrowJsonHintFilter)), None)
    if installed is None:
        installed = _ArrowJsonHintFilter()
        logger.addFilter(installed)
    installed.resources.add(resource)


def parse_datetime(value: Any) -> datetime | None:
    """Parses Klaviyo's ISO 8601 datetimes (`T` or space, `Z` or offset, optional fraction);
    a value without an offset is UTC."""
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def resource_id(resource: Any) -> Any:
    """The `id` of a resource: a row dict's or a decoded page's `pages.Resource`."""
    return resource.id if isinstance(resource, Resource) else resource.get("id")


def cursor_value(resource: Any, cursor: str) -> datetime | None:
    """The cursor attribute of a resource (a row dict or a `pages.Resource`) as a datetime."""
    if isinstance(resource, Resource):
        return parse_datetime(attribute(resource, cursor))
    return parse_datetime((resource.get("attributes") or {}).get(cursor))


def _related(resource: Any, name: str) -> Any:
    """The `data` of one relationship of a resource (a row dict's or a decoded page's
    `pages.Resource`): one reference, a list of them, or None."""
    if isinstance(resource, Resource):
        relationship = resource.relationships.get(name)
        return None if relationship is None else relationship.data
    return ((resource.get("relationships") or {}).get(name) or {}).get("data")


def _reference(item: Any) -> Mapping[str, Any] | None:
    """A reference of a relationship's `data` as `{type, id}` (None if it is not one)."""
    if isinstance(item, Ref):
        return {"type": item.type, "id": item.id}
    return item if isinstance(item, Mapping) else None


def _reference_id(item: Any) -> Any:
    """The `id` of a reference of a relationship's `data` (None if it is not one)."""
    if isinstance(item, Ref):
        return item.id
    return item.get("id") if isinstance(item, Mapping) else None


def _relationship_columns(resource: Any, report: Report) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name, column in report.to_one.items():
        columns[column] = _reference_id(_related(resource, name))
    for name, column in report.to_many.items():
        data = _related(resource, name)
        columns[column] = [_reference_id(item) for item in data] if isinstance(data, list) else None
    return columns


# A row of a report requested with `include=` carries its related included resources under this
# key, {relationship: [resource, ...]}, until the source splits them off into child tables
# (`children.py`); a related resource absent from `included[]` is carried as its {type, id}.
INCLUDED = "_klaviyo_included"


def _related_included(
    resource: Any, names: list[str], included: Mapping[Any, Mapping[str, Any]]
) -> dict[str, list[Mapping[str, Any]]]:
    related: dict[str, list[Mapping[str, Any]]] = {}
    for name in names:
        data = _related(resource, name)
        references = [_reference(item) for item in (data if isinstance(data, list) else [data])]
        related[name] = [included.get((r.get("type"), r.get("id")), r) for r in references if r is not None]
    return related


def _attributes(resource: Mapping[str, Any], report: Report) -> Mapping[str, Any]:
    """The attributes a row dict is built from: the record's, through the report's converter."""
    attributes = resource.get("attributes") or {}
    return report.columns_from(attributes) if report.columns_from else attributes


def _included_column(document: Mapping[str, Any], resources: list[Resource], report: Report) -> dict[str, pa.Array]:
    """For a report requested with `include=`, the `INCLUDED` column of an Arrow page: per row,
    its related included resources as JSON text (null where it has none), split off into the
    child tables after dlt's incremental step, as for row dicts (`children._SplitIncluded`)."""
    names = [n for n in str(report.params.get("include") or "").split(",") if n]
    if not names:
        return {}
    included = {(r.get("type"), r.get("id")): r for r in document.get("included") or []}
    texts: list[str | None] = [None] * len(resources)  # most events have no attribution
    related: set[int] = set()  # indexes of the resources with a related resource
    for name in names:
        related.update(index for index, data in enumerate(_related_data(resources, name)) if data)
    for index in sorted(related):
        texts[index] = orjson.dumps(_related_included(resources[index], names, included)).decode()
    return {INCLUDED: pa.array(texts, pa.string())}


def to_rows(document: Mapping[str, Any], report: Report, window: Window) -> list[dict[str, Any]]:
    """Rows of one page, keeping only those whose cursor lies in `window`.

    Args:
        document: A JSON:API collection page (`data[]` of resources).
        report: The report the page belongs to.
        window: The window the page was requested for.
    """
    rows: list[dict[str, Any]] = []
    names = [n for n in str(report.params.get("include") or "").split(",") if n]
    included = {(r.get("type"), r.get("id")): r for r in document.get("included") or []}
    for resource in document.get("data") or []:
        row: dict[str, Any] = {"id": resource["id"]}
        row.update(_attributes(resource, report))
        for column in report.timestamps:
            if column in row:
                row[column] = parse_datetime(row[column])
        if report.cursor and (window.start is not None or window.end is not None):
            if not window.contains(row.get(report.cursor)):
                continue
        row.update(_relationship_columns(resource, report))
        if names:
            row[INCLUDED] = _related_included(resource, names, included)
        rows.append(row)
    return rows


def to_arrow(document: Mapping[str, Any], report: Report, window: Window) -> pa.Table | None:
    """One page decoded by `pages.decode_page` as an Arrow table (None for an empty page),
    trimmed to `window`.

    Nested objects are flattened into `parent__child` columns, as dlt flattens row dicts;
    objects named in `json_columns` and lists are kept whole as JSON text (a JSON column is the
    page's own text of the value, never parsed). Timestamps become `timestamp[us, UTC]`,
    columns of `column_types` are cast to that dlt type, related ids are string columns.
    Columns are the union of the page's attributes; a column that is null on the whole page is
    left out (dlt adds no column for nulls either), except JSON columns.
    """
    resources: list[Resource] = document.get("data") or []
    if not resources:
        return None
    columns: dict[str, pa.Array] = {"id": pa.array([r.id for r in resources], pa.string())}
    if report.dlt_ids:
        columns["_dlt_id"] = pa.array(generate_dlt_ids(len(resources)), pa.string())
    if report.columns_from:  # a revision moved the attributes: the converter reads them whole
        columns.update(_row_columns([_flat(report.columns_from(_decoded(r)), "", {}, report.json_columns) for r in resources], report))
    else:
        for name in dict.fromkeys(chain.from_iterable(r.attributes for r in resources)):
            columns.update(_attribute_columns([r.attributes.get(name) for r in resources], name, report))
    for relationship, name in report.to_one.items():
        columns[name] = pa.array(_to_one_ids(resources, relationship), pa.string())
    columns.update(_included_column(document, resources, report))
    table = pa.table(columns)
    if report.cursor and report.cursor in columns and (window.start or window.end):
        table = table.filter(_window_mask(table[report.cursor], window))
    return table


def _related_data(resources: list[Resource], relationship: str) -> list[Any]:
    """`_related` of each resource of a decoded page, inlined (a call per record and
    relationship cost ~0.3 µs/event)."""
    return [None if (related := r.relationships.get(relationship)) is None else related.data for r in resources]


def _to_one_ids(resources: list[Resource], relationship: str) -> list[str | None]:
    """The related id of each resource of a decoded page (None: no single reference)."""
    return [data.id if type(data) is Ref else None for data in _related_data(resources, relationship)]


def _decoded(resource: Resource) -> dict[str, Any]:
    return {name: VALUES.decode(raw) for name, raw in resource.attributes.items()}


_NULL = b"null"


def _json_text_column(raws: list[Raw | None]) -> pa.Array:
    """A string column of raw JSON texts (null for an absent value or JSON null), built from one
    copy of the texts: their concatenation is the column's data buffer, their lengths its
    offsets (Arrow's builders would copy each text twice more; ~0.2 µs per 1.3 KB text)."""
    kept = [None if raw is None or (len(raw) == 4 and bytes(raw) == _NULL) else raw for raw in raws]
    texts = [b"" if raw is None else raw for raw in kept]
    offsets = pa.array(list(accumulate(map(len, texts), initial=0)), pa.int32())  # a page is < 2 GB
    valid = None if None not in kept else pa.array([raw is not None for raw in kept], pa.bool_()).buffers()[1]
    column = pa.StringArray.from_buffers(len(texts), offsets.buffers()[1], pa.py_buffer(b"".join(texts)), valid)
    try:
        column.validate(full=True)  # UTF-8 (msgspec skips the texts it keeps raw)
        return column
    except pa.ArrowInvalid:  # not UTF-8 (never seen from Klaviyo): kept, bad bytes replaced
        return pa.array([None if raw is None else bytes(raw).decode(errors="replace") for raw in kept], pa.string())


def _attribute_columns(raws: list[Raw | None], name: str, report: Report) -> dict[str, pa.Array]:
    """The columns of one attribute of a page, from its raw JSON per row (None: absent): a JSON
    column is that text; other values are decoded in one call for the whole page, and objects
    are flattened into columns (`_flat`)."""
    if name in report.json_columns:
        return {name: _json_text_column(raws)}
    values = VALUES.decode(b"[" + b",".join(raws if None not in raws else [_NULL if raw is None else raw for raw in raws]) + b"]")  # type: ignore[arg-type]
    if dict not in set(map(type, values)):  # decoded JSON: exact types, and map/set run in C
        return _columns(values, name, report)
    return _row_columns([_flat(value, name + "__", {}, report.json_columns) if isinstance(value, dict) else {name: value} for value in values], report)


def _row_columns(rows: list[dict[str, Any]], report: Report) -> dict[str, pa.Array]:
    """The columns of flattened rows: one per name any row has, in order of appearance."""
    columns: dict[str, pa.Array] = {}
    for name in dict.fromkeys(name for row in rows for name in row):
        columns.update(_columns([row.get(name) for row in rows], name, report))
    return columns


def _flat(attrs: Mapping[str, Any], prefix: str, into: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """`attrs` with nested objects flattened into `prefix + key + "__" + subkey` entries,
    except the objects whose flattened name is in `keep`."""
    for key, value in attrs.items():
        name = prefix + key
        if isinstance(value, dict) and name not in keep:
            _flat(value, name + "__", into, keep)
        else:
            into[name] = value
    return into


# Arrow types of the dlt types `column_types` may declare (timestamps and JSON are handled
# before any cast: they are parsed and serialized).
_ARROW_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(), "double": pa.float64(), "bigint": pa.int64(), "bool": pa.bool_(),
    "decimal": pa.decimal128(38, 9),
}  # fmt: skip


def _columns(values: list[Any], name: str, report: Report) -> dict[str, pa.Array]:
    """One attribute of a page as columns: JSON text, timestamps, declared types, or Arrow's
    inference; none when it is null on the whole page."""
    kinds = set(map(type, values))  # decoded JSON or flattened values: exact types, no subclasses
    if name in report.json_columns or list in kinds or dict in kinds:
        return {name: pa.array([None if v is None else orjson.dumps(v).decode() for v in values], pa.string())}
    if name in report.timestamps or report.column_types.get(name) == "timestamp":
        return {name: _timestamps(values)}
    try:
        column = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types on one page, e.g. "48.1" and 11.6
        column = pa.array([None if v is None else str(v) for v in values], pa.string())
    if pa.types.is_null(column.type):
        return {}
    declared = _ARROW_TYPES.get(report.column_types.get(name, ""))
    if declared is None or column.type == declared:
        return {name: column}
    try:
        return {name: pc.cast(column, declared)}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return _with_variant(column, name, declared)


def _with_variant(column: pa.Array, name: str, declared: pa.DataType) -> dict[str, pa.Array]:
    """Values that cast to the declared type stay in `name`; the others go, as text, to the
    variant column `name__v_text`, as dlt does with row dicts, so that none is lost."""
    kept: list[Any] = []
    others: list[str | None] = []
    for value in column.to_pylist():
        try:
            kept.append(None if value is None else pa.scalar(value).cast(declared).as_py())
            others.append(None)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            kept.append(None)
            others.append(str(value))
    return {name: pa.array(kept, declared), f"{name}__v_text": pa.array(others, pa.string())}


def _timestamps(values: list[Any]) -> pa.Array:
    """ISO 8601 texts as `timestamp[us, UTC]` (Arrow's parser; Python's for what it refuses,
    such as a text without an offset, which is UTC)."""
    try:
        return pc.cast(pa.array(values, pa.string()), UTC_TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([parse_datetime(v) for v in values], UTC_TIMESTAMP)


def with_load_id(table: pa.Table, load_id: str) -> pa.Table:
    """The table with dlt's `_dlt_load_id` column, as dlt gives every row-dict table: dlt adds it
    to Arrow tables only when `[normalize.parquet_normalizer] add_dlt_load_id` is set, and a
    table created without it could not get it later (dlt adds it NOT NULL to existing rows)."""
    return add_constant_column(table, C_DLT_LOAD_ID, pa.string(), load_id, nullable=False)


def _window_mask(values: pa.ChunkedArray, window: Window) -> pa.ChunkedArray:
    mask = pc.is_valid(values)
    if window.start is not None:
        start = pa.scalar(window.start, UTC_TIMESTAMP)
        keep = pc.greater(values, start) if window.start_open else pc.greater_equal(values, start)
        mask = pc.and_(mask, keep)
    if window.end is not None:
        end = pa.scalar(window.end, UTC_TIMESTAMP)
        keep = pc.less_equal(values, end) if window.end_closed else pc.less(values, end)
        mask = pc.and_(mask, keep)
    return mask
