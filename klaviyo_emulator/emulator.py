"""The in-process emulator: account + API + HTTP server on a background thread."""

from __future__ import annotations

import threading
from typing import Any

import orjson

from klaviyo_emulator.api import Api, Response
from klaviyo_emulator.config import EmulatorConfig
from klaviyo_emulator.faults import Faults
from klaviyo_emulator.mutations import mutate
from klaviyo_emulator.ratelimit import RateLimiter
from klaviyo_emulator.server import LoggedRequest, RequestLog, Server, make_server
from klaviyo_emulator.store import Account

ADMIN_HELP = """\
admin routes (no Klaviyo key needed; not under /api):
  GET  /__admin/health        {"ok": true}
  GET  /__admin/log           the request log as a JSON array (keys redacted)
  POST /__admin/clear-log     forget the in-memory log
  POST /__admin/mutate        body {"seed":1,"create":10,"update":10,"delete":3,"tie":false}
                              ("create" may be {"event":600,...}; "tie": created records
                              take the latest cursor value of their kind;
                              "revise_attribution": N moves the attributions of N orders
                              of the last "revise_days" (5) days)
  POST /__admin/rate-limits   body {"enabled": true|false, "reset": true} ("reset" forgets
                              every window, the reporting API's daily quota included)
  POST /__admin/force-429     body {"count": 3, "retry_after": 2}"""


class Emulator:
    """A local Klaviyo API (revisions 2023-10-15 and 2026-07-15) over a synthetic account.

    Use as `Emulator(cfg).start()` ... `.stop()`, or as a context manager.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.config.validate()
        self.account = Account(self.config)
        self.limiter = RateLimiter(self.config.rate_limits)
        self.faults = Faults(self.config.seed, self.config.fault_rate)
        self.log = RequestLog(self.config.log_file)
        self.api = Api(self.account, self.config, self.limiter)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------- lifecycle
    def start(self) -> Emulator:
        """Binds 127.0.0.1:port and serves on a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._server = make_server(self, self.config.host, self.config.port)
        self.account.base_url = self.base_url
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="klaviyo-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def serve_forever(self) -> None:
        """Serves on the calling thread until `stop()` or KeyboardInterrupt."""
        if self._server is None:
            self._server = make_server(self, self.config.host, self.config.port)
            self.account.base_url = self.base_url
        self._server.serve_forever(poll_interval=0.2)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- facts
    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """e.g. "http://127.0.0.1:8765"."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        """The accepted full-scope private key."""
        return self.config.api_key

    @property
    def request_log(self) -> list[LoggedRequest]:
        """Every request so far (keys redacted)."""
        with self.log.lock:
            return list(self.log.entries)

    def clear_log(self) -> None:
        """Forgets the in-memory request log."""
        self.log.clear()

    # -------------------------------------------------------------- controls
    def mutate(self, seed: int = 1, create: int | dict[str, int] = 10, update: int = 10,
               delete: int = 3, tie: bool = False, late: int = 0,
               late_seconds: int = 3600, revise_attribution: int = 0,
               revise_days: int = 5) -> dict[str, Any]:
        """Creates/updates/deletes records, adds events dated in the past and revises the
        attribution of recent orders (see mutations.mutate); returns affected ids. `create`
        is a count per kind or {kind: count}; with `tie`, created records take the latest
        existing cursor value of their kind; `revise_attribution=N` moves the attributions
        of N orders of the last `revise_days` days (the reporting API's numbers change)."""
        return mutate(self.account, seed=seed, create=create, update=update, delete=delete,
                      tie=tie, late=late, late_seconds=late_seconds,
                      revise_attribution=revise_attribution, revise_days=revise_days)

    def report(self, report: str, **attributes: Any) -> dict[str, Any]:
        """The ground truth of the reporting API: `data.attributes` (`results`, and
        `date_times` for a series) of the answer to a report request with these body
        attributes, computed by the code the HTTP handler uses, without paging or rate
        limits (see reports.py). E.g. `emu.report("flow-series", statistics=["opens"],
        timeframe={"start": "2023-10-01T00:00:00", "end": "2023-10-07T00:00:00"},
        interval="daily", conversion_metric_id=placed_id)`.

        Args:
            report: "campaign-values", "flow-values", "flow-series", "form-values",
                "form-series", "segment-values" or "segment-series" (or the JSON:API type,
                e.g. "flow-series-report").

        Raises:
            reports.ReportError: The 400 the HTTP API would answer for these attributes.
        """
        from klaviyo_emulator import reports
        return reports.run(self.account, report, attributes)

    def set_rate_limits(self, enabled: bool) -> None:
        """Turns Klaviyo rate limiting on or off."""
        self.limiter.enabled = bool(enabled)

    def reset_rate_limits(self) -> None:
        """Forgets every rate-limit window, the reporting API's daily quota included (as if
        a day had passed)."""
        self.limiter.reset()

    def force_429(self, count: int, retry_after: int = 2) -> None:
        """Answers the next `count` /api requests 429 with `Retry-After: retry_after`."""
        self.limiter.force_429(count, retry_after)

    # ----------------------------------------------------------------- admin
    def admin(self, method: str, path: str, query: list[tuple[str, str]],
              body: bytes) -> Response:
        """Answers /__admin/ routes (documented in ADMIN_HELP)."""
        try:
            args = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            return _json(400, {"error": "body must be JSON"})
        if not isinstance(args, dict):
            return _json(400, {"error": "body must be a JSON object"})
        route = (method, path.rstrip("/"))
        try:
            if route == ("GET", "/__admin/health"):
                return _json(200, {"ok": True, "base_url": self.base_url})
            if route == ("GET", "/__admin/log"):
                return _json(200, [e.to_json() for e in self.request_log])
            if route == ("POST", "/__admin/clear-log"):
                self.clear_log()
                return _json(200, {"ok": True})
            if route == ("POST", "/__admin/mutate"):
                allowed = {"seed", "create", "update", "delete", "tie", "late", "late_seconds",
                           "revise_attribution", "revise_days"}
                create = args.get("create", 0)
                counts = create.values() if isinstance(create, dict) else [create]
                if set(args) - allowed or not all(
                        isinstance(v, int) for k, v in args.items() if k != "create") or not all(
                        isinstance(v, int) for v in counts):
                    return _json(400, {"error": f"integer arguments only (create: also "
                                                f"{{kind: count}}, tie: boolean): {sorted(allowed)}"})
                return _json(200, self.mutate(**args))
            if route == ("POST", "/__admin/rate-limits"):
                if args.get("reset"):
                    self.limiter.reset()
                self.set_rate_limits(bool(args.get("enabled", self.limiter.enabled)))
                return _json(200, {"enabled": self.limiter.enabled})
            if route == ("POST", "/__admin/force-429"):
                self.force_429(int(args.get("count", 1)), int(args.get("retry_after", 2)))
                return _json(200, {"ok": True})
        except (TypeError, ValueError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(404, {"error": f"no admin route {method} {path}"})


def _json(status: int, payload: Any) -> Response:
    return Response(status, orjson.dumps(payload), [], "application/json", api=False)
