"""Klaviyo OAuth as an installed partner app sees it: the token endpoint and Bearer tokens.

- `POST /oauth/token` (form body, HTTP Basic with the app's client id and secret), grant
  `refresh_token`: answers `{"access_token", "token_type": "Bearer", "expires_in", "scope",
  "refresh_token"}`; with `oauth_rotate_refresh_tokens` the refresh token is replaced by a new
  one at each use (whether Klaviyo rotates is not documented: off by default). Errors in
  OAuth's shape (RFC 6749 section 5.2): 401 `invalid_client`, 400 `invalid_grant`,
  `unsupported_grant_type`, `invalid_request`.
- `Authorization: Bearer <access token>` is accepted on every /api route while the token lives
  (`oauth_token_seconds`), then answered 401; the installation's scopes (`oauth_scopes`, None:
  all) are checked like a restricted key's.

Tokens are random; the request log keeps only the auth scheme (`server.redact_auth`).
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl

import orjson

from klaviyo_emulator.api import ApiError, Response
from klaviyo_emulator.config import EmulatorConfig

TOKEN_PATH = "/oauth/token"


class OAuth:
    """The one OAuth app installed in the emulated account, and the tokens it was issued."""

    KEY = "\x00oauth"  # what `Api._authenticate` returns for a live Bearer token (no key can be it)

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._refresh_tokens = {config.oauth_refresh_token}
        self._current_refresh = config.oauth_refresh_token
        self._access: dict[str, float] = {}  # access token -> expiry (time.monotonic())
        self.issued = 0  # access tokens issued

    @property
    def refresh_token(self) -> str:
        """The refresh token the installation holds now (the newest, after rotations)."""
        with self._lock:
            return self._current_refresh

    @property
    def scopes(self) -> frozenset[str] | None:
        """The installation's scopes (None: every scope)."""
        return self.config.oauth_scopes

    def expire_access_tokens(self) -> int:
        """Ends every access token issued so far (the next request with one gets a 401), as a
        clock running ahead would; returns how many were alive."""
        now = time.monotonic()
        with self._lock:
            alive = sum(1 for t in self._access.values() if t > now)
            self._access = {token: min(t, now) for token, t in self._access.items()}
        return alive

    def authenticate(self, token: str) -> str:
        """`OAuth.KEY` for a live access token; a 401 `ApiError` otherwise."""
        with self._lock:
            expires = self._access.get(token)
        if expires is None or expires <= time.monotonic():
            raise ApiError(401, "not_authenticated", "Incorrect authentication credentials.",
                           "The access token is invalid or has expired.")
        return self.KEY

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answers a request to a path under /oauth/."""
        if path.rstrip("/") != TOKEN_PATH:
            return _oauth_error(404, "not_found", f"The path {path} could not be found.")
        if method != "POST":
            return _oauth_error(405, "invalid_request", f'Method "{method}" not allowed.')
        if not self._client_ok(headers.get("Authorization") or ""):
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
        grant = form.get("grant_type")
        if grant != "refresh_token":
            return _oauth_error(400, "unsupported_grant_type", "Only the refresh_token grant is served here.")
        lifetime = self.config.oauth_token_seconds
        with self._lock:
            if form.get("refresh_token") not in self._refresh_tokens:
                return _oauth_error(400, "invalid_grant", "The refresh token is invalid, expired or revoked.")
            if self.config.oauth_rotate_refresh_tokens:
                self._refresh_tokens = {"rt_" + secrets.token_urlsafe(24)}
                self._current_refresh = next(iter(self._refresh_tokens))
            access = secrets.token_urlsafe(32)
            self._access[access] = time.monotonic() + lifetime
            self.issued += 1
            refresh = self._current_refresh
        scope = " ".join(sorted(self.scopes)) if self.scopes is not None else "accounts:read"
        answer = {"access_token": access, "token_type": "Bearer", "expires_in": lifetime,
                  "scope": scope, "refresh_token": refresh}
        return Response(200, orjson.dumps(answer), [("Cache-Control", "no-store")], "application/json", api=False)

    def _client_ok(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            client_id, _, secret = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(client_id, self.config.oauth_client_id) and secrets.compare_digest(
            secret, self.config.oauth_client_secret)


def _oauth_error(status: int, error: str, description: str) -> Response:
    return Response(status, orjson.dumps({"error": error, "error_description": description}), [],
                    "application/json", api=False)
