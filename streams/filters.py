"""The ``--where`` language of ``valuestream export`` (README, *Segment exports*):

    tier in (gold, platinum) and churn = high
    orders >= 3 and not unsubscribed
    net_revenue > 100 or (segment = champions and last_order_at >= '2026-01-01')

Comparisons ``= != < <= > >=``, ``in (...)`` and ``not in (...)``; ``and`` binds tighter than
``or``; ``not`` and parentheses. A field is a profile field, a dotted path into one
(``churn_risk.score``) or an alias (``FIELD_ALIASES``). A value is a number, a word, a quoted
string, ``true``, ``false`` or ``null``. Numbers compare as exact decimals with number and
money fields; anything else compares as text (RFC 3339 times in UTC order as text). A field
that is null satisfies only ``= null`` and ``!= <value>``.

Hand-written rather than a parser library: the grammar is a dozen lines, and every error
must be one line naming the problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, get_args

import msgspec

from schemas.outputs import Profile

FIELD_ALIASES = {"tier": "value_tier", "churn": "churn_risk.level",
                 "churn_score": "churn_risk.score", "segment": "rfm.segment"}
Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]

_TOKEN = re.compile(r"""\s*(?:(?P<op><=|>=|!=|=|<|>)|(?P<punct>[(),])|'(?P<sq>[^']*)'"""
                    r"""|"(?P<dq>[^"]*)"|(?P<word>[^\s(),=!<>'"]+))""")
_KEYWORDS = {"and", "or", "not", "in"}
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}


class FilterError(ValueError):
    """A --where or --fields text that cannot be used; the message names the problem."""


def _struct_fields(struct: Any) -> dict[str, Any]:
    return {field.name: field.type for field in msgspec.structs.fields(struct)}


def check_field(name: str) -> str:
    """The dotted path a field name stands for; FilterError if the profile has no such field."""
    path = FIELD_ALIASES.get(name, name)
    fields: dict[str, Any] | None = _struct_fields(Profile)
    for part in path.split("."):
        if fields is None or part not in fields:
            raise FilterError(f"unknown field {name!r} (fields: the profile's, dotted into "
                              f"churn_risk and rfm, or {', '.join(sorted(FIELD_ALIASES))})")
        structs = [kind for kind in (fields[part], *get_args(fields[part]))
                   if isinstance(kind, type) and issubclass(kind, msgspec.Struct)]
        fields = _struct_fields(structs[0]) if structs else None
    return path


def value_at(row: Row, path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(f"cannot read {text[position:].strip()[:20]!r} at character "
                              f"{position + 1}")
        position = match.end()
        if match["op"] or match["punct"]:
            tokens.append(("op", match["op"] or match["punct"]))
        elif match["sq"] is not None or match["dq"] is not None:
            tokens.append(("text", match["sq"] if match["sq"] is not None else match["dq"]))
        elif match["word"].lower() in _KEYWORDS:
            tokens.append(("keyword", match["word"].lower()))
        else:
            tokens.append(("word", match["word"]))
    return tokens


def _literal(kind: str, text: Any) -> Any:
    if kind == "text":
        return text
    if text.lower() in _CONSTANTS:
        return _CONSTANTS[text.lower()]
    try:
        return Decimal(text)
    except InvalidOperation:
        return text


def _compare(field: Any, op: str, literal: Any) -> bool:
    if literal is None:
        return (field is None) if op == "=" else (field is not None) if op == "!=" else False
    if field is None:
        return op == "!="
    if isinstance(literal, bool) or isinstance(field, bool):
        left, right = field, literal
    elif isinstance(literal, Decimal):
        try:
            left, right = Decimal(str(field)), literal
        except InvalidOperation:
            left, right = str(field), str(literal)
    else:
        left, right = str(field), literal
    if op in ("=", "!="):
        return (left == right) == (op == "=")
    if type(left) is not type(right) or isinstance(left, bool):
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right,
            ">=": left >= right}[op]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, what: str = "more") -> tuple[str, Any]:
        """The next token, whatever it is (``what`` names what was expected)."""
        token = self.peek()
        if token is None:
            raise FilterError(f"the filter ends where {what} was expected")
        self.at += 1
        return token

    def expect(self, text: str) -> None:
        """The next token, which must be ``text``."""
        token = self.take(repr(text))
        if token[1] != text:
            raise FilterError(f"expected {text!r}, found {token[1]!r}")

    def parse(self) -> Predicate:
        predicate = self.either()
        if (token := self.peek()) is not None:
            raise FilterError(f"unexpected {token[1]!r} after a complete condition")
        return predicate

    def either(self) -> Predicate:
        return self.joined("or", self.both, any)

    def both(self) -> Predicate:
        return self.joined("and", self.single, all)

    def joined(self, keyword: str, part: Callable[[], Predicate],
               combine: Callable[[Iterable[bool]], bool]) -> Predicate:
        """``part`` (keyword ``part``)*: ``combine`` (any, all) of their results."""
        parts = [part()]
        while self.peek() == ("keyword", keyword):
            self.take()
            parts.append(part())
        return parts[0] if len(parts) == 1 else lambda row: combine(p(row) for p in parts)

    def single(self) -> Predicate:
        token = self.peek()
        if token == ("keyword", "not"):
            self.take()
            inner = self.single()
            return lambda row: not inner(row)
        if token == ("op", "("):
            self.take()
            inner = self.either()
            self.expect(")")
            return inner
        kind, name = self.take("a field")
        if kind != "word":
            raise FilterError(f"expected a field name, found {name!r}")
        path = check_field(name)
        following = self.peek()
        if following is None or following[1] in ("and", "or", ")"):  # a bare field: true
            return lambda row: _compare(value_at(row, path), "=", True)
        if following == ("keyword", "not"):
            self.take()
            self.expect("in")
            values = self.values()
            return lambda row: not any(_compare(value_at(row, path), "=", v) for v in values)
        if following == ("keyword", "in"):
            self.take()
            values = self.values()
            return lambda row: any(_compare(value_at(row, path), "=", v) for v in values)
        kind, op = self.take("a comparison")
        if kind != "op" or op in "(),":
            raise FilterError(f"expected =, !=, <, <=, >, >= or in after {name!r}, "
                              f"found {op!r}")
        literal = self.value()
        return lambda row: _compare(value_at(row, path), op, literal)

    def value(self) -> Any:
        kind, text = self.take("a value")
        if kind not in ("word", "text"):
            raise FilterError(f"expected a value, found {text!r}")
        return _literal(kind, text)

    def values(self) -> list[Any]:
        self.expect("(")
        values = [self.value()]
        while self.peek() == ("op", ","):
            self.take()
            values.append(self.value())
        self.expect(")")
        return values


def parse_filter(text: str) -> Predicate:
    """The predicate a --where text describes; FilterError naming the first problem."""
    if not text.strip():
        raise FilterError("the filter is empty")
    return _Parser(text).parse()


def parse_fields(text: str) -> list[tuple[str, str]]:
    """``--fields a,b.c,...``: (column name as given, dotted path) pairs."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise FilterError(f"--fields {text!r}: an empty field name")
    return [(name, check_field(name)) for name in names]
