"""Command line: `python -m klaviyo_emulator --port 8765` (see --help)."""

from __future__ import annotations

import argparse
import signal
import sys
from datetime import UTC, datetime

from klaviyo_emulator.config import EmulatorConfig
from klaviyo_emulator.emulator import ADMIN_HELP, Emulator

DEFAULTS = EmulatorConfig()


def _scopes(text: str) -> tuple[str, frozenset[str]]:
    key, sep, scopes = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=scope1,scope2")
    return key, frozenset(s.strip() for s in scopes.split(",") if s.strip())


def _now(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    """The CLI parser (every EmulatorConfig knob)."""
    p = argparse.ArgumentParser(
        prog="python -m klaviyo_emulator",
        description="Local emulator of the Klaviyo REST API (revisions 2023-10-15 and 2026-07-15) over a "
                    "deterministic synthetic account. Binds 127.0.0.1 only and prints "
                    "'Klaviyo emulator listening on http://127.0.0.1:PORT' when ready.",
        epilog=ADMIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--port", type=int, default=8765, help="TCP port on 127.0.0.1; 0 picks a free one "
      "(default 8765)")
    a("--seed", type=int, default=DEFAULTS.seed, help="seed of the synthetic account, the "
      "fault sequence and mutations (default %(default)s)")
    a("--now", type=_now, default=None, help="the account's 'now' as ISO 8601 (default: "
      "current UTC time at start); data is a pure function of seed, now, sizes and --ties")
    a("--profiles", type=int, default=DEFAULTS.profiles, help="profiles (default %(default)s)")
    a("--events", type=int, default=DEFAULTS.events, help="events (default %(default)s)")
    a("--days", type=int, default=DEFAULTS.days, help="days of events ending at now "
      "(default %(default)s)")
    for name in ("campaigns", "flows", "lists", "segments", "templates", "metrics", "tags"):
        a(f"--{name}", type=int, default=getattr(DEFAULTS, name),
          help=f"{name} (default %(default)s)")
    a("--api-key", default=DEFAULTS.api_key, help="the accepted private key with every "
      "scope (default %(default)s)")
    a("--key-scopes", type=_scopes, action="append", default=[], metavar="KEY=SCOPES",
      help="a restricted key and its scopes, e.g. pk_limited=metrics:read,events:read "
           "(repeatable); other endpoints answer 403")
    a("--rate-limits", choices=("off", "klaviyo"), default="off", help="'klaviyo' enforces "
      "per-endpoint burst (1 s) and steady (60 s) limits with 429 + Retry-After "
      "(default off)")
    a("--report-daily-limit", type=int, default=DEFAULTS.report_daily_limit, metavar="N",
      help="requests per reporting endpoint allowed in any --report-day-seconds, with "
      "--rate-limits klaviyo (default %(default)s, Klaviyo's 225/d)")
    a("--report-day-seconds", type=float, default=DEFAULTS.report_day_seconds, metavar="S",
      help="length of the reporting API's rolling daily window (default %(default)s)")
    a("--report-page-size", type=int, default=DEFAULTS.report_page_size, metavar="N",
      help="results per page of campaign/flow reports (default %(default)s)")
    a("--throttle-every", type=int, default=0, metavar="N", help="answer every Nth /api "
      "request 429 (test knob; default 0 = never)")
    a("--throttle-retry-after", type=int, default=1, metavar="S", help="Retry-After seconds "
      "of --throttle-every 429s (default 1)")
    a("--latency-ms", type=float, default=0, help="sleep added to every /api response, ms")
    a("--fault-rate", type=float, default=0.0, help="share 0..1 of /api requests failing "
      "with a seeded mix of 500, 503, connection reset and truncated body (default 0)")
    a("--ties", type=float, default=0.0, metavar="SHARE", help="share 0..1 of records "
      "from bulk imports and edits, sharing one cursor value over whole pages: events' "
      "datetime in runs of 450-1000, profiles' updated (and suppression timestamps) in "
      "batches of ~250, members' joined_group_at, and the updated/updated_at of "
      "templates, lists, segments, flows and campaigns (default 0)")
    a("--event-weight", choices=("realistic", "light"), default="realistic", help="'realistic': "
      "every event also carries the extra properties of a real e-commerce account (30-60 "
      "properties, ~1.5 KB per event; orders an item array of several KB), at no extra CPU "
      "per event; 'light': its own few properties only (default %(default)s; "
      f"EmulatorConfig's default is {DEFAULTS.event_weight})")
    a("--gzip", action="store_true", help="gzip-compress bodies (compresslevel 1) for "
      "requests whose Accept-Encoding includes gzip, as Klaviyo does (default off)")
    a("--v1", choices=("retired", "live"), default="retired", help="legacy GET "
      "/api/v1/campaigns: 'retired' answers 410 Gone (default), 'live' serves the $list "
      "envelope")
    a("--log", dest="log_file", default=None, metavar="FILE", help="append every request "
      "as a JSON line (API keys redacted)")
    a("--oauth-token-seconds", type=float, default=DEFAULTS.oauth_token_seconds, metavar="S",
      help="lifetime of the access tokens POST /oauth/token issues for the refresh token "
      f"{DEFAULTS.oauth_refresh_token} (client {DEFAULTS.oauth_client_id}:"
      f"{DEFAULTS.oauth_client_secret}; default %(default)s)")
    a("--oauth-rotate", action="store_true", help="each refresh replaces the refresh token")
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the emulator until Ctrl-C or SIGTERM."""
    args = parser().parse_args(argv)
    cfg = EmulatorConfig(
        seed=args.seed, profiles=args.profiles, events=args.events, days=args.days,
        campaigns=args.campaigns, flows=args.flows, lists=args.lists,
        segments=args.segments, templates=args.templates, metrics=args.metrics,
        tags=args.tags, api_key=args.api_key, key_scopes=dict(args.key_scopes),
        rate_limits=args.rate_limits == "klaviyo", latency_ms=args.latency_ms,
        fault_rate=args.fault_rate, v1=args.v1, log_file=args.log_file, now=args.now,
        port=args.port, throttle_every=args.throttle_every,
        throttle_retry_after=args.throttle_retry_after, ties=args.ties,
        report_daily_limit=args.report_daily_limit, report_day_seconds=args.report_day_seconds,
        report_page_size=args.report_page_size, oauth_token_seconds=args.oauth_token_seconds,
        oauth_rotate_refresh_tokens=args.oauth_rotate, event_weight=args.event_weight,
        gzip=args.gzip)
    try:
        emu = Emulator(cfg)
        emu.account.events.warm()  # before the ready line: a benchmark's first pages are not slower
        emu.start()
    except (ValueError, OSError) as exc:
        print(f"klaviyo_emulator: {exc}", file=sys.stderr)
        return 2

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(f"Klaviyo emulator listening on {emu.base_url}", flush=True)
    try:
        signal.pause() if hasattr(signal, "pause") else emu._thread.join()  # noqa: SLF001
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
