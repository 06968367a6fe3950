"""The job, its retry policy and the daily schedule of every account."""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from dagster import (
    Backoff,
    DefaultScheduleStatus,
    Definitions,
    Jitter,
    RetryPolicy,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster_dlt import DagsterDltResource

from .accounts import Settings, load_settings
from .assets import build_assets

JOB_NAME = "klaviyo_accounts"
SCHEDULE_NAME = "klaviyo_daily"


def build_definitions(path: Path | None = None) -> Definitions:
    """Assets, job and schedule for the accounts of the accounts file at `path`."""
    settings = load_settings(path)
    assets = build_assets(settings)
    job = define_asset_job(
        JOB_NAME,
        selection=[assets],
        partitions_def=assets.partitions_def,
        description="Loads one Klaviyo account (the partition) into its own pipeline and dataset.",
        # transient failures (Klaviyo's 5xx or a dropped network after dlt's own request retries):
        # the step runs again after 1, 2, 4 ... times retry_delay_seconds, +-jitter
        op_retry_policy=RetryPolicy(
            max_retries=settings.max_retries, delay=settings.retry_delay_seconds, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS,
        ),
    )
    return Definitions(
        assets=[assets],
        jobs=[job],
        schedules=[daily_schedule(settings, job)],
        resources={"dlt": DagsterDltResource()},
    )


def daily_schedule(settings: Settings, job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    """One run per account at `settings.schedule`; each run's key names the account and the tick,
    so a tick never starts an account twice. Stopped until turned on in the UI (or
    `dagster schedule start klaviyo_daily`)."""

    @schedule(name=SCHEDULE_NAME, job=job, cron_schedule=settings.schedule, execution_timezone=settings.timezone,
              default_status=DefaultScheduleStatus.STOPPED)
    def klaviyo_daily(context: ScheduleEvaluationContext) -> Iterator[RunRequest]:
        tick = (context.scheduled_execution_time or datetime.now()).strftime("%Y-%m-%dT%H:%M")
        for name in settings.names:
            yield RunRequest(run_key=f"{name}:{tick}", partition_key=name, tags={"klaviyo/account": name})

    return klaviyo_daily
