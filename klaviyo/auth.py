"""How the source authenticates: a private API key, or Klaviyo OAuth.

- `PrivateKey`: `Authorization: Klaviyo-API-Key pk_...` (and the legacy v1 API's `api_key`
  query parameter). For a company reading its own account.
- `OAuthToken`: `Authorization: Bearer <access token>`, for a partner app installed in the
  account (Klaviyo requires OAuth of published apps; each installation has its own rate-limit
  quota). With only an access token, the run ends when Klaviyo stops accepting it. With a
  refresh token and the app's client id and secret, access tokens are obtained from Klaviyo's
  token endpoint (`POST {base_url}/oauth/token`, form body `grant_type=refresh_token`,
  `refresh_token=...`, HTTP Basic with the client id and secret; the answer's `access_token`,
  `expires_in` seconds and, if Klaviyo sends one, a new `refresh_token`), renewed shortly
  before they expire and whenever Klaviyo answers 401, once per token for all threads.

Every credential is memory only: never in a repr, an error, a log line, the pipeline's state
or its trace. What identifies a credential in per-process caches (the rate limiter, the
account check) is a SHA-256 digest of it (`identity`), never the secret itself.
"""

import hashlib
import threading
import time
from collections.abc import Callable

from dlt.common import logger
from dlt.sources.helpers.requests.retry import Client
from requests import PreparedRequest, Response, Session
from requests.auth import AuthBase, HTTPBasicAuth
from requests.exceptions import RequestException

from .errors import KlaviyoApiError

TOKEN_PATH = "/oauth/token"
# An access token is renewed this long before it expires (seconds), or a tenth of its
# lifetime if that is shorter (Klaviyo's tokens live an hour).
RENEW_BEFORE_S = 60.0
# Assumed lifetime of an access token whose answer has no `expires_in` (Klaviyo: one hour).
DEFAULT_EXPIRES_IN_S = 3600.0
OnRefreshToken = Callable[[str], None]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class Credentials(AuthBase):
    """Signs a request with the `Authorization` header; subclasses hold the secret."""

    kind = "credentials"
    # what a rejection names: "the API key", "the OAuth access token"
    noun = "the credentials"

    def __init__(self, identity: str) -> None:
        # identifies the credential in per-process caches (a digest; memory only)
        self.identity = identity

    def header(self) -> str:
        """The current `Authorization` header value."""
        raise NotImplementedError

    def renew(self, rejected: str) -> bool:
        """After a 401 to a request sent with the header `rejected`: whether a newer header is
        available now (a new access token, obtained by this call or by another thread)."""
        return False

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = self.header()
        return request

    def __repr__(self) -> str:
        """The kind of credential, never the secret."""
        return f"{type(self).__name__}()"

    __str__ = __repr__


class PrivateKey(Credentials):
    """A private API key (`pk_...`)."""

    kind = "private_key"
    noun = "the API key"

    def __init__(self, api_key: str) -> None:
        super().__init__(hashlib.sha256(api_key.encode()).hexdigest())
        self._header = f"Klaviyo-API-Key {api_key}"
        self.api_key = api_key

    def header(self) -> str:
        return self._header


class _TokenState:
    """The current access token of one refresh token, shared by every thread and source
    instance of the process that uses that refresh token (so a rotated refresh token is
    followed by all of them)."""

    def __init__(self, refresh_token: str, access_token: str | None) -> None:
        self.lock = threading.Lock()
        self.refresh_token = refresh_token
        self.access_token = access_token
        self.expires_at = float("inf") if access_token else 0.0  # monotonic; a given token: until a 401
        self.renew_at = self.expires_at
        self.refreshes = 0  # token requests made


_states: dict[tuple[str, str], _TokenState] = {}
_states_lock = threading.Lock()


class OAuthToken(Credentials):
    """OAuth: a Bearer access token, renewed with a refresh token when one is given.

    Args:
        access_token: An access token to start with (None: get one with the refresh token).
        refresh_token: The installation's refresh token (None: the access token only).
        client_id: The OAuth app's client id (with `refresh_token`).
        client_secret: The OAuth app's client secret (with `refresh_token`).
        token_url: Klaviyo's token endpoint, e.g. `https://a.klaviyo.com/oauth/token`.
        on_refresh_token: Called with the new refresh token when Klaviyo's answer carries one
            that differs from the one used (store it where the next run reads it).
    """

    kind = "oauth"
    noun = "the OAuth access token"

    def __init__(
        self,
        access_token: str | None = None,
        refresh_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_url: str = "",
        on_refresh_token: OnRefreshToken | None = None,
    ) -> None:
        secret = refresh_token or access_token or ""
        super().__init__(_digest("oauth", client_id or "", secret))
        self.token_url = token_url
        self._client = (client_id, client_secret) if refresh_token else None
        self._on_refresh_token = on_refresh_token
        key = (token_url, self.identity)
        with _states_lock:
            state = _states.get(key)
            if state is None or not refresh_token:
                state = _TokenState(refresh_token or "", access_token)
                if refresh_token:
                    _states[key] = state
        self._state = state
        self._session: Session | None = None

    @property
    def refreshes(self) -> int:
        """Token requests this process made for this refresh token."""
        return self._state.refreshes

    def header(self) -> str:
        state = self._state
        with state.lock:
            if self._client and time.monotonic() >= state.renew_at:
                self._refresh(state)
            if not state.access_token:
                raise KlaviyoApiError("No OAuth access token to send", None, 401, TOKEN_PATH)  # type: ignore[arg-type]
            return f"Bearer {state.access_token}"

    def renew(self, rejected: str) -> bool:
        if not self._client:
            return False
        state = self._state
        with state.lock:
            if rejected == f"Bearer {state.access_token}":
                self._refresh(state)
            return True

    def _refresh(self, state: _TokenState) -> None:
        """Exchanges the refresh token for an access token (the caller holds `state.lock`)."""
        assert self._client is not None
        if self._session is None:
            # dlt's retrying session: 429, 5xx and dropped connections are retried per [runtime]
            self._session = Client(raise_for_status=False).session
        try:
            response: Response = self._session.post(
                self.token_url,
                data={"grant_type": "refresh_token", "refresh_token": state.refresh_token},
                auth=HTTPBasicAuth(*self._client),  # type: ignore[arg-type]
                headers={"accept": "application/json"},
            )
        except RequestException as error:
            raise KlaviyoApiError(
                f"Klaviyo's OAuth token endpoint ({TOKEN_PATH}) could not be reached after all retries"
                f" ({type(error).__name__}); check the network and base_url, then run again",
                None,  # type: ignore[arg-type]
                0,
                TOKEN_PATH,
            ) from None
        state.refreshes += 1
        body = _json(response)
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            raise KlaviyoApiError(self._refused(response.status_code, body), None, response.status_code, TOKEN_PATH)  # type: ignore[arg-type]
        lifetime = _seconds(body.get("expires_in"))
        now = time.monotonic()
        state.access_token = str(body["access_token"])
        state.expires_at = now + lifetime
        state.renew_at = now + lifetime - min(RENEW_BEFORE_S, lifetime / 10)
        new_refresh = body.get("refresh_token")
        if isinstance(new_refresh, str) and new_refresh and new_refresh != state.refresh_token:
            state.refresh_token = new_refresh
            if self._on_refresh_token is not None:
                self._on_refresh_token(new_refresh)
            else:
                logger.warning(
                    "Klaviyo issued a new OAuth refresh token; this run goes on with it, but the configured"
                    " refresh_token may no longer be accepted: pass on_refresh_token to klaviyo_source to store it"
                )
        logger.info(f"Klaviyo OAuth access token renewed (valid {lifetime:.0f} s)")

    def _refused(self, status: int, body: dict[str, object]) -> str:
        """One line for a refused token request: OAuth's `error` code, never a token."""
        code = str(body.get("error") or "").strip()[:64]
        said = f" {code}" if code.replace("_", "").isalnum() else ""
        where = f"({status}{said} on {TOKEN_PATH})"
        if code == "invalid_client" or status == 401:
            return (
                f"Klaviyo refused the OAuth app's client id or secret {where}; set the app's client_id and"
                " client_secret (Klaviyo: Manage apps)"
            )
        if code == "invalid_grant" or status == 400:
            return (
                f"Klaviyo refused the OAuth refresh token {where}: the app was uninstalled, the token revoked"
                " or unused for 90 days; set a refresh_token of the current installation"
            )
        if status == 429 or status >= 500:
            return f"Klaviyo's OAuth token endpoint kept failing {where} after all retries; run again later"
        return f"Klaviyo's OAuth token endpoint answered {where}"


def _json(response: Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _seconds(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_EXPIRES_IN_S
    return seconds if seconds > 0 else DEFAULT_EXPIRES_IN_S
