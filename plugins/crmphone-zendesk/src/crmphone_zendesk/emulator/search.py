"""The subset of Zendesk's search query language the emulator understands (pure, no I/O).

A query is a list of space-separated terms, as in ``type:user role:end-user phone:*5550100001``:

``field:value``
    The record's ``field`` equals ``value``, case-insensitively. ``*`` in the value matches any
    run of characters, so ``phone:*0100001`` is a suffix match and ``name:Ann*`` a prefix match.
    Values with spaces are quoted: ``name:"Ann Lee"``.
``phone:digits``
    Compared on digits only, both sides: ``phone:15550100004`` matches ``+1 555 010 0004`` but
    not ``(555) 010-0004`` (whose digits are ``5550100004``) — the format sensitivity that makes
    real integrations search ``phone:*{last digits}``.
``type:user`` / ``type:ticket``
    Restricts the record type (without it both are searched).
``-term``
    Negation: records matching ``term`` are left out.
``word``
    Free text: a case-insensitive substring of any text field (name, email, subject, …).

Unknown fields match nothing, so a misspelt field shows up as "no results" rather than
as everything. Comparisons (``<``, ``>``), ``OR`` and date keywords are not supported.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

import attrs

__all__ = ["SearchTerm", "digits", "matches", "parse_query"]

_DIGIT_FIELDS = frozenset({"phone"})


def digits(text: str) -> str:
    """Only the decimal digits of ``text`` (``"+1 (555) 010-0001"`` → ``"15550100001"``)."""
    return "".join(character for character in text if character.isdigit())


@attrs.frozen
class SearchTerm:
    """One term of a query: ``field:value`` (``field`` is None for free text), maybe negated."""

    field: str | None
    value: str
    negated: bool = False


def parse_query(query: str) -> tuple[SearchTerm, ...]:
    """Split a query into terms; unbalanced quotes are taken literally rather than refused."""
    try:
        words = shlex.split(query)
    except ValueError:
        words = query.split()
    terms: list[SearchTerm] = []
    for word in words:
        negated = word.startswith("-") and len(word) > 1
        body = word[1:] if negated else word
        field, colon, value = body.partition(":")
        if colon and field and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", field):
            terms.append(SearchTerm(field.lower(), value, negated))
        else:
            terms.append(SearchTerm(None, body, negated))
    return tuple(terms)


def _wildcard(pattern: str) -> re.Pattern[str]:
    parts = (re.escape(part) for part in pattern.split("*"))
    return re.compile(".*".join(parts), re.IGNORECASE | re.DOTALL)


def _value_matches(field: str, pattern: str, value: str | Sequence[str] | None) -> bool:
    if value is None:
        return False
    if not isinstance(value, str):
        return any(_value_matches(field, pattern, item) for item in value)
    if field in _DIGIT_FIELDS:
        # Formatting characters on either side never matter, the wildcard does.
        wanted = "".join(ch for ch in pattern if ch.isdigit() or ch == "*")
        if not digits(wanted):
            return False
        return _wildcard(wanted).fullmatch(digits(value)) is not None
    return _wildcard(pattern).fullmatch(value) is not None


def _term_matches(term: SearchTerm, fields: Mapping[str, str | Sequence[str] | None]) -> bool:
    if term.field is None:
        needle = term.value.casefold()
        return any(
            needle in text.casefold()
            for value in fields.values()
            if value is not None
            for text in ((value,) if isinstance(value, str) else value)
        )
    if term.field not in fields:
        return False
    return _value_matches(term.field, term.value, fields[term.field])


def matches(terms: Sequence[SearchTerm], fields: Mapping[str, str | Sequence[str] | None]) -> bool:
    """Whether a record with these searchable ``fields`` satisfies every term of the query.

    ``fields`` maps field names (``type``, ``name``, ``phone``, ``tags``, …) to text, a sequence
    of texts (any may match) or None (never matches). An empty query matches nothing, as on
    Zendesk.
    """
    if not terms:
        return False
    return all(_term_matches(term, fields) != term.negated for term in terms)
