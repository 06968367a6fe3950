"""The accounts file: which Klaviyo accounts Dagster (or Airflow) loads, where, and with which credentials.

A TOML file (`accounts.example.toml` beside this module shows every setting)::

    [klaviyo]                          # applies to every account
    destination = "duckdb"             # a dlt destination; its credentials as dlt reads them
    duckdb_dir = "data"                # duckdb: one file per account, <account>.duckdb
    reports = "events,profiles,metrics"  # the tables, one Dagster asset each (default: the source's default)
    schedule = "0 3 * * *"             # the daily run of every account (cron, in `timezone`)

    [accounts.brand_a]                 # partition key `brand_a`
    api_key_env = "KLAVIYO_KEY_BRAND_A"     # the name of the env var holding the private key

    [accounts.client_b]                # a partner app's installation (OAuth)
    refresh_token_env = "KLAVIYO_REFRESH_CLIENT_B"
    client_id_env = "KLAVIYO_APP_CLIENT_ID"
    client_secret_env = "KLAVIYO_APP_CLIENT_SECRET"

The file names environment variables, never secrets: it can be committed and shown in Dagster's
UI; the values are read when an account's run starts, in the process that runs it. Relative
directories are relative to the file. Orchestrator-neutral (dlt and the source only): the
Airflow DAG (deploy/airflow/klaviyo_dag.py) reads the same file.
"""

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination import Destination

from klaviyo import klaviyo_source

ACCOUNTS_ENV = "KLAVIYO_DAGSTER_ACCOUNTS"  # the accounts file's path (default: ./accounts.toml)
DEFAULT_FILE = "accounts.toml"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")
_CREDENTIAL_ENVS = ("api_key_env", "access_token_env", "refresh_token_env", "client_id_env", "client_secret_env")
_ACCOUNT_KEYS = {*_CREDENTIAL_ENVS, "base_url", "dataset"}
_SETTINGS = {
    "destination", "duckdb_dir", "pipelines_dir", "reports", "schedule", "timezone", "max_retries",
    "retry_delay_seconds", "base_url", "chunk_records", "start_date",
}


class AccountsFileError(ValueError):
    """The accounts file is missing or malformed (one line naming the file, the entry and the fix)."""


@dataclass(frozen=True)
class Account:
    """One Klaviyo account: a partition, a dlt pipeline and a dataset of its own.

    Attributes:
        name: Partition key; also names the pipeline and dataset (`klaviyo_<name>`).
        envs: Credential argument of `klaviyo_source` -> name of the env var holding it.
        base_url: Klaviyo's API base URL (an emulator's in tests).
        dataset: The dataset (schema) the account loads into.
    """

    name: str
    envs: Mapping[str, str]
    base_url: str
    dataset: str

    @property
    def pipeline_name(self) -> str:
        """The account's own dlt pipeline: its state (cursors, the account id) never mixes with another's."""
        return f"klaviyo_{self.name}"

    @property
    def oauth(self) -> bool:
        return "api_key" not in self.envs

    def credentials(self, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
        """The five credential arguments of `klaviyo_source` ("" for those the account does not
        use, so that no [sources.klaviyo] value of the environment mixes in)."""
        missing = [env for env in self.envs.values() if not environ.get(env, "").strip()]
        if missing:
            raise AccountsFileError(
                f"Klaviyo account {self.name}: the environment variable {missing[0]} is not set;"
                f" set it to the account's {_argument(self.envs, missing[0])} where Dagster runs the account"
            )
        given = {argument: environ[env].strip() for argument, env in self.envs.items()}
        arguments = ("api_key", "access_token", "refresh_token", "client_id", "client_secret")
        return {argument: given.get(argument, "") for argument in arguments}


@dataclass(frozen=True)
class Settings:
    """The accounts file, parsed."""

    accounts: Mapping[str, Account]
    destination: str = "duckdb"
    duckdb_dir: str = "data"
    pipelines_dir: str | None = None
    reports: str | None = None
    schedule: str = "0 3 * * *"
    timezone: str = "UTC"
    max_retries: int = 2
    retry_delay_seconds: float = 60.0
    chunk_records: int | None = None
    start_date: str | None = None  # the first run's start of every report with a cursor, YYYY-MM-DDTHH:MM:SSZ
    source: Path = field(default=Path(DEFAULT_FILE))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.accounts))


def _argument(envs: Mapping[str, str], env: str) -> str:
    return next(argument for argument, name in envs.items() if name == env)


def accounts_path() -> Path:
    """The accounts file: `$KLAVIYO_DAGSTER_ACCOUNTS`, else `./accounts.toml`."""
    return Path(os.environ.get(ACCOUNTS_ENV) or DEFAULT_FILE)


def load_settings(path: Path | None = None) -> Settings:
    """Reads and checks the accounts file; `AccountsFileError` (one line) when it is unusable."""
    path = Path(path or accounts_path())
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AccountsFileError(
            f"No accounts file at {path}; write one (see klaviyo_dagster/accounts.example.toml) and point"
            f" {ACCOUNTS_ENV} at it"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise AccountsFileError(f"The accounts file {path} is not valid TOML ({error})") from None
    general: dict[str, Any] = dict(document.get("klaviyo") or {})
    unknown = sorted(set(general) - _SETTINGS)
    if unknown:
        raise AccountsFileError(f"{path}: unknown setting {unknown[0]!r} in [klaviyo]; known: {', '.join(sorted(_SETTINGS))}")
    entries = document.get("accounts") or {}
    if not isinstance(entries, dict) or not entries:
        raise AccountsFileError(f"{path} lists no account; add an [accounts.NAME] table per Klaviyo account")
    base_url = str(general.pop("base_url", "https://a.klaviyo.com"))
    accounts = {name: _account(path, name, entry, base_url) for name, entry in entries.items()}
    reports = general.pop("reports", None)
    if isinstance(reports, list):
        reports = ",".join(str(r) for r in reports)
    for directory in ("duckdb_dir", "pipelines_dir"):  # relative to the file, not to where the orchestrator runs
        if general.get(directory):
            general[directory] = str((path.parent / str(general[directory])).resolve())
    return Settings(accounts=accounts, reports=reports, source=path, **general)


def _account(path: Path, name: str, entry: Any, base_url: str) -> Account:
    where = f"{path}: [accounts.{name}]"
    if not _NAME.fullmatch(name):
        raise AccountsFileError(
            f"{where}: the name must be lower-case letters, digits and _ (it names a partition, a pipeline and a dataset)"
        )
    if not isinstance(entry, dict):
        raise AccountsFileError(f"{where} must be a table")
    unknown = sorted(set(entry) - _ACCOUNT_KEYS)
    if unknown:
        raise AccountsFileError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(_ACCOUNT_KEYS))}")
    envs = {key[: -len("_env")]: str(entry[key]) for key in _CREDENTIAL_ENVS if entry.get(key)}
    if not envs:
        raise AccountsFileError(
            f"{where} names no credential; set api_key_env (or refresh_token_env with client_id_env and client_secret_env)"
        )
    if "api_key" in envs and len(envs) > 1:
        raise AccountsFileError(f"{where} names both a private key and OAuth credentials; keep one")
    if "refresh_token" in envs and not {"client_id", "client_secret"} <= set(envs):
        raise AccountsFileError(f"{where}: refresh_token_env needs client_id_env and client_secret_env")
    dataset = str(entry.get("dataset") or f"klaviyo_{name}")
    if dataset == name:  # DuckDB names the catalog after its file, <account>.duckdb: the two would clash
        raise AccountsFileError(f"{where}: the dataset must differ from the account's name; leave it out (klaviyo_{name})")
    return Account(name=name, envs=envs, base_url=str(entry.get("base_url") or base_url), dataset=dataset)


def destination_for(settings: Settings, account: Account) -> Any:
    """The account's destination: DuckDB gets a file per account (`<duckdb_dir>/<account>.duckdb`),
    others the configured one."""
    if settings.destination == "duckdb":
        directory = Path(settings.duckdb_dir)
        directory.mkdir(parents=True, exist_ok=True)
        # named after the account, not the dataset: DuckDB calls its catalog after the file, and a
        # catalog named like the schema makes dlt's queries ambiguous
        return dlt.destinations.duckdb(str(directory / f"{account.name}.duckdb"))
    return Destination.from_reference(settings.destination)


def pipeline_for(settings: Settings, account: Account) -> dlt.Pipeline:
    """The account's own dlt pipeline and dataset."""
    return dlt.pipeline(  # type: ignore[call-overload]  # pipelines_dir None: dlt's default
        pipeline_name=account.pipeline_name,
        destination=destination_for(settings, account),
        dataset_name=account.dataset,
        pipelines_dir=settings.pipelines_dir,
        progress="log",
    )


def source_for(settings: Settings, account: Account) -> Any:
    """The account's Klaviyo source, credentials read from the environment now."""
    return klaviyo_source(
        base_url=account.base_url, reports=settings.reports, start_date=settings.start_date, chunk_records=settings.chunk_records,
        **account.credentials(),  # type: ignore[arg-type]  # the five credential arguments, all str
    )
