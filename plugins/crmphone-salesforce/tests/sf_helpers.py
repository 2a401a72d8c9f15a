"""Types the Salesforce plugin's tests share (fixtures themselves live in conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from crmphone_salesforce import SalesforceAdapter

AdapterFactory = Callable[..., Awaitable[SalesforceAdapter]]
"""``make_adapter``: build and start a Salesforce adapter on the emulator with these options."""
