"""The reports of the Klaviyo source as data: one row per report, read by the code.

Adding a report is adding a `Report` row: to `REPORTS` (JSON:API collections, windowed by
their cursor), `CHILD_REPORTS` (tables that belong to other reports) or `OTHER_REPORTS` (the
legacy v1 list and the metric-aggregate queries); the HTTP client, the window planner, the
rate limiter and the error map serve every report alike. Those rows are revision 2023-10-15's;
each API revision's table (`RevisionTable`: its reports, children, others and tiers) is in
`REVISIONS` at the end, the later ones derived from them with `replace()`; a run reads the
table of its revision (`report_table(revision)`, default `DEFAULT_REVISION`).

All datetimes are timezone-aware UTC. Durations are `timedelta`s.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Literal

from .converters import campaign_message_from_definition, flow_action_from_definition, flow_message_from_definition

DEFAULT_BASE_URL = "https://a.klaviyo.com"
DEFAULT_REVISION = "2026-07-15"  # the table of each revision: REVISIONS, at the end
SOURCE_NAME = "klaviyo"

# Cursor safety: requests never ask for records dated later than the run's start minus this
# margin, so a record dated in the future (Klaviyo allows it) cannot push a stored cursor
# past "now"; it is loaded by a later run once its time has come.
CURSOR_SAFETY_MARGIN = timedelta(seconds=5)

# Events reach Klaviyo's listing late: it is eventually consistent, and Create Event accepts a
# past `time`. A peer connector (Estuary, in production) first held its cursor 110 min behind
# now, then re-read 4 days, then 7 days after missing events that appeared more than 4 days
# late; Klaviyo's attribution window is 5 days. Each incremental run of `events` therefore
# re-reads this much before its cursor, merged on `id` (cost: the events of these 7 days, at
# 1000 a request under 2026-07-15, 200 under 2023-10-15, per run; `lookback_hours` overrides it
# for every report).
EVENTS_LOOKBACK = timedelta(days=7)

# Klaviyo filters only on whole datetimes; where an endpoint offers only `greater-than` for the
# lower bound, the request asks for `greater-than(start - GT_WIDEN)` and rows before `start`
# are dropped client-side, so the lower bound is inclusive everywhere.
GT_WIDEN = timedelta(seconds=1)


@dataclass(frozen=True)
class Tier:
    """A Klaviyo rate-limit tier: requests allowed per 1-s burst window and per 60-s window."""

    burst_per_second: int
    steady_per_minute: int


# From the spec's `x-klaviyo-ratelimit` (REFERENCE.md "Rate limits").
TIERS: dict[str, Tier] = {
    "XS": Tier(1, 15),
    "S": Tier(3, 60),
    "M": Tier(10, 150),
    "L": Tier(75, 700),
    "XL": Tier(350, 3500),
    # The reporting API (revision 2024-02-15 on; `PERFORMANCE_REPORTS`), which also allows
    # only `REPORTING_DAILY_LIMIT` requests a day (kept by `quota.py`, across runs).
    "REPORTING": Tier(1, 2),
}

RowFormat = Literal["dict", "arrow"]
# How a report's pages are requested (see `Report.pagination`).
Pagination = Literal["jsonapi", "v1", "post"]
# dlt's table hint that a load's rows are unique on the primary key (no staging dedup).
STAGE_DEDUPLICATED = "x-stage-data-deduplicated"
# The source's table hint for the reports whose records never change (`Report.immutable`): a
# load holds each key once. The command's DuckDB destination loads such tables file by file
# (`klaviyo_duckdb.py`); unlike STAGE_DEDUPLICATED it stays when `recovery.py` repairs an
# interrupted package, since those file loads are idempotent and the package must finish as it began.
IMMUTABLE = "x-klaviyo-immutable"
# Arrow pages are handed to dlt in tables of at least this many rows (many pages each): dlt's
# extract costs per item as well as per row.
ARROW_BATCH_ROWS = 5000
# Records the parallel readers may hold converted and queued for dlt, beyond the page each
# worker converts: 16 pages of 200 (the 2023-10-15 events path at 16 workers), 3 of 1000 events.
# Memory, not speed: the consumer (dlt) is the bound, and a worker blocked on a full queue holds
# its converted page as well (6 pages of 1000 queued and 10 workers: 296-307 MB at 1M events).
QUEUED_RECORDS = 3200
# Records the workers may be reading and converting at once: the `workers` option, but at most
# 8 workers on 1000-record pages (2026-07-15 events: ~2 MB each, ~4 MB per worker while it
# converts one; 16 of them peaked at 338 MB, 10 at ~300 MB; 8 with 3 pages queued at 288-292 MB,
# at ~0.9 of the speed of 10: bench/README.md, "Issue #14").
IN_FLIGHT_RECORDS = 8_000
# Records per page where the source sends no `page[size]` (the API's default: events in 2023-10-15).
DEFAULT_PAGE_RECORDS = 200
# A window is split for idle workers only into parts expected to hold this many pages or more
# (each part ends on a partial page: at most ~1/8 of a part's requests are spent on that).
SPLIT_MIN_PAGES = 8


@dataclass(frozen=True)
class OptionalFields:
    """Attributes a report reads only when the user asks for them (Klaviyo's
    `additional-fields[...]`), e.g. profiles' predictive analytics.

    Attributes:
        params: Query values appended (comma-separated) to the report's `params`.
        column_types: dlt data types of the (flattened) columns they add.
        tier: Rate-limit tier key the endpoint is served at when they are asked for; None
            keeps the report's.
    """

    params: Mapping[str, str]
    column_types: Mapping[str, str] = field(default_factory=dict)
    tier: str | None = None


@dataclass(frozen=True)
class Report:
    """How one report is read from Klaviyo and loaded into its table.

    Attributes:
        name: Resource and table name.
        path: API path, relative to the base URL (JSON:API collection).
        scope: API key scope the endpoint needs (named in 403 errors); "" where the endpoint
            has no scopes (the legacy v1 API).
        tier: Rate-limit tier key in `TIERS`.
        pagination: How pages are requested: "jsonapi" GETs a JSON:API collection and follows
            `links.next` (windowed by the cursor); "v1" GETs a legacy v1 `$list` page by page
            (`page`/`count`, the key in the query string); "post" POSTs a query body per
            window of the user's queries and follows the answer's page cursor.
        primary_key: Columns the table merges on.
        cursor: Attribute the incremental load follows; None means a full read, merged on `id`.
        cursor_ops: Filter operators the API allows on the cursor (from the spec); bounds the
            API cannot express are applied client-side, so every window is exact.
        sort: `sort` query value, None when the endpoint has no sort.
        page_size: `page[size]` sent; None where the endpoint's page size is fixed.
        backfill: Default first-run window back from now; None means all time.
        lookback: How far before its cursor each incremental run starts reading again, for
            records that reach the listing late (re-read rows are merged, not duplicated);
            `lookback_hours` overrides it for every report; custom dates have none.
        filters: Conditions always sent (e.g. the campaigns channel).
        variants: One pass per extra condition (e.g. archived false and true); "" = none.
        params: Extra query parameters (include, additional-fields, ...).
        timestamps: Attributes typed as timestamps.
        json_columns: Attributes kept as one JSON column instead of being flattened.
        to_one: Relationship name -> column holding the related id.
        to_many: Relationship name -> JSON column holding the list of related ids.
        min_split: Smallest window a range is split into for parallel reads (windows adapt to
            the data's density above it; see `extract.py`); `min_window_minutes` overrides it.
        row_format: "arrow" for the high-volume reports (pages become Arrow tables), "dict"
            for the rest.
        column_types: dlt data types of (flattened) attributes whose inference would be
            wrong or unstable; Arrow pages are cast to them, and they are the columns' hints.
        flat_column_types: Further column types that apply once free-form properties are
            flattened into columns (`flatten_properties`), e.g. money in events' properties.
        predictive: The predictive analytics the report reads with `predictive_analytics`
            (fields, their column types and the endpoint's tier then); None: it has none.
        dlt_ids: Arrow pages carry dlt's `_dlt_id` row key (random, as dlt gives root rows):
            tables first loaded from row dicts have it as a NOT NULL column.
        immutable: Records never change once created (events), so none moves between
            windows during a read and one run meets each id once: its loads are declared
            deduplicated to dlt (`x-stage-data-deduplicated`), which skips the staging
            dedup of the merge (5 of the 8 s of a 1M-event DuckDB load). Mutable reports keep
            it: a record updated mid-read can come twice (old and new `updated`). Ids loaded
            by an earlier run (the lookback reads them again) are still replaced by the merge:
            the hint skips only the dedup within the run's own rows.
        id_scan: How to list every id of the report cheaply, for delete detection
            (`detect_deletes`) and to find every list and segment for the membership tables:
            the query parameters sent instead of `params` (one short attribute per record as a
            sparse fieldset, sorted by id where the endpoint can, so that a record updated
            during the scan keeps its place); empty: the report has no id scan.
        default: Whether the report is in the default selection.
        retired: The one-line message that replaces Klaviyo's 410 Gone for an endpoint
            Klaviyo retired (naming what to load instead); None for live endpoints.
        columns_from: How a record's `attributes` become the row's columns, where a revision
            moved them (a function of `converters.py`); None: the attributes as they are.
    """

    name: str
    path: str
    scope: str
    tier: str
    pagination: Pagination = "jsonapi"
    primary_key: tuple[str, ...] = ("id",)
    cursor: str | None = None
    cursor_ops: tuple[str, ...] = ()
    sort: str | None = None
    page_size: int | None = None
    backfill: timedelta | None = None
    lookback: timedelta = timedelta(0)
    filters: tuple[str, ...] = ()
    variants: tuple[str, ...] = ("",)
    params: Mapping[str, str] = field(default_factory=dict)
    timestamps: tuple[str, ...] = ("created", "updated")
    json_columns: tuple[str, ...] = ()
    to_one: Mapping[str, str] = field(default_factory=dict)
    to_many: Mapping[str, str] = field(default_factory=dict)
    min_split: timedelta = timedelta(days=1)
    row_format: RowFormat = "dict"
    column_types: Mapping[str, str] = field(default_factory=dict)
    flat_column_types: Mapping[str, str] = field(default_factory=dict)
    predictive: OptionalFields | None = None
    dlt_ids: bool = False
    immutable: bool = False
    id_scan: Mapping[str, str] = field(default_factory=dict)
    default: bool = True
    retired: str | None = None
    columns_from: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None


_ALL_COMPARISONS = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")
_ARCHIVED = ("equals(archived,false)", "equals(archived,true)")
_CAMPAIGN_TIMESTAMPS = ("created_at", "updated_at", "scheduled_at", "send_time")
_CAMPAIGN_JSON = ("audiences", "tracking_options", "send_strategy")
_CAMPAIGN_RELATIONS = {"campaign-messages": "campaign_message_ids", "tags": "tag_ids"}
# Messages and tags come in `included[]` of every campaign page (tables campaign_messages and
# campaign_tags, see CHILD_REPORTS): no request per campaign.
_CAMPAIGN_INCLUDE = {"include": "campaign-messages,tags"}
_TWO_YEARS = timedelta(days=730)
# Profiles' consent timestamps, flattened as dlt names them.
_SUBSCRIPTION_TIMESTAMPS = tuple(
    f"subscriptions__{channel}__marketing__{name}"
    for channel in ("email", "sms") for name in ("consent_timestamp", "last_updated")
)
# `additional-fields[profile]=predictive_analytics`, flattened; with them profiles drop from
# tier L to M (Klaviyo's docs; REFERENCE.md).
_PREDICTIVE_ANALYTICS = OptionalFields(
    params={"additional-fields[profile]": "predictive_analytics"},
    column_types={
        "predictive_analytics__historic_clv": "decimal",
        "predictive_analytics__predicted_clv": "decimal",
        "predictive_analytics__total_clv": "decimal",
        "predictive_analytics__average_order_value": "decimal",
        "predictive_analytics__historic_number_of_orders": "bigint",
        "predictive_analytics__predicted_number_of_orders": "double",
        "predictive_analytics__average_days_between_orders": "double",
        "predictive_analytics__churn_probability": "double",
        "predictive_analytics__expected_date_of_next_order": "timestamp",
    },
    tier="M",
)
# Klaviyo's reserved money properties once `event_properties` is flattened
# (`$value` normalizes to `_value`; `Price` is set on product events).
_FLAT_EVENT_MONEY = {
    "event_properties___value": "decimal",
    "event_properties__price": "decimal",
}
# Profiles' suppression lists: JSON columns (arrays of {reason, timestamp[, list_id]}).
SUPPRESSION_LISTS = (
    "subscriptions__email__marketing__suppression",
    "subscriptions__email__marketing__list_suppressions",
)


def _campaigns(channel: str) -> Report:
    """The campaigns of one channel: Klaviyo requires the channel filter on every request."""
    return Report(
        name=f"campaigns_{channel}",
        path="/api/campaigns/",
        scope="campaigns:read",
        tier="M",
        cursor="updated_at",
        cursor_ops=_ALL_COMPARISONS,
        sort="updated_at",
        filters=(f"equals(messages.channel,'{channel}')",),
        variants=_ARCHIVED,
        params=_CAMPAIGN_INCLUDE,
        timestamps=_CAMPAIGN_TIMESTAMPS,
        json_columns=_CAMPAIGN_JSON,
        to_many=_CAMPAIGN_RELATIONS,
        id_scan={"fields[campaign]": "created_at", "sort": "id"},
    )


REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        *(_campaigns(channel) for channel in ("email", "sms")),
        Report(
            name="templates",
            path="/api/templates/",
            scope="templates:read",
            tier="M",
            cursor="updated",
            cursor_ops=_ALL_COMPARISONS,
            sort="updated",
            backfill=_TWO_YEARS,
            id_scan={"fields[template]": "created", "sort": "id"},
        ),
        Report(
            name="profiles",
            path="/api/profiles/",
            scope="profiles:read",
            tier="L",
            cursor="updated",
            cursor_ops=("greater-than", "less-than"),
            sort="updated",
            page_size=100,
            backfill=_TWO_YEARS,
            params={"additional-fields[profile]": "subscriptions"},
            timestamps=("created", "updated", "last_event_date", *_SUBSCRIPTION_TIMESTAMPS),
            json_columns=("properties", *SUPPRESSION_LISTS),
            column_types={"location__latitude": "double", "location__longitude": "double"},
            predictive=_PREDICTIVE_ANALYTICS,
            min_split=timedelta(hours=1),
            row_format="arrow",
            dlt_ids=True,
            id_scan={"fields[profile]": "created", "sort": "id"},
        ),
        Report(
            name="events",
            path="/api/events/",
            scope="events:read",
            tier="XL",
            cursor="datetime",
            cursor_ops=_ALL_COMPARISONS,
            sort="datetime",
            backfill=timedelta(days=30),
            lookback=EVENTS_LOOKBACK,
            timestamps=("datetime",),
            json_columns=("event_properties",),
            flat_column_types=_FLAT_EVENT_MONEY,
            to_one={"metric": "metric_id", "profile": "profile_id"},
            min_split=timedelta(minutes=5),
            row_format="arrow",
            immutable=True,
        ),
        Report(
            name="metrics",
            path="/api/metrics/",
            scope="metrics:read",
            tier="M",
            json_columns=("integration",),
            id_scan={"fields[metric]": "created"},
        ),
        Report(
            name="segments",
            path="/api/segments/",
            scope="segments:read",
            tier="L",
            cursor="updated",
            cursor_ops=("greater-than",),
            backfill=_TWO_YEARS,
            id_scan={"fields[segment]": "created"},
        ),
        Report(
            name="lists",
            path="/api/lists/",
            scope="list:read",
            tier="L",
            cursor="updated",
            cursor_ops=("greater-than",),
            backfill=_TWO_YEARS,
            id_scan={"fields[list]": "created"},
        ),
        Report(
            name="flows",
            path="/api/flows/",
            scope="flows:read",
            tier="S",
            cursor="updated",
            cursor_ops=_ALL_COMPARISONS,
            sort="updated",
            page_size=50,
            variants=_ARCHIVED,
            to_many={"flow-actions": "flow_action_ids", "tags": "tag_ids"},
            id_scan={"fields[flow]": "created", "sort": "id"},
        ),
        Report(
            name="tags",
            path="/api/tags/",
            scope="tags:read",
            tier="S",
            timestamps=(),
            to_one={"tag-group": "tag_group_id"},
        ),
    )
}

# Reports not read as windowed JSON:API collections (`pagination` other than "jsonapi"): no
# cursor, and custom dates do not apply to them (the aggregate queries carry their own range).
OTHER_REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        # The legacy v1 campaigns list (retired by Klaviyo on 2024-06-30; it answers 410 since).
        Report(
            name="campaigns_v1",
            path="/api/v1/campaigns",
            scope="",
            tier="M",
            pagination="v1",
            page_size=100,
            timestamps=("created", "updated", "sent_at", "send_time"),
            default=False,
            retired=(
                "Klaviyo retired the v1 API on 2024-06-30 and answers 410 Gone for /api/v1/campaigns; "
                "load the reports campaigns_email and campaigns_sms instead"
            ),
        ),
        # Query Metric Aggregates: the user's queries (`aggregates.py`), long rows.
        Report(
            name="metric_aggregates",
            path="/api/metric-aggregates/",
            scope="metrics:read",
            tier="S",
            pagination="post",
            primary_key=("query_name", "metric_id", "date", "dimension_key", "measurement"),
            timestamps=("date",),
            column_types={"value": "double"},
        ),
    )
}

AGGREGATE_MEASUREMENTS = ("count", "sum_value", "unique")
AGGREGATE_INTERVALS = ("hour", "day", "week", "month")
AGGREGATE_DIMENSIONS = (
    "$attributed_channel", "$attributed_flow", "$attributed_message", "$attributed_variation",
    "$campaign_channel", "$flow", "$flow_channel", "$message", "$message_send_cohort",
    "$variation", "$variation_send_cohort", "Bounce Type", "Campaign Name", "Client Canonical",
    "Client Name", "Client Type", "Email Domain", "Failure Source", "Failure Type",
    "From Number", "From Phone Region", "List", "Message Name", "Message Type", "Method",
    "Subject", "To Number", "To Phone Region", "URL", "form_id",
)  # fmt: skip
AGGREGATE_MAX_WINDOW_DAYS = 365
AGGREGATE_MAX_HISTORY_DAYS = 5 * 365  # Klaviyo serves aggregate ranges at most 5 years back

ChildSource = Literal["include", "parent", "members", "suppressed"]


@dataclass(frozen=True)
class ChildReport:
    """A table that belongs to other reports, read through the same client, limiter and reader.

    Attributes:
        report: How its pages are requested and turned into rows (`report.name` is the table;
            `{id}` in `report.path` stands for the parent's id).
        source: Where its rows come from:
            "include": `included[]` of the parents' own pages (their requests carry
                `include=<include>`); no request of its own.
            "parent": one collection per parent row read in this run; parents the
                incremental run skips (unchanged) are not re-read.
            "members": one collection per parent id, every run (all ids are listed cheaply,
                see `Report.id_scan`), each from its own cursor kept in the resource state.
            "suppressed": the parent collection filtered by `report.filters`, one row per record
                with the cursor's attribute as a top-level column.
        parents: Reports the rows belong to. For "include" and "parent" selecting the child
            selects them too (the child follows their incremental runs); for "members" and
            "suppressed" they are only listed or filtered.
        parent_key: Column holding the parent's id ("" for "suppressed").
        include: The relationship (and `include` value) of the parents, for "include".
        id_column: Column that receives the child's own `id`.
        skip: Parent attribute -> values of parents that have no children (no request).
        default: Whether the table is in the default selection.
    """

    report: Report
    source: ChildSource
    parents: tuple[str, ...]
    parent_key: str
    include: str | None = None
    id_column: str = "id"
    skip: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default: bool = True

    @property
    def name(self) -> str:
        """Table (and report) name."""
        return self.report.name

    @property
    def primary_key(self) -> tuple[str, ...]:
        """Columns the table merges on (its report's)."""
        return self.report.primary_key


def _members(name: str, path: str, scope: str, group_key: str) -> Report:
    """A group's members, 100 a page (the most the endpoint gives with `joined_group_at`), with
    only `joined_group_at` (sparse fieldset), filtered and sorted on it; merged on (group id,
    profile id)."""
    return Report(
        name=name, path=path, scope=scope, tier="L", primary_key=(group_key, "profile_id"),
        cursor="joined_group_at",
        cursor_ops=_ALL_COMPARISONS, sort="joined_group_at", page_size=100,
        params={"fields[profile]": "joined_group_at"}, timestamps=("joined_group_at",),
    )


_SUPPRESSION = "subscriptions.email.marketing.suppression.timestamp"
_SILENT_ACTIONS = (
    "TIME_DELAY", "CONDITIONAL_SPLIT", "BOOLEAN_BRANCH", "TRIGGER_BRANCH", "UPDATE_CUSTOMER"
)

CHILD_REPORTS: dict[str, ChildReport] = {
    c.name: c
    for c in (
        ChildReport(
            report=Report(
                name="campaign_messages", path="/api/campaigns/", scope="campaigns:read", tier="M",
                timestamps=("created_at", "updated_at"), json_columns=("send_times",),
                to_one={"template": "template_id"},
            ),
            source="include", parents=("campaigns_email", "campaigns_sms"),
            parent_key="campaign_id", include="campaign-messages",
        ),
        ChildReport(
            report=Report(
                name="campaign_tags", path="/api/campaigns/", scope="campaigns:read", tier="M",
                primary_key=("campaign_id", "tag_id"), timestamps=(),
            ),
            source="include", parents=("campaigns_email", "campaigns_sms"),
            parent_key="campaign_id", include="tags", id_column="tag_id",
        ),
        ChildReport(
            report=Report(
                name="flow_actions", path="/api/flows/{id}/flow-actions/", scope="flows:read",
                tier="S", page_size=50, json_columns=("settings", "tracking_options"),
                to_many={"flow-messages": "flow_message_ids"},
            ),
            source="parent", parents=("flows",), parent_key="flow_id",
        ),
        ChildReport(
            # No `page[cursor]` in the spec: one page of up to 100 messages per action.
            report=Report(
                name="flow_messages", path="/api/flow-actions/{id}/flow-messages/",
                scope="flows:read", tier="S", page_size=100, to_one={"template": "template_id"},
            ),
            source="parent", parents=("flow_actions",), parent_key="flow_action_id",
            # Actions that send nothing (UNCONFIRMED names: the spec has no action_type enum).
            skip={"action_type": _SILENT_ACTIONS},
        ),
        ChildReport(
            report=_members(
                "list_profiles", "/api/lists/{id}/profiles/", "list:read and profiles:read", "list_id"
            ),
            source="members", parents=("lists",), parent_key="list_id", id_column="profile_id",
        ),
        ChildReport(
            report=_members(
                "segment_profiles", "/api/segments/{id}/profiles/",
                "segments:read and profiles:read", "segment_id",
            ),
            source="members", parents=("segments",), parent_key="segment_id", id_column="profile_id",
            default=False,
        ),
        ChildReport(
            report=Report(
                name="global_exclusions", path="/api/profiles/", scope="profiles:read", tier="L",
                cursor=_SUPPRESSION, cursor_ops=_ALL_COMPARISONS, sort=_SUPPRESSION, page_size=100,
                filters=(f"greater-than({_SUPPRESSION},1970-01-01T00:00:00Z)",),
                params={
                    "additional-fields[profile]": "subscriptions",
                    "fields[profile]": "email,phone_number,external_id,created,updated,"
                    "subscriptions.email.marketing.suppression",
                },
                id_scan={"fields[profile]": "created", "sort": "id"},
            ),
            source="suppressed", parents=("profiles",), parent_key="",
        ),
    )
}  # fmt: skip



# The custom-dates format of `start_date`/`end_date` (e.g. 2024-01-02T23:20:49Z).
CUSTOM_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# Which account a key belongs to (`account.py`): its first request of every run, tier XS.
ACCOUNT = Report(name="accounts", path="/api/accounts/", scope="accounts:read", tier="XS", params={"fields[account]": "public_api_key"})


# ------------------------------------------------------------------------------------------
# Klaviyo's reporting API: the numbers its dashboards show (campaign, flow, form and segment
# performance), one table per report (`performance.py` reads them; README "Performance
# reports"). Every row is checked against the spec of 2026-07-15 by
# tests/source/test_performance_reports.py.
# ------------------------------------------------------------------------------------------

ReportFamily = Literal["campaign", "flow", "form", "segment"]
# What one row of a reporting table covers: a day, or a calendar month (values reports of
# families that also have a daily series: the month adds uniques and rates over the month).
ReportPeriod = Literal["day", "month"]

# Requests a day the reporting API allows an account (the spec's `x-klaviyo-ratelimit` daily
# 225/d; UNCONFIRMED whether Klaviyo counts it per endpoint or per account: the source counts
# every reporting request of the account against one quota, which is safe either way).
REPORTING_DAILY_LIMIT = 225
# Longest timeframe of a daily series (the spec: 60 days); values reports: one year.
SERIES_DAILY_MAX_DAYS = 60

_MESSAGE_STATISTICS = (
    "average_order_value", "bounce_rate", "bounced", "bounced_or_failed", "bounced_or_failed_rate",
    "click_rate", "click_to_open_rate", "clicks", "clicks_unique", "conversion_rate",
    "conversion_uniques", "conversion_value", "conversions", "delivered", "delivery_rate", "failed",
    "failed_rate", "message_segment_count_sum", "open_rate", "opens", "opens_unique", "recipients",
    "revenue_per_recipient", "spam_complaint_rate", "spam_complaints",
    "text_message_credit_usage_amount", "text_message_roi", "text_message_spend", "unsubscribe_rate",
    "unsubscribe_uniques", "unsubscribes",
)  # fmt: skip
_FORM_STATISTICS = (
    "closed_form", "closed_form_uniques", "qualified_form", "qualified_form_uniques", "submit_rate",
    "submits", "submitted_form_step", "submitted_form_step_uniques", "viewed_form", "viewed_form_step",
    "viewed_form_step_uniques", "viewed_form_uniques",
)  # fmt: skip
_SEGMENT_STATISTICS = ("members_added", "members_removed", "net_members_changed", "total_members")
# Money: decimal, as everywhere in the source; rates and ratios: double; the rest are counts.
_MONEY_STATISTICS = ("average_order_value", "conversion_value", "revenue_per_recipient", "text_message_spend")
_RATIO_STATISTICS = ("text_message_roi", "text_message_credit_usage_amount")


def statistic_type(name: str) -> str:
    """The dlt data type of a statistic's column: decimal (money), double (rates, ratios,
    credits) or bigint (counts)."""
    if name in _MONEY_STATISTICS:
        return "decimal"
    if name.endswith("_rate") or name in _RATIO_STATISTICS:
        return "double"
    return "bigint"


@dataclass(frozen=True)
class PerformanceReport:
    """One table of Klaviyo's reporting API: what is asked, how it is windowed, what a row is.

    Rows hold one day (or one calendar month) of one grouping, for one conversion metric where
    the report has one: windows are whole days (Klaviyo's timeframes cover both end days; days
    are the account's, UTC in the emulator), never overlapping, so counts add up over any rows.

    Attributes:
        name: Table name.
        path: The `POST` endpoint.
        body_type: JSON:API `type` of the request body.
        scope: API key scope the endpoint needs.
        family: "campaign", "flow", "form" or "segment".
        statistics: Every statistic the spec allows (what is asked unless `report_statistics`
            says otherwise); one column each.
        group_by: Groupings sent, the finest the spec allows whose values split the report
            without counting an event twice (tags and audiences would: a campaign has several);
            `()` where the endpoint takes none (segments: one result per segment).
        groupings: Columns read from each result's `groupings`: the row's key with the date (and
            `conversion_metric_id`); a grouping Klaviyo leaves empty is "" in them.
        interval: Series interval sent ("daily"); None for a values report.
        period: What one row of a values report covers ("day" or "month"); series rows are days.
        conversion_metric: Whether the body needs `conversion_metric_id` (campaigns, flows).
        paged: Whether answers come in pages (`links.next` with a `page_cursor`).
        tier: Rate-limit tier key in `TIERS` (plus `REPORTING_DAILY_LIMIT` a day).
        data_since: First day Klaviyo has data for; earlier days are never asked.

    The tables are opt-in (each costs requests of the daily quota) and belong to the revisions
    whose `RevisionTable.performance` holds them (Klaviyo serves campaign and flow reports
    since 2024-02-15, form and segment reports since 2024-10-15).
    """

    name: str
    path: str
    body_type: str
    scope: str
    family: ReportFamily
    statistics: tuple[str, ...]
    group_by: tuple[str, ...]
    groupings: tuple[str, ...]
    interval: str | None = None
    period: ReportPeriod = "day"
    conversion_metric: bool = False
    paged: bool = False
    tier: str = "REPORTING"
    data_since: date | None = None

    @property
    def window_days(self) -> int:
        """Most days one request covers: a daily series 60, a day values report 1 (months:
        `report_days.py` cuts them)."""
        return SERIES_DAILY_MAX_DAYS if self.interval == "daily" else 1

    @property
    def primary_key(self) -> tuple[str, ...]:
        """The row's key: its first day, its groupings and the conversion metric."""
        return ("date", *self.groupings) + (("conversion_metric_id",) if self.conversion_metric else ())

    @property
    def merge_key(self) -> tuple[str, ...]:
        """What a re-read replaces: every row of the days (and metric) it read."""
        return ("date", "conversion_metric_id") if self.conversion_metric else ("date",)


_MESSAGE_GROUPS = ("send_channel", "variation", "text_message_format")


def _message_report(name: str, family: ReportFamily, kind: str, interval: str | None = None, period: ReportPeriod = "day") -> PerformanceReport:
    groupings = (f"{family}_id", f"{family}_message_id", *_MESSAGE_GROUPS)
    return PerformanceReport(
        name=name, path=f"/api/{family}-{kind}-reports", body_type=f"{family}-{kind}-report",
        scope=f"{family}s:read", family=family, statistics=_MESSAGE_STATISTICS, group_by=groupings,
        groupings=groupings, interval=interval, period=period, conversion_metric=True, paged=True,
    )


def _form_report(name: str, kind: str, interval: str | None = None, period: ReportPeriod = "day") -> PerformanceReport:
    return PerformanceReport(
        name=name, path=f"/api/form-{kind}-reports", body_type=f"form-{kind}-report", scope="forms:read",
        family="form", statistics=_FORM_STATISTICS, group_by=("form_id", "form_version_id"),
        groupings=("form_id", "form_version_id"), interval=interval, period=period,
    )


PERFORMANCE_REPORTS: dict[str, PerformanceReport] = {
    r.name: r
    for r in (
        # Campaigns have no series endpoint: one values request per day.
        _message_report("campaign_values", "campaign", "values"),
        # Daily numbers of flows come from the series (60 days a request); the values table holds
        # calendar months (uniques and rates over the month, which daily rows cannot give).
        _message_report("flow_values", "flow", "values", period="month"),
        _message_report("flow_series", "flow", "series", interval="daily"),
        _form_report("form_values", "values", period="month"),
        _form_report("form_series", "series", interval="daily"),
        # Members added, removed, net and total per day (no segment_values table: its numbers
        # over a day or a month are those of these rows).
        PerformanceReport(
            name="segment_series", path="/api/segment-series-reports", body_type="segment-series-report",
            scope="segments:read", family="segment", statistics=_SEGMENT_STATISTICS, group_by=(),
            groupings=("segment_id",), interval="daily", data_since=date(2023, 6, 1),
        ),
    )
}  # fmt: skip


# ------------------------------------------------------------------------------------------
# Revisions. The rows above are those of revision 2023-10-15 (the revision the source was first
# specified for); every other revision's table is derived from them with `replace()` plus its
# own rows, so adding a revision is adding a section here. `report_table(revision)` gives the
# table the source reads for a run; every row is checked against the spec of its revision by
# tests/source/test_report_table.py.
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevisionTable:
    """Everything the source reads from Klaviyo under one API revision.

    Attributes:
        revision: The `revision` header sent, `YYYY-MM-DD`.
        reports: The JSON:API collection reports (one table each), by name.
        children: The child tables, by name.
        others: The reports not read as windowed collections (v1 list, metric aggregates).
        account: The request that says which account the key belongs to (`account.py`).
        tiers: Rate-limit tiers of this revision (tier key -> limits).
        retired: About when Klaviyo retired the revision (`YYYY-MM-DD`), None while supported;
            Klaviyo then answers it as its oldest revision still supported.
        supported_until: About when Klaviyo retires it (two years after its release).
        performance: The tables of Klaviyo's reporting API (`performance.py`), opt-in and not
            among `names` (the demo and `--reports` listings leave them out: each costs
            requests of a 225-a-day quota); empty where the revision has no reporting API.
    """

    revision: str
    reports: Mapping[str, Report]
    children: Mapping[str, ChildReport]
    others: Mapping[str, Report]
    account: Report
    tiers: Mapping[str, Tier]
    retired: str | None = None
    supported_until: str | None = None
    performance: Mapping[str, PerformanceReport] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """Every report and child table name of this revision."""
        return tuple(self.reports) + tuple(self.children) + tuple(self.others)

    @property
    def default_reports(self) -> tuple[str, ...]:
        """The default selection under this revision."""
        return (
            tuple(name for name, r in self.reports.items() if r.default)
            + tuple(name for name, c in self.children.items() if c.default)
            + tuple(name for name, r in self.others.items() if r.default)
        )

    def row(self, name: str) -> Report:
        """The row of any report or child table by its name (KeyError for an unknown name)."""
        if name in self.children:
            return self.children[name].report
        return self.reports[name] if name in self.reports else self.others[name]


REVISION_2023 = RevisionTable(
    revision="2023-10-15", reports=REPORTS, children=CHILD_REPORTS, others=OTHER_REPORTS, account=ACCOUNT,
    tiers=TIERS, retired="2025-10-15", supported_until="2025-10-15",
)


# -- 2026-07-15 (openapi-2026-07-15.json; REVISIONS.md lists what changed since 2023-10-15) ----
# Its spec writes paths without the trailing slash (Klaviyo routes both forms).

def _in_2026(row: Report, **changes: Any) -> Report:
    """A 2023-10-15 row as revision 2026-07-15 reads it: the spec's path, plus `changes`."""
    return replace(row, path=row.path.rstrip("/"), **changes)


def _child_in_2026(child: ChildReport, report: Mapping[str, Any] | None = None, **changes: Any) -> ChildReport:
    """A 2023-10-15 child table as revision 2026-07-15 reads it: its report `_in_2026` with
    the `report` changes, plus `changes` of the child."""
    return replace(child, report=_in_2026(child.report, **(report or {})), **changes)


# Tier L: 700/min -> 750/min (2026-01-15).
TIERS_2026: dict[str, Tier] = {**TIERS, "L": Tier(75, 750)}
# Every date-time attribute of the 2026 profile subscriptions (new: SMS transactional, mobile
# push, WhatsApp, email open tracking), flattened as dlt names them.
_SUBSCRIPTION_TIMESTAMPS_2026 = tuple(
    f"subscriptions__{group}__{name}"
    for group, names in (
        ("email__marketing", ("consent_timestamp", "last_updated")),
        ("email__open_tracking", ("consent_timestamp", "last_updated", "created_timestamp", "valid_until")),
        ("sms__marketing", ("consent_timestamp", "last_updated")),
        ("sms__transactional", ("consent_timestamp", "last_updated")),
        ("mobile_push__marketing", ("consent_timestamp",)),
        *(
            (f"whatsapp__{kind}", ("consent_timestamp", "last_updated", "created_timestamp", "valid_until"))
            for kind in ("marketing", "transactional", "conversational")
        ),
    )
    for name in names
)
# Free-form objects of those subscriptions: JSON columns.
_SUBSCRIPTION_METADATA_2026 = (
    "subscriptions__email__open_tracking__metadata",
    *(f"subscriptions__whatsapp__{kind}__metadata" for kind in ("marketing", "transactional", "conversational")),
)
_CAMPAIGN_CHANNELS_2026 = ("campaigns_email", "campaigns_sms", "campaigns_push")
# 2026 flow-action types that own no flow message (the spec's action types, `definition.type`).
# Not skipped, since they may own messages (UNCONFIRMED): ab-test, content-experiment,
# internal-service and every send-* type.
_SILENT_ACTIONS_2026 = (
    "time-delay", "countdown-delay", "target-date", "back-in-stock-delay", "conditional-split",
    "trigger-split", "multi-branch-split", "action-output-split", "update-profile", "list-update", "code",
)  # fmt: skip
# Lists and free-form objects of 2026 flow-message definitions (custom tracking parameters,
# audience filters, push key/value pairs and buttons, webhook headers, ...): JSON columns.
_FLOW_MESSAGE_JSON_2026 = (
    "custom_tracking_params", "additional_filters", "message_hierarchy", "kv_pairs", "action_buttons",
    "badge_options", "headers", "to_emails",
)  # fmt: skip

# Columns the 2026 shapes may leave null on a whole load: typed up front (stable tables, and no
# "could not infer" warnings from dlt).
_TEXT, _BOOL = "text", "bool"
_CONTENT_2026 = {
    f"content__{name}": _TEXT
    for name in (
        "subject", "preview_text", "from_email", "from_label", "reply_to_email", "cc_email", "bcc_email",
        "body", "media_url", "title", "dynamic_image",
    )
}  # fmt: skip
_RENDER_OPTIONS_2026 = {
    f"render_options__{name}": _BOOL for name in ("shorten_links", "add_org_prefix", "add_info_link", "add_opt_out_language")
}
_CAMPAIGN_MESSAGE_TYPES_2026 = {"label": _TEXT, "channel": _TEXT, "notification_type": _TEXT, **_CONTENT_2026, **_RENDER_OPTIONS_2026}
_FLOW_ACTION_TYPES_2026 = {
    "action_type": _TEXT, "status": _TEXT, "links__next": _TEXT, "links__next_if_true": _TEXT,
    "links__next_if_false": _TEXT, "send_options__use_smart_sending": _BOOL, "send_options__is_transactional": _BOOL,
    **_RENDER_OPTIONS_2026,
}  # fmt: skip
_FLOW_MESSAGE_TYPES_2026 = {
    "name": _TEXT, "channel": _TEXT, **_CONTENT_2026, "content__image_id": _TEXT,
    **{
        name: _BOOL
        for name in (
            "smart_sending_enabled", "transactional", "add_tracking_params", "shorten_links", "include_contact_card",
            "add_org_prefix", "add_info_link", "add_opt_out_language", "sms_quiet_hours_enabled",
        )
    },
}  # fmt: skip

REPORTS_2026: dict[str, Report] = {
    r.name: r
    for r in (
        # `page[size]` up to 100 (2026-04-15); the channel filter is still required.
        *(_in_2026(REPORTS[name], page_size=100) for name in ("campaigns_email", "campaigns_sms")),
        _in_2026(replace(_campaigns("mobile_push"), name="campaigns_push"), page_size=100),
        # Tier M -> L (75/s, 750/min), at most 10 a page (2025-10-15, 2026-04-15).
        _in_2026(REPORTS["templates"], tier="L", page_size=10, column_types={"amp": _TEXT}),
        _in_2026(
            REPORTS["profiles"],
            timestamps=("created", "updated", "last_event_date", *_SUBSCRIPTION_TIMESTAMPS_2026),
            json_columns=(*REPORTS["profiles"].json_columns, *_SUBSCRIPTION_METADATA_2026),
        ),
        # 1000 a page (2026-01-15); attributions come with `include=attributions` (table
        # event_attributions). Events whose metric Klaviyo cannot resolve are kept, with a null
        # metric_id (README, "Revisions").
        _in_2026(REPORTS["events"], page_size=1000, params={"include": "attributions"}),
        _in_2026(REPORTS["metrics"]),
        # New: `definition` (JSON), `is_active`, `is_processing`, `is_starred`; 10 a page.
        _in_2026(
            REPORTS["segments"], page_size=10, json_columns=("definition",),
            column_types={"is_active": _BOOL, "is_processing": _BOOL, "is_starred": _BOOL},
        ),
        # New: `opt_in_process`; the scope is spelled lists:read; 10 a page.
        _in_2026(REPORTS["lists"], scope="lists:read", page_size=10, column_types={"opt_in_process": _TEXT}),
        _in_2026(REPORTS["flows"]),
        _in_2026(REPORTS["tags"], page_size=50),
    )
}

CHILD_REPORTS_2026: dict[str, ChildReport] = {
    c.name: c
    for c in (
        # Label, channel, content and render options moved under `definition` (2025-01-15).
        _child_in_2026(
            CHILD_REPORTS["campaign_messages"], parents=_CAMPAIGN_CHANNELS_2026,
            report=dict(
                columns_from=campaign_message_from_definition,
                json_columns=("send_times", "kv_pairs", "content__action_buttons"),
                to_one={"template": "template_id", "image": "image_id"}, column_types=_CAMPAIGN_MESSAGE_TYPES_2026,
            ),
        ),
        _child_in_2026(CHILD_REPORTS["campaign_tags"], parents=_CAMPAIGN_CHANNELS_2026),
        # action_type, status, settings, ... replaced by `definition` (2025-10-15).
        _child_in_2026(
            CHILD_REPORTS["flow_actions"],
            report=dict(
                columns_from=flow_action_from_definition, json_columns=("settings", "tracking_options", "data"),
                column_types=_FLOW_ACTION_TYPES_2026,
            ),
        ),
        # Cursor-paginated, at most 50 a page (2025-01-15); name and content in `definition`.
        _child_in_2026(
            CHILD_REPORTS["flow_messages"], skip={"action_type": _SILENT_ACTIONS_2026},
            report=dict(
                page_size=50, columns_from=flow_message_from_definition, json_columns=_FLOW_MESSAGE_JSON_2026,
                column_types=_FLOW_MESSAGE_TYPES_2026,
            ),
        ),
        _child_in_2026(CHILD_REPORTS["list_profiles"], report=dict(scope="lists:read and profiles:read")),
        _child_in_2026(CHILD_REPORTS["segment_profiles"]),
        _child_in_2026(CHILD_REPORTS["global_exclusions"]),
        # The attributions of each event read (`include=attributions` on the event pages): one
        # row per (event, attribution), with what the conversion is attributed to.
        ChildReport(
            report=Report(
                name="event_attributions", path="/api/events", scope="events:read", tier="XL",
                primary_key=("event_id", "attribution_id"), timestamps=(),
                to_one={
                    "attributed-event": "attributed_event_id", "campaign": "campaign_id",
                    "campaign-message": "campaign_message_id", "flow": "flow_id",
                    "flow-message": "flow_message_id", "flow-message-variation": "flow_message_variation_id",
                },
            ),
            source="include", parents=("events",), parent_key="event_id", include="attributions",
            id_column="attribution_id",
        ),
    )
}  # fmt: skip

OTHER_REPORTS_2026: dict[str, Report] = {
    "campaigns_v1": OTHER_REPORTS["campaigns_v1"],  # the legacy v1 API has no revision
    "metric_aggregates": _in_2026(OTHER_REPORTS["metric_aggregates"]),
}

REVISION_2026 = RevisionTable(
    revision="2026-07-15", reports=REPORTS_2026, children=CHILD_REPORTS_2026, others=OTHER_REPORTS_2026,
    account=_in_2026(ACCOUNT), tiers=TIERS_2026, supported_until="2028-07-15", performance=PERFORMANCE_REPORTS,
)

# Every revision the source speaks, newest first.
REVISIONS: dict[str, RevisionTable] = {t.revision: t for t in (REVISION_2026, REVISION_2023)}


def report_table(revision: str = DEFAULT_REVISION) -> RevisionTable:
    """The report table of a supported revision (`YYYY-MM-DD`); KeyError for any other."""
    return REVISIONS[revision]


def table_report(name: str, revision: str = DEFAULT_REVISION) -> Report:
    """The row of any report or child table of `revision` by its name (KeyError for an unknown
    name or revision)."""
    return REVISIONS[revision].row(name)


# The tables of the default revision, and its default selection.
ALL_REPORT_NAMES = REVISIONS[DEFAULT_REVISION].names
DEFAULT_REPORTS = REVISIONS[DEFAULT_REVISION].default_reports
