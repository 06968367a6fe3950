"""Seeded, deterministic fault injection for /api requests."""

from __future__ import annotations

import threading

from klaviyo_emulator.util import h64

FAULT_KINDS = ("500", "503", "reset", "truncate")


class Faults:
    """Decides per /api request (by a counter) whether and how to fail.

    The n-th /api request fails iff hash(seed, n) falls under `rate`; the kind is drawn
    from another hash, so a run with the same seed and request order fails identically.
    """

    def __init__(self, seed: int, rate: float) -> None:
        self.seed = seed
        self.rate = rate
        self.counter = 0
        self._lock = threading.Lock()

    def decide(self) -> str | None:
        """Fault kind for the next /api request ("500", "503", "reset", "truncate") or None."""
        if self.rate <= 0:
            return None
        with self._lock:
            n = self.counter
            self.counter += 1
        if (h64(self.seed, "fault", n) % 1_000_000) / 1_000_000 >= self.rate:
            return None
        return FAULT_KINDS[h64(self.seed, "fault-kind", n) % len(FAULT_KINDS)]
