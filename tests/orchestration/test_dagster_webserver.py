"""`dagster dev -m klaviyo_dagster.definitions` starts headless against the definitions: the web
server answers HTTP 200 on its port and its GraphQL API lists one asset per table and the
accounts as partitions (so the code location loaded, not just the UI shell). Bounded wait;
the process group is killed at the end."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.orchestration import require_dagster

require_dagster()

from tests.conftest import REPO, stop_process_group  # noqa: E402

DAGSTER = str(Path(sys.executable).with_name("dagster"))
WAIT_S = 240  # dagster dev starts a daemon and a code server before the web server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except Exception:
        return None


def _graphql(url: str, query: str) -> Any:
    request = urllib.request.Request(url + "/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _read(stream: Any, lines: list[str]) -> None:
    for line in iter(stream.readline, ""):
        lines.append(line)


def test_dagster_dev_serves_the_definitions_over_http(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        "[klaviyo]\nreports = \"events,profiles,metrics\"\n"
        f"duckdb_dir = \"{tmp_path / 'data'}\"\npipelines_dir = \"{tmp_path / 'pipelines'}\"\n"
        "[accounts.brand_a]\napi_key_env = \"KLAVIYO_KEY_BRAND_A\"\n"
        "[accounts.client_b]\nrefresh_token_env = \"KLAVIYO_REFRESH_CLIENT_B\"\nclient_id_env = \"KLAVIYO_APP_CLIENT_ID\"\n"
        "client_secret_env = \"KLAVIYO_APP_CLIENT_SECRET\"\n"
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DAGSTER_HOME": str(home),
        "KLAVIYO_DAGSTER_ACCOUNTS": str(accounts),
        "PYTHONPATH": str(REPO),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    proc = subprocess.Popen(
        [DAGSTER, "dev", "-m", "klaviyo_dagster.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, start_new_session=True,
    )
    lines: list[str] = []
    threading.Thread(target=_read, args=(proc.stdout, lines), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        status, deadline = None, time.monotonic() + WAIT_S
        while time.monotonic() < deadline and status != 200 and proc.poll() is None:
            status = _status(url + "/server_info")
            time.sleep(1)
        assert status == 200, f"dagster dev did not serve (exit {proc.poll()}):\n{''.join(lines)[-3000:]}"
        assert _status(url + "/") == 200
        # the code location loads on its own process: wait for its assets to show
        nodes: list[Any] = []
        while time.monotonic() < deadline and not nodes:
            answer = _graphql(url, "{ assetNodes { assetKey { path } partitionKeys } }")
            nodes = (answer.get("data") or {}).get("assetNodes") or []
            time.sleep(1)
        keys = sorted("/".join(node["assetKey"]["path"]) for node in nodes)
        assert keys == ["klaviyo/events", "klaviyo/metrics", "klaviyo/profiles"], ("".join(lines)[-3000:], nodes)
        assert all(sorted(node["partitionKeys"]) == ["brand_a", "client_b"] for node in nodes)
    finally:
        stop_process_group(proc, 30)
