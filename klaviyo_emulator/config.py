"""Emulator configuration: data sizes, keys, pacing, faults and server options."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

UTC = UTC


@dataclass
class EmulatorConfig:
    """Everything that shapes one emulator instance.

    The synthetic account is a pure function of (seed, now, sizes, ties).

    Attributes:
        seed: Seed of the synthetic account, of fault injection and of mutations.
        profiles: Number of profiles (compact; 100,000 is fine).
        events: Number of events (generated lazily; 1,000,000 is fine).
        days: Events span `days` days ending at `now` (plus a few up to ~1 day after).
        campaigns: Number of campaigns (email and SMS mixed, some archived).
        flows: Number of flows (each with flow-actions and flow-messages).
        lists: Number of lists.
        segments: Number of segments.
        templates: Number of templates.
        metrics: Number of metrics (at least the 16 standard ones are used first).
        tags: Number of tags.
        api_key: The accepted private key, with every scope.
        key_scopes: Restricted keys: key -> the scopes it has (e.g. {"metrics:read"}).
        rate_limits: Enforce Klaviyo's per-endpoint burst/steady limits (429 + Retry-After).
        latency_ms: Sleep added before answering each /api request, in milliseconds.
        fault_rate: Share (0..1) of /api requests answered with a seeded fault
            (500, 503, connection reset, truncated body).
        v1: "retired" (410 Gone, default) or "live" (legacy $list envelope).
        log_file: Path of a JSON-lines request log (keys redacted), or None.
        now: The account's "now" (aware datetime); None = current UTC time at start.
        port: TCP port on 127.0.0.1; 0 picks a free one.
        host: Bind address (127.0.0.1 only, by design).
        throttle_every: If > 0, every Nth /api request is answered 429 (test knob).
        throttle_retry_after: Retry-After seconds used by `throttle_every`.
        ties: Share (0..1) of records that come from bulk imports and bulk edits, whose
            cursor values are then shared over whole pages (0 = none beyond the few
            neighbours that share a second anyway). About this share of past events comes
            in runs of 450-1000 events with one `datetime` (2-5 pages); of profiles in
            import batches of ~250 sharing one `updated` (every other batch a suppression
            import, sharing one suppression timestamp too); of list and segment members
            sharing one `joined_group_at` per group; and of templates, lists, segments,
            flows and campaigns sharing one `updated` / `updated_at` per kind. Mutations
            with `tie=True` create records on the latest existing cursor values.
        report_daily_limit: Requests per endpoint of the reporting API (campaign, flow,
            form and segment reports, 2026-07-15) allowed in any `report_day_seconds`
            (Klaviyo: 225/d), on top of their 1/s burst and 2/min steady limits; enforced
            with `rate_limits` only.
        report_day_seconds: Length of that rolling "day" in seconds (86,400; shorten it to
            test a run that resumes once the quota comes back).
        oauth_client_id: The client id of the OAuth app installed in the account.
        oauth_client_secret: That app's client secret (HTTP Basic at `/oauth/token`).
        oauth_refresh_token: The installation's refresh token (`oauth.py`).
        oauth_token_seconds: Lifetime of an access token, seconds (Klaviyo: 3600; announced
            as `expires_in`; fractions allowed for tests).
        oauth_rotate_refresh_tokens: Each refresh replaces the refresh token with a new one
            (the used one is then refused); off by default, UNCONFIRMED whether Klaviyo does.
        oauth_scopes: The installation's scopes (None: every scope).
        event_weight: "realistic": every event carries, on top of its own properties, the
            extra ones of a real e-commerce account (30-60 properties, ~1.5 KB per event
            resource; orders an item array of several KB; see weight.py), served from pools
            of pre-serialized fragments at no extra CPU per event; "light": its own few
            properties only.
        gzip: Answer gzip-compressed bodies (`Content-Encoding: gzip`, compresslevel 1) to
            requests whose Accept-Encoding includes gzip, as Klaviyo does.
        report_page_size: Results per page of the paged reports (campaign values, flow
            values and flow series; `links.next` with a `page_cursor`). UNCONFIRMED what
            Klaviyo pages at.
    """

    seed: int = 42
    profiles: int = 500
    events: int = 20_000
    days: int = 30
    campaigns: int = 40
    flows: int = 10
    lists: int = 12
    segments: int = 12
    templates: int = 25
    metrics: int = 16
    tags: int = 8
    api_key: str = "pk_demo"
    key_scopes: dict[str, frozenset[str]] = field(default_factory=dict)
    rate_limits: bool = False
    latency_ms: float = 0
    fault_rate: float = 0.0
    v1: str = "retired"
    log_file: str | None = None
    now: datetime | None = None
    port: int = 0
    host: str = "127.0.0.1"
    throttle_every: int = 0
    throttle_retry_after: int = 1
    ties: float = 0.0
    report_daily_limit: int = 225
    report_day_seconds: float = 86_400
    report_page_size: int = 500
    event_weight: str = "light"
    gzip: bool = False
    oauth_client_id: str = "emu_client_id"
    oauth_client_secret: str = "emu_client_secret"
    oauth_refresh_token: str = "rt_demo"
    oauth_token_seconds: float = 3600.0
    oauth_rotate_refresh_tokens: bool = False
    oauth_scopes: frozenset[str] | None = None

    def resolved_now(self) -> datetime:
        """`now` as an aware UTC datetime truncated to the second."""
        value = self.now or datetime.now(UTC)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(microsecond=0)

    def validate(self) -> None:
        """Raises ValueError on impossible settings."""
        for name in ("profiles", "events", "days", "campaigns", "flows", "lists", "segments",
                     "templates", "metrics", "tags"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.profiles < 1 and self.events > 0:
            raise ValueError("events need at least one profile")
        if self.metrics < 1 and self.events > 0:
            raise ValueError("events need at least one metric")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within 0..1")
        if not 0.0 <= self.ties <= 1.0:
            raise ValueError("ties must be within 0..1")
        if self.report_daily_limit < 1 or self.report_day_seconds <= 0 or self.report_page_size < 1:
            raise ValueError("report_daily_limit, report_day_seconds and report_page_size must be > 0")
        if self.oauth_token_seconds <= 0:
            raise ValueError("oauth_token_seconds must be > 0")
        if self.event_weight not in ("realistic", "light"):
            raise ValueError("event_weight must be 'realistic' or 'light'")
        if self.v1 not in ("retired", "live"):
            raise ValueError("v1 must be 'retired' or 'live'")
        if self.host not in ("127.0.0.1", "localhost"):
            raise ValueError("the emulator binds 127.0.0.1 only")
