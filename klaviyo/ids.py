"""Every id of a report, read cheaply: one short attribute per record (a sparse fieldset),
sorted by id where the endpoint allows it, through the same client, limiter and reader.

Used by delete detection (`deletes.py`) and to find every list and segment for the
membership tables (`members.py`).
"""

from collections.abc import Iterator
from dataclasses import replace

from .client import KlaviyoApi
from .extract import plan_jobs, read_jobs
from .settings import Report
from .windows import Window


def id_scan(report: Report) -> Report:
    """The report as an id scan: no cursor (every record, whatever its date), the report's own
    filters and variants (e.g. the campaigns channel, archived or not), and the sparse
    fieldset and sort of its `id_scan`; no `include` or additional fields."""
    return replace(report, cursor=None, sort=None, params=dict(report.id_scan), row_format="dict")


def read_ids(api: KlaviyoApi, report: Report, workers: int = 1) -> Iterator[list[str]]:
    """Yields the ids of every record of `report`, a page at a time.

    Args:
        api: The source's client (its rate limiter paces the scan).
        report: A report that has an `id_scan`.
        workers: Variants read at the same time (campaigns: archived and not).
    """
    scan = id_scan(report)
    jobs = plan_jobs(scan, [Window(None, None)])
    for page in read_jobs(api, scan, jobs, min(workers, len(jobs))):
        yield [row["id"] for row in page]
