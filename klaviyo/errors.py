"""The error map: every way Klaviyo or the user can say no, as one-line messages.

Every message names the problem and the fix. None of them ever contains the API key: URLs are
reduced to their path (the v1 API carries the key in the query string).
"""

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from requests import HTTPError, Response


class KlaviyoConfigError(ValueError):
    """Bad input to the source, raised before any request is sent and anything is written.

    A message naming arguments the caller gave writes them as `{name}` placeholders, listed in
    `arguments`: `str()` shows the source's argument names (`start_date`), `worded(names)` the
    caller's own (the command's flags: `--start`), so the error names what the user typed."""

    def __init__(self, message: str, arguments: Sequence[str] = ()) -> None:
        self.template = message
        self.arguments = tuple(arguments)
        super().__init__(self.worded({}))

    def worded(self, names: Mapping[str, str]) -> str:
        """The message with each argument called by `names` (by default: its own name)."""
        message = self.template
        for argument in self.arguments:
            message = message.replace(f"{{{argument}}}", names.get(argument, argument))
        return message


class KlaviyoApiError(HTTPError):
    """A response Klaviyo refused, after any retries. Subclasses `HTTPError` so that dlt's
    retry policy (429 and 5xx, `Retry-After` first) sees the response it carries."""

    def __init__(self, message: str, response: Response | None, status: int, endpoint: str) -> None:
        super().__init__(message, response=response)
        self.status = status
        self.endpoint = endpoint


class KlaviyoMalformedResponse(Exception):
    """A 2xx answer whose body is not the JSON document Klaviyo sends (truncated or garbled).

    Registered with the HTTP client as retryable, like a dropped connection."""


def endpoint_of(url: str) -> str:
    """Returns the path of a URL (no host, no query: no key can leak through it)."""
    return urlsplit(url).path or "/"


def _first_error(body: Any) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            return errors[0]
        if "message" in body:  # v1 envelope
            return {"detail": body.get("message")}
    return {}


def describe_http_error(
    status: int, url: str, body: Any, scope: str | None = None, report: str | None = None
) -> str:
    """Builds the one-line message for a refused request.

    Args:
        status: HTTP status code.
        url: The request URL (only its path is shown).
        body: The parsed JSON body, or None.
        scope: The API scope the endpoint needs, for 403s.
        report: The report being read, for 403s.
    """
    endpoint = endpoint_of(url)
    error = _first_error(body)
    detail = str(error.get("detail") or error.get("title") or "").strip()
    source = error.get("source") if isinstance(error.get("source"), Mapping) else {}
    parameter = source.get("parameter") if source else None
    where = f" (parameter {parameter})" if parameter else ""
    said = f": {detail}" if detail else ""
    if status == 401:
        return (
            f"Klaviyo rejected the API key (401 on {endpoint}){said}; set a valid private key"
            " (pk_...) in SOURCES__KLAVIYO__API_KEY or [sources.klaviyo] api_key"
        )
    if status == 403:
        needs = f" the scope {scope}" if scope else " a scope this endpoint needs"
        what = f" to read the report {report}" if report else ""
        return (
            f"The API key lacks{needs}{what} (403 on {endpoint}){said}; grant it in Klaviyo"
            " (Settings > API keys) or drop the report from the selection"
        )
    if status == 410:
        return f"Klaviyo answered 410 Gone for {endpoint}{said}"
    if status == 400:
        return f"Klaviyo refused the request to {endpoint} (400){where}{said}"
    if status == 429:
        return f"Klaviyo kept throttling {endpoint} (429) after all retries{said}; run again later"
    if status >= 500:
        return (
            f"Klaviyo failed on {endpoint} with {status} after all retries{said}; run again"
            " later (nothing loaded is lost: the next run resumes from the last committed state)"
        )
    return f"Klaviyo answered {status} for {endpoint}{where}{said}"


class KlaviyoDailyLimit(Exception):
    """Klaviyo answered 429 for a daily limit (the reporting API's 225 a day): the report stops
    cleanly and the next run goes on. Not an `HTTPError`, so dlt's retries (which would wait
    the hours of its `Retry-After`) let it through.

    Args:
        endpoint: The refused path.
        retry_after: Seconds until Klaviyo takes requests to it again.
    """

    def __init__(self, endpoint: str, retry_after: float) -> None:
        super().__init__(f"Klaviyo's daily limit of {endpoint} is spent for {retry_after:.0f} s")
        self.endpoint = endpoint
        self.retry_after = retry_after
