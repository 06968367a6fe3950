"""Rate limits (429, Retry-After, RateLimit-* headers), forced 429s, faults and latency."""

from __future__ import annotations

import time

import pytest
import requests

from klaviyo_emulator import Emulator
from klaviyo_emulator.ratelimit import RateLimiter
from tests.emulator.conftest import LIMITED, Http, small_config


class Clock:
    """A settable clock for the limiter."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_limiter_windows_and_retry_after() -> None:
    clock = Clock(1_000_040.25)  # 20.25 s into a minute window (1_000_020 = 16667 * 60)
    lim = RateLimiter(True, clock)
    assert [lim.check("k", "b", 3, 5).allowed for _ in range(4)] == [True, True, True, False]
    blocked = lim.check("k", "b", 3, 5)
    assert blocked.retry_after == 1 and blocked.remaining == 2
    assert lim.check("other-key", "b", 3, 5).allowed  # per key
    clock.t += 1
    assert [lim.check("k", "b", 3, 5).allowed for _ in range(3)] == [True, True, False]
    steady = lim.check("k", "b", 3, 5)
    assert not steady.allowed and steady.retry_after == 39  # until the minute window ends
    clock.t += 39
    d = lim.check("k", "b", 3, 5)
    assert d.allowed and d.remaining == 4 and d.limit == 5 and d.reset == 60
    off = RateLimiter(False, clock)
    assert all(off.check("k", "b", 1, 1).allowed for _ in range(5))


@pytest.fixture()
def limited() -> Emulator:
    with Emulator(small_config(events=300, profiles=50, rate_limits=True)) as emu:
        emu.limiter.clock = Clock(2_000_000.5)
        yield emu


def test_http_429_per_tier_with_headers(limited: Emulator) -> None:
    http = Http(limited)
    statuses = [http.get("/api/flows/").status_code for _ in range(4)]  # tier S: 3/s
    assert statuses == [200, 200, 200, 429]
    r = http.get("/api/flows/")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    err = r.json()["errors"][0]
    assert (err["code"], err["title"], err["status"]) == ("throttled", "Request was throttled.",
                                                          429)
    assert "RateLimit-Limit" not in r.headers
    assert [http.get("/api/metrics/").status_code for _ in range(10)] == [200] * 10
    other_key = http.get("/api/metrics/", headers={"Authorization": f"Klaviyo-API-Key {LIMITED}"})
    assert other_key.status_code == 429  # private keys share the account's quota
    ok = http.get("/api/events/")  # other endpoint, own bucket (XL)
    assert ok.status_code == 200
    assert ok.headers["RateLimit-Limit"] == "3500"
    assert int(ok.headers["RateLimit-Remaining"]) == 3499
    assert 1 <= int(ok.headers["RateLimit-Reset"]) <= 60


def test_predictive_analytics_drops_profiles_to_tier_m(limited: Emulator) -> None:
    http = Http(limited)
    plain = [http.get("/api/profiles/").status_code for _ in range(12)]
    assert set(plain) == {200}  # tier L: 75/s
    pa = {"additional-fields[profile]": "predictive_analytics"}
    statuses = [http.get("/api/profiles/", pa).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    assert http.get("/api/profiles/", pa).headers["Retry-After"] == "1"


def test_rate_limits_toggle(limited: Emulator) -> None:
    http = Http(limited)
    limited.set_rate_limits(False)
    assert {http.get("/api/flows/").status_code for _ in range(6)} == {200}
    limited.set_rate_limits(True)
    assert http.get("/api/flows/").status_code == 429


def test_non_429_responses_carry_rate_headers(emu: Emulator, http: Http) -> None:
    for r in (http.get("/api/metrics/"), http.get("/api/events/", {"sort": "nope"})):
        assert r.status_code in (200, 400)
        for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
            assert int(r.headers[name]) >= 0


def test_force_429_then_recovers(emu: Emulator, http: Http) -> None:
    emu.force_429(2, retry_after=2)
    first, second, third = (http.get("/api/metrics/") for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert first.headers["Retry-After"] == second.headers["Retry-After"] == "2"
    assert "2 seconds" in first.json()["errors"][0]["detail"]


def test_throttle_every_nth_request() -> None:
    with Emulator(small_config(events=100, profiles=20, throttle_every=3,
                               throttle_retry_after=4)) as emu:
        http = Http(emu)
        statuses = [http.get("/api/metrics/") for _ in range(6)]
        assert [r.status_code for r in statuses] == [200, 200, 429, 200, 200, 429]
        assert statuses[2].headers["Retry-After"] == "4"


def outcomes(seed: int, n: int = 40) -> list[str]:
    """Outcome of n sequential /api requests under fault_rate 0.3."""
    with Emulator(small_config(seed=seed, events=100, profiles=20, fault_rate=0.3)) as emu:
        http = Http(emu)
        out = []
        for _ in range(n):
            try:
                r = http.get("/api/metrics/")
                r.json()
                out.append(str(r.status_code))
            except requests.exceptions.ConnectionError:
                out.append("reset")
            except (requests.exceptions.ChunkedEncodingError, ValueError):
                out.append("truncate")
            http.session.close()
        deadline = time.time() + 5
        while len(emu.request_log) < n and time.time() < deadline:
            time.sleep(0.01)  # the server logs a reset after the client saw it
        logged = [e.fault for e in emu.request_log if e.fault]
        assert len(logged) == sum(o != "200" for o in out)
        return out


def test_faults_are_seeded_and_deterministic() -> None:
    a = outcomes(5)
    assert a == outcomes(5)
    assert {"500", "503", "reset", "truncate"} <= set(a) and a.count("200") > 15
    assert a != outcomes(6)


def test_faults_do_not_touch_admin_routes() -> None:
    with Emulator(small_config(events=50, profiles=10, fault_rate=1.0)) as emu:
        r = requests.get(emu.base_url + "/__admin/health", timeout=10)
        assert r.status_code == 200 and r.json()["ok"]


@pytest.mark.timing
def test_latency_is_added_to_api_responses() -> None:
    with Emulator(small_config(events=50, profiles=10, latency_ms=120)) as emu:
        http = Http(emu)
        t0 = time.perf_counter()
        http.get("/api/metrics/")
        # A lower bound, exact: the emulator sleeps 120 ms before answering; load only lengthens it.
        assert time.perf_counter() - t0 >= 0.12
        # Admin routes get no latency: the fastest of 3 answers within 0.1 s (below the 0.12 s an
        # added latency would cost; ~1-2 ms here), so one stall of the machine cannot fail it.
        took = []
        for _ in range(3):
            t0 = time.perf_counter()
            requests.get(emu.base_url + "/__admin/health", timeout=10)
            took.append(time.perf_counter() - t0)
        assert min(took) < 0.1, took
