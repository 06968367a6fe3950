"""Which report table a run reads: the configured API revision, checked.

The tables themselves are data (`settings.REVISIONS`); this module only says no to a revision
the source does not speak, and warns once when a retired revision is sent to Klaviyo itself.
"""

import logging
from functools import cache
from urllib.parse import urlsplit

from .errors import KlaviyoConfigError
from .settings import DEFAULT_BASE_URL, DEFAULT_REVISION, REVISIONS, RevisionTable

logger = logging.getLogger(__name__)


def supported_table(revision: str) -> RevisionTable:
    """The report table of `revision`, or a one-line `KlaviyoConfigError` naming the supported
    revisions."""
    table = REVISIONS.get(revision)
    if table is None:
        supported = ", ".join(f"{r} (the default)" if r == DEFAULT_REVISION else r for r in REVISIONS)
        raise KlaviyoConfigError(
            f"revision {revision!r} is not one this source speaks; set revision to one of: {supported}"
        )
    return table


def warn_if_retired(table: RevisionTable, base_url: str) -> None:
    """Logs one warning (once per process: the command builds its source once per run and
    chunk) when a retired revision is sent to Klaviyo's own host: Klaviyo does not refuse it
    but answers it as its oldest revision still supported (a different one every quarter), in
    shapes this table was not written for. Other hosts (an emulator, a proxy) are left alone."""
    if table.retired and urlsplit(base_url).hostname == urlsplit(DEFAULT_BASE_URL).hostname:
        _warn_retired(table.revision, table.retired)


@cache  # the "once": one entry per retired revision
def _warn_retired(revision: str, retired: str) -> None:
    logger.warning(
        "revision %s: Klaviyo retired it around %s and answers it as its oldest revision still"
        " supported, whose shapes change every quarter; remove revision from the configuration"
        " to read %s (see README, Revisions)",
        revision, retired, DEFAULT_REVISION,
    )
