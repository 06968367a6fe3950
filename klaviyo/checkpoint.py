"""Resumable backfills: a long range is read in chunks, one chunk per pipeline run.

dlt commits a resource's state (and so its incremental cursor) only together with the load
package of a successful run, and the windows of one run are read in parallel and out of
order: a crash mid-run therefore keeps nothing of that run. To lose at most the work in
flight, a backfill longer than `chunk_records` is cut into chunks of about that many records:

- each run reads one chunk `[start, chunk_end)` completely (in parallel windows), then records
  `resume_from = chunk_end` in the resource's state; that state is committed atomically with
  the chunk's rows, so a committed checkpoint always means "everything before it is loaded";
- the next run starts at `resume_from` (the incremental cursor alone would not do: a chunk
  may hold no record, and the cursor would never pass the gap);
- the run that reaches the end of the range (the run's start minus the safety margin) clears
  `resume_from`; from then on plain incremental runs resume from the cursor (lookback
  included).

A crash, a kill -9 or a failed load at any moment leaves the last committed checkpoint; the
rerun redoes at most one chunk, and merging on `id` makes the redone rows replace, not
duplicate, whatever of that chunk had been loaded. `klaviyo_pipeline.py` runs chunk after
chunk until `backfill_pending` is empty.

The chunk's end is planned from the density of the range's first page (one probe request):
`chunk_records` records at that density. Sparse history followed by dense recent data makes
the first chunks larger than planned; the bound is about records, not a hard limit.
"""

from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

import dlt

from .client import KlaviyoApi
from .extract import ReadJob, page_decoder, request_params
from .records import cursor_value, parse_datetime
from .settings import Report
from .windows import Window

RESUME_KEY = "resume_from"
MIN_CHUNK = timedelta(minutes=1)


def resume_window(window: Window, state: MutableMapping[str, Any]) -> Window:
    """The window moved past the last committed chunk, if a backfill is under way."""
    resume = parse_datetime(state.get(RESUME_KEY))
    if resume is None or (window.start is not None and resume <= window.start):
        return window
    if window.end is not None and resume >= window.end:
        return Window(window.end, window.end)
    return Window(resume, window.end, start_open=False, end_closed=window.end_closed)


def plan_chunk(
    api: KlaviyoApi,
    report: Report,
    window: Window,
    chunk_records: int,
) -> Window:
    """The part of `window` this run reads: all of it, or its first ~`chunk_records` records.

    Only reports sorted by their cursor with a bounded end can be chunked; others are read
    whole. Costs one request (the first page of the window, used only to measure density).
    """
    if window.end is None or report.cursor is None or report.sort != report.cursor:
        return window
    job = ReadJob(report.variants[0], window)
    pages = api.paginate(report.path, request_params(report, job), report.tier, report.scope, report.name, decode=page_decoder(report))
    document = next(iter(pages), {})
    data: list[Any] = document.get("data") or []
    if not data or not (document.get("links") or {}).get("next"):
        return window  # one page holds the whole window
    first, last = cursor_value(data[0], report.cursor), cursor_value(data[-1], report.cursor)
    if first is None or last is None:
        return window
    start = first  # nothing lies between the window's start and its first record
    scale = chunk_records / len(data)
    if (last - first) * min(scale, 1e6) >= window.end - start:  # (bounded: no overflow)
        return window
    span = max(MIN_CHUNK, (last - first) * scale)
    return Window(window.start, start + span, start_open=window.start_open)


def checkpoint(state: MutableMapping[str, Any], chunk: Window, full: Window) -> None:
    """Records, after a chunk was read completely, where the next run resumes (or clears
    it when the chunk reached the end of the range)."""
    if chunk.end is not None and full.end is not None and chunk.end < full.end:
        state[RESUME_KEY] = chunk.end.isoformat()
    else:
        state.pop(RESUME_KEY, None)


def backfill_pending(pipeline: dlt.Pipeline, source_name: str = "klaviyo") -> dict[str, str]:
    """Reports whose backfill has chunks left after the last committed run: name -> the
    datetime (ISO 8601) the next run resumes from."""
    resources = pipeline.state.get("sources", {}).get(source_name, {}).get("resources", {})
    return {name: state[RESUME_KEY] for name, state in resources.items() if state.get(RESUME_KEY)}
