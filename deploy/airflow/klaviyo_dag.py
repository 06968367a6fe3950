"""Airflow DAG: every Klaviyo account of the accounts file, daily, with dlt's `PipelineTasksGroup`.

Copy this file, the `klaviyo/` and `klaviyo_dagster/` packages (only `klaviyo_dagster/accounts.py`
is used: it is orchestrator-neutral) and the accounts file into the dags folder; point
`KLAVIYO_DAGSTER_ACCOUNTS` at the file and give the workers the env vars it names (docs/deployment.md).

One task group per account (its own dlt pipeline `klaviyo_<account>` and dataset), no dependency
between accounts: Klaviyo's rate limits are per account, so the accounts run side by side as far
as the pool allows. Within an account, one task (`decompose="none"`): the source reads its tables
in one run under one rate limiter per Klaviyo tier, child tables (flow actions, memberships, ...)
follow what their parents read in the same run, and the credentials are read from the
environment only when the task runs (the source is built by a callable at run time, never while
the scheduler parses this file). dlt's `parallel` decompositions would run tables of one account
in separate worker processes, each with its own limiter, together over Klaviyo's per-account
limits; `serialize` (one table group after another) is safe but builds the sources while the
file is parsed, so it needs the secrets there too: set `KLAVIYO_AIRFLOW_DECOMPOSE=serialize` to
have it.
"""

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from dlt.common import pendulum
from dlt.helpers.airflow_helper import PipelineTasksGroup

try:  # Airflow 3
    from airflow.sdk import dag
except ImportError:  # Airflow 2
    from airflow.decorators import dag  # type: ignore[no-redef]

from klaviyo_dagster.accounts import Account, Settings, load_settings, pipeline_for, source_for

DECOMPOSE = os.environ.get("KLAVIYO_AIRFLOW_DECOMPOSE", "none")  # "none" (one task per account) or "serialize"
if DECOMPOSE not in ("none", "serialize"):
    raise ValueError(f"KLAVIYO_AIRFLOW_DECOMPOSE={DECOMPOSE!r}: use none or serialize (parallel would break the per-account rate limits)")


def _source_at_run_time(settings: Settings, account: Account) -> Callable[[], Any]:
    """The account's source, built when the task runs (PipelineTasksGroup calls a callable
    `data` right before `pipeline.run`): the credentials are read there, not at parse time."""
    return lambda: source_for(settings, account)


def build_dag(settings: Settings) -> Any:
    """The DAG of every account in `settings`."""

    @dag(
        dag_id="klaviyo_accounts",
        schedule=settings.schedule,
        start_date=pendulum.datetime(2024, 1, 1, tz=settings.timezone),
        catchup=False,
        max_active_runs=1,
        default_args={
            "owner": "klaviyo",
            # Airflow's task retries for transient failures; a rejected key fails the same way each time
            "retries": settings.max_retries,
            "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
            "retry_exponential_backoff": True,
            "execution_timeout": timedelta(hours=20),
        },
        tags=["klaviyo", "dlt"],
    )
    def klaviyo_accounts() -> None:
        for account in settings.accounts.values():
            tasks = PipelineTasksGroup(account.pipeline_name, use_data_folder=False, wipe_local_data=True)
            pipeline = pipeline_for(settings, account)
            data: Any = source_for(settings, account) if DECOMPOSE == "serialize" else _source_at_run_time(settings, account)
            tasks.add_run(pipeline, data, decompose=DECOMPOSE, trigger_rule="all_done")  # type: ignore[arg-type]

    return klaviyo_accounts()


# Airflow finds DAGs as module globals; without an accounts file the module still imports
dag_object = build_dag(load_settings()) if os.path.exists(os.environ.get("KLAVIYO_DAGSTER_ACCOUNTS", "accounts.toml")) else None
