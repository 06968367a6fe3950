"""README's commands, run as a user runs them: read out of README.md (so that the two cannot
drift), in a fresh `git clone` of the repository (committed files only, its `.dlt/` included),
with no environment beyond what README names. The Quickstart's demo command (it creates
`.venv` and installs requirements.txt) runs first, then the real-key command of "With a real
Klaviyo account", pointed at a local emulator by `SOURCES__KLAVIYO__BASE_URL` in place of
Klaviyo's host, into each destination tested here: DuckDB, PostgreSQL (when
`KLAVIYO_TEST_POSTGRES` answers; under CI=true it must) and parquet files. Each run is checked:
exit code, the printed summary, the loaded rows against the emulator's truth, and that none of
the demo's ids reached the real dataset. README's test command is the one CI runs (`.ci/run`),
so this file does not run it again."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from klaviyo_demo import DEMO_DATASET, DEMO_DUCKDB
from klaviyo_emulator import Emulator, EmulatorConfig
from tests.conftest import REPO
from tests.integration.conftest import TABLE_KINDS, expected_ids, parse_summary

README = (REPO / "README.md").read_text(encoding="utf-8")
# Shaped like a Klaviyo private key: pk_ and 34 characters.
KEY = "pk_" + "3f9c2a7be41d05c8" * 2 + "e6"
DATASET = "klaviyo_data"  # the command's default, which README's command keeps


def section(title: str) -> str:
    """The text of README's `## {title}` section."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert found, f"README has no section '## {title}'"
    return found.group(1)


def bash_commands(text: str) -> list[str]:
    """The commands of the ```bash blocks of `text`, one per line."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


DEMO_COMMAND = bash_commands(section("Quickstart (a fresh machine with Python 3.11)"))[0]
REAL_COMMAND = bash_commands(section("With a real Klaviyo account"))[0]
DESTINATIONS_TEXT = section("Destinations")


def destination_variable(prefix: str) -> str:
    """The DESTINATION__... variable README names for a destination (`prefix`=its URL scheme)."""
    found = re.search(rf"`(DESTINATION__\w+)={re.escape(prefix)}", DESTINATIONS_TEXT)
    assert found, f"README's Destinations section names no DESTINATION__...={prefix} variable"
    return found.group(1)


def test_readme_holds_the_commands_this_file_runs() -> None:
    assert DEMO_COMMAND.startswith("python3 -m venv .venv && ") and DEMO_COMMAND.endswith(" klaviyo_pipeline.py --demo")
    assert "pip install -q -r requirements.txt" in DEMO_COMMAND
    assert REAL_COMMAND == "SOURCES__KLAVIYO__API_KEY=pk_... .venv/bin/python klaviyo_pipeline.py"
    for name in ("postgres", "filesystem"):
        assert f"`--destination {name}`" in DESTINATIONS_TEXT


def _python_dir() -> str:
    """A directory holding the machine's `python3` itself: pyenv's shims, for one, find their
    interpreter through HOME, which the runs here replace."""
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve().parent
    return str(base) if (base / "python3").exists() else str(Path(sys.executable).parent)


def user_env(home: Path, **named: str) -> dict[str, str]:
    """A user's shell: PATH and HOME, plus the variables README names (`named`). Besides, what
    belongs to the machine rather than to the product: pip's own settings (PIP_*; its index
    and certificates) and download cache, and dlt's data directory under HOME (dlt uses
    /var/dlt for root, whatever HOME says: a shared place that would carry one run's
    pipelines into the next); the data directory holds no configuration."""
    env = {"PATH": os.pathsep.join([_python_dir(), "/usr/local/bin", "/usr/bin", "/bin"]), "HOME": str(home)}
    env.update({name: value for name, value in os.environ.items() if name.startswith("PIP_")})
    env.setdefault("PIP_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pip"))
    env["DLT_DATA_DIR"] = str(home / ".dlt")
    env.update(named)
    return env


def _bash(command: str, cwd: Path, env: dict[str, str], timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of the repository at HEAD; the demo command creates its `.venv` on the
    first run (later runs find it, as a user's second try would)."""
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout: nothing to clone")
    target = tmp_path_factory.mktemp("readme") / "klaviyo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True, timeout=300)
    return target


@pytest.fixture(scope="module")
def account() -> Iterator[Emulator]:
    """The real account: another seed than the demo's, every record dated before the runs (but
    the emulator's few future-dated events) and inside the default backfill of its report."""
    config = EmulatorConfig(seed=11, api_key=KEY, profiles=300, events=3000, days=10, now=datetime.now(UTC) - timedelta(minutes=5))
    with Emulator(config) as emu:
        yield emu


def _duckdb_rows(database: Path, dataset: str) -> tuple[dict[str, int], dict[str, set[str]]]:
    with duckdb.connect(str(database), read_only=True) as db:
        tables = [r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'", [dataset]
        ).fetchall()]
        counts = {t: db.execute(f'SELECT count(*) FROM {dataset}."{t}"').fetchone()[0] for t in tables}
        ids = {t: {r[0] for r in db.execute(f"SELECT id FROM {dataset}.{t}").fetchall()} for t in TABLE_KINDS if t in tables}
    return counts, ids


def _postgres_rows(url: str) -> tuple[dict[str, int], dict[str, set[str]]]:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name NOT LIKE '\\_dlt%%'", (DATASET,))
        tables = [r[0] for r in cur.fetchall()]
        counts, ids = {}, {}
        for table in tables:
            cur.execute(f'SELECT count(*) FROM "{DATASET}"."{table}"')
            counts[table] = cur.fetchone()[0]
            if table in TABLE_KINDS:
                cur.execute(f'SELECT id FROM "{DATASET}"."{table}"')
                ids[table] = {r[0] for r in cur.fetchall()}
    return counts, ids


def _drop_postgres_dataset(url: str) -> None:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{DATASET}" CASCADE; DROP SCHEMA IF EXISTS "{DATASET}_staging" CASCADE')


def _parquet_rows(bucket: Path) -> tuple[dict[str, int], dict[str, set[str]]]:
    root = bucket / DATASET
    counts, ids = {}, {}
    for table in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_dlt") and p.name != "init"):
        data = pq.ParquetDataset([str(f) for f in sorted((root / table).glob("*.parquet"))]).read()
        counts[table] = data.num_rows
        if table in TABLE_KINDS:
            ids[table] = set(data.column("id").to_pylist())
    return counts, ids


@pytest.mark.parametrize("destination", ["duckdb", "postgres", "filesystem"])
def test_the_demo_then_the_real_key_command_load_exactly_the_accounts_rows(
    destination: str, clone: Path, account: Emulator, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    named: dict[str, str] = {}
    flags = ""
    if destination == "postgres":
        url = request.getfixturevalue("postgres")
        named[destination_variable("postgresql://")] = url
        flags = " --destination postgres"
        _drop_postgres_dataset(url)  # the server outlives runs: start from no dataset, as a new user does
    elif destination == "filesystem":
        bucket = tmp_path / "bucket"
        named[destination_variable("file://")] = bucket.as_uri()
        flags = " --destination filesystem"
    home = tmp_path / "home"  # one user's machine per destination: the pipeline's state lives under HOME
    home.mkdir()

    demo = _bash(DEMO_COMMAND, clone, user_env(home))
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-3000:]
    _, demo_ids = _duckdb_rows(clone / DEMO_DUCKDB, DEMO_DATASET)
    assert all(demo_ids[t] for t in ("events", "profiles", "metrics")), "the demo loaded its account"

    assert "pk_..." in REAL_COMMAND
    command = REAL_COMMAND.replace("pk_...", KEY) + flags
    before = datetime.now(UTC)
    real = _bash(command, clone, user_env(home, SOURCES__KLAVIYO__BASE_URL=account.base_url, **named))
    after = datetime.now(UTC)
    try:
        assert real.returncode == 0, real.stdout[-2000:] + real.stderr[-3000:]
        assert "Traceback" not in real.stderr and KEY not in real.stdout + real.stderr
        head = re.search(r"^Loaded into (\S+) dataset (\S+) in ([0-9.]+) s:$", real.stdout, re.M)
        assert head and head.group(1, 2) == (destination, DATASET), real.stdout[-2000:]
        location = re.search(r"^  location: (.+)$", real.stdout, re.M)
        assert location, real.stdout[-2000:]
        if destination == "duckdb":
            assert Path(location.group(1)) == (clone / "klaviyo.duckdb").resolve()
            counts, ids = _duckdb_rows(clone / "klaviyo.duckdb", DATASET)
        elif destination == "postgres":
            assert location.group(1).startswith("postgresql://") and ":***@" in location.group(1)
            counts, ids = _postgres_rows(url)
        else:
            assert location.group(1) == bucket.as_uri()
            counts, ids = _parquet_rows(bucket)
    finally:
        if destination == "postgres":
            _drop_postgres_dataset(url)

    assert parse_summary(real.stdout) == counts
    for table in TABLE_KINDS:
        surely, at_most = expected_ids(account, table, before, after)
        assert surely == at_most, f"{table}: the account's records straddle the run's start"
        assert ids[table] == surely, table
        assert ids[table].isdisjoint(demo_ids[table]), f"{table} holds the demo's rows"
