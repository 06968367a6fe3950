"""Which API revision answers a request, from its `revision` header.

The emulator holds two revisions, each served from its own spec: 2023-10-15 (the one the
connector was first specified for) and 2026-07-15. Rules, checked in this order:

- no header: 400 (`revision` is a required header in every spec);
- not `YYYY-MM-DD[.suffix]` with a real date: 400, as before;
- a held revision (any `.suffix`, e.g. `2026-07-15.pre`): served as that revision;
- another revision Klaviyo documented (`KLAVIYO_REVISIONS`) that is older than the newest
  held one: served as the oldest held revision not older than it. This mirrors Klaviyo's
  "fall forward" (a retired revision is answered as a later, supported one): 2023-07-15 is
  answered as 2023-10-15, 2024-02-15 ... 2026-04-15 as 2026-07-15;
- anything else: 404 `not_found`, as Klaviyo answers an undocumented revision since
  2024-02-15. That includes real revisions newer than 2026-07-15 (2026-10-15), whose shapes
  the emulator does not hold: a loud 404 rather than answers in the wrong shape.
"""

from __future__ import annotations

import re
from datetime import date

HELD: tuple[str, ...] = ("2023-10-15", "2026-07-15")
"""Revisions served from their own spec, oldest first."""

OLDEST, NEWEST = HELD[0], HELD[-1]

KLAVIYO_REVISIONS: frozenset[str] = frozenset({
    "2022-10-17", "2023-01-24", "2023-02-22", "2023-06-15", "2023-07-15", "2023-08-15",
    "2023-09-15", "2023-10-15", "2023-12-15", "2024-02-15", "2024-05-15", "2024-06-15",
    "2024-07-15", "2024-10-15", "2025-01-15", "2025-04-15", "2025-07-15", "2025-10-15",
    "2026-01-15", "2026-04-15", "2026-07-15", "2026-10-15",
})
"""GA revisions listed in Klaviyo's API changelog (UNCONFIRMED for the 2022/2023 ones)."""

_REVISION_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(\.[A-Za-z0-9_-]+)?$")


class RevisionError(ValueError):
    """A revision header Klaviyo refuses: `status` is 400 (missing/malformed) or 404."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def resolve(value: str | None) -> str:
    """The held revision that answers a `revision` header value.

    Raises:
        RevisionError: 400 for a missing or malformed value, 404 for an undocumented one.
    """
    if value is None:
        raise RevisionError(400, "The 'revision' header is required (e.g. revision: 2026-07-15).")
    m = _REVISION_RE.match(value.strip())
    valid_date = False
    if m:
        try:
            date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            valid_date = True
        except ValueError:
            pass
    if not m or not valid_date:
        raise RevisionError(400, f"Invalid revision '{value}': expected YYYY-MM-DD[.suffix].")
    day = value.strip().split(".")[0]
    if day in HELD:
        return day
    if day in KLAVIYO_REVISIONS and day < NEWEST:
        return next(r for r in HELD if r >= day)
    raise RevisionError(404, f"Revision '{value}' is not a documented revision of this API "
                             f"(this server holds {', '.join(HELD)}).")
