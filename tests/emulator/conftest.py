"""Fixtures of the emulator tests: a small emulator per module and an HTTP helper."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import load_spec

REVISIONS = ("2023-10-15", "2026-07-15")
"""The revisions the emulator holds, each with its spec in klaviyo_emulator/specs/."""
NOW = datetime(2023, 11, 1, 12, 0, 0, tzinfo=UTC)
LIMITED = "pk_limited_test"


def small_config(**overrides: Any) -> EmulatorConfig:
    """A small, fixed-`now` account: fast to generate, deterministic."""
    base = dict(seed=42, profiles=300, events=5000, days=30, campaigns=40, flows=10,
                lists=12, segments=12, templates=25, now=NOW,
                key_scopes={LIMITED: frozenset({"metrics:read", "events:read"})})
    base.update(overrides)
    return EmulatorConfig(**base)


class Http:
    """requests.Session bound to an emulator, sending Klaviyo's headers by default."""

    def __init__(self, emu: Emulator, revision: str = "2023-10-15") -> None:
        self.emu = emu
        self.base = emu.base_url
        self.session = requests.Session()
        self.headers = {"Authorization": f"Klaviyo-API-Key {emu.api_key}",
                        "revision": revision, "accept": "application/json"}

    def get(self, path: str, params: Any = None, headers: dict | None = None,
            **kw: Any) -> requests.Response:
        """GET base+path (or an absolute URL) with the default headers (overridable)."""
        url = path if path.startswith("http") else self.base + path
        hdrs = dict(self.headers)
        for name, value in (headers or {}).items():
            if value is None:
                hdrs.pop(name, None)
            else:
                hdrs[name] = value
        return self.session.get(url, params=params, headers=hdrs, timeout=30, **kw)

    def post(self, path: str, body: Any, headers: dict | None = None) -> requests.Response:
        """POST JSON to base+path with the default headers."""
        hdrs = {**self.headers, "content-type": "application/json", **(headers or {})}
        return self.session.post(self.base + path, data=json.dumps(body), headers=hdrs,
                                 timeout=30)

    def ok(self, path: str, params: Any = None) -> dict:
        """GET that must answer 200; returns the JSON document."""
        r = self.get(path, params)
        assert r.status_code == 200, (path, params, r.status_code, r.text[:500])
        return r.json()

    def pages(self, path: str, params: Any = None) -> Iterator[dict]:
        """Every page of a collection, following links.next."""
        doc = self.ok(path, params)
        yield doc
        while doc["links"].get("next"):
            doc = self.ok(doc["links"]["next"])
            yield doc

    def all(self, path: str, params: Any = None) -> list[dict]:
        """Every item of a collection, in served order."""
        return [item for doc in self.pages(path, params) for item in doc["data"]]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    """One small emulator per test module."""
    with Emulator(small_config()) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def http(emu: Emulator) -> Http:
    """HTTP helper bound to the module's emulator."""
    return Http(emu)


@pytest.fixture(scope="module")
def http2026(emu: Emulator) -> Http:
    """HTTP helper sending `revision: 2026-07-15`."""
    return Http(emu, "2026-07-15")


@pytest.fixture(scope="session")
def spec() -> dict:
    """The official OpenAPI spec of 2023-10-15 (tests only; the emulator never reads it)."""
    return load_spec("2023-10-15")
