"""Phone numbers for CRM lookups: the forms CRMs store and search them in.

CRMs keep numbers as people typed them ("(555) 010-0001", "+1 555 010 0002") and compare digits
when searching, so adapters search the digits of the caller's number — for a North American (+1)
number the ten national digits, which match stored numbers with or without the country code.
"""

from __future__ import annotations

import re

__all__ = ["digits", "e164", "search_digits"]

_NON_DIGITS = re.compile(r"\D+")
_MIN_SEARCH_DIGITS = 7  # shorter "numbers" (extensions, anonymous) would match half the CRM


def digits(number: str) -> str:
    """Only the digits of ``number``: ``"+1 (555) 010-0001"`` → ``"15550100001"``."""
    return _NON_DIGITS.sub("", number)


def e164(number: str) -> str | None:
    """``number`` in E.164 (``+15550100001``), or None when it cannot be one.

    ``tel:`` prefixes and formatting are dropped; a ten-digit number is taken as North American.
    """
    text = number.strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    found = digits(text)
    if text.startswith("+") and 8 <= len(found) <= 15:
        return "+" + found
    if len(found) == 10:
        return "+1" + found
    if len(found) == 11 and found.startswith("1"):
        return "+" + found
    return None


def search_digits(number: str) -> str | None:
    """The digits to search for the caller ``number`` (None: too short to search).

    For +1 numbers, the ten national digits; otherwise all digits of the E.164 form.
    """
    normal = e164(number)
    found = digits(normal) if normal else digits(number)
    if normal and normal.startswith("+1") and len(found) == 11:
        found = found[1:]
    return found if len(found) >= _MIN_SEARCH_DIGITS else None
