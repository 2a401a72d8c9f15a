"""The Salesforce adapter: caller lookup and one Task per call, upserted by the call's key.

* :meth:`SalesforceAdapter.lookup_caller` searches phone fields (SOSL, escaped) or matches
  ``Phone`` exactly (SOQL), through a short-lived cache; the match links the Task (``WhoId`` /
  ``WhatId``). Screen pops are the Open CTI page's job (the browser's ``sforce.opencti``).
* :meth:`SalesforceAdapter.log_call` upserts the Task by the external id field
  (``PATCH /sobjects/Task/{field}/{key}``): ``In Progress`` at connect, ``Completed`` at the end,
  one record per call however often a write is retried.
* :meth:`SalesforceAdapter.log_calls` upserts up to 200 Tasks in one sObject Collections request
  and reads each record's own result (the API answers 200 even when records fail).

Every request has a timeout; a 401 renews the session once; everything else that fails is a
crmphone error for the outbox to retry or dead-letter — this adapter never sleeps or loops.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self
from urllib.parse import quote

from simple_salesforce.api import Salesforce

from crmphone.adapters import Adapter, AdapterContext, CallerMatch, CallLog, CrmRecord
from crmphone.adapters.cache import LookupCache
from crmphone.adapters.numbers import e164, search_digits
from crmphone.errors import CrmPermanentError, CrmRetryableError

from .client import ApiUsage, SalesforceClient
from .errors import from_record_errors
from .phone import escape_sosl, soql_quote
from .settings import LookupKind, SalesforceSettings
from .task import task_fields, without_insert_only

__all__ = ["SalesforceAdapter"]

logger = logging.getLogger(__name__)

_LOOKUP_OBJECTS = (
    ("Contact", "Id, Name, AccountId", ("Phone", "MobilePhone")),
    ("Lead", "Id, Name", ("Phone", "MobilePhone")),
    ("Account", "Id, Name", ("Phone",)),
)
_LOOKUP_LIMIT = 20
_USAGE_STEP = 0.05  # log the daily API usage each time another 5 % of the allowance is spent


class SalesforceAdapter(Adapter):
    """Caller lookup and Task call logging for Salesforce, on simple-salesforce."""

    description: ClassVar[str] = (
        "Salesforce: caller lookup (SOSL/SOQL) and one Task per call, upserted by external id"
    )
    max_batch: ClassVar[int] = 200  # sObject Collections' limit per request

    def __init__(self, context: AdapterContext, settings: SalesforceSettings) -> None:
        super().__init__(context)
        self.settings = settings
        self.client = SalesforceClient(settings)
        self._cache = LookupCache(settings.lookup_cache_seconds)
        self._usage_logged = -1

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: AdapterContext) -> Self:
        """Build from an ``[[adapters]]`` table (see :mod:`crmphone_salesforce.settings`)."""
        settings = SalesforceSettings.from_options(
            options,
            prefix=f"adapters.{context.name}",
            base_timeout=context.timeout,
            base_verify=context.verify,
        )
        return cls(context, settings)

    @property
    def api_usage(self) -> ApiUsage | None:
        """The org's API usage as Salesforce last reported it (None before the first answer)."""
        return self.client.usage

    @property
    def requests_sent(self) -> int:
        """API requests this adapter sent (lookups, writes, session renewals)."""
        return self.client.requests

    def gauges(self) -> Mapping[str, float]:
        """``api_requests_used`` / ``api_requests_allowed`` today (from ``Sforce-Limit-Info``)
        and ``api_requests_sent`` by this adapter, for ``/metrics``."""
        figures: dict[str, float] = {"api_requests_sent": float(self.client.requests)}
        usage = self.client.usage
        if usage is not None:
            figures["api_requests_used"] = float(usage.used)
            figures["api_requests_allowed"] = float(usage.allowed)
        return figures

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Check the session and the pinned API version once, so bad credentials show at start.

        A permanent refusal (bad credentials, unknown API version) stops the start; Salesforce
        being unreachable does not (the outbox keeps the writes until it answers).
        """
        version = f"v{self.settings.api_version}"
        try:
            await self.context.run_sync(
                self.client.call,
                f"checking API version {self.settings.api_version}",
                lambda sf: sf.restful(""),
            )
        except CrmRetryableError as exc:
            logger.warning("salesforce: not reachable at start (%s); writes will wait", exc)
        except CrmPermanentError as exc:
            raise CrmPermanentError(
                f"{exc} (instance {self.settings.instance_url}, {version})"
            ) from exc

    async def close(self) -> None:
        """Close the HTTP sessions."""
        self.client.close()

    # ------------------------------------------------------------------ lookup

    async def lookup_caller(self, call: CallLog) -> CallerMatch:
        """The caller's Contacts, Leads and Accounts (people first), from the cache when fresh."""
        number = call.customer_number
        wanted = search_digits(number) if number else None
        if self.settings.lookup is LookupKind.NONE or wanted is None:
            return CallerMatch(number=number)
        cached = self._cache.get(wanted)
        if cached is not None:
            return CallerMatch(number=number, records=cached)
        if self.settings.lookup is LookupKind.SOSL:
            records = await self.context.run_sync(
                self.client.call, "searching the caller", lambda sf: _sosl(sf, wanted)
            )
        else:
            exact = e164(number or "") or (number or "")
            records = await self.context.run_sync(
                self.client.call, "matching the caller", lambda sf: _soql(sf, exact)
            )
        self._cache.put(wanted, tuple(records))
        self._note_usage()
        return CallerMatch(number=number, records=tuple(records))

    # ------------------------------------------------------------------ logging

    async def log_call(self, log: CallLog) -> None:
        """Upsert the call's Task by the external id field (one record per call); with a
        ``call_object``, through the custom object keyed by the call instead."""
        if self.settings.call_object:
            await self._log_through_call_object(log)
            return
        fields = task_fields(log, self.settings)
        path = f"{self.settings.external_id_field}/{quote(log.key, safe='')}"
        what = f"logging call {log.conversation_id}"
        try:
            await self.context.run_sync(
                self.client.call, what, lambda sf: sf.Task.upsert(path, fields)
            )
        except CrmPermanentError as exc:
            if not _insert_only_refused(exc):
                raise
            # The Task existed (a retried first write whose answer was lost): update it.
            await self.context.run_sync(
                self.client.call,
                what,
                lambda sf: sf.Task.upsert(path, without_insert_only(fields)),
            )
        self._note_usage()

    async def log_calls(self, logs: Sequence[CallLog]) -> Sequence[Exception | None]:
        """Upsert several calls' Tasks in one sObject Collections request; each result is read.

        With a ``call_object`` each log is written on its own (a Task without an external id
        cannot be upserted in bulk).
        """
        if self.settings.call_object:
            outcomes: list[Exception | None] = []
            for log in logs:
                try:
                    await self._log_through_call_object(log)
                except (CrmRetryableError, CrmPermanentError) as exc:
                    outcomes.append(exc)
                else:
                    outcomes.append(None)
            return outcomes
        records = [task_fields(log, self.settings) for log in logs]
        outcomes = await self._upsert_collection(logs, records)
        # Tasks that already existed refuse the insert-only field: send those again without it.
        again = [i for i, outcome in enumerate(outcomes) if _insert_only_refused(outcome)]
        if again:
            retried = await self._upsert_collection(
                [logs[i] for i in again], [without_insert_only(records[i]) for i in again]
            )
            for index, outcome in zip(again, retried, strict=True):
                outcomes[index] = outcome
        return outcomes

    async def _log_through_call_object(self, log: CallLog) -> None:
        """Where Task carries no external id: find the call's Task (memory, then an exact SOQL
        match on ``CallObject`` — immediate, unlike search), update or create it, and upsert the
        custom call object keyed by the call, pointing at the Task.

        One write of a call is in flight at a time (the outbox's per-call order), so
        find-or-create cannot race itself; a create whose answer was lost is found by the next
        attempt's query.
        """
        settings = self.settings
        memory_key = f"task:{log.key}"
        what = f"logging call {log.conversation_id}"
        task_id = await self.context.memory.get(memory_key)
        if task_id is None:
            key = soql_quote(log.key)  # a quoted literal is all that varies
            query = f"SELECT Id FROM Task WHERE CallObject = {key} LIMIT 2"  # noqa: S608
            found = await self.context.run_sync(self.client.call, what, lambda sf: sf.query(query))
            rows = found.get("records", []) if isinstance(found, Mapping) else []
            task_id = str(rows[0]["Id"]) if rows else None
        fields = task_fields(log, settings)
        if task_id is None:
            created = await self.context.run_sync(
                self.client.call, what, lambda sf: sf.Task.create(fields)
            )
            task_id = str(created["id"])
        else:
            known = task_id
            await self.context.run_sync(
                self.client.call,
                what,
                lambda sf: sf.Task.update(known, without_insert_only(fields)),
            )
        await self.context.memory.set(memory_key, task_id)
        call_fields: dict[str, Any] = {
            settings.call_object_task: task_id,
            "Direction__c": fields["CallType"],
        }
        if log.crm_user_id:
            call_fields["Agent__c"] = log.crm_user_id
        if log.completed:
            call_fields["Duration__c"] = int(log.duration_seconds)
        path = f"{settings.call_object_key}/{quote(log.key, safe='')}"
        sobject = str(settings.call_object)
        await self.context.run_sync(
            self.client.call,
            what,
            lambda sf: getattr(sf, sobject).upsert(path, call_fields),
        )
        self._note_usage()

    async def _upsert_collection(
        self, logs: Sequence[CallLog], fields: Sequence[dict[str, Any]]
    ) -> list[Exception | None]:
        """One ``PATCH /composite/sobjects/Task/{field}``; each record's own outcome."""
        field = self.settings.external_id_field
        records = [
            {"attributes": {"type": "Task"}, field: log.key, **values}
            for log, values in zip(logs, fields, strict=True)
        ]
        body = {"allOrNone": False, "records": records}
        results = await self.context.run_sync(
            self.client.call,
            f"logging {len(logs)} calls",
            lambda sf: sf.restful(f"composite/sobjects/Task/{field}", method="PATCH", json=body),
        )
        self._note_usage()
        if not isinstance(results, list) or len(results) != len(logs):
            raise CrmRetryableError(
                f"Salesforce answered {len(results) if isinstance(results, list) else 'no'} "
                f"result(s) for {len(logs)} records in one collection request"
            )
        outcomes: list[Exception | None] = []
        for log, result in zip(logs, results, strict=True):
            if isinstance(result, dict) and result.get("success") is True:
                outcomes.append(None)
            else:
                errors = result.get("errors") if isinstance(result, dict) else result
                outcomes.append(
                    from_record_errors(
                        errors,
                        what=f"the Task of call {log.conversation_id}",
                        limit_wait=self.settings.request_limit_wait,
                    )
                )
        return outcomes

    def _note_usage(self) -> None:
        usage = self.client.usage
        if usage is None or not usage.allowed:
            return
        step = int(usage.fraction / _USAGE_STEP)
        if step != self._usage_logged:
            self._usage_logged = step
            logger.info(
                "salesforce: API usage %d of %d requests today (%.0f %%)",
                usage.used,
                usage.allowed,
                100 * usage.fraction,
            )


def _record(row: Mapping[str, Any]) -> CrmRecord:
    attributes = row.get("attributes") or {}
    return CrmRecord(
        kind=str(attributes.get("type") or "Record"),
        id=str(row["Id"]),
        name=None if row.get("Name") is None else str(row["Name"]),
    )


def _sosl(sf: Salesforce, wanted: str) -> list[CrmRecord]:
    returning = ", ".join(f"{name}({fields})" for name, fields, _ in _LOOKUP_OBJECTS)
    query = (
        f"FIND {{{escape_sosl(wanted)}}} IN PHONE FIELDS RETURNING {returning} "
        f"LIMIT {_LOOKUP_LIMIT}"
    )
    found = sf.search(query)
    rows = found.get("searchRecords", []) if isinstance(found, Mapping) else []
    order = {name: index for index, (name, _, _) in enumerate(_LOOKUP_OBJECTS)}
    records = [_record(row) for row in rows if isinstance(row, Mapping) and row.get("Id")]
    return sorted(records, key=lambda record: order.get(record.kind, len(order)))


def _soql(sf: Salesforce, number: str) -> list[CrmRecord]:
    records: list[CrmRecord] = []
    for name, fields, phones in _LOOKUP_OBJECTS:
        condition = " OR ".join(f"{phone} = {soql_quote(number)}" for phone in phones)
        # Only our constant names and a quoted literal (soql_quote) go into the query.
        soql = f"SELECT {fields} FROM {name} WHERE {condition} LIMIT {_LOOKUP_LIMIT}"  # noqa: S608
        found = sf.query(soql)
        rows = found.get("records", []) if isinstance(found, Mapping) else []
        records.extend(_record(row) for row in rows if isinstance(row, Mapping) and row.get("Id"))
    return records


def _insert_only_refused(error: Exception | None) -> bool:
    """True when Salesforce refused a write for naming a field only an insert may set."""
    text = str(error) if error is not None else ""
    return "INVALID_FIELD_FOR_INSERT_UPDATE" in text and "TaskSubtype" in text
