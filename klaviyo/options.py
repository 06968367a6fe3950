"""Validation of the source's arguments: every bad input becomes a one-line error naming the
problem and the fix, raised before any request is sent and anything is written."""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from .errors import KlaviyoConfigError
from .revisions import supported_table
from .settings import CUSTOM_DATE_FORMAT, REVISIONS, Report, RevisionTable, report_table
from .windows import UTC

_REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[A-Za-z0-9_-]+)?$")
# A private API key: `pk_` then (in Klaviyo's keys) 34 hex digits. Lenient on purpose, so that
# no real key is refused: letters, digits, `_` and `-`, at least 4 (the emulator's `pk_demo`).
_API_KEY = re.compile(r"pk_[A-Za-z0-9_-]{4,}")
# The public key (site ID) is 6 letters and digits; it cannot read the /api endpoints.
_PUBLIC_KEY = re.compile(r"[A-Za-z0-9]{6}")


@dataclass(frozen=True)
class SourceOptions:
    """The source's arguments, validated and parsed (the key is left out of the repr)."""

    api_key: str = field(repr=False)
    base_url: str
    revision: str
    reports: tuple[str, ...]
    start: datetime | None
    end: datetime | None
    lookback_seconds: float | None  # None: each report's own `lookback`
    workers: int
    min_window_minutes: float | None
    chunk_records: int | None = None

    @property
    def custom_dates(self) -> bool:
        """Both start and end given: a stateless custom-dates run."""
        return self.start is not None and self.end is not None

    def lookback(self, report: Report) -> timedelta:
        """How far before its cursor an incremental run of `report` starts: `lookback_hours`
        if given, else the report's own default (`Report.lookback`)."""
        if self.lookback_seconds is None:
            return report.lookback
        return timedelta(seconds=self.lookback_seconds)

    @property
    def table(self) -> RevisionTable:
        """The report table of the revision."""
        return report_table(self.revision)


def parse_custom_date(value: str, name: str) -> datetime:
    """Parses `YYYY-MM-DDTHH:MM:SSZ` (e.g. 2024-01-02T23:20:49Z) as aware UTC; `name` is the
    argument's name (a `KlaviyoConfigError` placeholder)."""
    try:
        return datetime.strptime(value, CUSTOM_DATE_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise KlaviyoConfigError(
            f"{{{name}}} {value!r} is not a datetime in the format YYYY-MM-DDTHH:MM:SSZ;"
            " write it like 2024-01-02T23:20:49Z",
            [name],
        ) from None


def _report_names(reports: str | Sequence[str] | None, table: RevisionTable) -> tuple[str, ...]:
    if reports is None:
        return table.default_reports
    names = reports.split(",") if isinstance(reports, str) else list(reports)
    names = [str(n).strip() for n in names if str(n).strip()]
    if not names:
        raise KlaviyoConfigError(
            f"No report selected; name at least one of: {', '.join(table.names)}"
        )
    unknown = [n for n in names if n not in table.names and n not in table.performance]
    if unknown:
        _refuse_other_revision(unknown[0], table)
        raise KlaviyoConfigError(
            f"Unknown report {unknown[0]!r}; choose from: {', '.join((*table.names, *table.performance))}"
        )
    return tuple(dict.fromkeys(names))


def _refuse_other_revision(name: str, table: RevisionTable) -> None:
    """A report that only another revision has (e.g. campaigns_push) is named with it."""
    others = [t.revision for t in REVISIONS.values() if name in t.names or name in t.performance]
    if others:
        raise KlaviyoConfigError(
            f"The report {name!r} needs revision {' or '.join(others)} (this run uses {table.revision});"
            " set revision accordingly or drop the report"
        )


def _checked_api_key(api_key: Any) -> str:
    """The private API key, stripped; `KlaviyoConfigError` when missing or malformed."""
    key = str(api_key or "").strip()
    if not key:
        raise KlaviyoConfigError(
            "No Klaviyo API key; set SOURCES__KLAVIYO__API_KEY or api_key in [sources.klaviyo]"
            " of .dlt/secrets.toml (a private key, pk_...), or OAuth: refresh_token with client_id"
            " and client_secret, or access_token"
        )
    if any(c.isspace() for c in key):
        raise KlaviyoConfigError(
            "The Klaviyo API key contains white space; paste the private key (pk_...) alone"
        )
    if key[0] in "'\"" and key[-1] == key[0]:
        raise KlaviyoConfigError("The Klaviyo API key is wrapped in quotes; set it without them (pk_...)")
    create = "(Klaviyo: Settings > API keys > Create Private API Key)"
    if _PUBLIC_KEY.fullmatch(key):
        raise KlaviyoConfigError(f"The Klaviyo API key looks like the public key (site ID); use a private API key, pk_... {create}")
    if not key.startswith("pk_"):
        raise KlaviyoConfigError(f"The Klaviyo API key does not start with pk_; use a private API key {create}")
    if not _API_KEY.fullmatch(key):
        raise KlaviyoConfigError(
            "The Klaviyo API key is malformed: after pk_ come letters and digits (34 in Klaviyo's keys);"
            " paste the whole private key"
        )
    return key


@dataclass(frozen=True)
class OAuthOptions:
    """OAuth credentials, validated (every field left out of the repr)."""

    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)


_OAUTH_FIELDS = ("access_token", "refresh_token", "client_id", "client_secret")


def validate_oauth(api_key: Any, **oauth: Any) -> OAuthOptions | None:
    """Checks the OAuth arguments (`access_token`, `refresh_token`, `client_id`,
    `client_secret`) against `api_key`: None when only a key is given (checked by
    `validate_options`), else the OAuth credentials; `KlaviyoConfigError` (one line, naming
    arguments, never values) when they are incomplete, malformed or mixed with a key."""
    given = {name: str(oauth.get(name) or "").strip() for name in _OAUTH_FIELDS}
    given = {name: value for name, value in given.items() if value}
    if not given:
        return None
    how = "set api_key alone (a private key), or refresh_token with client_id and client_secret, or access_token"
    if str(api_key or "").strip():
        raise KlaviyoConfigError(f"Both api_key and OAuth credentials ({', '.join(given)}) are set; {how}")
    for name, value in given.items():
        _check_token(name, value)
    if "refresh_token" in given:
        missing = [name for name in ("client_id", "client_secret") if name not in given]
        if missing:
            raise KlaviyoConfigError(
                f"The OAuth refresh_token needs the app's {' and '.join(missing)} (Klaviyo: Manage apps);"
                " set them beside it in [sources.klaviyo] or SOURCES__KLAVIYO__CLIENT_ID / __CLIENT_SECRET"
            )
    elif "access_token" not in given:
        raise KlaviyoConfigError(
            f"OAuth {' and '.join(given)} alone cannot authenticate; add the installation's refresh_token"
            " (or an access_token), or use a private api_key instead"
        )
    return OAuthOptions(**given)


def _check_token(name: str, value: str) -> None:
    if value[0] in "'\"" and value[-1] == value[0]:
        raise KlaviyoConfigError(f"The OAuth {name} is wrapped in quotes; set it without them")
    if value.lower().startswith(("bearer ", "basic ")):
        raise KlaviyoConfigError(f"The OAuth {name} starts with an auth scheme; set the token alone, without 'Bearer '")
    if any(c.isspace() for c in value):
        raise KlaviyoConfigError(f"The OAuth {name} contains white space; paste it alone, on one line")
    if name in ("access_token", "refresh_token") and value.startswith("pk_"):
        raise KlaviyoConfigError(f"The OAuth {name} looks like a private API key (pk_...); set it as api_key instead")


def validate_options(
    api_key: Any,
    base_url: Any,
    revision: Any,
    reports: str | Sequence[str] | None,
    start_date: str | None,
    end_date: str | None,
    lookback_hours: Any,
    workers: Any,
    min_window_minutes: Any,
    chunk_records: Any = None,
    oauth: bool = False,
) -> SourceOptions:
    """Checks every argument; raises `KlaviyoConfigError` with a one-line message. With `oauth`
    (OAuth credentials, checked by `validate_oauth`) no API key is expected."""
    key = "" if oauth else _checked_api_key(api_key)
    url = str(base_url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise KlaviyoConfigError(
            f"base_url {url!r} is not an http(s) URL; use https://a.klaviyo.com (the default)"
        )
    rev = str(revision or "").strip()
    if not _REVISION.match(rev):
        raise KlaviyoConfigError(
            f"revision {rev!r} is malformed; use YYYY-MM-DD, one of: {', '.join(REVISIONS)}"
        )
    table = supported_table(rev)
    start = parse_custom_date(start_date, "start_date") if start_date else None
    end = parse_custom_date(end_date, "end_date") if end_date else None
    dates = ("start_date", "end_date")
    if end is not None and start is None:
        raise KlaviyoConfigError(
            "{end_date} needs {start_date}; give both (custom dates) or neither", dates
        )
    if start is not None and end is not None and start >= end:
        raise KlaviyoConfigError(
            f"{{start_date}} {start_date} is not before {{end_date}} {end_date}; swap them or widen the range", dates
        )
    if start is not None and start > datetime.now(tz=UTC):
        raise KlaviyoConfigError(
            f"{{start_date}} {start_date} lies in the future; Klaviyo has no data there yet", dates
        )
    if start is not None and end is not None and reports is not None:
        undated = [n for n in _report_names(reports, table) if n in table.reports and not table.reports[n].cursor]
        if undated:
            raise KlaviyoConfigError(
                f"Custom dates cannot be served for {undated[0]}: Klaviyo cannot filter it by date;"
                " drop it from the reports or run it without {start_date}/{end_date}",
                dates,
            )
    lookback = None if lookback_hours in (None, "") else _number(lookback_hours, "lookback_hours", minimum=0.0)
    worker_count = int(_number(workers, "workers", minimum=1.0))
    window = None if min_window_minutes in (None, "") else _number(min_window_minutes, "min_window_minutes", minimum=1 / 60)
    return SourceOptions(
        api_key=key,
        base_url=url.rstrip("/"),
        revision=rev,
        reports=_report_names(reports, table),
        start=start,
        end=end,
        lookback_seconds=None if lookback is None else lookback * 3600.0,
        workers=worker_count,
        min_window_minutes=window,
        chunk_records=None if chunk_records in (None, "", 0) else int(_number(chunk_records, "chunk_records", minimum=100.0)),
    )


def _number(value: Any, name: str, minimum: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise KlaviyoConfigError(f"{{{name}}} {value!r} is not a number; set a number (e.g. in [sources.klaviyo])", [name]) from None
    if number < minimum:
        raise KlaviyoConfigError(f"{{{name}}} {value!r} is below its minimum {minimum:g}; set it to {minimum:g} or more", [name])
    return number
