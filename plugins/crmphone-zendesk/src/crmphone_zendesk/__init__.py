"""crmphone-zendesk: caller lookup, Talk Partner Edition pops, tickets and call records for
Zendesk, on zenpy.

The adapter (entry point ``zendesk`` in group ``crmphone.adapters``) is :class:`ZendeskAdapter`;
its options are :class:`ZendeskSettings`. The local emulator that the tests and ``crmphone demo``
run is :mod:`crmphone_zendesk.emulator`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .adapter import ZendeskAdapter
from .settings import TicketRule, ZendeskSettings

__all__ = ["TicketRule", "ZendeskAdapter", "ZendeskSettings", "__version__"]

try:
    __version__ = version("crmphone-zendesk")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
