"""How a record's `attributes` become a row's columns, where a revision moved them.

Referenced from the report table (`Report.columns_from` in `settings.py`): each converter takes
the JSON:API `attributes` of one record and returns the attributes the row is built from (then
flattened into `parent__child` columns as usual). They keep the column names of revision
2023-10-15 wherever a field means the same, so a table keeps its columns across revisions;
what only the newer revision has keeps its own name. A converter must leave the report's
cursor attribute where it is (the reader reads it from the raw page).

Pure functions of their input: no imports from the rest of the source.
"""

from collections.abc import Mapping
from typing import Any

Attributes = Mapping[str, Any]

# Flow-message `definition` fields (2026-07-15: FlowEmail, FlowSms, FlowPushNotification,
# FlowWebhook, ...) that are the message's content: `content__<name>` as in 2023-10-15.
_FLOW_MESSAGE_CONTENT = {
    "subject_line": "subject",
    "preview_text": "preview_text",
    "from_email": "from_email",
    "from_label": "from_label",
    "reply_to_email": "reply_to_email",
    "cc_email": "cc_email",
    "bcc_email": "bcc_email",
    "body": "body",
    "title": "title",
    "image_id": "image_id",
    "dynamic_image": "dynamic_image",
}
# SMS render options of 2023-10-15's flow actions (`render_options__*`), inside a 2026 send
# action's `definition.data.message`.
_RENDER_OPTIONS = ("shorten_links", "add_org_prefix", "add_info_link", "add_opt_out_language")


def _without(attributes: Attributes, *names: str) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in names}


def _object(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def campaign_message_from_definition(attributes: Attributes) -> dict[str, Any]:
    """2026-07-15 campaign message -> the 2023-10-15 columns: `definition`'s fields (channel,
    label, content, render_options; push: notification_type, options, kv_pairs) become
    top-level again, so `content.subject` is `content__subject` as before."""
    return {**_without(attributes, "definition"), **_object(attributes.get("definition"))}


def flow_message_from_definition(attributes: Attributes) -> dict[str, Any]:
    """2026-07-15 flow message -> columns: `definition.name` is `name`, the content fields
    `content__*` (`subject_line` is `content__subject`), the other settings (smart sending,
    tracking, SMS render options, push options, ...) top-level under their own names; the
    definition's `id` (the message's own) and `template_id` (the `template` relationship,
    `template_id` already) are left out."""
    definition = _object(attributes.get("definition"))
    row = _without(attributes, "definition")
    content = {new: definition.pop(old) for old, new in _FLOW_MESSAGE_CONTENT.items() if old in definition}
    if content:
        row["content"] = content
    for name in ("id", "template_id"):
        definition.pop(name, None)
    for name, value in definition.items():
        row.setdefault(name, value)
    return row


def flow_action_from_definition(attributes: Attributes) -> dict[str, Any]:
    """2026-07-15 flow action -> columns: `definition.type` is `action_type` (2026 values,
    e.g. `send-email`, `time-delay`), `definition.data.status` is `status`, the whole
    `definition.data` the JSON column `data`, `definition.links` the next actions
    (`links__next`, `links__next_if_true`, ...); a send action's smart-sending, transactional
    and SMS render settings fill the 2023-10-15 columns `send_options__use_smart_sending`,
    `send_options__is_transactional` and `render_options__*`."""
    definition = _object(attributes.get("definition"))
    data = _object(definition.get("data"))
    row = _without(attributes, "definition")
    row["action_type"] = definition.get("type")
    row["status"] = data.get("status")
    row["links"] = _object(definition.get("links")) or None
    row["data"] = data or None
    message = _object(data.get("message"))
    send = {new: message[old] for old, new in (("smart_sending_enabled", "use_smart_sending"), ("transactional", "is_transactional")) if old in message}
    if send:
        row["send_options"] = send
    render = {name: message[name] for name in _RENDER_OPTIONS if name in message}
    if render:
        row["render_options"] = render
    return row
