"""Parser and matcher for Klaviyo's JSON:API `filter` grammar (revision 2023-10-15).

Grammar: `op(field,value)`, `and(c1,c2,...)` (nestable) and a top-level comma list
(also AND). Values: quoted strings ('..' or "..", backslash escapes), unquoted
datetimes (ISO 8601 / RFC 3339; naive = UTC), bare `true`/`false`/`null`, bare
numbers, and lists `[...]`. `or(...)`/`not(...)` are rejected: this revision's
endpoints only list field operators.

Typical use::

    conds = parse_filter("greater-than(updated,2023-01-01T00:00:00Z)", rules)
    keep = compile_conditions(conds)
    rows = [r for r in records if keep(lambda f: r["attributes"].get(f))]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any

from klaviyo_emulator.filter_rules import FILTER_REQUIRED, FILTER_RULES, FieldRule

UTC = UTC

COMPARE_OPS = frozenset({"less-than", "less-or-equal", "greater-than", "greater-or-equal"})
LIST_OPS = frozenset({"any", "contains-any", "contains-all"})
OPERATORS = frozenset(
    {"equals", "contains", "starts-with", "ends-with", "has"} | COMPARE_OPS | LIST_OPS
)
LOGICAL_OPS = frozenset({"and", "or", "not"})
_MAX_DEPTH = 32


class FilterError(ValueError):
    """A filter Klaviyo would reject; `detail` is the human-readable 400 detail."""

    parameter = "filter"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Condition:
    """One field condition: `op(field, value)`.

    Attributes:
        op: Operator, e.g. "equals" or "greater-or-equal".
        field: Possibly dotted field name, e.g. "messages.channel".
        value: Typed value: str, bool, int, float, aware UTC datetime, list or None.
    """

    op: str
    field: str
    value: Any


# ---------------------------------------------------------------------------- datetimes

_DT_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?"
)
_NUMBER_RE = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z_-]*")
_TOKEN_RE = re.compile(r"[^,()\[\]'\"]*")


def parse_datetime(text: str, default_tz: tzinfo = UTC) -> datetime | None:
    """Parses a filter datetime (ISO 8601 / RFC 3339, uppercase T/Z).

    Args:
        text: E.g. "2023-08-15T12:30:00", "2023-08-15 12:30:00.71Z", "...+03:00".
        default_tz: Zone for a value without offset (UTC unless told otherwise).

    Returns:
        An aware datetime in UTC, or None when `text` is not a valid datetime.
    """
    m = _DT_RE.fullmatch(text)
    if not m:
        return None
    year, month, day, hour, minute, second, frac, offset = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        if offset is None:
            tz: tzinfo = default_tz
        elif offset == "Z":
            tz = UTC
        else:
            sign = -1 if offset[0] == "-" else 1
            hh, mm = int(offset[1:3]), int(offset[-2:])
            if hh > 23 or mm > 59:
                return None
            tz = timezone(sign * timedelta(hours=hh, minutes=mm))
        value = datetime(
            int(year), int(month), int(day),
            int(hour or 0), int(minute or 0), int(second or 0), micro, tzinfo=tz,
        )
    except ValueError:
        return None
    return value.astimezone(UTC)


@lru_cache(maxsize=65536)
def _record_datetime(text: str) -> datetime | None:
    """Parses a datetime string held by a record (cached: records repeat values)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return parse_datetime(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_datetime(value: Any) -> datetime | None:
    """Returns a record value as an aware datetime (None if it is not one)."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        return _record_datetime(value)
    return None


# ------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class _Raw:
    """An untyped value token: kind is "quoted", "bare" or "list"."""

    kind: str
    value: Any
    pos: int


class _Parser:
    """Recursive-descent parser over one filter string."""

    def __init__(self, text: str, rules: Mapping[str, FieldRule], default_tz: tzinfo) -> None:
        self.text = text
        self.pos = 0
        self.rules = rules
        self.default_tz = default_tz

    # -- helpers
    def fail(self, problem: str, pos: int | None = None) -> FilterError:
        at = self.pos if pos is None else pos
        return FilterError(f"Invalid filter: {problem} at position {at} of {self.text!r}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str, what: str) -> None:
        got = self.peek()
        if got != char:
            shown = repr(got) if got else "end of filter"
            raise self.fail(f"expected {char!r} {what}, got {shown}")
        self.pos += 1

    # -- grammar
    def parse(self) -> list[Condition]:
        if not self.text.strip():
            raise FilterError("Invalid filter: the filter is empty")
        out: list[Condition] = []
        self.parse_expr(out, 0)
        while self.peek() == ",":
            self.pos += 1
            self.parse_expr(out, 0)
        if self.peek():
            raise self.fail(f"unexpected {self.text[self.pos:]!r} after the last condition")
        return out

    def parse_expr(self, out: list[Condition], depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise self.fail("conditions are nested too deeply")
        self.skip_ws()
        start = self.pos
        m = _NAME_RE.match(self.text, self.pos)
        if not m:
            raise self.fail("expected an operator such as equals(field,value)")
        name = m.group(0)
        self.pos = m.end()
        if name in {"or", "not"}:
            raise FilterError(
                f"Invalid filter: operator '{name}' is not supported for this endpoint; "
                "combine conditions with and(...) or a comma"
            )
        if name not in OPERATORS and name != "and":
            known = ", ".join(sorted(OPERATORS | {"and"}))
            raise self.fail(f"unknown operator {name!r} (known: {known})", start)
        self.expect("(", f"after operator {name!r}")
        if name == "and":
            if self.peek() == ")":
                raise self.fail("and() needs at least one condition")
            self.parse_expr(out, depth + 1)
            while self.peek() == ",":
                self.pos += 1
                self.parse_expr(out, depth + 1)
            self.expect(")", "to close and(...)")
            return
        out.append(self.parse_condition(name))

    def parse_condition(self, op: str) -> Condition:
        self.skip_ws()
        m = _TOKEN_RE.match(self.text, self.pos)
        field = m.group(0).strip() if m else ""
        if not m or not field:
            raise self.fail(f"expected a field name in {op}(...)")
        self.pos = m.end()
        rule = self.rules.get(field)
        if rule is None:
            allowed = ", ".join(sorted(self.rules)) or "none"
            raise FilterError(
                f"Invalid filter: field {field!r} is not filterable on this endpoint; "
                f"allowed fields: {allowed}"
            )
        if op not in rule.ops:
            allowed = ", ".join(sorted(rule.ops))
            raise FilterError(
                f"Invalid filter: operator {op!r} is not allowed for field {field!r}; "
                f"allowed: {allowed}"
            )
        if op == "has" and self.peek() == ")":
            self.pos += 1
            return Condition(op, field, None)
        self.expect(",", f"after field {field!r} in {op}(...)")
        raw = self.parse_value(allow_list=True)
        self.expect(")", f"to close {op}({field},...)")
        return Condition(op, field, self.typed(op, field, rule, raw))

    def parse_value(self, allow_list: bool) -> _Raw:
        char = self.peek()
        pos = self.pos
        if char in {"'", '"'}:
            return _Raw("quoted", self.parse_quoted(char), pos)
        if char == "[":
            if not allow_list:
                raise self.fail("lists cannot be nested")
            self.pos += 1
            items: list[_Raw] = []
            if self.peek() != "]":
                items.append(self.parse_value(allow_list=False))
                while self.peek() == ",":
                    self.pos += 1
                    items.append(self.parse_value(allow_list=False))
            self.expect("]", "to close the list")
            return _Raw("list", items, pos)
        m = _TOKEN_RE.match(self.text, self.pos)
        token = m.group(0).strip() if m else ""
        if not m or not token:
            raise self.fail("expected a value")
        self.pos = m.end()
        return _Raw("bare", token, pos)

    def parse_quoted(self, quote: str) -> str:
        start = self.pos
        self.pos += 1
        chars: list[str] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char == "\\" and self.pos + 1 < len(text):
                chars.append(text[self.pos + 1])
                self.pos += 2
                continue
            if char == quote:
                self.pos += 1
                return "".join(chars)
            chars.append(char)
            self.pos += 1
        raise self.fail("unterminated quoted string", start)

    # -- typing
    def typed(self, op: str, field: str, rule: FieldRule, raw: _Raw) -> Any:
        if op in LIST_OPS:
            if raw.kind != "list":
                raise FilterError(
                    f"Invalid filter: operator {op!r} needs a list value, "
                    f"e.g. {op}({field},[\"a\",\"b\"])"
                )
            return [self.scalar(op, field, rule, item) for item in raw.value]
        if raw.kind == "list":
            raise FilterError(
                f"Invalid filter: operator {op!r} takes a single value, not a list "
                f"(field {field!r})"
            )
        return self.scalar(op, field, rule, raw)

    def scalar(self, op: str, field: str, rule: FieldRule, raw: _Raw) -> Any:
        if raw.kind == "bare" and raw.value == "null":
            return None
        kind = rule.kind
        if kind == "string":
            if raw.kind != "quoted":
                raise FilterError(
                    f"Invalid filter: the value {raw.value} for field {field!r} must be a "
                    f"quoted string, e.g. {op}({field},'{raw.value}')"
                )
            return raw.value
        if raw.kind == "quoted":
            hint = " (datetimes must not be quoted)" if kind == "datetime" else ""
            raise FilterError(
                f"Invalid filter: field {field!r} takes an unquoted {kind} value, "
                f"got the quoted string {raw.value!r}{hint}"
            )
        token: str = raw.value
        if kind == "datetime":
            value = parse_datetime(token, self.default_tz)
            if value is None:
                hint = ""
                if re.search(r"\d \d{2}:?\d{2}$", token):
                    hint = " (a '+' in a URL must be encoded as %2B)"
                raise FilterError(
                    f"Invalid filter: {token!r} is not a valid datetime for field {field!r}; "
                    f"use ISO 8601 such as 2023-01-01T00:00:00Z{hint}"
                )
            return value
        if kind == "boolean":
            if token not in {"true", "false"}:
                raise FilterError(
                    f"Invalid filter: field {field!r} takes true or false, got {token!r}"
                )
            return token == "true"
        if not _NUMBER_RE.fullmatch(token):
            raise FilterError(f"Invalid filter: field {field!r} takes a number, got {token!r}")
        is_int = "." not in token and "e" not in token.lower()
        return int(token) if is_int else float(token)


def parse_filter(
    text: str, rules: Mapping[str, FieldRule], default_tz: tzinfo = UTC
) -> list[Condition]:
    """Parses and validates a filter for one endpoint.

    Args:
        text: The raw (URL-decoded) `filter` value.
        rules: Allowed fields of the endpoint (a `FILTER_RULES` entry).
        default_tz: Zone of datetimes written without an offset (UTC by default).

    Returns:
        The AND-ed conditions, in the order written.

    Raises:
        FilterError: On a syntax error or a field/operator/value the endpoint rejects.
    """
    return _Parser(text, rules, default_tz).parse()


def check_required(
    conditions: Sequence[Condition], path: str, required: Mapping[str, Sequence[Any]] | None = None
) -> None:
    """Raises FilterError unless `conditions` hold every condition required for `path`.

    Args:
        conditions: Parsed conditions of the request.
        path: Path template, e.g. "/api/campaigns/".
        required: Override of `FILTER_REQUIRED` (for tests).
    """
    table = FILTER_REQUIRED if required is None else required
    for need in table.get(path, ()):
        found = [c for c in conditions if c.field == need.field and c.op == need.op]
        example = f"{need.op}({need.field},'{min(need.values) if need.values else '...'}')"
        if not found:
            raise FilterError(
                f"Invalid filter: this endpoint requires a filter containing {example}"
            )
        for cond in found:
            if need.values and cond.value not in need.values:
                allowed = ", ".join(sorted(need.values))
                raise FilterError(
                    f"Invalid filter: {cond.value!r} is not a valid value for "
                    f"{need.field!r}; allowed: {allowed}"
                )


def parse_endpoint_filter(path: str, text: str | None) -> list[Condition]:
    """Parses `?filter=` for a GET endpoint, enforcing `FILTER_RULES`/`FILTER_REQUIRED`.

    Args:
        path: Path template as in the spec, e.g. "/api/events/".
        text: The filter value, or None when the request has no `filter`.

    Returns:
        The conditions ([] when there is no filter).
    """
    rules = FILTER_RULES.get(path)
    if text is None:
        if path in FILTER_REQUIRED:
            check_required([], path)
        return []
    if rules is None:
        raise FilterError("Invalid filter: this endpoint does not support filtering")
    conditions = parse_filter(text, rules)
    check_required(conditions, path)
    return conditions


# ----------------------------------------------------------------------------- matching

Predicate = Callable[[Any], bool]


def _ordered(op: str, value: Any) -> Predicate:
    """Predicate for the comparison operators (datetimes or numbers)."""
    if isinstance(value, datetime):

        def coerce(v: Any) -> Any:
            return as_datetime(v)

    else:

        def coerce(v: Any) -> Any:
            return None if isinstance(v, bool) else v

    if op == "less-than":
        test: Callable[[Any], bool] = lambda v: v < value  # noqa: E731
    elif op == "less-or-equal":
        test = lambda v: v <= value  # noqa: E731
    elif op == "greater-than":
        test = lambda v: v > value  # noqa: E731
    else:
        test = lambda v: v >= value  # noqa: E731

    def pred(v: Any) -> bool:
        v = coerce(v)
        if v is None:
            return False
        try:
            return test(v)
        except TypeError:
            return False

    return pred


def _equals(value: Any) -> Predicate:
    """Predicate for equals (datetimes compared as instants)."""
    if isinstance(value, datetime):
        return lambda v: as_datetime(v) == value
    if isinstance(value, bool) or value is None:
        return lambda v: v is value
    if isinstance(value, (int, float)):
        return lambda v: not isinstance(v, bool) and v == value
    return lambda v: v == value


def _scalar_predicate(op: str, value: Any) -> Predicate:
    """Predicate applied to one scalar record value."""
    if op == "equals":
        return _equals(value)
    if op in COMPARE_OPS:
        return _ordered(op, value)
    if op == "any":
        tests = [_equals(item) for item in value]
        hashable = not any(isinstance(x, (datetime, bool)) or x is None for x in value)
        if hashable:
            options = frozenset(value)
            return lambda v: isinstance(v, (str, int, float)) and v in options
        return lambda v: any(t(v) for t in tests)
    if op == "starts-with":
        return lambda v: isinstance(v, str) and v.startswith(value)
    if op == "ends-with":
        return lambda v: isinstance(v, str) and v.endswith(value)
    raise ValueError(f"not a scalar operator: {op}")


def _contains(v: Any, item: Any) -> bool:
    """Substring test for strings, membership test for lists."""
    if isinstance(v, str):
        return isinstance(item, str) and item in v
    if isinstance(v, (list, tuple, set, frozenset)):
        return item in v
    return False


def _predicate(cond: Condition) -> Predicate:
    """Predicate over the record's value for `cond.field` (lists: any element)."""
    op, value = cond.op, cond.value
    if op == "contains":
        return lambda v: _contains(v, value)
    if op == "has":
        if value is None:
            return lambda v: v is not None and v != "" and v != [] and v != {}
        return lambda v: _contains(v, value)
    if op == "contains-any":
        return lambda v: any(_contains(v, item) for item in value)
    if op == "contains-all":
        return lambda v: v is not None and all(_contains(v, item) for item in value)
    scalar = _scalar_predicate(op, value)

    def pred(v: Any) -> bool:
        if isinstance(v, (list, tuple)):
            return any(scalar(x) for x in v)
        return scalar(v)

    return pred


def compile_conditions(conditions: Sequence[Condition]) -> Callable[[Callable[[str], Any]], bool]:
    """Compiles conditions once into a fast record test.

    Args:
        conditions: AND-ed conditions from `parse_filter`.

    Returns:
        A function taking `get(field) -> value` and returning True when every condition
        holds. A list-valued record field matches a scalar operator when any element does.
    """
    compiled = [(c.field, _predicate(c)) for c in conditions]
    if not compiled:
        return lambda get: True
    if len(compiled) == 1:
        field, pred = compiled[0]
        return lambda get: pred(get(field))

    def test(get: Callable[[str], Any]) -> bool:
        return all(pred(get(field)) for field, pred in compiled)

    return test


def matches(conditions: Sequence[Condition], get: Callable[[str], Any]) -> bool:
    """True when a record satisfies every condition.

    Args:
        conditions: AND-ed conditions from `parse_filter`.
        get: Returns the record's value for a (possibly dotted) field name; datetimes as
            aware/naive (=UTC) datetimes or ISO strings.

    For many records, call `compile_conditions` once instead.
    """
    return compile_conditions(conditions)(get)


def datetime_bounds(
    conditions: Sequence[Condition], field: str
) -> tuple[Any, bool | None, Any, bool | None]:
    """Tightest range the conditions put on `field` (for binary search on sorted data).

    Args:
        conditions: Parsed conditions.
        field: E.g. "datetime" or "updated"; numbers (e.g. "timestamp") work too.

    Returns:
        (lower, lower_inclusive, upper, upper_inclusive); a bound and its flag are None
        when absent. `equals` gives an inclusive lower and upper bound.
    """
    lower: Any = None
    lower_inc: bool | None = None
    upper: Any = None
    upper_inc: bool | None = None
    for cond in conditions:
        if cond.field != field or cond.value is None or isinstance(cond.value, list):
            continue
        value = cond.value
        if cond.op in {"greater-than", "greater-or-equal", "equals"}:
            inclusive = cond.op != "greater-than"
            if lower is None or value > lower or (value == lower and not inclusive):
                lower, lower_inc = value, inclusive
        if cond.op in {"less-than", "less-or-equal", "equals"}:
            inclusive = cond.op != "less-than"
            if upper is None or value < upper or (value == upper and not inclusive):
                upper, upper_inc = value, inclusive
    return lower, lower_inc, upper, upper_inc
