"""Klaviyo's official Python SDK for revision 2026-07-15 (klaviyo-api 24.0.0) as a client.

klaviyo-api 24.0.0 is the release whose `KlaviyoAPI._REVISION` is "2026-07-15" (23.0.0
targets 2026-04-15, 25.0.0 2026-10-15). It cannot live in the venv beside 6.0.0 (same
import name), so a session fixture installs it with `pip install --target` into a cache
directory (`KLAVIYO_SDK_CACHE`, default ~/.cache/klaviyo-emulator-tests) and
`sdk2026_client.py` runs it in a subprocess against the emulator. The test skips only when
PyPI cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from klaviyo_emulator import Emulator
from tests.emulator.conftest import small_config

SDK_VERSION = "24.0.0"
REVISION = "2026-07-15"
CLIENT = Path(__file__).with_name("sdk2026_client.py")
_OFFLINE = ("Could not find a version", "No matching distribution", "NewConnectionError",
            "Max retries exceeded", "Temporary failure in name resolution",
            "Network is unreachable", "ConnectionError")


@pytest.fixture(scope="session")
def sdk2026() -> Path:
    """A directory holding klaviyo-api 24.0.0 and its dependencies (installed once)."""
    cache = Path(os.environ.get("KLAVIYO_SDK_CACHE",
                                Path.home() / ".cache" / "klaviyo-emulator-tests"))
    target = cache / f"klaviyo-api-{SDK_VERSION}"
    done = target / ".installed"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        run = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--target", str(target), "--upgrade", f"klaviyo-api=={SDK_VERSION}"],
            capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            if any(sign in run.stderr for sign in _OFFLINE):
                pytest.skip(f"PyPI unreachable, cannot install klaviyo-api {SDK_VERSION}: "
                            f"{run.stderr.strip().splitlines()[-1]}")
            raise AssertionError(f"pip install klaviyo-api=={SDK_VERSION} failed:\n{run.stderr}")
        done.write_text(SDK_VERSION)
    return target


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(small_config(events=2500, profiles=200)) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def paged(emu: Emulator, sdk2026: Path) -> dict:
    """What the 2026-07-15 SDK read from every report."""
    env = {**os.environ, "PYTHONPATH": str(sdk2026)}
    emu.clear_log()
    run = subprocess.run([sys.executable, str(CLIENT), emu.base_url, emu.api_key],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def ids(records) -> list[str]:
    return sorted(r["id"] for r in records)


def test_the_sdk_targets_2026_07_15(emu: Emulator, paged: dict) -> None:
    assert paged["revision"] == REVISION
    sent = {r.headers.get("revision") for r in emu.request_log}
    assert sent == {REVISION}
    assert {r.status for r in emu.request_log} == {200}
    assert all(r.headers["user-agent"] == f"klaviyo-api-python/{SDK_VERSION}"
               for r in emu.request_log)


def test_events_in_pages_of_1000_with_attributions(emu: Emulator, paged: dict) -> None:
    acc = emu.account
    assert paged["events"] == [e["id"] for e in acc.records("event", revision=REVISION)]
    sizes = paged["event_page_sizes"]
    assert sizes[:-1] == [1000] * (len(sizes) - 1) and sum(sizes) == 2500
    assert paged["attributions"] == [a["id"] for a in acc.records("attribution",
                                                                 revision=REVISION)]
    assert sorted(paged["events_without_metric"]) == sorted(
        acc.events.event_id(i) for i in acc.unresolved)


def test_every_report(emu: Emulator, paged: dict) -> None:
    acc = emu.account

    def truth(kind: str, **kw) -> list[str]:
        return ids(acc.records(kind, revision=REVISION, **kw))

    assert sorted(paged["profiles"]) == truth("profile")
    for channel in ("email", "sms", "mobile_push"):
        assert sorted(paged[f"campaigns_{channel}"]) == truth("campaign", channel=channel)
    assert sorted(paged["campaign_messages"]) == truth("campaign-message")
    for report, kind in (("templates", "template"), ("metrics", "metric"),
                         ("segments", "segment"), ("lists", "list"), ("tags", "tag"),
                         ("flows", "flow"), ("flow_actions", "flow-action"),
                         ("flow_messages", "flow-message")):
        assert sorted(paged[report]) == truth(kind), report
    for kind in ("list", "segment"):
        served = paged[f"{kind}_profiles"]
        assert set(served) == set(acc.small[kind])
        for gid, members in served.items():
            assert sorted(members) == sorted(p for p, _ in acc._member_pairs(kind, gid))
    assert paged["aggregate_total"] > 0


def test_one_report_of_each_family(emu: Emulator, paged: dict) -> None:
    """The SDK parses each reporting answer, equal to the emulator's ground truth."""
    from tests.emulator.sdk2026_client import REPORTS
    placed = next(m["id"] for m in emu.account.records("metric")
                  if m["attributes"]["name"] == "Placed Order")
    assert set(paged["reports"]) == set(REPORTS) and len(REPORTS) == 7
    for name, attrs in REPORTS.items():
        extra = {"conversion_metric_id": placed} if name.startswith(("campaign", "flow")) else {}
        truth = emu.report(name, **attrs, **extra)
        assert paged["reports"][name] == truth and truth["results"], name
