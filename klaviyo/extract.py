"""Reads one report over a range, several windows at a time, page by page.

dlt's `parallelized=True` runs *different* resources concurrently, but one generator stays
sequential (dlt issue #2844), and a report read as several windows must still be one resource
with one incremental cursor. So the windows of a report are read here by a small pool of
threads; each page is converted in its worker and handed to the resource through a bounded
queue, so memory holds a few pages per worker whatever the size of the account. The pace is
set by the shared rate limiter, not by the number of workers.

Windows adapt to the data's density: a job starts with the whole range; while a worker is
idle and a job still has pages to read, the job keeps the rows it has read (all rows before
the last cursor value of its current page, since pages come sorted by the cursor) and hands
the rest of its window, from that value on, to the idle workers as new windows. Sparse
stretches thus cost one request, dense ones are read in parallel with full pages, and no
request is spent on empty windows. Each window ends on a partial page, so splits stop while
the tier's steady budget is spent (more windows would only wait) and parts are kept to
`SPLIT_MIN_PAGES` pages or more, judged by the density of the page just read.

Ties: a bulk import or edit gives whole pages (thousands of records) one cursor value, and no
filter can cut inside such a run. A page whose records all share one value keeps that value
with its job: the job reads the rest of the run and stops after the first page that passes
it, and what lies after the value (exclusive: asked with `greater-than`, which every sorted
endpoint has) goes to the idle workers. A window that starts on a run reads it whole before
it may split. Every value thus stays in exactly one window, however many pages it fills.
"""

import math
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

import pyarrow as pa

from .client import KlaviyoApi
from .pages import Resource, decode_page
from .records import cursor_value, resource_id, to_arrow, to_rows
from .settings import DEFAULT_PAGE_RECORDS, IN_FLIGHT_RECORDS, QUEUED_RECORDS, SPLIT_MIN_PAGES, Report
from .windows import Window, bound_conditions, combine, split_into

PageItems = Any  # a list of row dicts or an Arrow table


@dataclass(frozen=True)
class ReadJob:
    """One window of one variant of a report (e.g. archived campaigns, a stretch of events)."""

    variant: str
    window: Window


class _Splitter:
    """Tells a job whether idle workers are waiting for work, and hands them new windows.

    Every window ends on a partial page, so each extra window costs about one request of the
    tier's budget: a split is made only while the tier has room for more requests (not
    `saturated`) and only into windows expected to hold `min_pages` pages or more.
    """

    def __init__(
        self,
        workers: int,
        pending: "queue.Queue[ReadJob]",
        min_window: timedelta,
        saturated: Callable[[], bool] = lambda: False,
        min_pages: int = SPLIT_MIN_PAGES,
    ) -> None:
        self.workers = workers
        self.pending = pending
        self.min_window = min_window
        self.saturated = saturated
        self.min_pages = min_pages
        self.lock = threading.Lock()
        self.busy = 0

    def idle_workers(self) -> int:
        with self.lock:
            return max(0, self.workers - self.busy - self.pending.qsize())

    def try_split(self, job: ReadJob, at: datetime, pages_left: float = float("inf")) -> bool:
        """Splits `job`'s window from `at` (inclusive) to its end among the idle workers plus
        the caller; returns False (the caller keeps paging) when that is not worth it.

        Args:
            job: The job being read.
            at: Cursor value the rest of the window starts at.
            pages_left: Estimated pages from `at` to the window's end (inf: unknown).
        """
        return self._hand_out(job, at, after=False, pages_left=pages_left)

    def try_hand_off(self, job: ReadJob, after: datetime) -> bool:
        """Hands what lies after `after` (exclusive) to the window's end to the idle workers,
        while the caller keeps reading the records on `after` (a run of ties); returns False
        when that is not worth it. The density beyond a page of one value is unknown, so only
        the idle workers and the smallest window bound the parts."""
        return self._hand_out(job, after, after=True, pages_left=float("inf"))

    def _hand_out(self, job: ReadJob, at: datetime, after: bool, pages_left: float) -> bool:
        window = job.window
        idle = self.idle_workers()
        if idle <= 0 or window.end is None or window.end - at < self.min_window * 2:
            return False
        # The caller takes one part back from the queue when it stops, not when it goes on.
        parts = min(idle if after else idle + 1, int((window.end - at) / self.min_window))
        if math.isfinite(pages_left):
            parts = min(parts, int(pages_left // self.min_pages))
        if parts < (1 if after else 2) or self.saturated():
            return False
        rest = Window(at, window.end, start_open=after, end_closed=window.end_closed)
        for sub in split_into(rest, parts):
            self.pending.put(replace(job, window=sub))
        return True


def request_params(report: Report, job: ReadJob) -> dict[str, Any]:
    """Query parameters of a job's first request (later pages follow `links.next`)."""
    conditions = list(report.filters)
    if job.variant:
        conditions.append(job.variant)
    if report.cursor:
        conditions += bound_conditions(report.cursor, job.window, report.cursor_ops)
    params: dict[str, Any] = dict(report.params)
    filter_value = combine(conditions)
    if filter_value:
        params["filter"] = filter_value
    if report.sort:
        params["sort"] = report.sort
    if report.page_size:
        params["page[size]"] = report.page_size
    return params


def page_decoder(report: Report) -> Callable[[bytes], dict[str, Any]] | None:
    """How a report's pages are decoded: the Arrow reports' by msgspec (`pages.decode_page`),
    the others' by the client's default (orjson, plain dicts)."""
    return decode_page if report.row_format == "arrow" else None


def _cursor_at(document: dict[str, Any], cursor: str, index: int) -> datetime | None:
    data = document.get("data") or []
    return cursor_value(data[index], cursor) if data else None


def _pages_left(first: datetime, at: datetime, end: datetime | None) -> float:
    """Pages from `at` to `end` if the data stays as dense as on this (full) page, which
    spans `first` to `at` (first < at)."""
    if end is None:
        return float("inf")
    return (end - at) / (at - first)


def _beyond(value: datetime | None, window: Window) -> bool:
    """Whether a cursor value lies after the window's end."""
    return value is not None and window.end is not None and (
        value > window.end or (value == window.end and not window.end_closed)
    )


def read_job(
    api: KlaviyoApi,
    report: Report,
    job: ReadJob,
    splitter: _Splitter | None = None,
) -> Iterator[PageItems]:
    """Yields the converted pages of one job (empty pages left out); hands the rest of the
    window to idle workers when the splitter allows it (see the module's docstring)."""
    convert: Callable[..., Any] = to_arrow if report.row_format == "arrow" else to_rows
    cursor = report.cursor or ""
    sorted_by_cursor = bool(cursor) and report.sort == cursor
    previous_ids: frozenset = frozenset()
    for document in api.paginate(
        report.path, request_params(report, job), report.tier, report.scope, report.name, decode=page_decoder(report)
    ):
        page = document
        document, previous_ids = _without_repeats(document, previous_ids)
        window = job.window
        has_next = bool((document.get("links") or {}).get("next"))
        last = _cursor_at(document, cursor, -1) if sorted_by_cursor else None
        split = False
        if splitter is not None and has_next and last is not None and (window.start is None or last > window.start):
            first = _cursor_at(document, cursor, 0)
            if first is not None and first < last:
                split = splitter.try_split(job, last, _pages_left(first, last, window.end))
                if split:  # this job keeps the values before `last`
                    window = Window(window.start, last, start_open=window.start_open)
            elif splitter.try_hand_off(job, last):  # a page of one value: this job keeps it
                window = Window(window.start, last, start_open=window.start_open, end_closed=True)
                job = replace(job, window=window)  # what is left of it, for later pages
        items = convert(document, report, window)
        _release(page)
        if items is not None and len(items):
            yield items
        if split or _beyond(last, window):  # sorted: every later page lies beyond too
            return


def _release(document: dict[str, Any]) -> None:
    """Frees a converted page's records now rather than when the next page arrives (the HTTP
    client keeps the page's document until then, and a decoded page's records point into its
    body): a 1000-event page is ~2 MB, held by each worker through the next request."""
    for key in ("data", "included"):
        records = document.get(key)
        if isinstance(records, list):
            records.clear()


# The id of a decoded page's resource (`pages.Resource`), read in C over a whole page.
_ID = attrgetter("id")


def _without_repeats(document: dict[str, Any], previous_ids: frozenset) -> tuple[dict[str, Any], frozenset]:
    """The page without the records the previous page of the same read already gave, and
    this page's ids. Klaviyo's cursors are opaque: should one shift when records are added
    mid-read (an offset would), a record would come twice at the page edge; reports declared
    `immutable` promise dlt one row per id per load, so this keeps that promise cheaply."""
    data = document.get("data") or []
    ids = frozenset(map(_ID, data) if data and type(data[0]) is Resource else (resource_id(resource) for resource in data))
    if previous_ids and not previous_ids.isdisjoint(ids):
        document = {**document, "data": [r for r in data if resource_id(r) not in previous_ids]}
    return document, ids


_DONE = object()


def read_jobs(
    api: KlaviyoApi,
    report: Report,
    jobs: Sequence[ReadJob],
    workers: int,
    min_window: timedelta | None = None,
) -> Iterator[PageItems]:
    """Yields the pages of all jobs, reading up to `workers` windows at a time (fewer where the
    pages are large: at most `IN_FLIGHT_RECORDS` records being read and converted).

    Pages of different windows interleave; within a window they come in the API's order. The
    first error of any worker stops the others and is raised here.
    """
    page_records = report.page_size or DEFAULT_PAGE_RECORDS
    workers = min(workers, max(1, IN_FLIGHT_RECORDS // page_records))
    if workers <= 1:
        for job in jobs:
            yield from read_job(api, report, job)
        return

    pending: queue.Queue[ReadJob] = queue.Queue()
    for job in jobs:
        pending.put(job)
    splitter = _Splitter(workers, pending, min_window or timedelta(minutes=10), lambda: api.limiter.saturated(report.tier))
    # bounded in records, not pages: a 1000-event page weighs five 200-event ones
    pages: queue.Queue[tuple[Any, Any]] = queue.Queue(maxsize=max(2, min(2 * workers, QUEUED_RECORDS // page_records)))
    stop = threading.Event()

    def put(kind: Any, payload: Any) -> bool:
        while not stop.is_set():
            try:
                pages.put((kind, payload), timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            while not stop.is_set():
                with splitter.lock:
                    try:
                        job = pending.get_nowait()
                    except queue.Empty:
                        if splitter.busy == 0:
                            break  # nothing pending and nobody can add more
                        job = None
                    else:
                        splitter.busy += 1
                if job is None:
                    stop.wait(0.02)
                    continue
                try:
                    for items in read_job(api, report, job, splitter):
                        if not put("page", items):
                            return
                finally:
                    with splitter.lock:
                        splitter.busy -= 1
        except BaseException as error:  # handed to the consumer, which re-raises it
            put("error", error)
        finally:
            put(_DONE, None)

    threads = [
        threading.Thread(target=work, name=f"klaviyo-{report.name}-{i}", daemon=True)
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            kind, payload = pages.get()
            if kind is _DONE:
                running -= 1
            elif kind == "error":
                raise payload
            else:
                yield payload
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def batched_tables(pages: Iterator[PageItems], min_rows: int) -> Iterator[PageItems]:
    """Concatenates consecutive Arrow pages into tables of at least `min_rows` rows.

    dlt's extract pipe costs per item as well as per row (cursor-path compiling, schema-hint
    validation, writer calls: ~17% of an events backfill's CPU with one item per page), so a
    few pages per item cut that share; memory grows by the few pages held.
    """
    held: list[Any] = []
    rows = 0
    for table in pages:
        held.append(table)
        rows += table.num_rows
        if rows >= min_rows:
            yield held[0] if len(held) == 1 else pa.concat_tables(held, promote_options="default")
            held, rows = [], 0
    if held:
        yield held[0] if len(held) == 1 else pa.concat_tables(held, promote_options="default")


def plan_jobs(report: Report, windows: list[Window]) -> list[ReadJob]:
    """Every (variant, window) pair of a report."""
    return [ReadJob(variant, window) for variant in report.variants for window in windows]
