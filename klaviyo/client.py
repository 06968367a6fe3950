"""The one HTTP client of the source: dlt's RESTClient, paced by the shared rate limiter.

Every request of every report goes through `KlaviyoApi`: authentication, the `revision`
header, pagination (JSON:API `links.next`, the legacy v1 pages, the page cursor of POST
queries), dlt's retries (429 and 5xx, `Retry-After` first, configured in `[runtime]`; each
one said on dlt's log), pacing per rate-limit tier and the error map.
"""

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
from dlt.common import logger
from dlt.common.jsonpath import compile_path
from dlt.sources.helpers.requests.retry import DEFAULT_RETRY_EXCEPTIONS, Client, _make_retry
from dlt.sources.helpers.requests.session import Session
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from dlt.sources.helpers.rest_client.paginators import (
    BasePaginator,
    JSONLinkPaginator,
    PageNumberPaginator,
)
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError, ContentDecodingError, RequestException
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import SSLError as RequestsSSLError
from tenacity import RetryCallState, wait_random
from urllib3.exceptions import DecodeError as UrllibDecodeError
from urllib3.exceptions import ProtocolError, ReadTimeoutError
from urllib3.exceptions import SSLError as UrllibSSLError

from .auth import Credentials, PrivateKey
from .errors import KlaviyoApiError, KlaviyoMalformedResponse, describe_http_error, endpoint_of
from .pages import DecodeError
from .quota import daily_refusal
from .ratelimit import RateLimiter

# Threads that read windows in parallel share the limiter; each keeps its own sessions.
_POOL_CONNECTIONS = 4
# Up to this many seconds of random delay are added to every retry wait (Retry-After included).
RETRY_JITTER_S = 1.0


class _JitteredClient(Client):
    """dlt's retrying HTTP client (429, 5xx, connection errors, truncated bodies; Retry-After
    first, then exponential backoff; attempts and delays from `[runtime]`), with jitter added
    to each wait: many workers failing on the same fault would otherwise retry in lockstep.
    dlt builds its tenacity policy in `_make_retry` and offers no jitter knob, hence this; it
    also gets a `before_sleep` that says each retry (dlt's retries are silent)."""

    def _make_session(self) -> Session:
        session = Session(**self._session_kwargs)  # type: ignore[arg-type]
        for key, value in self._session_attrs.items():
            setattr(session, key, value)
        retry = _make_retry(**self._retry_kwargs)
        retry.wait = retry.wait + wait_random(0, RETRY_JITTER_S)  # type: ignore[has-type,operator]
        retry.before_sleep = _log_retry
        session.send = retry.wraps(session.send)  # type: ignore[method-assign]
        return session


def _log_retry(state: RetryCallState) -> None:
    """Tells dlt's log (stderr, WARNING) that a request failed and when it is tried again:
    without it a run against an unreachable host is silent for minutes of retries. Names the
    endpoint by its path and the failure by its status or exception type, never by the URL or
    the exception's text (the v1 API carries the key in the query string)."""
    request = state.args[0] if state.args and isinstance(state.args[0], PreparedRequest) else None
    where = f"{request.method} {endpoint_of(request.url or '')}" if request is not None else "a request"
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, KlaviyoApiError):
        what = f"HTTP {error.status}"
    elif error is not None:
        what = type(error).__name__
    else:
        result = state.outcome.result() if state.outcome is not None else None
        what = f"HTTP {result.status_code}" if isinstance(result, Response) else "no answer"
    attempts = getattr(state.retry_object.stop, "max_attempt_number", "?")
    logger.warning(
        f"Klaviyo {where} failed ({what}), attempt {state.attempt_number} of {attempts};"
        f" next try in {state.upcoming_sleep:.1f} s"
    )


class _PacedAdapter(HTTPAdapter):
    """Sends each attempt (retries included) only when the tier's limiter allows it, and
    tells the limiter what the server said about its limits. With `credentials`, each attempt
    is signed right before it goes out (an OAuth access token renewed since the request was
    prepared, e.g. during a retry's wait, is used), and a 401 is answered by renewing the
    access token and sending the request once more."""

    def __init__(self, limiter: RateLimiter, tier: str, credentials: Credentials | None = None) -> None:
        super().__init__(pool_connections=_POOL_CONNECTIONS, pool_maxsize=_POOL_CONNECTIONS)
        self.limiter = limiter
        self.tier = tier
        self.credentials = credentials

    def send(self, request: PreparedRequest, stream: bool = False, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        response = self._send(request, stream, *args, **kwargs)
        if response.status_code == 401 and self.credentials is not None:
            if self.credentials.renew(str(request.headers.get("Authorization", ""))):
                response.close()
                response = self._send(request, stream, *args, **kwargs)
        if not stream:
            _read_body(response)
        return response

    def _send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self.limiter.acquire(self.tier)
        if self.credentials is not None:
            self.credentials(request)
        response = super().send(request, *args, **kwargs)
        daily = daily_refusal(self.tier, response)  # not retried, nor a pause of the tier: the next run's
        if daily is not None:
            raise daily
        self.limiter.observe(self.tier, response.status_code, response.headers)
        return response


def _read_body(response: Response) -> None:
    """Reads the whole body (decompressed) in one call, where requests' `.content` would read it
    in 10 KB chunks through Python generators and join them: a 2 MB page of 1000 events costs
    ~1 ms of CPU less, and the body is held once instead of as chunks plus their join.
    Read errors become requests' exceptions as `.content` raises them (retried alike)."""
    try:
        response._content = response.raw.read(decode_content=True) or b""
    except ProtocolError as error:  # a truncated or malformed body (IncompleteRead is one)
        raise ChunkedEncodingError(error) from error
    except UrllibDecodeError as error:
        raise ContentDecodingError(error) from error
    except ReadTimeoutError as error:
        raise RequestsConnectionError(error) from error
    except UrllibSSLError as error:
        raise RequestsSSLError(error) from error
    response._content_consumed = True


# JSON:API pages keep their records in `data`. Compiled once: RESTClient compiles a string
# selector for every page (jsonpath_ng builds a parser each time: ~7% of an events backfill's
# CPU), a compiled one it uses as is.
DATA_PATH = compile_path("data")
# Turns a page's body (bytes) into the document the readers use.
Decode = Callable[[bytes], dict[str, Any]]


class KlaviyoApi:
    """Klaviyo REST API access for one source instance.

    Args:
        api_key: Private API key (`pk_...`) or `auth.Credentials` (OAuth); sent only in the
            Authorization header (a private key, for the legacy v1 API, as the `api_key` query
            parameter added at send time).
        base_url: API base URL, e.g. `https://a.klaviyo.com`.
        revision: API revision header, e.g. `2023-10-15`.
        limiter: The rate limiter shared by every request of the run.
    """

    def __init__(self, api_key: str | Credentials, base_url: str, revision: str, limiter: RateLimiter) -> None:
        credentials = PrivateKey(api_key) if isinstance(api_key, str) else api_key
        self.credentials = credentials
        self._auth: Credentials = credentials
        self._v1_auth = (
            APIKeyAuth(name="api_key", api_key=credentials.api_key, location="query")
            if isinstance(credentials, PrivateKey)
            else None
        )
        self.base_url = base_url.rstrip("/")
        self.revision = revision
        self.limiter = limiter
        # identifies the account's credential in per-process caches (`account.py`): a digest of
        # the key or of the OAuth refresh (or access) token; memory only, never in state, logs
        # or errors
        self.account_key = (self.base_url, credentials.identity)
        self._local = threading.local()

    def __repr__(self) -> str:
        """Names the account's URL and revision, never the key."""
        return f"KlaviyoApi(base_url={self.base_url!r}, revision={self.revision!r})"

    def _client(self, tier: str, v1: bool = False) -> RESTClient:
        """Returns this thread's RESTClient for a tier (sessions are not shared by threads)."""
        key = (tier, v1)
        clients: dict[Any, RESTClient] = self._local.__dict__.setdefault("clients", {})
        if key not in clients:
            session = _JitteredClient(
                raise_for_status=False,
                exceptions=(*DEFAULT_RETRY_EXCEPTIONS, KlaviyoMalformedResponse),
            ).session
            adapter = _PacedAdapter(self.limiter, tier, None if v1 else self.credentials)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            headers = {"accept": "application/vnd.api+json"}
            if not v1:
                headers["revision"] = self.revision
            clients[key] = RESTClient(
                base_url=self.base_url,
                headers=headers,
                auth=self._v1_auth if v1 else self._auth,
                session=session,
            )
        return clients[key]

    def paginate(
        self,
        path: str,
        params: dict[str, Any],
        tier: str,
        scope: str | None = None,
        report: str | None = None,
        decode: Decode | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yields each JSON:API document of a collection, following `links.next`.

        Args:
            path: Collection path, e.g. `/api/events/`.
            params: Query parameters of the first request (the next links carry them on).
            tier: Rate-limit tier of the endpoint.
            scope: Scope the endpoint needs (named in a 403 error).
            report: Report name (named in a 403 error).
            decode: Turns a page's body into its document (default: orjson, plain dicts);
                `pages.decode_page` for the Arrow reports.
        """
        pages = self._client(tier).paginate(
            path,
            params=params,
            paginator=JSONLinkPaginator(next_url_path="links.next"),
            data_selector=DATA_PATH,
            hooks={"response": [_response_hook(scope, report, self.credentials, decode)]},
        )
        for page in _unreachable_as_error(pages, path):
            document = page.response.json()
            # dlt's page is a list of the `data` records too: emptied, the records go as soon as
            # the reader releases the document, not when the next page replaces this one (a
            # second page of records held per reader, freed cold: ~1 µs/event at 1000 a page)
            page.clear()
            yield document

    def paginate_v1(self, path: str, page_size: int | None, tier: str, report: str) -> Iterator[list[dict[str, Any]]]:
        """Yields the `data` of each page of a legacy v1 `$list` collection (page/count).

        Args:
            path: Collection path, e.g. `/api/v1/campaigns`.
            page_size: `count` sent with every page (None: the API's default).
            tier: Rate-limit tier the requests are paced at.
            report: Report name (named in a 403 error).
        """
        paginator: BasePaginator = PageNumberPaginator(
            base_page=0, page_param="page", total_path=None, stop_after_empty_page=True
        )
        pages = self._client(tier, v1=True).paginate(
            path,
            params={"count": page_size} if page_size else {},
            paginator=paginator,
            data_selector=DATA_PATH,
            hooks={"response": [_response_hook(None, report, self.credentials)]},
        )
        for page in _unreachable_as_error(pages, path):
            yield list(page)

    def post(
        self, path: str, body: dict[str, Any], tier: str, scope: str, report: str
    ) -> dict[str, Any]:
        """POSTs a JSON body and returns the parsed JSON answer."""
        client = self._client(tier)
        answer = lambda: client.post(  # noqa: E731
            path,
            json=body,
            headers={"content-type": "application/json"},
            hooks={"response": [_response_hook(scope, report, self.credentials)]},
        )
        (response,) = _unreachable_as_error(iter([None]), path, answer)
        return response.json()  # type: ignore[no-any-return]

    def paginate_post(
        self, path: str, body: dict[str, Any], tier: str, scope: str, report: str
    ) -> Iterator[dict[str, Any]]:
        """Yields each answer of a cursor-paginated POST query (Query Metric Aggregates): the
        answer to `body`, then, while an answer links a next page, the answer to `body` with
        that page's cursor in `data.attributes.page_cursor`.

        Args:
            path: Endpoint path, e.g. `/api/metric-aggregates/`.
            body: The JSON:API request body of the first page (`{"data": {"attributes": ...}}`).
            tier: Rate-limit tier of the endpoint.
            scope: Scope the endpoint needs (named in a 403 error).
            report: Report name (named in a 403 error).
        """
        cursor: str | None = None
        while True:
            document = self.post(path, _with_page_cursor(body, cursor), tier, scope, report)
            yield document
            cursor = next_page_cursor(document)
            if not cursor:
                return


def _with_page_cursor(body: dict[str, Any], cursor: str | None) -> dict[str, Any]:
    """`body`, or a copy of it asking for the page of `cursor`."""
    if not cursor:
        return body
    data = body["data"]
    return {**body, "data": {**data, "attributes": {**data["attributes"], "page_cursor": cursor}}}


def next_page_cursor(document: Mapping[str, Any]) -> str | None:
    """The page cursor of the next page of a POST query's answer, if any.

    The spec does not say where it comes back; a `page_cursor` in `links.next` (top level or
    under `data`) is followed."""
    for links in (document.get("links"), (document.get("data") or {}).get("links")):
        if isinstance(links, Mapping) and links.get("next"):
            match = re.search(r"page_cursor=([^&]+)", str(links["next"]))
            return match.group(1) if match else str(links["next"])
    return None


def _unreachable_as_error(pages: Iterator[Any], path: str, call: Any = None) -> Iterator[Any]:
    """Re-raises what is left after dlt's retries of a dropped connection, a timeout or a
    malformed body as a `KlaviyoApiError` naming the endpoint (never the URL: the v1 API
    carries the key in it), so that no transport error ever ends a run unexplained."""
    try:
        for page in pages:
            yield call() if call else page
    except KlaviyoApiError:
        raise
    except (RequestException, KlaviyoMalformedResponse) as error:
        raise KlaviyoApiError(
            f"Klaviyo could not be read at {path} after all retries ({type(error).__name__});"
            " check the network and base_url, then run again (loaded data is kept)",
            None,  # type: ignore[arg-type]
            0,
            path,
        ) from None


def _oauth_worded(message: str, status: int) -> str:
    """The error map's 401/403 message for OAuth credentials (the map speaks of API keys)."""
    if status == 401:
        head = message.split(";")[0].replace("the API key", "the OAuth access token")
        return (
            f"{head}; give a refresh_token with the app's client_id and client_secret (access tokens"
            " expire after an hour), or a current access_token"
        )
    if status == 403:
        head = message.split(";")[0].replace("The API key lacks", "The OAuth app's installation lacks")
        return f"{head}; add the scope to the app's scopes in Klaviyo and have the account reinstall the app, or drop the report"
    return message


def _response_hook(
    scope: str | None, report: str | None, credentials: Credentials | None = None, decode: Decode | None = None
) -> Any:
    """Builds the response hook: raises the error map's message for any status >= 400 (a 401 or
    403 under OAuth names the token and the app's scopes instead of the API key), and
    parses 2xx bodies once with `decode` or orjson (requests' `.json()` would parse them with
    the slower stdlib, twice: once for the data, once for the paginator)."""

    def hook(response: Response, *args: Any, **kwargs: Any) -> Response:
        body: Any = None
        try:
            if decode is not None and response.status_code < 400 and response.content:
                body = decode(response.content)
                response._content = b""  # the document keeps what it needs of the body
            else:
                body = orjson.loads(response.content) if response.content else None
        except (orjson.JSONDecodeError, DecodeError):
            if response.status_code < 400:
                raise KlaviyoMalformedResponse(
                    f"Klaviyo sent a malformed JSON body for {endpoint_of(response.url)}"
                ) from None
        if response.status_code >= 400:
            message = describe_http_error(
                response.status_code, response.url, body, scope=scope, report=report
            )
            if credentials is not None and not isinstance(credentials, PrivateKey):
                message = _oauth_worded(message, response.status_code)
            raise KlaviyoApiError(
                message, response, response.status_code, endpoint_of(response.url)
            )
        response.json = lambda **_: body  # type: ignore[method-assign]
        return response

    return hook
