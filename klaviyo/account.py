"""Which Klaviyo account a pipeline's state was read from; refusing to go on with another one.

A pipeline's cursors say how far one account has been read. Continued against another account
(a new key, a directory where the demo ran, a copied working dir), they would silently skip the
new account's records older than the cursors, and its rows would be merged beside the old
account's. So the source keeps the account's identity in its source state (`account`), written
on the first run, and every resource checks it before it reads its first page
(`check_account`). The identity is:

- the account id from `GET /api/accounts` (scope `accounts:read`, tier XS: 1/s, 15/min; the
  row `account` of the revision's report table). A key belongs to one account for its whole
  life, so the id is asked once per process and key;
- for a key without `accounts:read` (Klaviyo's custom keys may lack it), the ids of the
  account's metrics: the first page of `/api/metrics` (scope `metrics:read`, which the events,
  metrics and metric-aggregate reports need anyway; one request). Klaviyo's metric ids are
  object ids unique across accounts, so two accounts share none, while one account keeps most
  of its metrics from one run to the next: two fingerprints with no id in common are two
  accounts;
- never the key or a hash of it: they identify the key, not the account (a rotated key of the
  same account would be refused), and the state is stored in the destination beside the data.

A key that can read neither leaves the check undone, with a warning.
"""

import contextlib
import logging
import threading
from collections.abc import MutableMapping
from typing import Any

import dlt

from .client import KlaviyoApi
from .errors import KlaviyoApiError, KlaviyoConfigError
from .settings import DEFAULT_REVISION, REVISIONS, RevisionTable

STATE_KEY = "account"  # in the source state: {"id": account id, "metric_ids": [sorted ids]}
_PURPOSE = "check which account the pipeline's state belongs to"

logger = logging.getLogger(__name__)

# (what, base URL, key digest) -> the answer; in memory only, like the rate limiter's registry.
_answers: dict[tuple[str, str, str], Any] = {}
_answers_lock = threading.Lock()


def check_account(api: KlaviyoApi) -> None:
    """Compares the account the key belongs to with the one the source state was read from,
    and records it in the source state. Call it first in every resource, in the extracting
    thread (the one that sees dlt's state).

    Raises:
        KlaviyoConfigError: The state was read from another account (one line naming the fix).
    """
    state = dlt.current.source_state()
    stored: dict[str, Any] = dict(state.get(STATE_KEY) or {})
    seen: dict[str, Any] = {}
    account_id = _cached(api, "id", _read_account_id)
    if account_id is not None:
        seen["id"] = account_id
    if account_id is None or (stored.get("metric_ids") and not stored.get("id")):
        metric_ids = _cached(api, "metric_ids", _read_metric_ids)
        if metric_ids:
            seen["metric_ids"] = metric_ids
    problem = _mismatch(stored, seen)
    if problem:
        raise KlaviyoConfigError(f"{problem}; {_fix()}")
    if stored and not _comparable(stored, seen):
        _warn_unchecked(api, seen)
    _remember(state, {**stored, **seen})


def _mismatch(stored: dict[str, Any], seen: dict[str, Any]) -> str | None:
    """What differs between the stored and the seen identity (None: the same account, or
    nothing to compare)."""
    if stored.get("id") and seen.get("id"):
        if stored["id"] != seen["id"]:
            return (
                f"This pipeline's state was read from Klaviyo account {stored['id']}, but the API key"
                f" belongs to account {seen['id']}"
            )
        return None
    if stored.get("metric_ids") and seen.get("metric_ids") and set(stored["metric_ids"]).isdisjoint(seen["metric_ids"]):
        return (
            "This pipeline's state was read from another Klaviyo account than the API key's"
            " (none of its metric ids are the key's account's)"
        )
    return None


def _warn_unchecked(api: KlaviyoApi, seen: dict[str, Any]) -> None:
    """Says once per process and key that this run's account is not compared with the state's."""
    with _answers_lock:
        if _answers.setdefault(("warned", *api.account_key), False):
            return
        _answers[("warned", *api.account_key)] = True
    if seen:  # e.g. the state knows the account id, this key shows only metric ids: kept from now on
        logger.warning("This run's Klaviyo account is not checked against the pipeline's state: the API key lacks accounts:read")
    else:
        logger.warning(
            "The API key has neither the accounts:read nor the metrics:read scope: whether this"
            " pipeline's state was read from the key's account is not checked"
        )


def _comparable(stored: dict[str, Any], seen: dict[str, Any]) -> bool:
    return bool(
        (stored.get("id") and seen.get("id")) or (stored.get("metric_ids") and seen.get("metric_ids"))
    )


def _fix() -> str:
    """The fix, naming the pipeline when one is running."""
    name = "<pipeline>"
    with contextlib.suppress(Exception):  # iterated outside a pipeline: no name to show
        name = dlt.current.pipeline().pipeline_name
    return (
        "its cursors would skip this account's older data. Load each account with its own pipeline"
        " and dataset (another pipeline name or pipelines dir; klaviyo_pipeline.py: --pipelines-dir"
        f" DIR --dataset NAME), or start this one over: dlt pipeline {name} drop --drop-all"
        f" --state-paths {STATE_KEY}"
    )


def _remember(state: MutableMapping[str, Any], identity: dict[str, Any]) -> None:
    if identity and state.get(STATE_KEY) != identity:
        state[STATE_KEY] = identity


def _cached(api: KlaviyoApi, what: str, read: Any) -> Any:
    """`read(api)`, once per process, account key and `what` (a 403 is an answer: None)."""
    key = (what, *api.account_key)
    with _answers_lock:
        if key in _answers:
            return _answers[key]
    answer = read(api)
    with _answers_lock:
        _answers[key] = answer
    return answer


def _table(api: KlaviyoApi) -> RevisionTable:
    """The report table of the client's revision (the default's for a client built with another)."""
    return REVISIONS.get(api.revision) or REVISIONS[DEFAULT_REVISION]


def _read_account_id(api: KlaviyoApi) -> str | None:
    """The account id, or None when the key lacks accounts:read."""
    account = _table(api).account
    try:
        document = _first_page(api, account.path, dict(account.params), account.tier, account.scope)
    except KlaviyoApiError as error:
        if error.status == 403:
            return None
        raise
    accounts = document.get("data") or []
    return str(accounts[0]["id"]) if accounts else None


def _read_metric_ids(api: KlaviyoApi) -> list[str] | None:
    """The sorted ids of the account's first page of metrics, or None when the key lacks
    metrics:read."""
    metrics = _table(api).reports["metrics"]
    try:
        document = _first_page(api, metrics.path, {"fields[metric]": "name"}, metrics.tier, metrics.scope)
    except KlaviyoApiError as error:
        if error.status == 403:
            return None
        raise
    return sorted(str(metric["id"]) for metric in document.get("data") or [])


def _first_page(api: KlaviyoApi, path: str, params: dict[str, Any], tier: str, scope: str) -> dict[str, Any]:
    pages = api.paginate(path, params, tier, scope, _PURPOSE)
    try:
        return next(iter(pages))
    finally:
        pages.close()  # type: ignore[attr-defined]
