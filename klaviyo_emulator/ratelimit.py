"""Klaviyo-style rate limits, per key and bucket: fixed windows of 1 s (burst) and 60 s
(steady), plus, for the reporting API, a rolling daily window (225 requests in any 24 h;
window length and count are knobs so tests can shrink them)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """Outcome of one rate-limit check.

    Attributes:
        allowed: False means answer 429.
        limit: Steady limit of the bucket (requests per 60 s).
        remaining: Steady requests left in the current 60 s window.
        reset: Seconds until the steady window resets (integer, >= 1).
        retry_after: Seconds until the blocking window frees (integer, >= 1; 0 if allowed).
        blocked_by: The limit that refused the request: "burst", "steady" or "daily"
            (the one with the longest wait), "" if allowed.
    """

    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int = 0
    blocked_by: str = ""


class RateLimiter:
    """Counts requests per (key, bucket) in fixed windows; blocks only when enabled.

    Counting always happens so that `RateLimit-*` headers are meaningful.
    """

    def __init__(self, enabled: bool, clock=time.time) -> None:
        self.enabled = enabled
        self.clock = clock
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], list[int]] = {}
        self._days: dict[tuple[str, str], deque[float]] = {}  # times of the day's requests
        self._forced: list[int] = []  # [count, retry_after]

    def reset(self) -> None:
        """Forgets every window (as if a day had passed with no request)."""
        with self._lock:
            self._state.clear()
            self._days.clear()

    def force_429(self, count: int, retry_after: int = 2) -> None:
        """Answers the next `count` /api requests with 429 and `Retry-After: retry_after`."""
        with self._lock:
            self._forced = [count, retry_after]

    def forced(self) -> int:
        """Retry-After of a forced 429 for this request, or 0 (consumes one)."""
        with self._lock:
            if self._forced and self._forced[0] > 0:
                self._forced[0] -= 1
                return self._forced[1]
        return 0

    def check(self, key: str, bucket: str, burst: int, steady: int, daily: int = 0,
              day_seconds: float = 86_400) -> Decision:
        """Counts one request in the bucket and decides whether it may pass.

        Args:
            key: The API key (buckets are per key).
            bucket: Bucket name (endpoint path and tier).
            burst: Requests allowed per 1-second window.
            steady: Requests allowed per 60-second window.
            daily: Requests allowed in any `day_seconds` (a rolling window); 0 = no limit.
            day_seconds: Length of the daily window in seconds (86,400; shorter in tests).
        """
        now = self.clock()
        second, minute = int(now), int(now // 60)
        with self._lock:
            st = self._state.get((key, bucket))
            if st is None:
                st = self._state[(key, bucket)] = [second, 0, minute, 0]
            if st[0] != second:
                st[0], st[1] = second, 0
            if st[2] != minute:
                st[2], st[3] = minute, 0
            day = self._days.setdefault((key, bucket), deque()) if daily > 0 else None
            while day and day[0] <= now - day_seconds:
                day.popleft()
            reset = max(1, math.ceil((minute + 1) * 60 - now))
            full_day = day is not None and len(day) >= daily
            if self.enabled and (st[1] >= burst or st[3] >= steady or full_day):
                waits = []
                if st[1] >= burst:
                    waits.append((math.ceil(second + 1 - now), "burst"))
                if st[3] >= steady:
                    waits.append((reset, "steady"))
                if full_day and day:
                    waits.append((math.ceil(day[0] + day_seconds - now), "daily"))
                wait, which = max(waits)
                return Decision(False, steady, max(0, steady - st[3]), reset, max(1, wait), which)
            st[1] += 1
            st[3] += 1
            if day is not None:
                day.append(now)
            return Decision(True, steady, max(0, steady - st[3]), reset)
