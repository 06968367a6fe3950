"""Reads one report over a list of windows, several windows at a time, page by page.

dlt's `parallelized=True` runs *different* resources concurrently, but one generator stays
sequential (dlt issue #2844), and a report read as several windows must still be one resource
with one incremental cursor. So the windows of a report are read here by a small thread pool;
each page is converted in the worker and handed to the resource through a bounded queue, so
memory holds at most a few pages per worker whatever the size of the account. The pace is set
by the shared rate limiter, not by the number of workers.
"""

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .client import KlaviyoApi
from .records import to_arrow, to_rows
from .settings import Report
from .windows import Window, bound_conditions, combine

PageItems = Any  # a list of row dicts or an Arrow table


@dataclass(frozen=True)
class ReadJob:
    """One window of one variant of a report (e.g. archived campaigns, one day of events)."""

    variant: str
    window: Window


def request_params(report: Report, job: ReadJob, extra: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Query parameters of a job's first request (later pages follow `links.next`)."""
    conditions = list(report.filters)
    if job.variant:
        conditions.append(job.variant)
    if report.cursor:
        conditions += bound_conditions(report.cursor, job.window, report.cursor_ops)
    params: Dict[str, Any] = dict(report.params)
    params.update(extra or {})
    filter_value = combine(conditions)
    if filter_value:
        params["filter"] = filter_value
    if report.sort:
        params["sort"] = report.sort
    if report.page_size:
        params["page[size]"] = report.page_size
    return params


def read_job(
    api: KlaviyoApi, report: Report, job: ReadJob, tier: str, extra: Optional[Dict[str, str]] = None
) -> Iterator[PageItems]:
    """Yields the converted pages of one job, skipping pages left empty by the window trim."""
    convert: Callable[..., Any] = to_arrow if report.row_format == "arrow" else to_rows
    for document in api.paginate(
        report.path, request_params(report, job, extra), tier, report.scope, report.name
    ):
        items = convert(document, report, job.window)
        if items is not None and len(items):
            yield items


_DONE = object()


def read_jobs(
    api: KlaviyoApi,
    report: Report,
    jobs: Sequence[ReadJob],
    tier: str,
    workers: int,
    extra: Optional[Dict[str, str]] = None,
) -> Iterator[PageItems]:
    """Yields the pages of all jobs, reading up to `workers` jobs at a time.

    Pages of different jobs interleave; within a job they come in the API's order. The first
    error of any worker stops the others and is raised here.
    """
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield from read_job(api, report, job, tier, extra)
        return

    pending: "queue.Queue[ReadJob]" = queue.Queue()
    for job in jobs:
        pending.put(job)
    pages: "queue.Queue[Tuple[Any, Any]]" = queue.Queue(maxsize=2 * workers)
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
                try:
                    job = pending.get_nowait()
                except queue.Empty:
                    break
                for items in read_job(api, report, job, tier, extra):
                    if not put("page", items):
                        return
        except BaseException as error:  # handed to the consumer, which re-raises it
            put("error", error)
        finally:
            put(_DONE, None)

    threads = [
        threading.Thread(target=work, name=f"klaviyo-{report.name}-{i}", daemon=True)
        for i in range(min(workers, len(jobs)))
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


def plan_jobs(report: Report, windows: List[Window]) -> List[ReadJob]:
    """Every (variant, window) pair of a report."""
    return [ReadJob(variant, window) for variant in report.variants for window in windows]
