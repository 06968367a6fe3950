"""Legacy v1 campaigns, request log redaction, admin routes and the command line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from klaviyo_emulator import Emulator
from tests.emulator.conftest import Http, small_config

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pk_secret_test_key_123456"


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Emulator:
    log = tmp_path_factory.mktemp("log") / "requests.jsonl"
    with Emulator(small_config(v1="live", api_key=SECRET, log_file=str(log))) as emu:
        yield emu


def v1(emu: Emulator, **params) -> requests.Response:
    return requests.get(emu.base_url + "/api/v1/campaigns", params=params, timeout=10)


def test_v1_live_envelope_and_paging(live: Emulator) -> None:
    seen, page = [], 0
    while True:
        r = v1(live, api_key=SECRET, page=page, count=15)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        doc = r.json()
        assert doc["object"] == "$list" and doc["page"] == page and doc["page_size"] == 15
        assert doc["start"] == page * 15 and doc["end"] == doc["start"] + len(doc["data"]) - 1
        seen += doc["data"]
        if doc["end"] >= doc["total"] - 1:
            break
        page += 1
    assert page == 2 and doc["total"] == 40
    truth = {c["id"]: c for c in live.account.records("campaign")}
    assert [c["id"] for c in seen] and sorted(c["id"] for c in seen) == sorted(truth)
    created = [c["created"] for c in seen]
    assert created == sorted(created, reverse=True)
    c = seen[0]
    assert c["object"] == "campaign" and re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$",
                                                  c["updated"])
    assert c["name"] == truth[c["id"]]["attributes"]["name"]
    assert {"subject", "from_email", "lists", "status_id", "num_recipients", "message_type",
            "template_id"} <= set(c)
    assert v1(live, api_key=SECRET, page=9, count=15).json()["data"] == []


def test_v1_errors(live: Emulator) -> None:
    r = v1(live, api_key="pk_nope")
    assert r.status_code == 403 and "message" in r.json()
    assert v1(live).status_code == 403
    assert v1(live, api_key=SECRET, count=101).status_code == 400


def test_v1_retired_is_410(emu: Emulator) -> None:
    r = v1(emu, api_key=emu.api_key)
    assert r.status_code == 410
    assert "/api/campaigns/" in r.json()["message"]


def test_log_redacts_the_key_everywhere(live: Emulator) -> None:
    live.clear_log()
    http = Http(live)
    http.get("/api/metrics/", {"fields[metric]": "name"})
    v1(live, api_key=SECRET)
    http.post("/api/metric-aggregates/", {"data": {"type": "metric-aggregate"}})
    entries = live.request_log
    assert [e.path for e in entries] == ["/api/metrics/", "/api/v1/campaigns",
                                         "/api/metric-aggregates/"]
    first, legacy, post = entries
    assert first.method == "GET" and first.status == 200
    assert first.query == {"fields[metric]": ["name"]}
    assert first.headers["authorization"] == "Klaviyo-API-Key pk_***"
    assert first.headers["revision"] == "2023-10-15"
    assert first.started <= first.finished
    assert legacy.query["api_key"] == ["pk_***"]
    assert post.body == {"data": {"type": "metric-aggregate"}} and post.status == 400
    assert SECRET not in repr(entries)
    text = Path(live.config.log_file).read_text()
    assert SECRET not in text and "pk_***" in text
    lines = [json.loads(x) for x in text.splitlines()]
    assert lines[-1]["path"] == "/api/metric-aggregates/"
    assert {"method", "path", "query", "headers", "status", "started", "finished"} <= set(lines[0])


def test_admin_routes(live: Emulator) -> None:
    base = live.base_url
    assert requests.get(base + "/__admin/health", timeout=10).json()["ok"]
    r = requests.post(base + "/__admin/mutate", json={"seed": 2, "create": 1, "update": 1,
                                                      "delete": 0}, timeout=10)
    assert r.status_code == 200 and len(r.json()["profile"]["created"]) == 1
    pid = r.json()["profile"]["created"][0]
    assert any(p["id"] == pid for p in live.account.records("profile"))
    log = requests.get(base + "/__admin/log", timeout=10).json()
    assert log and log[-1]["path"] == "/__admin/mutate"
    assert requests.post(base + "/__admin/mutate", json={"bogus": 1}, timeout=10
                         ).status_code == 400
    assert requests.post(base + "/__admin/force-429", json={"count": 1, "retry_after": 3},
                         timeout=10).status_code == 200
    r = Http(live).get("/api/metrics/")
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"


def start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "klaviyo_emulator", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, proc.stdout.readline()


def test_cli_prints_the_line_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "cli.jsonl"
    proc, line = start_cli("--port", "0", "--events", "300", "--profiles", "30", "--api-key",
                           SECRET, "--key-scopes", "pk_small=metrics:read", "--log", str(log),
                           "--now", "2023-11-01T12:00:00Z", "--v1", "live")
    try:
        m = re.fullmatch(r"Klaviyo emulator listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert m, line
        base = m.group(1)
        headers = {"Authorization": f"Klaviyo-API-Key {SECRET}", "revision": "2023-10-15"}
        r = requests.get(base + "/api/events/", headers=headers, timeout=10)
        assert r.status_code == 200 and len(r.json()["data"]) == 200
        assert r.json()["data"][0]["attributes"]["datetime"] <= "2023-11-02T12:00:00+00:00"
        small = {**headers, "Authorization": "Klaviyo-API-Key pk_small"}
        assert requests.get(base + "/api/metrics/", headers=small, timeout=10).status_code == 200
        assert requests.get(base + "/api/events/", headers=small, timeout=10).status_code == 403
        assert requests.get(base + "/api/v1/campaigns", params={"api_key": SECRET},
                            timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == ""  # exactly one line on stdout
    assert SECRET not in log.read_text()
    assert len(log.read_text().splitlines()) == 4


def test_cli_help_documents_every_knob() -> None:
    out = subprocess.run([sys.executable, "-m", "klaviyo_emulator", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    for flag in ("--port", "--seed", "--now", "--profiles", "--events", "--days", "--campaigns",
                 "--flows", "--lists", "--segments", "--templates", "--metrics", "--tags",
                 "--api-key", "--key-scopes", "--rate-limits", "--throttle-every",
                 "--latency-ms", "--fault-rate", "--v1", "--log", "--event-weight", "--gzip", "/__admin/mutate",
                 "/__admin/log"):
        assert flag in out, flag


def test_cli_port_in_use_fails_cleanly() -> None:
    with Emulator(small_config(events=10, profiles=5)) as emu:
        proc = subprocess.run([sys.executable, "-m", "klaviyo_emulator", "--port",
                               str(emu.port)], cwd=ROOT, capture_output=True, text=True,
                              timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stdout == "" and "klaviyo_emulator:" in proc.stderr


def test_stop_closes_keep_alive_connections() -> None:
    emu = Emulator(small_config(events=10, profiles=5)).start()
    http = Http(emu)
    assert http.get("/api/metrics/").status_code == 200  # opens a keep-alive connection
    emu.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get("/api/metrics/")
