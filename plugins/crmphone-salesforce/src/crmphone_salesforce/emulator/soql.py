"""The SOQL subset the emulator answers, parsed into a value; nothing else is accepted.

Supported, keywords in any case::

    SELECT f1, f2, ... FROM Object
        [WHERE f op v [AND f op v ...] | WHERE f op v [OR f op v ...]]
        [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
        [LIMIT n]

with ``op`` one of ``=``, ``!=``, ``<>``, ``IN (v, ...)``, ``NOT IN (v, ...)`` and ``v`` a string
literal (``'...'`` with SOQL's backslash escapes ``\\'``, ``\\"``, ``\\\\``, ``\\n``, ``\\t``, ...),
``null``, ``true``, ``false``, a number or a date literal (``2026-01-31``). A WHERE clause joins
its comparisons with AND or with OR, never both: Salesforce itself refuses to mix them without
parentheses, and the emulator supports no parentheses. Everything else (relationship fields,
functions, subqueries, ``LIKE``, ``GROUP BY``, ``OFFSET``, ...) is refused with 400
``MALFORMED_QUERY`` naming what is not supported, so a client relying on more finds out at once.

:func:`parse_soql` checks syntax only; :func:`select` checks the query's fields against the
object's schema and evaluates it over records. Comparisons follow SOQL: text compares without
regard to case, ids in their 15- or 18-character form, numbers as numbers; a literal of the wrong
kind for its field (a quoted number, an unquoted text) is 400 ``INVALID_QUERY_FILTER_OPERATOR``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import attrs

from .errors import ApiError, ErrorItem
from .ids import normalize
from .schema import FieldSpec, FieldType, SObjectSpec, salesforce_datetime

__all__ = [
    "Comparison",
    "Ordering",
    "SoqlQuery",
    "SoqlValue",
    "no_such_column",
    "parse_soql",
    "select",
]

SoqlValue = str | int | float | bool | None
"""A literal in a WHERE clause (dates stay strings)."""

_SUPPORTED = (
    "the emulator supports SELECT f, ... FROM Object [WHERE f = 'v' [AND|OR f = 'v' ...]] "
    "[ORDER BY f [ASC|DESC]] [LIMIT n]"
)

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))?)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}

_UNSUPPORTED_WORDS = {
    "GROUP": "GROUP BY",
    "HAVING": "HAVING",
    "OFFSET": "OFFSET",
    "LIKE": "LIKE",
    "FOR": "FOR VIEW/REFERENCE/UPDATE",
    "WITH": "WITH",
    "USING": "USING SCOPE",
    "TYPEOF": "TYPEOF",
    "INCLUDES": "INCLUDES",
    "EXCLUDES": "EXCLUDES",
    "NOT": "NOT outside NOT IN",
}


@attrs.frozen
class Comparison:
    """``field operator value(s)``: operator ``=``, ``!=``, ``in`` or ``not in``."""

    field: str
    operator: Literal["=", "!=", "in", "not in"]
    values: tuple[SoqlValue, ...]


@attrs.frozen
class Ordering:
    """One ORDER BY item (SOQL's defaults: ASC puts nulls first, DESC puts them last)."""

    field: str
    descending: bool = False
    nulls_last: bool = False


@attrs.frozen
class SoqlQuery:
    """A parsed query: selected fields, object, WHERE comparisons and how they join, order, limit."""

    fields: tuple[str, ...]
    sobject: str
    conditions: tuple[Comparison, ...] = ()
    connector: Literal["AND", "OR"] = "AND"
    order_by: tuple[Ordering, ...] = ()
    limit: int | None = None


@attrs.frozen
class _Token:
    kind: str
    text: str
    position: int
    value: SoqlValue = None

    @property
    def word(self) -> str:
        return self.text.upper() if self.kind == "name" else ""


def _malformed(message: str) -> ApiError:
    return ApiError(400, ErrorItem(message, "MALFORMED_QUERY"))


def _unescape(body: str) -> str:
    out = []
    chars = iter(body)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        escaped = next(chars, "")
        out.append(_ESCAPES.get(escaped, escaped))
    return "".join(out)


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        raw = match.group()
        if kind == "space":
            continue
        if kind == "other":
            if raw == "'":
                raise _malformed(f"unterminated string literal at column {match.start() + 1}")
            raise _malformed(f"unexpected character {raw!r}: {_SUPPORTED}")
        value: SoqlValue = None
        if kind == "string":
            value = _unescape(raw[1:-1])
        elif kind == "date":
            value = raw
        elif kind == "number":
            value = float(raw) if "." in raw else int(raw)
        tokens.append(_Token(kind, raw, match.start(), value))
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokens(text)
        self._index = 0

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _take(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _unexpected(self, token: _Token, wanted: str) -> ApiError:
        if token.kind == "end":
            return _malformed(f"unexpected end of query, expected {wanted}: {_SUPPORTED}")
        feature = _UNSUPPORTED_WORDS.get(token.word)
        if feature is not None:
            return _malformed(f"{feature} is not supported: {_SUPPORTED}")
        return _malformed(f"unexpected token: '{token.text}' (expected {wanted}): {_SUPPORTED}")

    def _keyword(self, word: str) -> None:
        token = self._take()
        if token.word != word:
            raise self._unexpected(token, word)

    def _name(self, what: str) -> str:
        token = self._take()
        if token.kind != "name":
            if token.kind == "punct" and token.text == "(":
                raise _malformed(f"subqueries and parentheses are not supported: {_SUPPORTED}")
            raise self._unexpected(token, what)
        if "." in token.text:
            raise _malformed(
                f"relationship fields such as '{token.text}' are not supported: {_SUPPORTED}"
            )
        following = self._peek()
        if following.kind == "punct" and following.text == "(":
            raise _malformed(f"functions such as {token.text}() are not supported: {_SUPPORTED}")
        return token.text

    def parse(self) -> SoqlQuery:
        self._keyword("SELECT")
        fields = [self._name("a field name")]
        while self._peek().text == ",":
            self._take()
            fields.append(self._name("a field name"))
        self._keyword("FROM")
        sobject = self._name("an object name")
        conditions: list[Comparison] = []
        connectors: set[str] = set()
        if self._peek().word == "WHERE":
            self._take()
            conditions.append(self._comparison())
            while self._peek().word in ("AND", "OR"):
                connectors.add(self._take().word)
                conditions.append(self._comparison())
            if len(connectors) > 1:
                raise _malformed(
                    "mixing AND and OR needs parentheses, which the emulator does not support: "
                    + _SUPPORTED
                )
        order_by: list[Ordering] = []
        if self._peek().word == "ORDER":
            self._take()
            self._keyword("BY")
            order_by.append(self._ordering())
            while self._peek().text == ",":
                self._take()
                order_by.append(self._ordering())
        limit = None
        if self._peek().word == "LIMIT":
            self._take()
            token = self._take()
            if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
                raise self._unexpected(token, "a non-negative whole number after LIMIT")
            limit = token.value
        end = self._take()
        if end.kind != "end":
            raise self._unexpected(end, "the end of the query")
        connector: Literal["AND", "OR"] = "OR" if connectors == {"OR"} else "AND"
        return SoqlQuery(
            tuple(fields), sobject, tuple(conditions), connector, tuple(order_by), limit
        )

    def _comparison(self) -> Comparison:
        field = self._name("a field name")
        token = self._take()
        if token.kind == "op":
            if token.text not in ("=", "!=", "<>"):
                raise _malformed(f"the operator {token.text} is not supported: {_SUPPORTED}")
            operator: Literal["=", "!="] = "=" if token.text == "=" else "!="
            return Comparison(field, operator, (self._value(),))
        negated = token.word == "NOT"
        if negated:
            token = self._take()
        if token.word != "IN":
            raise self._unexpected(token, "=, !=, IN or NOT IN")
        opening = self._take()
        if opening.text != "(":
            raise self._unexpected(opening, "( after IN")
        if self._peek().word == "SELECT":
            raise _malformed(f"semi-joins and subqueries are not supported: {_SUPPORTED}")
        values = [self._value()]
        while self._peek().text == ",":
            self._take()
            values.append(self._value())
        closing = self._take()
        if closing.text != ")":
            raise self._unexpected(closing, ") after the IN list")
        return Comparison(field, "not in" if negated else "in", tuple(values))

    def _value(self) -> SoqlValue:
        token = self._take()
        if token.kind in ("string", "number", "date"):
            return token.value
        if token.word == "NULL":
            return None
        if token.word in ("TRUE", "FALSE"):
            return token.word == "TRUE"
        raise self._unexpected(token, "a literal value")

    def _ordering(self) -> Ordering:
        field = self._name("a field name")
        descending = False
        if self._peek().word in ("ASC", "DESC"):
            descending = self._take().word == "DESC"
        nulls_last = descending
        if self._peek().word == "NULLS":
            self._take()
            which = self._take()
            if which.word not in ("FIRST", "LAST"):
                raise self._unexpected(which, "FIRST or LAST after NULLS")
            nulls_last = which.word == "LAST"
        return Ordering(field, descending, nulls_last)


def parse_soql(text: str) -> SoqlQuery:
    """Parse ``text``; ApiError 400 ``MALFORMED_QUERY`` for anything outside the subset."""
    if not text.strip():
        raise _malformed("the query is empty: " + _SUPPORTED)
    return _Parser(text).parse()


# ---------------------------------------------------------------------- evaluation


class _Row(Protocol):
    @property
    def values(self) -> Mapping[str, Any]: ...


R = TypeVar("R", bound=_Row)


@attrs.frozen
class _Resolved:
    """A comparison whose field is known and whose literals are in stored-key form."""

    field: FieldSpec
    operator: str
    keys: tuple[Any, ...]


def no_such_column(spec: SObjectSpec, name: str) -> ApiError:
    """400 ``INVALID_FIELD`` for a field ``spec`` does not have, in Salesforce's words."""
    return ApiError(
        400,
        ErrorItem(
            f"No such column '{name}' on entity '{spec.name}'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name. Please "
            "reference your WSDL or the describe call for the appropriate names.",
            "INVALID_FIELD",
        ),
    )


def select(rows: Iterable[R], spec: SObjectSpec, query: SoqlQuery) -> list[R]:
    """The rows of ``spec`` that ``query``'s WHERE keeps, in its order, up to its LIMIT."""
    conditions = [_resolve(spec, comparison) for comparison in query.conditions]
    orderings = [(_field(spec, o.field), o) for o in query.order_by]
    kept = [row for row in rows if _where(row, conditions, query.connector)]
    for field, ordering in reversed(orderings):
        present = [row for row in kept if row.values.get(field.name) is not None]
        absent = [row for row in kept if row.values.get(field.name) is None]
        present.sort(key=_sort_key(field), reverse=ordering.descending)
        kept = present + absent if ordering.nulls_last else absent + present
    return kept[: query.limit] if query.limit is not None else kept


def _field(spec: SObjectSpec, name: str) -> FieldSpec:
    field = spec.field(name)
    if field is None:
        raise no_such_column(spec, name)
    return field


def _resolve(spec: SObjectSpec, comparison: Comparison) -> _Resolved:
    field = _field(spec, comparison.field)
    keys = tuple(_literal_key(field, value) for value in comparison.values)
    return _Resolved(field, comparison.operator, keys)


def _filter_error(message: str) -> ApiError:
    return ApiError(400, ErrorItem(message, "INVALID_QUERY_FILTER_OPERATOR"))


def _wrong_literal(field: FieldSpec, quoted: bool) -> ApiError:
    how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
    return _filter_error(
        f"value of filter criterion for field '{field.name}' must be of type "
        f"{field.type.value} and {how}"
    )


def _literal_key(field: FieldSpec, literal: SoqlValue) -> Any:
    if literal is None:
        return None
    kind = field.type
    if kind in (FieldType.ID, FieldType.REFERENCE):
        canonical = normalize(literal) if isinstance(literal, str) else None
        if canonical is None:
            raise _filter_error(f"invalid ID field: {literal}")
        return canonical
    if kind.is_text:
        if not isinstance(literal, str):
            raise _wrong_literal(field, quoted=True)
        return literal.lower()
    if kind is FieldType.BOOLEAN:
        if not isinstance(literal, bool):
            raise _wrong_literal(field, quoted=False)
        return literal
    if kind in (FieldType.INT, FieldType.DOUBLE):
        if isinstance(literal, bool) or not isinstance(literal, int | float):
            raise _wrong_literal(field, quoted=False)
        return float(literal)
    # Date and datetime literals are unquoted in SOQL; the tokenizer hands them over as text.
    if not isinstance(literal, str) or not re.match(r"^\d{4}-\d{2}-\d{2}", literal):
        raise _wrong_literal(field, quoted=False)
    if kind is FieldType.DATE:
        return literal[:10]
    return salesforce_datetime(datetime.fromisoformat(literal.replace("Z", "+00:00")))


def _stored_key(field: FieldSpec, value: Any) -> Any:
    if value is None:
        return None
    if field.type.is_text:
        return str(value).lower()
    if field.type in (FieldType.INT, FieldType.DOUBLE):
        return float(value)
    return value


def _sort_key(field: FieldSpec) -> Callable[[_Row], Any]:
    def key(row: _Row) -> Any:
        return _stored_key(field, row.values[field.name])

    return key


def _where(row: _Row, conditions: Sequence[_Resolved], connector: str) -> bool:
    outcomes = (_holds(row, condition) for condition in conditions)
    return all(outcomes) if connector == "AND" else any(outcomes)


def _holds(row: _Row, condition: _Resolved) -> bool:
    stored = _stored_key(condition.field, row.values.get(condition.field.name))
    if condition.operator == "=":
        return bool(stored == condition.keys[0])
    if condition.operator == "!=":
        return bool(stored != condition.keys[0])
    inside = stored in condition.keys
    return inside if condition.operator == "in" else not inside
