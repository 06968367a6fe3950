"""Klaviyo tables as Dagster assets (dagster-dlt), one partition per account.

One asset per table of the source (`klaviyo/<table>`), built by `dagster_dlt.dlt_assets` from
the source's resources. Accounts are a static partition set read from the accounts file
(`accounts.py`): a run materializes one account — its own dlt pipeline (`klaviyo_<account>`,
so its cursors and recorded account id never meet another account's: the source refuses to
continue one account's state with another's key) into its own dataset (`klaviyo_<account>`;
with DuckDB its own file, since a DuckDB file takes one writer at a time). Runs of different
accounts are independent and run side by side; Klaviyo's rate limits are per account.

A failure Dagster should not retry (a rejected key or token, a missing scope, another account's
state, bad configuration: the same answer every time) ends the step with `Failure(allow_retries=
False)` and its one-line message; anything else (Klaviyo's 5xx, dropped connections after dlt's
own retries) is raised for the job's `RetryPolicy`.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dlt
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
)
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData

from klaviyo import KlaviyoApiError, KlaviyoConfigError, backfill_pending, klaviyo_source
from klaviyo.auth import OAuthToken, PrivateKey
from klaviyo.ratelimit import RateLimiter

from .accounts import Account, AccountsFileError, Settings, pipeline_for, source_for

GROUP = "klaviyo"
# A syntactically valid key used only to list the source's tables when the definitions load;
# nothing is ever sent with it (the source sends no request until a run iterates it).
_LISTING_KEY = "pk_dagster_definitions_only"
# Klaviyo answers that a retry cannot change: 400, 401, 403, 404, 410.
_FINAL_STATUSES = {400, 401, 403, 404, 410}


class KlaviyoTranslator(DagsterDltTranslator):
    """Asset keys `klaviyo/<table>` in the group `klaviyo`, with no upstream assets (the
    source is Klaviyo itself; dagster-dlt's default invents one per table)."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        spec = super().get_asset_spec(data)
        return spec.replace_attributes(key=AssetKey([GROUP, data.resource.name]), deps=[], group_name=GROUP)


def _limiter(account: Account, credentials: Mapping[str, str]) -> RateLimiter:
    """The process's rate limiter of the account's credential (the source's own)."""
    if credentials["api_key"]:
        identity = PrivateKey(credentials["api_key"]).identity
    else:
        identity = OAuthToken(
            credentials["access_token"] or None, credentials["refresh_token"] or None, credentials["client_id"] or None,
            credentials["client_secret"] or None, account.base_url.rstrip("/") + "/oauth/token",
        ).identity
    return RateLimiter.for_identity(account.base_url.rstrip("/"), identity)


def _final(error: BaseException) -> str | None:
    """The one-line message of an error no retry can fix, else None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (KlaviyoConfigError, AccountsFileError)):
            return str(seen)
        if isinstance(seen, KlaviyoApiError) and seen.status in _FINAL_STATUSES:
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _cursors(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """Where each table's cursor stands after the run: {table: {cursor path: last value}}."""
    resources = pipeline.state.get("sources", {}).get("klaviyo", {}).get("resources", {})
    reached: dict[str, Any] = {}
    for name, state in resources.items():
        incremental = state.get("incremental") or {}
        values = {path: str(v.get("last_value")) for path, v in incremental.items() if isinstance(v, dict)}
        if values:
            reached[name] = values
    return reached


def build_assets(settings: Settings) -> Any:
    """The partitioned multi-asset of every table, for the accounts in `settings`."""
    partitions = StaticPartitionsDefinition(list(settings.names))
    # (the OAuth arguments given empty, so that none set in the environment mixes in)
    listing = klaviyo_source(api_key=_LISTING_KEY, access_token="", refresh_token="", client_id="", client_secret="",
                             reports=settings.reports)
    listing_pipeline = dlt.pipeline(pipeline_name="klaviyo_dagster_definitions", destination=settings.destination,
                                    dataset_name="klaviyo", pipelines_dir=settings.pipelines_dir)  # type: ignore[arg-type]

    @dlt_assets(
        dlt_source=listing,
        dlt_pipeline=listing_pipeline,
        name="klaviyo_account",
        partitions_def=partitions,
        dagster_dlt_translator=KlaviyoTranslator(),
    )
    def klaviyo_account(context: AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[MaterializeResult]:
        """Loads one Klaviyo account (the partition) into its own pipeline and dataset."""
        account = settings.accounts[context.partition_key]
        try:
            yield from _materialize(context, dlt, settings, account)
        except Exception as error:
            message = _final(error)
            if message is not None:
                raise Failure(description=f"Klaviyo account {account.name}: {message}", allow_retries=False) from None
            raise

    return klaviyo_account


def _materialize(context: AssetExecutionContext, dlt_resource: DagsterDltResource, settings: Settings,
                 account: Account) -> Iterator[MaterializeResult]:
    credentials = account.credentials()
    limiter = _limiter(account, credentials)
    requests_before, throttled_before = limiter.requests(), limiter.throttled()
    pipeline = pipeline_for(settings, account)
    rows: dict[str, int] = {}
    results: dict[AssetKey, MaterializeResult] = {}
    for chunk in range(1000):  # chunked backfills (`chunk_records`): one run per chunk until done
        source = source_for(settings, account)
        for result in dlt_resource.run(context=context, dlt_source=source, dlt_pipeline=pipeline):
            assert isinstance(result, MaterializeResult) and result.asset_key is not None
            results[result.asset_key] = result
        normalized = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
        for table, count in (normalized.row_counts if normalized else {}).items():
            if not table.startswith("_dlt"):
                rows[table] = rows.get(table, 0) + count
        if not settings.chunk_records or not backfill_pending(pipeline):
            break
        context.log.info(f"Klaviyo account {account.name}: backfill chunk {chunk + 1} loaded, reading the next")
    summary = {
        "account": MetadataValue.text(account.name),
        "pipeline": MetadataValue.text(pipeline.pipeline_name),
        "dataset": MetadataValue.text(pipeline.dataset_name),
        "credential": MetadataValue.text("oauth" if account.oauth else "private key"),
        "rows_by_table": MetadataValue.json(rows),
        "klaviyo_requests": MetadataValue.int(limiter.requests() - requests_before),
        "klaviyo_429s": MetadataValue.int(limiter.throttled() - throttled_before),
    }
    cursors = _cursors(pipeline)
    for key, result in results.items():
        table = key.path[-1]
        metadata: dict[str, Any] = {**(result.metadata or {}), **summary, "rows": MetadataValue.int(rows.get(table, 0))}
        if table in cursors:
            metadata["cursor"] = MetadataValue.json(cursors[table])
        yield MaterializeResult(asset_key=key, metadata=metadata)


def asset_keys(assets: Any) -> list[AssetKey]:
    """The asset keys of the multi-asset (one per table)."""
    return sorted(assets.keys, key=lambda k: k.to_user_string())


def environment_names(settings: Settings) -> list[str]:
    """Every env var the accounts file names (for a deployment's secret list)."""
    return sorted({env for account in settings.accounts.values() for env in account.envs.values()})


__all__ = ["build_assets", "KlaviyoTranslator", "asset_keys", "environment_names"]
