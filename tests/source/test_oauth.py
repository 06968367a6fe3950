"""OAuth: the source reads an account through a partner app's installation — a refresh token with
the app's client id and secret, exchanged at the token endpoint and renewed before expiry or on a
401 for all worker threads, or an access token alone — loads exactly what a private key loads,
keeps every token out of output and files, and refuses bad OAuth input with one line before any
request."""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

import klaviyo_pipeline
from klaviyo import KlaviyoApiError, klaviyo_source
from klaviyo.account import STATE_KEY
from klaviyo.auth import OAuthToken
from klaviyo.client import KlaviyoApi
from klaviyo.ratelimit import RateLimiter
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO, column

CLIENT_ID = "app_client_RecognisableId_1d4e"
CLIENT_SECRET = "app_secret_Recognisable_93bf0c"
REFRESH = "rt_Recognisable_Refresh_5a2e77"
REPORTS = "events,profiles,metrics,lists,list_profiles"
# every event and profile lies in the past: the whole account is the truth of a run
PAST = datetime.now(UTC) - timedelta(days=3)


def _config(**overrides: Any) -> EmulatorConfig:
    settings: dict[str, Any] = dict(
        seed=11, profiles=300, events=4000, days=10, now=PAST, latency_ms=15,
        oauth_client_id=CLIENT_ID, oauth_client_secret=CLIENT_SECRET, oauth_refresh_token=REFRESH,
    )
    settings.update(overrides)
    return EmulatorConfig(**settings)


def _oauth_source(emu: Emulator, **overrides: Any) -> Any:
    args: dict[str, Any] = dict(
        refresh_token=REFRESH, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, base_url=emu.base_url,
        reports=REPORTS, start_date="2000-01-01T00:00:00Z", workers=8,
    )
    args.update(overrides)
    return klaviyo_source(**args)


def _assert_exact(pipeline: dlt.Pipeline, emu: Emulator) -> None:
    for table, kind in (("events", "event"), ("profiles", "profile"), ("metrics", "metric"), ("lists", "list")):
        assert sorted(column(pipeline, table)) == sorted(r["id"] for r in emu.account.records(kind)), table
    members = {(r[0], r[1]) for r in _rows(pipeline, "SELECT list_id, profile_id FROM list_profiles")}
    truth = {(m["list_id"], m["profile_id"]) for m in _members(emu)}
    assert members == truth


def _rows(pipeline: dlt.Pipeline, sql: str) -> list[Any]:
    with pipeline.sql_client() as client:
        return list(client.execute_sql(sql))


def _members(emu: Emulator) -> Iterator[dict[str, str]]:
    for group in emu.account.records("list"):
        for profile_id, _ in emu.account.list_members(group["id"]):
            yield {"list_id": group["id"], "profile_id": profile_id}


def _token_requests(emu: Emulator) -> int:
    return sum(1 for r in emu.request_log if r.path == "/oauth/token")


def _api_requests(emu: Emulator) -> list[Any]:
    return [r for r in emu.request_log if r.path.startswith("/api/")]


def test_a_refresh_token_run_loads_exactly_across_access_tokens_expiring_mid_run(make_pipeline: Any) -> None:
    """Access tokens live 0.4 s and the run several seconds: the source renews them before they
    expire (and on the 401 of one that ran out on the way), for all 8 worker threads, and every
    record is loaded once."""
    with Emulator(_config(oauth_token_seconds=0.4)) as emu:
        pipeline = make_pipeline()
        started = time.monotonic()
        pipeline.run(_oauth_source(emu))
        elapsed = time.monotonic() - started
        _assert_exact(pipeline, emu)
        api = _api_requests(emu)
        assert api and {r.headers.get("authorization") for r in api} == {"Bearer ***"}
        tokens = _token_requests(emu)
        # renewed at most about every 0.36 s while requests go out, not per request or per thread
        assert 3 <= tokens <= elapsed / 0.3 + 2 and tokens < len(api) / 4, (tokens, elapsed, len(api))
        assert emu.api.oauth.issued == tokens
        assert pipeline.state["sources"]["klaviyo"][STATE_KEY]["id"] == next(emu.account.records("account"))["id"]


def test_a_401_on_an_expired_token_renews_it_once_for_all_threads(make_pipeline: Any) -> None:
    """Klaviyo ends the access tokens mid-run (the emulator's clock jumps): the 401s the 8
    threads get are answered by one renewal per expiry, each refused request is sent again with
    the new token, and the run loads exactly."""
    with Emulator(_config(oauth_token_seconds=3600, latency_ms=25)) as emu:
        expired: list[int] = []
        stop = threading.Event()

        def expire() -> None:
            while not stop.wait(0.5):
                if emu.api.oauth.issued:
                    expired.append(emu.api.oauth.expire_access_tokens())

        killer = threading.Thread(target=expire, daemon=True)
        killer.start()
        pipeline = make_pipeline()
        try:
            pipeline.run(_oauth_source(emu))
        finally:
            stop.set()
            killer.join()
        _assert_exact(pipeline, emu)
        refused = [r for r in _api_requests(emu) if r.status == 401]
        hits = sum(1 for alive in expired if alive)
        assert hits >= 2 and refused, (expired, len(refused))
        assert _token_requests(emu) <= hits + 1  # one renewal per expiry, however many threads saw it


def test_a_rotated_refresh_token_is_followed_and_handed_to_the_callback(make_pipeline: Any) -> None:
    """Where each refresh replaces the refresh token (the used one is then refused), the run goes
    on with the newest, and `on_refresh_token` receives each one to store for the next run."""
    with Emulator(_config(oauth_token_seconds=0.5, oauth_rotate_refresh_tokens=True, oauth_refresh_token=REFRESH + "_rot")) as emu:
        received: list[str] = []
        pipeline = make_pipeline()
        pipeline.run(_oauth_source(emu, refresh_token=REFRESH + "_rot", on_refresh_token=received.append))
        _assert_exact(pipeline, emu)
        assert len(received) == _token_requests(emu) >= 2 and len(set(received)) == len(received)
        assert received[-1] == emu.api.oauth.refresh_token
        # the next run reads its refresh token from where the callback stored it
        again = make_pipeline()
        again.run(_oauth_source(emu, refresh_token=received[-1], reports="metrics"))
        assert sorted(column(again, "metrics")) == sorted(m["id"] for m in emu.account.records("metric"))


def test_an_access_token_alone_reads_until_klaviyo_refuses_it(make_pipeline: Any) -> None:
    with Emulator(_config(oauth_token_seconds=3600)) as emu:
        token = _issue(emu)
        pipeline = make_pipeline()
        alone = dict(refresh_token=None, client_id=None, client_secret=None, access_token=token, reports="metrics")
        pipeline.run(_oauth_source(emu, **alone))
        assert sorted(column(pipeline, "metrics")) == sorted(m["id"] for m in emu.account.records("metric"))
        emu.api.oauth.expire_access_tokens()
        with pytest.raises(PipelineStepFailed) as failed:
            make_pipeline("expired").run(_oauth_source(emu, **alone))
        error = _cause(failed.value, KlaviyoApiError)
        assert str(error).startswith("Klaviyo rejected the OAuth access token (401 on /api/")  # (the account id is known: cached)
        assert "give a refresh_token with the app's client_id and client_secret" in str(error)
        assert token not in str(failed.value)


def _issue(emu: Emulator) -> str:
    """An access token from the emulator's token endpoint (as the app's own backend gets one)."""
    import requests

    answer = requests.post(emu.base_url + "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": REFRESH},
                           auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _cause(error: BaseException, kind: type) -> Any:
    seen: Any = error
    while seen is not None and not isinstance(seen, kind):
        seen = seen.__cause__ or seen.__context__
    assert seen is not None, f"no {kind.__name__} in {error!r}"
    return seen


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"client_secret": "wrong_secret"}, "Klaviyo refused the OAuth app's client id or secret (401 invalid_client on /oauth/token)"),
        ({"refresh_token": "rt_revoked_or_uninstalled"}, "Klaviyo refused the OAuth refresh token (400 invalid_grant on /oauth/token): the app was uninstalled"),
    ],
    ids=["wrong client secret", "revoked refresh token"],
)
def test_a_refused_token_request_ends_the_run_with_one_line_and_nothing_read(make_pipeline: Any, overrides: dict[str, str], expected: str) -> None:
    with Emulator(_config()) as emu:
        pipeline = make_pipeline()
        with pytest.raises(PipelineStepFailed) as failed:
            pipeline.run(_oauth_source(emu, **overrides))
        error = _cause(failed.value, KlaviyoApiError)
        assert str(error).startswith(expected) and "\n" not in str(error)
        assert [r.path for r in emu.request_log] == ["/oauth/token"]  # nothing read before the token
        for secret in (*overrides.values(), CLIENT_SECRET, REFRESH):
            assert secret not in str(failed.value)


def test_the_installations_scopes_are_named_on_a_403(make_pipeline: Any) -> None:
    with Emulator(_config(oauth_scopes=frozenset({"accounts:read", "metrics:read"}))) as emu:
        with pytest.raises(PipelineStepFailed) as failed:
            make_pipeline().run(_oauth_source(emu, reports="events"))
        message = str(_cause(failed.value, KlaviyoApiError))
        assert message.startswith("The OAuth app's installation lacks the scope events:read to read the report events (403 on /api/events)")  # 2026-07-15 paths: no trailing slash
        assert "add the scope to the app's scopes in Klaviyo" in message


# (id, environment, expected words): refused by the source before any request
BAD_OAUTH = [
    ("key and oauth", {"SOURCES__KLAVIYO__API_KEY": "pk_some_valid_key", "SOURCES__KLAVIYO__REFRESH_TOKEN": REFRESH},
     "Both api_key and OAuth credentials (refresh_token) are set; set api_key alone"),
    ("refresh without client", {"SOURCES__KLAVIYO__REFRESH_TOKEN": REFRESH, "SOURCES__KLAVIYO__CLIENT_ID": CLIENT_ID},
     "The OAuth refresh_token needs the app's client_secret (Klaviyo: Manage apps)"),
    ("client without refresh token", {"SOURCES__KLAVIYO__CLIENT_ID": CLIENT_ID, "SOURCES__KLAVIYO__CLIENT_SECRET": CLIENT_SECRET},
     "OAuth client_id and client_secret alone cannot authenticate; add the installation's refresh_token"),
    ("bearer prefix", {"SOURCES__KLAVIYO__ACCESS_TOKEN": "Bearer abc.def"}, "The OAuth access_token starts with an auth scheme"),
    ("private key as token", {"SOURCES__KLAVIYO__ACCESS_TOKEN": "pk_0123456789abcdef"}, "The OAuth access_token looks like a private API key (pk_...); set it as api_key"),
    ("token in quotes", {"SOURCES__KLAVIYO__REFRESH_TOKEN": f"'{REFRESH}'", "SOURCES__KLAVIYO__CLIENT_ID": CLIENT_ID,
                         "SOURCES__KLAVIYO__CLIENT_SECRET": CLIENT_SECRET}, "The OAuth refresh_token is wrapped in quotes"),
    ("v1 with oauth", {"SOURCES__KLAVIYO__ACCESS_TOKEN": "tok123"}, "The report campaigns_v1 (the legacy v1 API) reads only with a private API key"),
]


@pytest.mark.parametrize("env, expected", [c[1:] for c in BAD_OAUTH], ids=[c[0] for c in BAD_OAUTH])
def test_bad_oauth_input_is_one_line_before_any_request(env: dict[str, str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    with Emulator(_config(events=10, profiles=5)) as emu:
        monkeypatch.chdir(tmp_path)
        for name in ("API_KEY", "ACCESS_TOKEN", "REFRESH_TOKEN", "CLIENT_ID", "CLIENT_SECRET"):
            monkeypatch.setenv(f"SOURCES__KLAVIYO__{name}", "")
        monkeypatch.setenv("SOURCES__KLAVIYO__BASE_URL", emu.base_url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        reports = "campaigns_v1" if "v1" in expected else "metrics"
        code = klaviyo_pipeline.main(["--reports", reports, "--pipelines-dir", str(tmp_path / "p"), "--progress", "none"])
        err = capsys.readouterr().err.strip()
        assert code == 1
        assert err.count("\n") == 0 and err.startswith("error: ") and expected in err, err
        assert emu.request_log == []
        for value in env.values():
            if not value.startswith("pk_some"):
                assert value.strip("'") not in err


def test_no_repr_of_what_holds_oauth_credentials_shows_them() -> None:
    base_url = "http://127.0.0.1:9"  # nothing is sent: the objects are only built
    credentials = OAuthToken("at_Recognisable_access_77", REFRESH, CLIENT_ID, CLIENT_SECRET, base_url + "/oauth/token")
    api = KlaviyoApi(credentials, base_url, "2023-10-15", RateLimiter.for_identity(base_url, credentials.identity))
    source = klaviyo_source(refresh_token=REFRESH, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, base_url=base_url)
    held = [credentials, api, api._auth, source, *source.resources.values()]
    secrets = (REFRESH, CLIENT_SECRET, "at_Recognisable_access_77")
    assert [type(o).__name__ for o in held if any(s in repr(o) or s in str(o) for s in secrets)] == []
    assert all(s not in credentials.identity for s in secrets) and len(credentials.identity) == 64


def _files_containing(root: Path, needles: set[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits += [f"{path}: {needle[:6]!r}..." for needle in needles if needle in data]
    return hits


def test_no_token_is_anywhere_after_a_debug_run_across_token_renewals(tmp_path: Path) -> None:
    """klaviyo_pipeline.py at DEBUG, authenticated by a refresh token whose access tokens expire
    several times during the run (and are rotated): neither the refresh tokens, the client
    secret nor any access token is in the output, the pipeline's working dir, its state, trace,
    schema, the DuckDB file or the emulator's request log."""
    config = _config(oauth_token_seconds=0.4, oauth_rotate_refresh_tokens=True, log_file=str(tmp_path / "emulator.jsonl"))
    with Emulator(config) as emu:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path / "home"),
            "RUNTIME__LOG_LEVEL": "DEBUG",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "SOURCES__KLAVIYO__REFRESH_TOKEN": REFRESH,
            "SOURCES__KLAVIYO__CLIENT_ID": CLIENT_ID,
            "SOURCES__KLAVIYO__CLIENT_SECRET": CLIENT_SECRET,
            "SOURCES__KLAVIYO__BASE_URL": emu.base_url,
            "SOURCES__KLAVIYO__WORKERS": "8",
        }
        out = subprocess.run(
            [sys.executable, str(REPO / "klaviyo_pipeline.py"), "--reports", REPORTS, "--start", "2000-01-01T00:00:00Z",
             "--pipelines-dir", str(tmp_path / "pipelines")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )
        issued = list(emu.api.oauth._access)  # every access token the run was given
        rotated = emu.api.oauth.refresh_token
    assert out.returncode == 0, out.stderr[-3000:]
    assert "DEBUG" in out.stderr + out.stdout and len(issued) >= 3
    assert "Klaviyo issued a new OAuth refresh token" in out.stderr  # rotated, and said without the token
    secrets = {REFRESH, CLIENT_SECRET, rotated, *issued}
    text = out.stdout + out.stderr
    assert [s[:6] for s in secrets if s in text] == []
    assert (tmp_path / "klaviyo.duckdb").exists() and (tmp_path / "pipelines" / "klaviyo").is_dir()
    assert _files_containing(tmp_path, {s.encode() for s in secrets}) == []
