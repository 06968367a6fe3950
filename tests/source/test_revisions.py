"""The API revision of a run: chosen, checked and sent; a report of another revision is named
with it; a retired revision sent to Klaviyo warns once; the limiter paces at the revision's
tiers. (Each revision's rows against its spec: tests/source/test_report_table.py.)"""

import logging
from typing import Any

import dlt
import pytest

from klaviyo import KlaviyoConfigError, klaviyo_source
from klaviyo.settings import DEFAULT_REVISION, REVISIONS, Tier
from klaviyo_emulator import Emulator, EmulatorConfig


# ------------------------------------------------------------------------ the revision chosen
@pytest.mark.parametrize(
    "revision, message",
    [
        ("2024-10-15", "revision '2024-10-15' is not one this source speaks; set revision to one of: 2026-07-15 (the default), 2023-10-15"),
        ("2026-07-15.pre", "revision '2026-07-15.pre' is not one this source speaks"),
        ("15-10-2023", "revision '15-10-2023' is malformed; use YYYY-MM-DD, one of: 2026-07-15, 2023-10-15"),
    ],
)
def test_a_revision_the_source_does_not_speak_is_one_line(revision: str, message: str) -> None:
    with pytest.raises(KlaviyoConfigError) as error:
        klaviyo_source(api_key="pk_test_key_1234", base_url="http://127.0.0.1:9", revision=revision)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_reports_of_another_revision_are_named_with_it() -> None:
    with pytest.raises(KlaviyoConfigError, match=r"^The report 'campaigns_push' needs revision 2026-07-15 \(this run uses 2023-10-15\)"):
        klaviyo_source(api_key="pk_test_key_1234", base_url="http://127.0.0.1:9", revision="2023-10-15", reports="events,campaigns_push")
    old = klaviyo_source(api_key="pk_test_key_1234", base_url="http://127.0.0.1:9", revision="2023-10-15")
    new = klaviyo_source(api_key="pk_test_key_1234", base_url="http://127.0.0.1:9")
    assert "campaigns_push" in new.selected_resources and "campaigns_push" not in old.selected_resources


@pytest.mark.parametrize(
    "revision, base_url, warned",
    [
        ("2023-10-15", "https://a.klaviyo.com", 1),
        ("2023-10-15", "https://a.klaviyo.com/", 1),
        ("2023-10-15", "http://127.0.0.1:8765", 0),
        ("2026-07-15", "https://a.klaviyo.com", 0),
    ],
)
def test_a_retired_revision_sent_to_klaviyo_warns_once(caplog: pytest.LogCaptureFixture, revision: str, base_url: str, warned: int) -> None:
    from klaviyo import revisions

    revisions._warn_retired.cache_clear()  # a new process, as far as the warning knows
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # the command builds its source more than once (validation, each chunk)
            source = klaviyo_source(api_key="pk_test_key_1234", base_url=base_url, revision=revision)
            list(source.resources)  # resources are built, nothing is read
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == warned, warnings
    if warned:
        assert warnings[0].startswith("revision 2023-10-15: Klaviyo retired it around 2025-10-15 and answers it as its oldest revision")


@pytest.mark.parametrize("revision", [None, *REVISIONS])
def test_the_revision_is_sent_on_every_request(tmp_path: Any, revision: Any) -> None:
    with Emulator(EmulatorConfig(seed=2, profiles=10, events=120, lists=2)) as emu:
        pipeline = dlt.pipeline("klaviyo_rev", destination=dlt.destinations.duckdb(str(tmp_path / "r.duckdb")),
                                dataset_name="d", pipelines_dir=str(tmp_path / "p"))
        kwargs = {"revision": revision} if revision else {}
        pipeline.run(klaviyo_source(api_key=emu.api_key, base_url=emu.base_url, reports="metrics,lists,list_profiles", **kwargs))
        table = REVISIONS[revision or DEFAULT_REVISION]
        assert emu.request_log and {r.headers.get("revision") for r in emu.request_log} == {table.revision}
        assert {r.path for r in emu.request_log if "{id}" not in r.path} >= {table.reports["metrics"].path, table.reports["lists"].path}


def test_the_limiter_paces_at_the_tiers_of_the_revision() -> None:
    from klaviyo.ratelimit import RateLimiter

    base_url, key = "http://127.0.0.1:9", "pk_limiter_tiers_test"
    for revision in ("2023-10-15", "2026-07-15", "2023-10-15"):
        klaviyo_source(api_key=key, base_url=base_url, revision=revision)
        limiter = RateLimiter.for_account(base_url, key)
        assert limiter._states["L"].tier == REVISIONS[revision].tiers["L"]
    assert REVISIONS["2026-07-15"].tiers["L"] == Tier(75, 750) and REVISIONS["2023-10-15"].tiers["L"] == Tier(75, 700)
