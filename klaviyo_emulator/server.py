"""HTTP/1.1 transport: threading server with keep-alive, faults, latency and request log."""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from klaviyo_emulator import documents
from klaviyo_emulator.api import Response
from klaviyo_emulator.util import redact_key

if TYPE_CHECKING:
    from klaviyo_emulator.emulator import Emulator

_LOGGED_HEADERS = ("authorization", "revision", "accept", "content-type", "user-agent", "accept-encoding")


@dataclass
class LoggedRequest:
    """One request as seen by the emulator (the API key is always redacted).

    Attributes:
        method: HTTP method.
        path: URL path, e.g. "/api/events/".
        query: Decoded query parameters (v1 `api_key` redacted).
        headers: Relevant request headers; Authorization as "Klaviyo-API-Key pk_***" ("Bearer ***",
            "Basic ***").
        body: Decoded JSON body of a POST (None otherwise or if not JSON: the OAuth token
            endpoint's form body, which holds the refresh token, is never logged).
        status: Status sent (0 = connection reset without an answer).
        started: time.time() when the request was read.
        finished: time.time() when the answer was ready (just before it is written).
        fault: Injected fault kind ("500", "503", "reset", "truncate") or None.
        bytes: Bytes of the response body as sent (compressed if it was; 0 for a reset).
        plain_bytes: Bytes of the response body before Content-Encoding (= `bytes` when
            not compressed).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int
    started: float
    finished: float
    fault: str | None = None
    bytes: int = 0
    plain_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-serializable dict."""
        return asdict(self)


def redact_auth(value: str) -> str:
    """Redacts an Authorization header value, keeping its scheme."""
    parts = value.split(None, 1)
    if len(parts) == 2:
        return f"{parts[0]} {redact_key(parts[1].strip())}"
    return redact_key(value)


@dataclass
class RequestLog:
    """In-memory log plus optional JSON-lines file."""

    path: str | None = None
    entries: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: LoggedRequest) -> None:
        """Appends an entry (and writes it to the log file)."""
        with self.lock:
            self.entries.append(entry)
            if self.path:
                with open(self.path, "ab") as fh:
                    fh.write(orjson.dumps(entry.to_json()) + b"\n")

    def clear(self) -> None:
        """Forgets the in-memory entries."""
        with self.lock:
            self.entries.clear()


class Handler(BaseHTTPRequestHandler):
    """Dispatches to admin routes, /api routes or a 404."""

    protocol_version = "HTTP/1.1"
    server_version = "KlaviyoEmulator/1.0"
    sys_version = ""
    emulator: Emulator

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silences the default stderr access log."""

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        started = time.time()
        emu = self.emulator
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        path, raw_query = url.path, url.query
        query = parse_qsl(raw_query, keep_blank_values=True)
        fault = None
        if path.startswith("/__admin/"):
            resp = emu.admin(method, path, query, body)
        elif path.startswith("/api/"):
            fault = emu.faults.decide()
            if emu.config.latency_ms > 0:
                time.sleep(emu.config.latency_ms / 1000)
            if fault in ("500", "503"):
                resp = _fault_response(int(fault))
            else:
                resp = emu.api.handle(method, path, raw_query, query, self.headers, body)
        elif path.startswith("/oauth/"):
            if emu.config.latency_ms > 0:
                time.sleep(emu.config.latency_ms / 1000)
            resp = emu.api.oauth.handle(method, path, self.headers, body)
        else:
            resp = Response(404, orjson.dumps(documents.errors_doc(documents.error(
                404, "not_found", "Not found.", f"The path {path} could not be found."))))
        # Logged before the answer is written, so a client sees its request in the log
        # as soon as it has the response.
        status = 0 if fault == "reset" else resp.status
        sent = 0 if fault == "reset" else len(resp.body) // 2 if fault == "truncate" else len(resp.body)
        self._log(method, path, query, body, status, started, fault,
                  sent, sent if resp.plain_size is None or not sent else resp.plain_size)
        if fault == "reset":
            self._reset()
        else:
            self._send(resp, truncate=fault == "truncate")

    def _send(self, resp: Response, truncate: bool) -> None:
        """Writes status line, headers and body in one send (Content-Length always set)."""
        body = resp.body
        reason = self.responses.get(resp.status, ("",))[0]
        head = [f"HTTP/1.1 {resp.status} {reason}", f"Server: {self.server_version}",
                f"Date: {self.date_time_string()}", f"Content-Type: {resp.content_type}",
                f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in resp.headers]
        if truncate or self.close_connection:
            head.append("Connection: close")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        self.log_request(resp.status)
        if truncate:
            self.wfile.write(raw + body[: len(body) // 2])
            self._reset()
            return
        self.wfile.write(raw if self.command == "HEAD" else raw + body)

    def _reset(self) -> None:
        """Closes the socket abruptly (RST) without (further) answer."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _log(self, method: str, path: str, query: list[tuple[str, str]], body: bytes,
             status: int, started: float, fault: str | None, sent: int = 0,
             plain: int = 0) -> None:
        qdict: dict[str, list[str]] = {}
        for name, value in query:
            if name == "api_key":
                value = redact_key(value)
            qdict.setdefault(name, []).append(value)
        headers = {}
        for name in _LOGGED_HEADERS:
            value = self.headers.get(name)
            if value is not None:
                headers[name] = redact_auth(value) if name == "authorization" else value
        parsed = None
        if body:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
        self.emulator.log.add(LoggedRequest(method, path, qdict, headers, parsed, status,
                                            started, time.time(), fault, sent, plain))


def _fault_response(status: int) -> Response:
    """An injected 500/503 answer."""
    if status == 503:
        err = documents.error(503, "service_unavailable", "Service unavailable.",
                              "The service is temporarily unavailable. Please try again.")
    else:
        err = documents.error(500, "error", "A server error occurred.",
                              "An unexpected error occurred. Please try again.")
    return Response(status, orjson.dumps(documents.errors_doc(err)))


class Server(ThreadingHTTPServer):
    """Threading HTTP server bound to 127.0.0.1; closes open keep-alive connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stays quiet when a client drops its connection (a killed pipeline, a timeout);
        prints any other handler error as the stdlib server does."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        """Closes the listening socket and every open client connection."""
        super().server_close()
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def make_server(emulator: Emulator, host: str, port: int) -> Server:
    """A server whose handler class is bound to `emulator`."""
    handler = type("BoundHandler", (Handler,), {"emulator": emulator})
    return Server((host, port), handler)
