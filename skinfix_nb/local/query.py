"""``GET /v1/runs`` query language: ``q`` filters, ``sort_by``, ``fields`` and cursors.

Supported ``q`` terms, joined by ``AND``::

    client_ref.EQ:'row-17'        status_code:succeeded        id.IN:('a','b')
    created_at>2026-05-06T10:00:00+00:00    created_at<=...    completed_at>=...

Values may be bare or single-quoted (``''`` inside quotes is one quote). Cursors are
keyset cursors (the sort values of the last item), so runs created while a client pages
through the list never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

__all__ = [
    "FILTER_FIELDS",
    "RUN_FIELDS",
    "SORT_FIELDS",
    "Filter",
    "QueryError",
    "decode_cursor",
    "encode_cursor",
    "page",
    "parse_fields",
    "parse_q",
    "parse_sort",
]

RUN_FIELDS = (
    "id",
    "org_id",
    "model_id",
    "target_type",
    "target_version",
    "status_code",
    "source_code",
    "input",
    "output",
    "context",
    "duration_ms",
    "cost",
    "cost_breakdown",
    "batch_id",
    "client_ref",
    "request_id",
    "callback_url",
    "metadata",
    "created_at",
    "started_at",
    "completed_at",
    "failure_code",
    "failure_message",
    "failure_stage_code",
    "has_logs",
    "has_node_runs",
    "links",
)
TIME_FIELDS = ("created_at", "started_at", "completed_at")
FILTER_FIELDS = ("id", "client_ref", "status_code", "failure_code", *TIME_FIELDS)
SORT_FIELDS = ("created_at", "started_at", "completed_at", "status_code", "client_ref", "id")

_TERM = re.compile(
    r"""\s*(?P<field>[a-z_]+)
        (?:\.(?P<named>EQ|NE|IN|GT|GTE|LT|LTE):|(?P<op>>=|<=|!=|[:=<>]))
        \s*(?P<value>\((?:[^()']|'(?:[^']|'')*')*\)|'(?:[^']|'')*'|[^\s()']+)\s*""",
    re.VERBOSE,
)
_AND = re.compile(r"\s+AND\s+")
_NAMED_OPS = {"EQ": "=", "NE": "!=", "IN": "in", "GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


class QueryError(ValueError):
    """A query parameter that cannot be understood; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class Filter(NamedTuple):
    """One ``field op value`` term; ``values`` has several entries only for ``IN``."""

    field: str
    op: str
    values: tuple[str, ...]

    def matches(self, run: dict[str, Any]) -> bool:
        actual = run.get(self.field)
        if self.field in TIME_FIELDS:
            return _compare_time(actual, self.op, self.values[0])
        text = None if actual is None else str(actual)
        if self.op == "in":
            return text in self.values
        if self.op == "!=":
            return text != self.values[0]
        if self.op == "=":
            return text == self.values[0]
        return text is not None and _ORDER[self.op](text, self.values[0])


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def parse_q(q: str) -> list[Filter]:
    """Parse a ``q`` expression; raise :class:`QueryError` saying which term is wrong."""
    if not q.strip():
        return []
    filters = []
    for term in _split_and(q):
        match = _TERM.fullmatch(term)
        if match is None:
            raise QueryError(
                "q",
                f"cannot read filter term {term[:80]!r}; use e.g. client_ref.EQ:'x', "
                "status_code:succeeded or created_at>2026-01-01T00:00:00+00:00",
            )
        field = match["field"]
        if field not in FILTER_FIELDS:
            raise QueryError(
                "q", f"cannot filter on {field!r}; filterable: {', '.join(FILTER_FIELDS)}"
            )
        op = _NAMED_OPS[match["named"]] if match["named"] else match["op"]
        op = "=" if op == ":" else op
        raw = match["value"]
        if op == "in":
            if not raw.startswith("("):
                raise QueryError("q", f"IN needs a list like ('a','b'), got {raw[:80]!r}")
            values = tuple(_unquote(v.strip()) for v in _split_list(raw[1:-1]))
        else:
            if raw.startswith("("):
                raise QueryError("q", f"a list of values needs the IN operator: {term[:80]!r}")
            values = (_unquote(raw),)
        if field in TIME_FIELDS:
            if op == "in":
                raise QueryError("q", f"{field} takes a comparison, not IN")
            _parse_time(values[0])
        filters.append(Filter(field, op, values))
    return filters


def creation_window(filters: Sequence[Filter]) -> tuple[datetime | None, datetime | None]:
    """The widest ``created_at`` window the filters allow, bounds included (None: open).

    Lets a listing bisect the store's creation order instead of testing every run; the
    filters themselves still decide strict bounds.
    """
    since: datetime | None = None
    until: datetime | None = None
    for term in filters:
        if term.field != "created_at" or term.op not in (">", ">=", "<", "<=", "="):
            continue
        bound = _parse_time(term.values[0])
        if term.op in (">", ">=", "="):
            since = bound if since is None else max(since, bound)
        if term.op in ("<", "<=", "="):
            until = bound if until is None else min(until, bound)
    return since, until


def _split_and(q: str) -> list[str]:
    """Split on ``AND`` outside quotes."""
    terms, start = [], 0
    for match in _AND.finditer(q):
        if q.count("'", 0, match.start()) % 2 == 0:
            terms.append(q[start : match.start()])
            start = match.end()
    terms.append(q[start:])
    return terms


def _split_list(body: str) -> list[str]:
    items = [m.group(0) for m in re.finditer(r"'(?:[^']|'')*'|[^,\s']+", body)]
    if not items:
        raise QueryError("q", "IN needs at least one value")
    return items


def _unquote(value: str) -> str:
    match = _QUOTED.fullmatch(value)
    return match.group(1).replace("''", "'") if match else value


def _parse_time(text: str) -> datetime:
    """An ISO 8601 time or date; without an offset it is UTC (``created_at>2026-04-01``)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            "q", f"{text[:80]!r} is not an ISO 8601 time like 2026-05-06T10:00:00+00:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _compare_time(actual: Any, op: str, bound: str) -> bool:
    if actual is None:
        return False
    left, right = datetime.fromisoformat(actual), _parse_time(bound)
    if op in ("=", "!="):
        return (left == right) == (op == "=")
    return _ORDER[op](left, right)


# sorting, projection, pagination ---------------------------------------------------------


def parse_sort(sort_by: str) -> list[tuple[str, bool]]:
    """``"status_code:asc,created_at:desc"`` -> ``[(field, descending), ...]``."""
    keys = []
    for part in sort_by.split(","):
        field, _, direction = part.strip().partition(":")
        direction = direction or "asc"
        if field not in SORT_FIELDS or direction not in ("asc", "desc"):
            raise QueryError(
                "sort_by",
                f"cannot sort by {part.strip()[:80]!r}; use FIELD:asc or FIELD:desc with FIELD "
                f"one of {', '.join(SORT_FIELDS)}",
            )
        keys.append((field, direction == "desc"))
    return keys


def parse_fields(fields: str) -> list[str]:
    names = [name.strip() for name in fields.split(",") if name.strip()]
    unknown = [name for name in names if name not in RUN_FIELDS]
    if not names or unknown:
        raise QueryError(
            "fields",
            f"unknown field(s) {', '.join(unknown)[:120] or '(none given)'}; "
            f"choose from {', '.join(RUN_FIELDS)}",
        )
    return names


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        values = None
    if not isinstance(values, list):
        raise QueryError("pq", "the cursor is not one this server issued; pass `next` unchanged")
    return values


def page(
    runs: list[dict[str, Any]],
    *,
    sort: list[tuple[str, bool]],
    limit: int,
    after: list[Any] | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``runs`` in ``sort`` order, after the cursor ``after``; and the next cursor."""
    keys = [*sort, ("id", sort[0][1])]  # ids are time-ordered: break ties the same way

    def key_of(run: dict[str, Any]) -> list[Any]:
        return [run.get(field) for field, _ in keys]

    def compare(left: Sequence[Any], right: Sequence[Any]) -> int:
        for (_, descending), a, b in zip(keys, left, right, strict=True):
            if a == b:
                continue
            # None sorts first ascending; mixed types never occur within one field
            smaller = a is None or (b is not None and a < b)
            return (1 if smaller else -1) if descending else (-1 if smaller else 1)
        return 0

    def compare_runs(left: dict[str, Any], right: dict[str, Any]) -> int:
        return compare(key_of(left), key_of(right))

    ordered = sorted(runs, key=functools.cmp_to_key(compare_runs))
    if after is not None:
        if len(after) != len(keys):
            raise QueryError("pq", "the cursor belongs to another sort order; start again")
        ordered = [run for run in ordered if compare(key_of(run), after) > 0]
    items = ordered[:limit]
    more = len(ordered) > limit
    return items, encode_cursor(key_of(items[-1])) if more else None
