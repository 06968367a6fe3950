"""One rate limiter for every resource and thread of a run, per Klaviyo rate-limit tier.

Klaviyo counts requests per account in fixed windows: a 1-s burst window and a 60-s steady
window per tier. The limiter keeps, per tier, the send times of recent requests and lets a
request go only when fewer than the allowed number were sent in the last burst and steady
windows. A sliding window is stricter than any fixed window of the same length, so a run alone
against the account is never throttled; the windows are widened by a small margin to absorb
network jitter between our clock and Klaviyo's. It learns from the server too: a 429's
`Retry-After` and a `RateLimit-Remaining: 0` with `RateLimit-Reset` pause the whole tier.

dlt has retries that honour `Retry-After` but no client-side pacing shared across threads,
which is why this module exists.
"""

import hashlib
import threading
import time
from collections import deque
from collections.abc import Mapping

from .settings import TIERS, Tier

BURST_WINDOW_S = 1.0
STEADY_WINDOW_S = 60.0
# Widening of both windows (seconds) against jitter between client and server clocks.
WINDOW_MARGIN_S = 0.5


class _TierState:
    def __init__(self, tier: Tier) -> None:
        self.tier = tier
        self.sent: deque[float] = deque()  # monotonic send times within the steady window
        self.blocked_until = 0.0  # monotonic time before which nothing may be sent
        self.throttled = 0  # 429s seen
        self.requests = 0  # requests let through (retries included)


class RateLimiter:
    """Paces requests per tier; thread-safe, shared by every thread of a run.

    Args:
        tiers: Tier key -> limits; defaults to Klaviyo's tiers.
    """

    _shared: dict[tuple[str, str], "RateLimiter"] = {}
    _shared_lock = threading.Lock()

    def __init__(self, tiers: Mapping[str, Tier] | None = None) -> None:
        self._states = {name: _TierState(t) for name, t in (tiers or TIERS).items()}
        self._lock = threading.Lock()
        self.waited_s = 0.0  # total time callers spent waiting, seconds

    @classmethod
    def for_account(cls, base_url: str, api_key: str, tiers: Mapping[str, Tier] | None = None) -> "RateLimiter":
        """Returns the process-wide limiter of one account (keyed by a hash of the key)."""
        return cls.for_identity(base_url, hashlib.sha256(api_key.encode()).hexdigest(), tiers)

    @classmethod
    def for_identity(cls, base_url: str, identity: str, tiers: Mapping[str, Tier] | None = None) -> "RateLimiter":
        """Returns the process-wide limiter of one credential, by its digest (`auth.Credentials.identity`;
        a private key's is the SHA-256 of the key, so this is `for_account`'s limiter), paced at
        `tiers` (the limits of the run's API revision) when given: Klaviyo counts an account's
        requests whatever their revision, so one limiter serves every revision and takes the
        limits of the run that asked last."""
        account = (base_url, identity)
        with cls._shared_lock:
            if account not in cls._shared:
                cls._shared[account] = cls(tiers)
            limiter = cls._shared[account]
        if tiers is not None:
            limiter.set_tiers(tiers)
        return limiter

    def set_tiers(self, tiers: Mapping[str, Tier]) -> None:
        """Paces each tier at the given limits from now on (the requests already sent count)."""
        with self._lock:
            for name, tier in tiers.items():
                if name in self._states:
                    self._states[name].tier = tier
                else:
                    self._states[name] = _TierState(tier)

    def acquire(self, tier: str) -> None:
        """Blocks until a request of `tier` may be sent, then records it as sent."""
        state = self._states[tier]
        burst, steady = state.tier.burst_per_second, state.tier.steady_per_minute
        while True:
            with self._lock:
                now = time.monotonic()
                sent = _recent(state, now)
                wait = state.blocked_until - now
                if len(sent) >= steady:
                    wait = max(wait, sent[0] + STEADY_WINDOW_S + WINDOW_MARGIN_S - now)
                if len(sent) >= burst:
                    oldest_in_burst = sent[-burst]
                    wait = max(wait, oldest_in_burst + BURST_WINDOW_S + WINDOW_MARGIN_S - now)
                if wait <= 0:
                    sent.append(now)
                    state.requests += 1
                    return
            self.waited_s += wait
            time.sleep(min(wait, 5.0))

    def saturated(self, tier: str) -> bool:
        """Whether a request of `tier` sent now would wait for the steady window or for a
        pause the server asked for: more concurrency cannot speed the tier up then."""
        state = self._states[tier]
        with self._lock:
            now = time.monotonic()
            return len(_recent(state, now)) >= state.tier.steady_per_minute or state.blocked_until > now

    def observe(self, tier: str, status: int, headers: Mapping[str, str]) -> None:
        """Learns from a response: pauses the tier on 429 or on an exhausted window.

        Args:
            tier: The tier the request was sent under.
            status: HTTP status code.
            headers: Response headers (`Retry-After`, `RateLimit-Remaining`/`Reset`, seconds).
        """
        pause = 0.0
        if status == 429:
            pause = _seconds(headers.get("Retry-After"), default=1.0)
        elif headers.get("RateLimit-Remaining") == "0":
            pause = _seconds(headers.get("RateLimit-Reset"), default=0.0)
        if pause <= 0:
            return
        state = self._states[tier]
        with self._lock:
            if status == 429:
                state.throttled += 1
            state.blocked_until = max(state.blocked_until, time.monotonic() + pause)

    def requests(self, tier: str | None = None) -> int:
        """Number of requests sent (retries included), for one tier or all."""
        states = [self._states[tier]] if tier else list(self._states.values())
        return sum(s.requests for s in states)

    def throttled(self, tier: str | None = None) -> int:
        """Number of 429s seen, for one tier or all."""
        states = [self._states[tier]] if tier else list(self._states.values())
        return sum(s.throttled for s in states)


def _recent(state: _TierState, now: float) -> deque[float]:
    """The tier's send times still inside the (widened) steady window; older ones dropped."""
    sent = state.sent
    while sent and sent[0] <= now - STEADY_WINDOW_S - WINDOW_MARGIN_S:
        sent.popleft()
    return sent


def _seconds(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default
