"""Page bodies are read in one call by the source's HTTP adapter (`client._read_body`): what
requests' `.content` would give, decompressed, and a body cut short raises the exception dlt's
retries take (requests' ChunkedEncodingError), not a short page."""

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from dlt.sources.helpers.requests.retry import DEFAULT_RETRY_EXCEPTIONS
from requests.exceptions import ChunkedEncodingError

from klaviyo.client import _PacedAdapter
from klaviyo.ratelimit import RateLimiter
from klaviyo.settings import TIERS

BODY = ('{"data": [' + ",".join(f'{{"id": "é{i}", "text": "✨ {"x" * i}"}}' for i in range(3000)) + "]}").encode()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = gzip.compress(BODY) if self.path == "/gzip" else BODY
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path == "/gzip":
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path == "/cut" else body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _session() -> requests.Session:
    session = requests.Session()
    session.mount("http://", _PacedAdapter(RateLimiter(), next(iter(TIERS))))
    return session


@pytest.mark.parametrize("path", ["/plain", "/gzip"])
def test_a_body_read_in_one_call_is_the_body_sent(base_url: str, path: str) -> None:
    response = _session().get(base_url + path)
    assert response.content == BODY and len(response.content) > 1_000_000
    assert response.json()["data"][2999]["id"] == "é2999"
    assert requests.get(base_url + path).content == response.content  # requests' own reading


def test_a_body_cut_short_raises_what_dlt_retries(base_url: str) -> None:
    with pytest.raises(ChunkedEncodingError) as raised:
        _session().get(base_url + "/cut")
    assert isinstance(raised.value, DEFAULT_RETRY_EXCEPTIONS)
