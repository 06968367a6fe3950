"""Request handling for /api routes, independent of the HTTP transport.

Order of checks (as Klaviyo answers): route (404) -> method (405) -> key (401) ->
revision (400 missing/malformed, 404 undocumented) -> scopes (403) -> rate limit (429) ->
parameters (400) -> answer. The revision picks the endpoint table and the shapes
(`revisions.py`, `revision_endpoints.py`); paths match with and without the trailing slash.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from klaviyo_emulator import documents, v1
from klaviyo_emulator.config import EmulatorConfig
from klaviyo_emulator.cursors import CursorError, Cursors
from klaviyo_emulator.endpoints import PREDICTIVE_TIER, Endpoint
from klaviyo_emulator.filters import Condition, FilterError, check_required, parse_endpoint_filter, parse_filter
from klaviyo_emulator.listing import Lister, NotFound, Request
from klaviyo_emulator.ratelimit import RateLimiter
from klaviyo_emulator.revision_endpoints import FILTER_REQUIRED_BY_REVISION, REPORTING_TIER, TIER_LIMITS_BY_REVISION, allowed_methods, route
from klaviyo_emulator.revisions import HELD, OLDEST, RevisionError, resolve
from klaviyo_emulator.store import Account
from klaviyo_emulator.util import h64

JSONAPI = "application/vnd.api+json"
REVISION = OLDEST
"""The revision the emulator was first written for (every held one: `revisions.HELD`)."""
_KEY_RE = re.compile(r"^Klaviyo-API-Key\s+(\S+)\s*$")
PAGE_CACHE_BYTES = 64 * 1024 * 1024
"""Budget of the LRU cache of serialized GET pages (key: path, raw query, data version, revision,
gzip), counted in bytes as stored (compressed ones compressed)."""


@dataclass
class Response:
    """An HTTP answer.

    Attributes:
        status: HTTP status code.
        body: Serialized body.
        headers: Extra headers (Content-Type and Content-Length are added by the server).
        content_type: Content-Type of the body.
        api: True for /api routes (latency and faults apply).
        plain_size: Bytes of the body before Content-Encoding (None: not encoded).
    """

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSONAPI
    api: bool = True
    plain_size: int | None = None


GZIP_LEVEL = 1
"""zlib compresslevel of gzip answers (`EmulatorConfig.gzip`): cheap, as a server's would be."""


def accepts_gzip(headers: Mapping[str, str]) -> bool:
    """True when Accept-Encoding names gzip (or *) without q=0."""
    for item in (headers.get("Accept-Encoding") or "").split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and float(q[2:] or 1) == 0)
    return False


def gzipped(resp: Response) -> Response:
    """`resp` with its body gzip-compressed (`Content-Encoding: gzip`)."""
    plain = len(resp.body)
    resp.body = gzip.compress(resp.body, GZIP_LEVEL, mtime=0)
    resp.plain_size = plain
    resp.headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
    return resp


class ApiError(Exception):
    """An error answer in Klaviyo's JSON:API error format."""

    def __init__(self, status: int, code: str, title: str, detail: str,
                 source: dict[str, str] | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = documents.error(status, code, title, detail, source)
        self.headers = headers or []

    def response(self) -> Response:
        """The error as a Response."""
        return Response(self.status, orjson.dumps(documents.errors_doc(self.error)),
                        list(self.headers))


def invalid(detail: str, parameter: str | None = None,
            pointer: str | None = None) -> ApiError:
    """A 400 `invalid` error naming the offending parameter or body pointer."""
    source = {"parameter": parameter} if parameter else {"pointer": pointer or "/data/"}
    return ApiError(400, "invalid", "Invalid input.", detail, source)


JSON_MEDIA_TYPES = ("application/json", "application/vnd.api+json")


def json_body(headers: Mapping[str, str], body: bytes | None, advertised: str) -> Any:
    """The parsed JSON body of a POST: 415 for another media type (naming `advertised`), 400
    for a body that is not JSON."""
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype not in JSON_MEDIA_TYPES:
        raise ApiError(415, "unsupported_media_type", "Unsupported media type.",
                       f"Unsupported media type \"{ctype or '(none)'}\" in request; use "
                       f"{advertised}.")
    try:
        return orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        raise invalid("The request body is not valid JSON.", pointer="/") from None


class Api:
    """Answers /api requests from the account."""

    def __init__(self, account: Account, config: EmulatorConfig, limiter: RateLimiter) -> None:
        self.account = account
        self.config = config
        self.limiter = limiter
        secret = h64(config.seed, config.api_key, "cursor-secret").to_bytes(8, "little")
        self.cursors = Cursors(secret)
        self.lister = Lister(account)
        self._cache: OrderedDict[tuple[Any, ...], tuple[bytes, int]] = OrderedDict()
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()
        self._throttle_counter = 0
        from klaviyo_emulator.oauth import OAuth  # builds on this module's ApiError and Response
        self.oauth = OAuth(config)

    # -------------------------------------------------------------------- entry
    def handle(self, method: str, path: str, raw_query: str, query: list[tuple[str, str]],
               headers: Mapping[str, str], body: bytes) -> Response:
        """Answers one request to a path under /api/."""
        if path.startswith("/api/v1/"):
            return v1.handle(self, method, path, query)
        try:
            resp = self._handle(method, path, raw_query, query, headers, body)
        except ApiError as err:
            resp = err.response()
        if self.config.gzip and resp.plain_size is None and accepts_gzip(headers):
            resp = gzipped(resp)
        return resp

    def _handle(self, method: str, path: str, raw_query: str, query: list[tuple[str, str]],
                headers: Mapping[str, str], body: bytes) -> Response:
        routes = {rev: route(rev, method, path) for rev in HELD}
        if not any(r[0] is not None for r in routes.values()):
            if any(r[2] for r in routes.values()):
                allow = ", ".join(sorted({m for rev in HELD for m in allowed_methods(rev, path)}))
                raise ApiError(405, "method_not_allowed", "Method not allowed.",
                               f'Method "{method}" not allowed.', None, [("Allow", allow)])
            raise ApiError(404, "not_found", "Not found.",
                           f"The path {path} could not be found.")
        key = self._authenticate(headers)
        revision = self._check_revision(headers)
        ep, path_id, _ = routes[revision]
        if ep is None:
            raise ApiError(404, "not_found", "Not found.",
                           f"The path {path} could not be found in revision {revision}.")
        self._check_scopes(ep, key)
        params = _single_params(query)
        rate_headers = self._rate_limit(ep, key, params)
        try:
            if method == "GET":
                gz = self.config.gzip and accepts_gzip(headers)
                resp = self._get(ep, path, path_id, raw_query, query, params, gz)
            elif ep.tier == REPORTING_TIER:
                from klaviyo_emulator import reports_api
                resp = reports_api.handle(self, ep, path, query, body, headers)
            else:
                from klaviyo_emulator import aggregates_api
                resp = aggregates_api.handle(self, ep, body, headers)
        except ApiError as err:
            err.headers.extend(rate_headers)
            raise
        resp.headers.extend(rate_headers)
        return resp

    # ------------------------------------------------------------ gatekeeping
    def _authenticate(self, headers: Mapping[str, str]) -> str:
        raw = headers.get("Authorization")
        if (raw or "").startswith("Bearer "):
            return self.oauth.authenticate((raw or "")[7:].strip())
        m = _KEY_RE.match(raw or "")
        if not m:
            raise ApiError(401, "not_authenticated",
                           "Authentication credentials were not provided.",
                           "Missing or invalid private key.")
        key = m.group(1)
        if key != self.config.api_key and key not in self.config.key_scopes:
            raise ApiError(401, "not_authenticated", "Incorrect authentication credentials.",
                           "Missing or invalid private key.")
        return key

    def _check_revision(self, headers: Mapping[str, str]) -> str:
        """The held revision answering the request (400 missing/malformed, 404 unknown)."""
        try:
            return resolve(headers.get("revision"))
        except RevisionError as err:
            if err.status == 404:
                raise ApiError(404, "not_found", "Not found.", err.detail,
                               {"parameter": "revision"}) from None
            raise invalid(err.detail, "revision") from None

    def _check_scopes(self, ep: Endpoint, key: str) -> None:
        if key == self.config.api_key or (key == self.oauth.KEY and self.oauth.scopes is None):
            return
        have = (self.oauth.scopes or frozenset()) if key == self.oauth.KEY else self.config.key_scopes.get(key, frozenset())
        missing = [s for s in ep.scopes if s not in have]
        if missing:
            raise ApiError(403, "permission_denied",
                           "You do not have permission to perform this action.",
                           ("This access token is" if key == self.oauth.KEY else "This API key is")
                           + " missing required scopes: "
                           f"{', '.join(missing)}.")

    def _rate_limit(self, ep: Endpoint, key: str,
                    params: dict[str, str]) -> list[tuple[str, str]]:
        forced = self.limiter.forced()
        every = self.config.throttle_every
        if not forced and every > 0:
            with self._cache_lock:
                self._throttle_counter += 1
                if self._throttle_counter % every == 0:
                    forced = self.config.throttle_retry_after
        if forced:
            raise throttled(forced)
        tier = ep.tier
        if "predictive_analytics" in params.get("additional-fields[profile]", ""):
            tier = PREDICTIVE_TIER
        burst, steady = TIER_LIMITS_BY_REVISION[ep.revision][tier]
        daily = self.config.report_daily_limit if tier == REPORTING_TIER else 0
        # Private keys share the account's quota (Klaviyo docs), so buckets are per
        # account (one per emulator) and per endpoint, not per key nor per revision.
        d = self.limiter.check("account", f"{ep.method} {ep.path.rstrip('/')} {tier}", burst,
                               steady, daily, self.config.report_day_seconds)
        if not d.allowed:
            if d.blocked_by == "daily":
                raise throttled(d.retry_after, f"the daily limit of {daily} requests to "
                                f"{ep.method} {ep.path} is used up")
            raise throttled(d.retry_after)
        return [("RateLimit-Limit", str(d.limit)), ("RateLimit-Remaining", str(d.remaining)),
                ("RateLimit-Reset", str(d.reset))]

    # --------------------------------------------------------------------- GET
    def _get(self, ep: Endpoint, path: str, path_id: str | None, raw_query: str,
             query: list[tuple[str, str]], params: dict[str, str], gz: bool = False) -> Response:
        """A GET answer (gzip-compressed with `gz`); pages are cached serialized (and, with
        `gz`, compressed: the cache then holds (compressed, plain size))."""
        acc = self.account
        cache_key = (path, raw_query, acc.version, acc.base_url, ep.revision, gz)
        with self._cache_lock:
            hit = self._cache.get(cache_key)
            if hit is not None:
                self._cache.move_to_end(cache_key)
        if hit is not None:
            return self._answer(hit, gz)
        req, filter_text = self._parse(ep, path, path_id, params)
        try:
            page = self.lister.page(req)
        except NotFound:
            raise ApiError(404, "not_found", "Not found.",
                           f"No {ep.parent} found with id '{path_id}'.") from None
        base = acc.base_url
        self_url = base + path + ("?" + raw_query if raw_query else "")
        next_url = None
        if page.next_after is not None and ep.cursor:
            sig = self.cursors.query_signature(_signed_path(ep, path), filter_text, req.sort,
                                               req.size)
            cursor = self.cursors.issue(sig, page.next_after)
            kept = [(k, v) for k, v in query if k != "page[cursor]"]
            kept.append(("page[cursor]", cursor))
            next_url = base + path + "?" + "&".join(
                f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in kept)
        links = {"self": self_url, "next": next_url}
        if page.raw:
            parts = [b'{"data":[', b",".join(page.data), b'],"links":',
                     orjson.dumps(links)]
            if req.include:
                parts += [b',"included":', orjson.dumps(page.included)]
            parts.append(b"}")
            body = b"".join(parts)
        else:
            doc: dict[str, Any] = {"data": page.data, "links": links}
            if req.include:
                doc["included"] = page.included
            body = orjson.dumps(doc)
        entry = (gzip.compress(body, GZIP_LEVEL, mtime=0), len(body)) if gz else (body, len(body))
        with self._cache_lock:
            if cache_key not in self._cache:
                self._cache[cache_key] = entry
                self._cache_bytes += len(entry[0])
            while self._cache_bytes > PAGE_CACHE_BYTES:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= len(old[0])
        return self._answer(entry, gz)

    @staticmethod
    def _answer(entry: tuple[bytes, int], gz: bool) -> Response:
        """The 200 answer of a cached page: (body, plain size), gzip-compressed with `gz`."""
        if gz:
            return Response(200, entry[0], [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")],
                            plain_size=entry[1])
        return Response(200, entry[0])

    def _parse(self, ep: Endpoint, path: str, path_id: str | None,
               params: dict[str, str]) -> tuple[Request, str | None]:
        """Validates every query parameter against the endpoint table."""
        fields: dict[str, tuple[str, ...]] = {}
        additional: tuple[str, ...] = ()
        include: tuple[str, ...] = ()
        sort = ep.default_sort
        size = ep.page.fixed or ep.page.default
        filter_text: str | None = None
        cursor_text: str | None = None
        for name, value in params.items():
            if name.startswith("fields[") and name.endswith("]"):
                allowed = ep.fields.get(name[7:-1])
                if allowed is None:
                    raise invalid(f"'{name}' is not a valid sparse fieldset for this endpoint.",
                                  name)
                fields[name[7:-1]] = _enum_list(name, value, allowed)
            elif name.startswith("additional-fields[") and name.endswith("]"):
                allowed = ep.additional.get(name[18:-1])
                if allowed is None:
                    raise invalid(f"'{name}' is not a valid parameter for this endpoint.", name)
                additional = _enum_list(name, value, allowed)
            elif name == "include" and ep.includes:
                include = _enum_list(name, value, ep.includes)
            elif name == "sort" and ep.sorts:
                if value not in ep.sorts:
                    raise invalid(f"'{value}' is not a valid sort value; allowed: "
                                  f"{', '.join(ep.sorts)}.", "sort")
                sort = value
            elif name == "page[size]" and ep.page.has_param:
                try:
                    size = int(value)
                except ValueError:
                    raise invalid(f"page[size] must be an integer, got '{value}'.",
                                  "page[size]") from None
                if not ep.page.minimum <= size <= ep.page.maximum:
                    raise invalid(f"page[size] must be between {ep.page.minimum} and "
                                  f"{ep.page.maximum}, got {size}.", "page[size]")
            elif name == "page[cursor]" and ep.cursor:
                cursor_text = value
            elif name == "filter" and ep.filter_rules is not None:
                filter_text = value
            else:
                raise invalid(f"'{name}' is not a valid query parameter for {ep.method} "
                              f"{ep.path}.", name)
        try:
            conditions = _endpoint_filter(ep, filter_text) if (
                ep.filter_rules is not None) else []
        except FilterError as err:
            raise invalid(err.detail, "filter") from None
        after = None
        if cursor_text is not None:
            sig = self.cursors.query_signature(_signed_path(ep, path), filter_text, sort, size)
            try:
                after = self.cursors.check(cursor_text, sig)
            except CursorError as err:
                raise invalid(f"Invalid page cursor: {err}.", "page[cursor]") from None
        return Request(ep, path_id, conditions, sort, size, after, fields, include,
                       additional), filter_text


def _signed_path(ep: Endpoint, path: str) -> str:
    """What a cursor is bound to besides the query: the path (and a newer revision)."""
    return path if ep.revision == OLDEST else f"{path}@{ep.revision}"


def _endpoint_filter(ep: Endpoint, text: str | None) -> list[Condition]:
    """Parses `?filter=` with the endpoint's own rules and its revision's required conditions."""
    if ep.revision == OLDEST:
        return parse_endpoint_filter(ep.path, text)
    required = FILTER_REQUIRED_BY_REVISION[ep.revision]
    if text is None:
        check_required([], ep.path, required)
        return []
    conditions = parse_filter(text, ep.filter_rules or {})
    check_required(conditions, ep.path, required)
    return conditions


def throttled(retry_after: int, why: str = "") -> ApiError:
    """The 429 `throttled` error with its Retry-After header (`why`: which limit, if not
    the burst or steady one)."""
    unit = "second" if retry_after == 1 else "seconds"
    reason = f" ({why})" if why else ""
    return ApiError(429, "throttled", "Request was throttled.",
                    f"Request was throttled{reason}. Expected available in {retry_after} {unit}.",
                    {"pointer": "/data/"}, [("Retry-After", str(retry_after))])


def _single_params(query: list[tuple[str, str]]) -> dict[str, str]:
    """Query parameters as a dict; a repeated parameter is a 400."""
    out: dict[str, str] = {}
    for name, value in query:
        if name in out:
            raise invalid(f"Parameter '{name}' was given more than once.", name)
        out[name] = value
    return out


def _enum_list(name: str, value: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated enum values; an empty or unknown value is a 400."""
    items = tuple(v.strip() for v in value.split(","))
    for item in items:
        if item not in allowed:
            raise invalid(f"'{item}' is not a valid value for {name}; allowed: "
                          f"{', '.join(allowed)}.", name)
    return items
