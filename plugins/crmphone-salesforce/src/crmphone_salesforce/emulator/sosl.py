"""The SOSL subset a caller lookup sends, and how the emulator matches phone numbers.

Supported, keywords in any case::

    FIND {term} IN PHONE FIELDS
        [RETURNING Object [(f1, f2, ...)] [, Object [(f1, ...)] ...]]
        [LIMIT n]

Inside the braces SOSL's reserved characters ``& | ! ( ) { } [ ] ^ " ~ * ? : \\ ' + -`` must be
escaped with a backslash; the emulator unescapes them and refuses an unescaped one with 400
``MALFORMED_SEARCH`` (on Salesforce most of them are operators or wildcards the emulator does not
implement, so a client that forgets to escape learns it here). Without ``RETURNING`` the search
covers Contact, Lead and Account and returns ids only. Other search groups (``IN ALL FIELDS``,
``IN NAME FIELDS``), ``WITH``, ``WHERE``/``ORDER BY``/``LIMIT`` inside the object lists are refused
with ``MALFORMED_SEARCH`` too.

Phones match on digits only: a record matches when its phone's digits equal the term's digits, or
one ends with the other and the shorter has at least seven digits — so ``+15550100001`` finds
``(555) 010-0001`` and ``0100001`` finds both, but ``100001`` finds nothing.
"""

from __future__ import annotations

import re

import attrs

from .errors import ApiError, ErrorItem

__all__ = [
    "MIN_SUFFIX_DIGITS",
    "RESERVED_CHARACTERS",
    "Returning",
    "SoslSearch",
    "escape_sosl",
    "parse_sosl",
    "phone_digits",
    "phones_match",
]

RESERVED_CHARACTERS = frozenset("&|!(){}[]^\"~*?:\\'+-")
"""Characters a SOSL search term must escape with a backslash."""

MIN_SUFFIX_DIGITS = 7
"""The shortest digit string that may match the end of a longer number (a local number)."""

DEFAULT_RETURNING = ("Contact", "Lead", "Account")
"""What a search without RETURNING covers (ids only)."""

_SUPPORTED = (
    "the emulator supports FIND {term} IN PHONE FIELDS "
    "[RETURNING Object(f1, f2, ...), ...] [LIMIT n]"
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.frozen
class Returning:
    """One object of the RETURNING clause and the fields to answer with."""

    sobject: str
    fields: tuple[str, ...] = ("Id",)


@attrs.frozen
class SoslSearch:
    """A parsed search: the unescaped term, its digits, the objects to return, the limit."""

    term: str
    returning: tuple[Returning, ...]
    limit: int | None = None

    @property
    def digits(self) -> str:
        """The term's digits (what phone matching compares)."""
        return phone_digits(self.term)


def phone_digits(text: str) -> str:
    """The ASCII digits of ``text``, in order."""
    return "".join(char for char in text if "0" <= char <= "9")


def phones_match(stored: str, term_digits: str) -> bool:
    """Whether the phone ``stored`` (any format) matches the digit string ``term_digits``."""
    digits = phone_digits(stored)
    if not digits or not term_digits:
        return False
    if digits == term_digits:
        return True
    shorter, longer = sorted((digits, term_digits), key=len)
    return len(shorter) >= MIN_SUFFIX_DIGITS and longer.endswith(shorter)


def escape_sosl(term: str) -> str:
    """``term`` with every SOSL reserved character escaped (what a client must send)."""
    return "".join("\\" + char if char in RESERVED_CHARACTERS else char for char in term)


def _malformed(message: str) -> ApiError:
    return ApiError(400, ErrorItem(message, "MALFORMED_SEARCH"))


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def skip_space(self) -> None:
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.position >= len(self.text)

    def peek_char(self) -> str:
        self.skip_space()
        return self.text[self.position] if self.position < len(self.text) else ""

    def word(self) -> str:
        self.skip_space()
        match = _NAME.match(self.text, self.position)
        if match is None:
            return ""
        self.position = match.end()
        return match.group()

    def peek_word(self) -> str:
        saved = self.position
        found = self.word()
        self.position = saved
        return found

    def expect_word(self, wanted: str) -> None:
        found = self.word()
        if found.upper() != wanted:
            shown = found or self.peek_char() or "the end of the search"
            raise _malformed(f"unexpected token: '{shown}' (expected {wanted}): {_SUPPORTED}")

    def expect_char(self, wanted: str) -> None:
        found = self.peek_char()
        if found != wanted:
            shown = found or "the end of the search"
            raise _malformed(f"unexpected token: '{shown}' (expected {wanted}): {_SUPPORTED}")
        self.position += 1


def _term(reader: _Reader) -> str:
    if reader.peek_char() != "{":
        raise _malformed(
            "No search term found. The search term must be enclosed in braces: " + _SUPPORTED
        )
    reader.position += 1
    out: list[str] = []
    text = reader.text
    while True:
        if reader.position >= len(text):
            raise _malformed("the search term has no closing brace: " + _SUPPORTED)
        char = text[reader.position]
        reader.position += 1
        if char == "}":
            break
        if char == "\\":
            if reader.position >= len(text):
                raise _malformed("the search term ends with a lone backslash")
            out.append(text[reader.position])
            reader.position += 1
            continue
        if char in RESERVED_CHARACTERS:
            raise _malformed(
                f"the reserved character {char!r} must be escaped with a backslash in the "
                f"search term (the emulator implements no SOSL operators or wildcards)"
            )
        out.append(char)
    term = "".join(out).strip()
    if not term:
        raise _malformed("the search term is empty")
    return term


def _returning(reader: _Reader) -> tuple[Returning, ...]:
    objects = []
    while True:
        name = reader.word()
        if not name:
            shown = reader.peek_char() or "the end of the search"
            raise _malformed(f"unexpected token: '{shown}' (expected an object name): {_SUPPORTED}")
        fields: tuple[str, ...] = ("Id",)
        if reader.peek_char() == "(":
            reader.position += 1
            names = []
            while True:
                field = reader.word()
                if not field:
                    shown = reader.peek_char() or "the end of the search"
                    raise _malformed(
                        f"unexpected token: '{shown}' (expected a field name): {_SUPPORTED}"
                    )
                if field.upper() in ("WHERE", "ORDER", "LIMIT", "OFFSET", "USING"):
                    raise _malformed(
                        f"{field.upper()} inside RETURNING is not supported: {_SUPPORTED}"
                    )
                if reader.peek_char() == ".":
                    raise _malformed(f"relationship fields are not supported: {_SUPPORTED}")
                names.append(field)
                if reader.peek_char() == ",":
                    reader.position += 1
                    continue
                next_word = reader.peek_word().upper()
                if next_word in ("WHERE", "ORDER", "LIMIT", "OFFSET", "USING"):
                    raise _malformed(f"{next_word} inside RETURNING is not supported: {_SUPPORTED}")
                reader.expect_char(")")
                break
            fields = tuple(names)
        objects.append(Returning(name, fields))
        if reader.peek_char() != ",":
            return tuple(objects)
        reader.position += 1


def parse_sosl(text: str) -> SoslSearch:
    """Parse ``text``; ApiError 400 ``MALFORMED_SEARCH`` for anything outside the subset."""
    reader = _Reader(text)
    reader.expect_word("FIND")
    term = _term(reader)
    if reader.peek_word().upper() != "IN":
        raise _malformed(
            "only IN PHONE FIELDS searches are supported (the emulator has no full-text index): "
            + _SUPPORTED
        )
    reader.word()
    group = reader.word()
    if group.upper() != "PHONE":
        raise _malformed(f"IN {group.upper() or '?'} FIELDS is not supported: {_SUPPORTED}")
    reader.expect_word("FIELDS")
    returning = tuple(Returning(name) for name in DEFAULT_RETURNING)
    if reader.peek_word().upper() == "RETURNING":
        reader.word()
        returning = _returning(reader)
    limit = None
    if reader.peek_word().upper() == "LIMIT":
        reader.word()
        reader.skip_space()
        match = re.compile(r"\d+").match(reader.text, reader.position)
        if match is None:
            raise _malformed("LIMIT needs a whole number: " + _SUPPORTED)
        reader.position = match.end()
        limit = int(match.group())
    if not reader.at_end():
        shown = reader.peek_word() or reader.peek_char()
        raise _malformed(f"unexpected token: '{shown}': {_SUPPORTED}")
    return SoslSearch(term, returning, limit)
