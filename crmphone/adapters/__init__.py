"""CRM adapters: the contract a plugin implements, and the durable outbox that drives them.

Plugin authors need :class:`Adapter` and the values it is given (:class:`CallLog`,
:class:`CallerMatch`, :class:`CrmRecord`, :class:`AdapterContext`), plus
:mod:`crmphone.testing` to prove their adapter keeps the contract. The connector uses
:class:`Outbox` and the plugin registry.
"""

from crmphone.adapters.base import (
    Adapter,
    AdapterContext,
    CallerMatch,
    CallLog,
    Commands,
    CrmRecord,
    LogStage,
    MatchOutcome,
    Memory,
    VolatileMemory,
    crm_error_for_status,
)
from crmphone.adapters.outbox import (
    CallerMatched,
    CallLogged,
    Outbox,
    OutboxNotice,
    OutboxSettings,
    OutboxStats,
)
from crmphone.adapters.policy import RetryPolicy
from crmphone.adapters.router import WorkKind
from crmphone.adapters.store import OutboxStore, WorkItem

__all__ = [
    "Adapter",
    "AdapterContext",
    "CallLog",
    "CallLogged",
    "CallerMatch",
    "CallerMatched",
    "Commands",
    "CrmRecord",
    "LogStage",
    "MatchOutcome",
    "Memory",
    "Outbox",
    "OutboxNotice",
    "OutboxSettings",
    "OutboxStats",
    "OutboxStore",
    "RetryPolicy",
    "VolatileMemory",
    "WorkItem",
    "WorkKind",
    "crm_error_for_status",
]
