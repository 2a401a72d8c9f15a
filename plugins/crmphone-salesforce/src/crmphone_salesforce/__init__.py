"""crmphone-salesforce: caller lookup and Task call logging for Salesforce, on simple-salesforce.

The adapter (entry point ``salesforce`` in group ``crmphone.adapters``) is
:class:`SalesforceAdapter`; its options are :class:`SalesforceSettings`. The local emulator that
the tests and ``crmphone demo`` run is :mod:`crmphone_salesforce.emulator`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .adapter import SalesforceAdapter
from .client import ApiUsage
from .settings import AuthKind, LookupKind, SalesforceSettings

__all__ = [
    "ApiUsage",
    "AuthKind",
    "LookupKind",
    "SalesforceAdapter",
    "SalesforceSettings",
    "__version__",
]

try:
    __version__ = version("crmphone-salesforce")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
