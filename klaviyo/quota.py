"""The reporting API's daily quota: requests spent in the last 24 h, remembered across runs.

Klaviyo allows the reporting endpoints 1 request/s, 2/min (paced by `ratelimit.py` like every
tier) and 225 a day. A day is longer than a run, so what was spent is kept in the source state
(`STATE_KEY`: the send times of the last 24 h, at most the daily limit of small integers, and
the endpoints Klaviyo refused until a given time), committed with each load. Each report of a
run may spend at most its share of the daily limit (`report_daily_share`), so one long
backfill never leaves the others, or the next runs of the day, without requests. When the
quota or the share is spent the report stops cleanly and the next run goes on.

dlt has no budget that survives runs, and its retries would wait out a daily 429's
`Retry-After` (hours) attempt after attempt: hence this module, and `daily_refusal`, which the
HTTP client uses to turn that 429 into `KlaviyoDailyLimit` before any retry.
"""

import math
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from requests import Response

from .errors import KlaviyoDailyLimit, endpoint_of
from .windows import UTC

STATE_KEY = "reporting_quota"  # in the source state: {"sent": [epoch s], "refused": {path: epoch s}}
DAY_S = 86_400.0  # the rolling window Klaviyo counts the daily limit in, seconds
# A 429 of a tier with a daily limit whose Retry-After is longer than this is the daily limit
# (the burst and steady windows free within a minute).
DAILY_REFUSAL_MIN_WAIT_S = 61.0
DAILY_TIERS = frozenset({"REPORTING"})  # tier keys of `settings.TIERS` with a daily limit


def now() -> float:
    """The quota's clock, epoch seconds (one place, so that tests can let a day pass)."""
    return time.time()


def daily_refusal(tier: str, response: Response) -> KlaviyoDailyLimit | None:
    """The error to raise for a 429 that is the daily limit of `tier` (None for any other
    answer): waiting for it belongs to the next run, not to this one's retries."""
    if tier not in DAILY_TIERS or response.status_code != 429:
        return None
    try:
        wait = float(response.headers.get("Retry-After") or 0)
    except ValueError:
        wait = 0.0
    if wait < DAILY_REFUSAL_MIN_WAIT_S:
        return None
    return KlaviyoDailyLimit(endpoint_of(response.url or ""), wait)


@dataclass
class DailyQuota:
    """The account's reporting requests of the last `DAY_S` seconds and this run's share per report.

    Args:
        limit: Requests allowed in any `DAY_S` (`report_daily_limit`, Klaviyo's 225).
        share: Most of `limit` one report may spend in one run (0 < share <= 1).
    """

    limit: int
    share: float
    _spent_in_run: dict[str, int] = field(default_factory=dict)

    @property
    def per_report(self) -> int:
        """Most requests one report may send in one run."""
        return max(1, math.floor(self.limit * self.share))

    def _state(self, state: MutableMapping[str, Any]) -> dict[str, Any]:
        quota: dict[str, Any] = state.setdefault(STATE_KEY, {})
        moment = now()
        quota["sent"] = [t for t in quota.get("sent", []) if t > moment - DAY_S]
        quota["refused"] = {p: t for p, t in dict(quota.get("refused") or {}).items() if t > moment}
        return quota

    def take(self, state: MutableMapping[str, Any], report: str, path: str) -> str | None:
        """Spends one request of `report` (to `path`) and returns None, or returns why it may
        not be sent (the request is then not counted).

        Args:
            state: The source state (`dlt.current.source_state()`), where the quota lives.
            report: The table the request is for (its share is counted per run).
            path: The endpoint (refused until the time a daily 429 named).
        """
        quota = self._state(state)
        sent: list[int] = quota["sent"]
        if path in quota["refused"]:
            return f"Klaviyo refused {path} for today's quota until {_clock(quota['refused'][path])}"
        if len(sent) >= self.limit:
            return f"the daily quota of {self.limit} reporting requests is spent until {_clock(sent[0] + DAY_S)}"
        if self._spent_in_run.get(report, 0) >= self.per_report:
            return f"this run's share of {self.per_report} requests (report_daily_share) is spent"
        sent.append(math.ceil(now()))
        self._spent_in_run[report] = self._spent_in_run.get(report, 0) + 1
        return None

    def refused(self, state: MutableMapping[str, Any], error: KlaviyoDailyLimit) -> str:
        """Remembers a daily 429 (its endpoint is not asked again before it frees) and says why."""
        until = now() + error.retry_after
        self._state(state)["refused"][error.endpoint] = math.ceil(until)
        return f"Klaviyo answered 429 for its daily limit on {error.endpoint} until {_clock(until)}"

    def spent(self, state: Mapping[str, Any]) -> int:
        """Requests spent in the last `DAY_S` (as the state says)."""
        moment = now()
        return sum(1 for t in (state.get(STATE_KEY) or {}).get("sent", []) if t > moment - DAY_S)

    def spent_in_run(self, report: str) -> int:
        """Requests `report` spent in this run."""
        return self._spent_in_run.get(report, 0)


def _clock(epoch: float) -> str:
    """`YYYY-MM-DD HH:MM UTC`."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")

