"""Backend.AI's list filter and order mini-languages, parsed into a small typed tree.

Filter: comparisons ``field op value`` combined with ``&`` (and), ``|`` (or), ``!`` (not) and
parentheses, e.g. ``email ilike "%@lab.example" & (role == "admin" | role == "superadmin")``.
Operators: ``== != > >= < <= like ilike``; values: double-quoted strings (``\\"`` escapes),
integers, ``true``/``false``, ``null``. Order: comma-separated fields, each optionally
prefixed with ``+`` (ascending, the default) or ``-`` (descending), e.g. ``-created_at,+email``.

Each list names the fields it allows and their types; anything else is an ``INVALID_ARGUMENT``
that says exactly what and where (reason ``INVALID_FILTER`` or ``INVALID_ORDER``). The adapter
turns the tree into SQL with bound parameters, never by pasting text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bai.common.errors import InvalidArgument

__all__ = ["And", "Cmp", "FieldType", "Filter", "Not", "Or", "OrderBy", "parse_filter",
           "parse_order"]

FieldType = type[str] | type[int] | type[bool]
Value = str | int | bool | None
OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "ilike", "like")
MAX_FILTER_LENGTH = 1000

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|>=|<=|>|<)
  | (?P<punct>[&|!()])
  | (?P<number>-?\d+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)


@dataclass(frozen=True, slots=True)
class Cmp:
    field: str
    op: str
    value: Value


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    part: Filter


Filter = Cmp | And | Or | Not


@dataclass(frozen=True, slots=True)
class OrderBy:
    field: str
    descending: bool


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"filter: {message}", reason="INVALID_FILTER")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    found: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _bad(f"unexpected character {text[position:].strip()[0]!r} at "
                       f"position {position}")
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind), match.start(kind)))
        position = match.end()
    return found


class _Parser:
    def __init__(self, text: str, fields: Mapping[str, FieldType]) -> None:
        self._tokens = _tokens(text)
        self._at = 0
        self._fields = fields

    def _peek(self) -> tuple[str, str, int] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _next(self, what: str) -> tuple[str, str, int]:
        token = self._peek()
        if token is None:
            raise _bad(f"expected {what} at the end")
        self._at += 1
        return token

    def parse(self) -> Filter:
        tree = self._or()
        extra = self._peek()
        if extra is not None:
            raise _bad(f"unexpected {extra[1]!r} at position {extra[2]}")
        return tree

    def _or(self) -> Filter:
        parts = [self._and()]
        while (token := self._peek()) is not None and token[1] == "|":
            self._at += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def _and(self) -> Filter:
        parts = [self._unary()]
        while (token := self._peek()) is not None and token[1] == "&":
            self._at += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def _unary(self) -> Filter:
        token = self._peek()
        if token is not None and token[1] == "!":
            self._at += 1
            return Not(self._unary())
        if token is not None and token[1] == "(":
            self._at += 1
            inner = self._or()
            closing = self._next("')'")
            if closing[1] != ")":
                raise _bad(f"expected ')' at position {closing[2]}, got {closing[1]!r}")
            return inner
        return self._comparison()

    def _comparison(self) -> Filter:
        kind, name, position = self._next("a field name")
        if kind != "word":
            raise _bad(f"expected a field name at position {position}, got {name!r}")
        if name not in self._fields:
            raise _bad(f"unknown field {name!r} (filterable: {', '.join(sorted(self._fields))})")
        kind, op, position = self._next("an operator")
        if op not in OPERATORS:
            raise _bad(f"unknown operator {op!r} at position {position} "
                       f"(known: {' '.join(OPERATORS)})")
        value = self._value(name, op)
        return Cmp(field=name, op=op, value=value)

    def _value(self, field: str, op: str) -> Value:
        kind, raw, position = self._next("a value")
        wanted = self._fields[field]
        value: Value
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "number":
            value = int(raw)
        elif raw in ("true", "false"):
            value = raw == "true"
        elif raw == "null":
            if op not in ("==", "!="):
                raise _bad(f"null only compares with == or != (position {position})")
            return None
        else:
            raise _bad(f"expected a value at position {position}, got {raw!r}")
        if op in ("like", "ilike") and (wanted is not str or not isinstance(value, str)):
            raise _bad(f"{op} needs a text field and a string (field {field!r})")
        if type(value) is not wanted:
            raise _bad(f"field {field!r} compares with a {wanted.__name__}, got {raw}")
        return value


def parse_filter(text: str | None, fields: Mapping[str, FieldType]) -> Filter | None:
    """The filter tree, or None for an empty filter."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FILTER_LENGTH:
        raise _bad(f"longer than {MAX_FILTER_LENGTH} characters")
    return _Parser(text, fields).parse()


def parse_order(text: str | None, fields: Mapping[str, FieldType]) -> tuple[OrderBy, ...]:
    """The order terms, or () for the list's default order."""
    if text is None or not text.strip():
        return ()
    terms: list[OrderBy] = []
    for raw in text.split(","):
        term = raw.strip()
        descending = term.startswith("-")
        name = term.lstrip("+-").strip()
        if name not in fields:
            raise InvalidArgument(f"order: unknown field {name!r} (sortable: "
                                  f"{', '.join(sorted(fields))})", reason="INVALID_ORDER")
        terms.append(OrderBy(field=name, descending=descending))
    return tuple(terms)
