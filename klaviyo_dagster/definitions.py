"""Dagster's entry point: `dagster dev -m klaviyo_dagster.definitions` (or a code location).

Reads the accounts file (`$KLAVIYO_DAGSTER_ACCOUNTS`, default `./accounts.toml`; see
`accounts.py`) when Dagster loads the definitions, as Dagster loads every code location, and
builds `defs`: the tables of the source as assets partitioned by account, the job that
materializes one account with a `RetryPolicy`, and the daily schedule that asks for a run of
every account.
"""

from dagster import Definitions

from .jobs import JOB_NAME, build_definitions

defs: Definitions = build_definitions()


def klaviyo_accounts_job():  # type: ignore[no-untyped-def]
    """The job as a module-level function, for `dagster.reconstructable` (multiprocess runs)."""
    return defs.resolve_job_def(JOB_NAME)
