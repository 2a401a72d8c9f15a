"""Salesforce record ids: 18 characters, a key prefix naming the object, a case-safe suffix.

A Salesforce id is 15 case-sensitive base-62 characters — a three-character *key prefix* that
names the object (``003`` Contact, ``00T`` Task, ...), two for the instance, one reserved, nine for
the record number — followed, in the 18-character form every API answers with, by three
characters that encode which of the first 15 are upper case (so the id survives case-insensitive
tools). APIs accept either form; :func:`normalize` turns one into the other and rejects the
malformed.

:class:`IdSource` hands out ids that look real, never repeat, and depend only on the seed.
"""

from __future__ import annotations

import random
import string

__all__ = [
    "KEY_PREFIXES",
    "IdSource",
    "checksum",
    "key_prefix",
    "normalize",
]

KEY_PREFIXES = {
    "Account": "001",
    "Contact": "003",
    "Opportunity": "006",
    "Organization": "00D",
    "Lead": "00Q",
    "Task": "00T",
    "User": "005",
    "Case": "500",
    "CTI_Call__c": "a0X",
}
"""The key prefix of each object the emulator knows (custom objects get ``a0`` + a letter)."""

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX_ALPHABET = string.ascii_uppercase + "012345"
_RECORD_DIGITS = 9


def checksum(id15: str) -> str:
    """The three-character suffix of the 15-character id ``id15``.

    Each of the three five-character chunks gives one character: bit ``i`` is set when the
    chunk's ``i``-th character is an upper-case letter; the 5-bit number indexes ``A``-``Z``, ``0``-``5``.
    """
    suffix = []
    for start in (0, 5, 10):
        bits = 0
        for position, char in enumerate(id15[start : start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix.append(_SUFFIX_ALPHABET[bits])
    return "".join(suffix)


def normalize(value: str) -> str | None:
    """The 18-character form of the id ``value`` (15 or 18 characters), or None if malformed.

    An 18-character id whose suffix does not match its first 15 characters is malformed, as on
    Salesforce; the suffix itself is compared case-insensitively (that is what it is for).
    """
    if len(value) not in (15, 18) or any(char not in _BASE62 for char in value):
        return None
    base = value[:15]
    suffix = checksum(base)
    if len(value) == 18 and value[15:].upper() != suffix:
        return None
    return base + suffix


def key_prefix(record_id: str) -> str:
    """The key prefix (first three characters) of an id."""
    return record_id[:3]


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits)).rjust(width, "0")


class IdSource:
    """Unique, real-looking, seed-determined ids, per key prefix.

    The instance characters and where each prefix's record numbers start come from ``seed``;
    numbers then grow by small seeded steps, so two sources with the same seed hand out the same
    ids in the same order, and no source repeats itself.
    """

    def __init__(self, seed: int) -> None:
        self._random = random.Random(f"crmphone-salesforce-ids-{seed}")
        # Real pods look like "5g", "8c", "Dn": a digit or upper-case letter then a lower-case one.
        self.instance = self._random.choice(string.digits[1:]) + self._random.choice(
            string.ascii_lowercase
        )
        self._next: dict[str, int] = {}

    def next(self, prefix: str) -> str:
        """A new 18-character id with the key prefix ``prefix``."""
        if len(prefix) != 3:
            raise ValueError(f"a key prefix has three characters, not {prefix!r}")
        number = self._next.get(prefix)
        if number is None:
            # A young org: record numbers with a few leading zeros, like 00000AbCdE.
            number = self._random.randrange(62**5, 62**6)
        number += self._random.randint(1, 97)
        self._next[prefix] = number
        base = prefix + self.instance + "0" + _base62(number, _RECORD_DIGITS)
        return base + checksum(base)
