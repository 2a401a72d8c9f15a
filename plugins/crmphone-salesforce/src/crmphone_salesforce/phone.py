"""Salesforce query text: SOSL search terms and SOQL literals, escaped.

A caller id is untrusted input: every search term goes through :func:`escape_sosl` and every SOQL
literal through :func:`soql_quote`. Number normalisation is crmphone's
(:mod:`crmphone.adapters.numbers`).
"""

from __future__ import annotations

__all__ = ["escape_sosl", "soql_quote"]

# SOSL's reserved characters; each is escaped with a backslash inside FIND {...}.
_SOSL_RESERVED = frozenset("&|!(){}[]^\"~*?:\\'+-")


def escape_sosl(term: str) -> str:
    """``term`` with every SOSL reserved character escaped by a backslash."""
    return "".join("\\" + char if char in _SOSL_RESERVED else char for char in term)


def soql_quote(value: str) -> str:
    """``value`` as a SOQL string literal (quotes and backslashes escaped)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"
