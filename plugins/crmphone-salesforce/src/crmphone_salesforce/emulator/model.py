"""The emulated Salesforce org as a pure model: records, validation, DML, query, search, counters.

No sockets and no sleeps: time comes from the injected ``clock`` (monotonic seconds: session
expiry, search lag, the API allowance's day) and ``wall_clock`` (aware UTC datetimes: the
``CreatedDate`` of records, token ``issued_at``). Everything is deterministic from ``seed`` except
the credentials, which are random unless configured.

Writes follow Salesforce's two stages, which decide how a bad value is answered:

1. *Deserialization* (the request body becomes typed sObjects): an unknown field is 400
   ``INVALID_FIELD`` (``No such column 'X' on sobject of type T``); a value of the wrong JSON type
   — ``""`` or ``"abc"`` for the integer ``CallDurationInSeconds``, a bad date — is 400
   ``JSON_PARSER_ERROR`` (``Cannot deserialize instance of int from VALUE_STRING value ...``). In
   an sObject Collections request this fails the whole request, not one record.
2. *DML* (each record is checked and saved): ``REQUIRED_FIELD_MISSING``,
   ``INVALID_FIELD_FOR_INSERT_UPDATE`` (read-only or create-only fields such as
   ``TaskSubtype`` on update), ``STRING_TOO_LONG``, ``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``
   (``CallType``, ``Status``, ...), ``INVALID_EMAIL_ADDRESS``, and for references ``MALFORMED_ID``
   (not an id), ``FIELD_INTEGRITY_EXCEPTION`` (an id of the wrong object: ``Name ID: id value of
   incorrect type: 001...``) or ``INVALID_CROSS_REFERENCE_KEY`` (no such record), and
   ``DUPLICATE_VALUE`` for a unique external id already taken. A single-record request answers
   400 with every error of the record; a collection answers 200 with a result per record.

Text values are stored as given except ``""``, which Salesforce stores as null. External ids
compare case-insensitively, as Salesforce's text external ids do.
"""

from __future__ import annotations

import itertools
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal

import attrs

from crmphone.errors import ConfigError

from .auth import DEFAULT_SESSION_TTL, LOGIN_AUDIENCES, Authenticator
from .errors import ApiError, ErrorItem, not_found
from .faults import Faults
from .ids import KEY_PREFIXES, IdSource, key_prefix, normalize
from .schema import (
    DEFAULT_EXTERNAL_IDS,
    DEFAULT_TASK_STATUSES,
    ExternalId,
    FieldSpec,
    FieldType,
    SObjectSpec,
    build_schema,
    salesforce_datetime,
)
from .seed import seed_org
from .soql import no_such_column, parse_soql, select
from .sosl import parse_sosl, phones_match
from .stats import DEFAULT_API_LIMIT, LOG_SIZE, ApiUsage, Stats

__all__ = [
    "API_VERSIONS",
    "MAX_COLLECTION_RECORDS",
    "Outcome",
    "Record",
    "SalesforceModel",
    "SalesforceSettings",
    "version_label",
]

API_VERSIONS = tuple(f"{major}.0" for major in range(55, 65))
"""The REST API versions the emulator serves (Summer '22 to Summer '25)."""

MAX_COLLECTION_RECORDS = 200
"""The most records one sObject Collections request may carry."""

Outcome = Literal["one", "many", "none"]
"""How many seeded records a phone number matches (see :meth:`SalesforceModel.seeded_numbers`)."""

_ROLLED_BACK = ErrorItem(
    "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    (),
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INTEGER = re.compile(r"^\s*-?\d+\s*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_JSON_TYPE_NAMES = {
    FieldType.INT: "int",
    FieldType.DOUBLE: "double",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATE: "date",
    FieldType.DATETIME: "datetime",
}


def version_label(version: str) -> str:
    """The release name of an API version: ``62.0`` → ``Winter '25`` (three releases a year)."""
    offset = int(float(version)) - 62
    season = ("Winter", "Spring", "Summer")[offset % 3]
    return f"{season} '{25 + offset // 3:02d}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@attrs.frozen
class SalesforceSettings:
    """How the emulated org is set up. Every option has a default that works out of the box.

    Credentials left None are generated at random per model (read them back from
    ``model.auth``). ``jwt_certificate`` (PEM certificate or public key) enables the JWT bearer
    flow; ``run_as_username`` is who client-credentials sessions and the fixed session id act as
    (default: the seeded integration user). ``agents`` CRM users are seeded with the names and
    e-mail addresses of the sandbox's first agents, so the two can be matched.
    """

    client_id: str = "crmphone-emulator-connected-app"
    client_secret: str | None = attrs.field(default=None, repr=False)
    session_id: str | None = attrs.field(default=None, repr=False)
    jwt_certificate: str | bytes | None = attrs.field(default=None, repr=False)
    jwt_audiences: tuple[str, ...] = LOGIN_AUDIENCES
    run_as_username: str | None = None
    session_ttl: float = DEFAULT_SESSION_TTL
    api_limit: int = DEFAULT_API_LIMIT
    api_versions: tuple[str, ...] = API_VERSIONS
    task_statuses: tuple[str, ...] = DEFAULT_TASK_STATUSES
    external_ids: tuple[ExternalId, ...] = DEFAULT_EXTERNAL_IDS
    agents: int = 4
    search_lag: float = 0.0
    log_size: int = LOG_SIZE


@attrs.define
class Record:
    """One stored record: its object, its values (every field, API names), and when it last
    changed (clock seconds; what search-index lag compares against)."""

    sobject: str
    values: dict[str, Any]
    touched_at: float

    @property
    def id(self) -> str:
        """The record's 18-character id."""
        return str(self.values["Id"])


@attrs.frozen
class _Prepared:
    """One record of a write request after deserialization (stage 1)."""

    spec: SObjectSpec
    values: dict[str, Any]


@attrs.frozen
class _Change:
    """A journal entry: undo a create (``before`` None) or restore ``before``."""

    sobject: str
    record_id: str
    before: Record | None


class SalesforceModel:
    """The emulated org. The HTTP layer calls the request methods; tests call the helpers.

    Attributes for tests: :attr:`auth` (sessions, credentials, :meth:`expire_sessions`),
    :attr:`faults` (``fail_next``), :attr:`stats` (requests by route, log), :attr:`usage` (the
    daily API allowance), :attr:`search_lag` (seconds new or changed records stay invisible to
    search), :attr:`schema`.
    """

    def __init__(
        self,
        seed: int = 0,
        settings: SalesforceSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.seed = seed
        self.settings = settings if settings is not None else SalesforceSettings()
        self.clock = clock
        self.wall_clock = wall_clock
        self.schema: Mapping[str, SObjectSpec] = build_schema(
            task_statuses=self.settings.task_statuses, external_ids=self.settings.external_ids
        )
        self._schema_lower = {name.lower(): spec for name, spec in self.schema.items()}
        self._prefixes = {spec.key_prefix: spec.name for spec in self.schema.values()}
        self.ids = IdSource(seed)
        self.org_id = self.ids.next(KEY_PREFIXES["Organization"])
        self.search_lag = self.settings.search_lag
        self.faults = Faults()
        self.stats = Stats(log_size=self.settings.log_size)
        self.usage = ApiUsage(clock, self.settings.api_limit)
        self._records: dict[str, dict[str, Record]] = {name: {} for name in self.schema}
        self._deleted: set[str] = set()
        # Unique and external-id fields, indexed by lower-cased value (how they compare).
        self._index: dict[tuple[str, str], dict[str, list[str]]] = {
            (spec.name, field.name): {}
            for spec in self.schema.values()
            for field in spec.fields
            if field.unique or field.external_id
        }
        self._journal: list[_Change] | None = None
        self._case_numbers = itertools.count(1001)
        self._call_numbers = itertools.count(1)
        self._seeded: dict[Outcome, tuple[str, ...]] = {"one": (), "many": (), "none": ()}
        self.integration_user_id = ""
        """The integration user: who client-credentials sessions and the session id act as."""
        self.agent_user_ids: tuple[str, ...] = ()
        """The seeded agents' users, in the sandbox's agent order."""

        seeded = seed_org(self, agents=self.settings.agents)
        self._seeded = dict(seeded.numbers)
        self.integration_user_id = seeded.integration_user_id
        self.agent_user_ids = seeded.agent_user_ids
        run_as = self.integration_user_id
        if self.settings.run_as_username is not None:
            found = self.user_id(self.settings.run_as_username)
            if found is None:
                raise ConfigError("no such user", key="run_as_username")
            run_as = found
        self.auth = Authenticator(
            org_id=self.org_id,
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret or secrets.token_urlsafe(24),
            session_id=self.settings.session_id
            or f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}",
            run_as_user_id=run_as,
            users=self.user_id,
            clock=clock,
            wall_clock=wall_clock,
            certificate=self.settings.jwt_certificate,
            session_ttl=self.settings.session_ttl,
            audiences=self.settings.jwt_audiences,
        )

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={len(rows)}" for name, rows in self._records.items())
        return f"<SalesforceModel seed={self.seed} {counts}>"

    # ================================================================== helpers for tests

    def seeded_numbers(self, outcome: Outcome) -> tuple[str, ...]:
        """E.164 numbers that match exactly one seeded record (``"one"``), several (``"many"``),
        or none (``"none"``) in a phone search."""
        return self._seeded[outcome]

    def expire_sessions(self, *, keep_fixed: bool = False) -> int:
        """End every current session (see :meth:`Authenticator.expire_sessions`)."""
        return self.auth.expire_sessions(keep_fixed=keep_fixed)

    def user_id(self, username: str) -> str | None:
        """The id of the active user with ``username`` (any case), or None."""
        wanted = username.lower()
        for record in self._records["User"].values():
            if str(record.values["Username"]).lower() == wanted and record.values["IsActive"]:
                return record.id
        return None

    def insert(self, sobject: str, values: Mapping[str, Any], *, as_user: str | None = None) -> str:
        """Create a record as the API would (same validation); its id. ApiError when refused.

        ``as_user`` is the acting user's id (default: the integration user).
        """
        spec = self._spec(sobject)
        prepared = self._deserialize(spec, values)
        return self._create(prepared, as_user if as_user is not None else self.integration_user_id)

    def add_user(
        self, first_name: str, last_name: str, *, username: str, email: str | None = None
    ) -> str:
        """Add an active user; its id."""
        return self.insert(
            "User",
            {
                "FirstName": first_name,
                "LastName": last_name,
                "Username": username,
                "Email": email or username,
                "Alias": (first_name[:1] + last_name[:4]).lower(),
            },
        )

    def add_account(self, name: str, *, phone: str | None = None, **values: Any) -> str:
        """Add an account; its id."""
        return self.insert("Account", {"Name": name, "Phone": phone, **values})

    def add_contact(
        self,
        last_name: str,
        *,
        first_name: str | None = None,
        phone: str | None = None,
        mobile_phone: str | None = None,
        account_id: str | None = None,
        **values: Any,
    ) -> str:
        """Add a contact; its id."""
        return self.insert(
            "Contact",
            {
                "FirstName": first_name,
                "LastName": last_name,
                "Phone": phone,
                "MobilePhone": mobile_phone,
                "AccountId": account_id,
                **values,
            },
        )

    def add_lead(
        self,
        last_name: str,
        *,
        company: str,
        first_name: str | None = None,
        phone: str | None = None,
        mobile_phone: str | None = None,
        **values: Any,
    ) -> str:
        """Add a lead; its id."""
        return self.insert(
            "Lead",
            {
                "FirstName": first_name,
                "LastName": last_name,
                "Company": company,
                "Phone": phone,
                "MobilePhone": mobile_phone,
                **values,
            },
        )

    def add_case(self, subject: str, **values: Any) -> str:
        """Add a case (``ContactId``, ``AccountId``, ... as keyword arguments); its id."""
        return self.insert("Case", {"Subject": subject, "Origin": "Phone", **values})

    def record(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A copy of the record's values (15- or 18-character id), or None."""
        found = self._find(sobject, record_id)
        return dict(found.values) if found is not None else None

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Copies of every record of ``sobject``, oldest first."""
        return [dict(r.values) for r in self._records[self._spec(sobject).name].values()]

    def find(self, sobject: str, **equals: Any) -> list[dict[str, Any]]:
        """Copies of the records of ``sobject`` whose fields equal ``equals`` exactly."""
        return [
            row for row in self.records(sobject) if all(row.get(k) == v for k, v in equals.items())
        ]

    def count(self, sobject: str) -> int:
        """How many records of ``sobject`` exist."""
        return len(self._records[self._spec(sobject).name])

    # ================================================================== REST: records

    def spec(self, sobject: str) -> SObjectSpec:
        """The object called ``sobject`` (any case); 404 ``NOT_FOUND`` if the org has none."""
        return self._spec(sobject)

    def create(self, sobject: str, body: Any, *, user_id: str) -> str:
        """``POST /sobjects/{T}``: the new id; ApiError 400 with the record's errors."""
        spec = self._spec(sobject)
        prepared = self._deserialize(spec, body)
        return self._create(prepared, user_id)

    def retrieve(self, sobject: str, record_id: str) -> Record:
        """``GET /sobjects/{T}/{id}``; 404 when there is no such record.

        A segment that is not an id at all is read, as Salesforce does, as an external id
        field name (``NOT_FOUND`` naming it).
        """
        spec = self._spec(sobject)
        if normalize(record_id) is None:
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {record_id}"
            )
        found = self._find(spec.name, record_id)
        if found is None:
            raise not_found()
        return found

    def update(self, sobject: str, record_id: str, body: Any, *, user_id: str) -> None:
        """``PATCH /sobjects/{T}/{id}``; ApiError 400 with the record's errors, 404 if absent."""
        record = self.retrieve(sobject, record_id)
        record_spec = self.schema[record.sobject]
        values = dict(self._deserialize(record_spec, body).values)
        if "Id" in values and normalize(str(values["Id"] or "")) == record.id:
            del values["Id"]  # an Id matching the URL is allowed in the body
        errors = self._check(record_spec, values, existing=record)
        if errors:
            raise ApiError(400, errors)
        self._update(record, values, user_id)

    def delete(self, sobject: str, record_id: str) -> None:
        """``DELETE /sobjects/{T}/{id}``; 404 when absent (``ENTITY_IS_DELETED`` if deleted)."""
        spec = self._spec(sobject)
        canonical = normalize(record_id)
        if canonical is not None and canonical in self._deleted:
            raise ApiError(404, ErrorItem("entity is deleted", "ENTITY_IS_DELETED", ()))
        record = self.retrieve(spec.name, record_id)
        self._remove(record)

    def retrieve_by_external_id(
        self, sobject: str, field: str, value: str, *, version: str
    ) -> Record:
        """``GET /sobjects/{T}/{Field}/{value}``; 300 listing the matches, 404 when none."""
        spec = self._spec(sobject)
        field_spec = self._external_field(spec, field, allow_id=True)
        if field_spec.type is FieldType.ID:
            return self.retrieve(spec.name, value)
        matches = self._matches(spec.name, field_spec.name, value)
        if not matches:
            raise not_found()
        if len(matches) > 1:
            raise self._multiple(spec.name, matches, version)
        return self._records[spec.name][matches[0]]

    def upsert(
        self, sobject: str, field: str, value: str, body: Any, *, user_id: str, version: str
    ) -> tuple[str, bool]:
        """``PATCH /sobjects/{T}/{Field}/{value}``: ``(id, created)``.

        ApiError 404 when ``Field`` is not an external id, 300 (listing the record URLs) when
        several records hold ``value``, 400 with the record's errors.
        """
        spec = self._spec(sobject)
        field_spec = self._external_field(spec, field)
        prepared = self._deserialize(spec, body)
        outcome = self._upsert_one(spec, field_spec, value, prepared.values, user_id)
        if isinstance(outcome, list):
            raise self._multiple(spec.name, outcome, version)
        record_id, created, errors = outcome
        if errors:
            raise ApiError(400, errors)
        return record_id, created

    # ================================================================== REST: collections

    def collection_create(self, body: Any, *, user_id: str) -> list[dict[str, Any]]:
        """``POST /composite/sobjects``: one SaveResult per record, in order."""
        all_or_none, rows = self._collection_body(body)
        prepared = [self._deserialize(self._record_type(row, None), row) for row in rows]
        results: list[dict[str, Any]] = []
        with self._transaction() as journal:
            for item in prepared:
                if "Id" in item.values:
                    error = ErrorItem(
                        "cannot specify Id in an insert call", "INVALID_FIELD", ("Id",)
                    )
                    results.append(_failure(None, [error]))
                    continue
                errors = self._check(item.spec, item.values, existing=None)
                if errors:
                    results.append(_failure(None, errors))
                    continue
                results.append(_success(self._create_checked(item, user_id)))
            return self._settle(results, all_or_none, journal)

    def collection_update(self, body: Any, *, user_id: str) -> list[dict[str, Any]]:
        """``PATCH /composite/sobjects``: update each record by its ``Id``."""
        all_or_none, rows = self._collection_body(body)
        prepared = [self._deserialize(self._record_type(row, None), row) for row in rows]
        results: list[dict[str, Any]] = []
        with self._transaction() as journal:
            for item in prepared:
                values = dict(item.values)
                raw_id = values.pop("Id", None)
                if raw_id is None:
                    error = ErrorItem(
                        "Id not specified in an update call", "MISSING_ARGUMENT", ("Id",)
                    )
                    results.append(_failure(None, [error]))
                    continue
                record_id = normalize(str(raw_id))
                record = self._find(item.spec.name, str(raw_id)) if record_id else None
                if record is None:
                    if record_id is None or key_prefix(record_id) != item.spec.key_prefix:
                        error = ErrorItem(f"invalid record id: {raw_id}", "MALFORMED_ID", ("Id",))
                    elif record_id in self._deleted:
                        error = ErrorItem("entity is deleted", "ENTITY_IS_DELETED", ())
                    else:
                        error = ErrorItem(
                            "invalid cross reference id", "INVALID_CROSS_REFERENCE_KEY", ()
                        )
                    results.append(_failure(str(raw_id), [error]))
                    continue
                errors = self._check(item.spec, values, existing=record)
                if errors:
                    results.append(_failure(record.id, errors))
                    continue
                self._update(record, values, user_id)
                results.append(_success(record.id))
            return self._settle(results, all_or_none, journal)

    def collection_upsert(
        self, sobject: str, field: str, body: Any, *, user_id: str
    ) -> list[dict[str, Any]]:
        """``PATCH /composite/sobjects/{T}/{Field}``: upsert each record by ``Field``.

        Each result carries ``created``. A record without the field, or whose value another
        record of the same request repeats, fails on its own; one matching several records fails
        with ``DUPLICATE_EXTERNAL_ID``.
        """
        spec = self._spec(sobject)
        field_spec = self._external_field(spec, field)
        all_or_none, rows = self._collection_body(body)
        prepared = [self._deserialize(self._record_type(row, spec), row) for row in rows]
        keys = [_text_key(item.values.get(field_spec.name)) for item in prepared]
        repeated = {key for key in keys if key is not None and keys.count(key) > 1}
        results: list[dict[str, Any]] = []
        with self._transaction() as journal:
            for item, key in zip(prepared, keys, strict=True):
                value = item.values.get(field_spec.name)
                if key is None:
                    error = ErrorItem(
                        f"{field_spec.name} not specified", "MISSING_ARGUMENT", (field_spec.name,)
                    )
                    results.append(_failure(None, [error], created=False))
                    continue
                if key in repeated:
                    error = ErrorItem(
                        f"Duplicate external id specified: {value}",
                        "DUPLICATE_VALUE",
                        (field_spec.name,),
                    )
                    results.append(_failure(None, [error], created=False))
                    continue
                outcome = self._upsert_one(spec, field_spec, str(value), item.values, user_id)
                if isinstance(outcome, list):
                    error = ErrorItem(
                        f"{field_spec.name}: more than one record found for external id field: "
                        f"[{', '.join(outcome)}]",
                        "DUPLICATE_EXTERNAL_ID",
                        (field_spec.name,),
                    )
                    results.append(_failure(None, [error], created=False))
                    continue
                record_id, created, errors = outcome
                if errors:
                    results.append(_failure(record_id or None, errors, created=False))
                else:
                    results.append(_success(record_id, created=created))
            return self._settle(results, all_or_none, journal)

    def collection_delete(self, ids: Sequence[str], *, all_or_none: bool) -> list[dict[str, Any]]:
        """``DELETE /composite/sobjects?ids=...``: delete each record."""
        if len(ids) > MAX_COLLECTION_RECORDS:
            raise _too_many()
        results: list[dict[str, Any]] = []
        with self._transaction() as journal:
            for raw_id in ids:
                record_id = normalize(raw_id)
                sobject = self._prefixes.get(key_prefix(record_id)) if record_id else None
                record = self._find(sobject, raw_id) if sobject else None
                if record is None:
                    if record_id is not None and record_id in self._deleted:
                        error = ErrorItem("entity is deleted", "ENTITY_IS_DELETED", ())
                    else:
                        error = ErrorItem(f"invalid record id: {raw_id}", "MALFORMED_ID", ())
                    results.append(_failure(raw_id, [error]))
                    continue
                self._remove(record)
                results.append(_success(record.id))
            return self._settle(results, all_or_none, journal)

    # ================================================================== REST: query and search

    def query(self, text: str, *, version: str) -> dict[str, Any]:
        """``GET /query?q=...``: ``{"totalSize", "done": true, "records"}``."""
        parsed = parse_soql(text)
        spec = self._query_spec(parsed.sobject)
        fields = self._query_fields(spec, parsed.fields)
        rows = select(self._records[spec.name].values(), spec, parsed)
        return {
            "totalSize": len(rows),
            "done": True,
            "records": [self.render(r, version, fields) for r in rows],
        }

    def search(self, text: str, *, version: str) -> dict[str, Any]:
        """``GET /search?q=...``: ``{"searchRecords": [...]}`` (phone search, see :mod:`.sosl`).

        Records created or changed less than :attr:`search_lag` seconds ago are not found yet.
        """
        parsed = parse_sosl(text)
        digits = parsed.digits
        now = self.clock()
        found: list[dict[str, Any]] = []
        for returning in parsed.returning:
            spec = self._query_spec(returning.sobject)
            fields = self._query_fields(spec, returning.fields)
            for record in self._records[spec.name].values():
                if now - record.touched_at < self.search_lag:
                    continue
                if any(
                    phones_match(str(record.values.get(f) or ""), digits) for f in spec.phone_fields
                ):
                    found.append(self.render(record, version, fields))
        if parsed.limit is not None:
            found = found[: parsed.limit]
        return {"searchRecords": found}

    # ================================================================== REST: shapes

    def render(
        self, record: Record, version: str, fields: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """A record as the API answers it: ``attributes`` then the fields (all by default)."""
        spec = self.schema[record.sobject]
        names = tuple(fields) if fields is not None else tuple(f.name for f in spec.fields)
        body: dict[str, Any] = {"attributes": self.attributes(record, version)}
        for name in names:
            body[name] = record.values.get(name)
        return body

    @staticmethod
    def attributes(record: Record, version: str) -> dict[str, str]:
        """``{"type", "url"}`` of a record."""
        return {
            "type": record.sobject,
            "url": f"/services/data/v{version}/sobjects/{record.sobject}/{record.id}",
        }

    def global_describe(self, version: str) -> dict[str, Any]:
        """``GET /sobjects``."""
        return {
            "encoding": "UTF-8",
            "maxBatchSize": MAX_COLLECTION_RECORDS,
            "sobjects": [spec.summary(version) for spec in self.schema.values()],
        }

    def limits(self) -> dict[str, Any]:
        """``GET /limits`` (the daily API requests only)."""
        used = self.usage.used
        return {
            "DailyApiRequests": {
                "Max": self.usage.limit,
                "Remaining": max(0, self.usage.limit - used),
            }
        }

    # ================================================================== internals: stage 1

    def _spec(self, sobject: str) -> SObjectSpec:
        spec = self._schema_lower.get(sobject.lower())
        if spec is None:
            raise not_found()
        return spec

    def _query_spec(self, sobject: str) -> SObjectSpec:
        spec = self._schema_lower.get(sobject.lower())
        if spec is None:
            raise ApiError(
                400,
                ErrorItem(
                    f"sObject type '{sobject}' is not supported. If you are attempting to use a "
                    "custom object, be sure to append the '__c' after the entity name. Please "
                    "reference your WSDL or the describe call for the appropriate names.",
                    "INVALID_TYPE",
                ),
            )
        return spec

    def _query_fields(self, spec: SObjectSpec, names: Iterable[str]) -> tuple[str, ...]:
        resolved: list[str] = []
        for name in names:
            field = spec.field(name)
            if field is None:
                raise no_such_column(spec, name)
            if field.name in resolved:
                raise ApiError(
                    400, ErrorItem(f"duplicate field selected: {field.name}", "MALFORMED_QUERY")
                )
            resolved.append(field.name)
        return tuple(resolved)

    def _external_field(
        self, spec: SObjectSpec, field: str, *, allow_id: bool = False
    ) -> FieldSpec:
        found = spec.field(field)
        by_id = allow_id and found is not None and found.type is FieldType.ID
        if found is None or not (found.external_id or by_id):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {field}"
            )
        return found

    def _record_type(self, row: Any, expected: SObjectSpec | None) -> SObjectSpec:
        attributes = row.get("attributes") if isinstance(row, Mapping) else None
        sobject = attributes.get("type") if isinstance(attributes, Mapping) else None
        if sobject is None and expected is not None:
            return expected
        if not isinstance(sobject, str):
            # The wording is ours: Salesforce's exact message for a missing type is unconfirmed.
            raise ApiError(
                400,
                ErrorItem(
                    "Each record of an sObject Collections request needs attributes with a type",
                    "INVALID_TYPE",
                ),
            )
        spec = self._schema_lower.get(sobject.lower())
        if spec is None or (expected is not None and spec is not expected):
            raise ApiError(
                400, ErrorItem(f"sObject type '{sobject}' is not supported.", "INVALID_TYPE")
            )
        return spec

    def _collection_body(self, body: Any) -> tuple[bool, list[Any]]:
        if not isinstance(body, Mapping) or not isinstance(body.get("records"), list):
            raise _parser_error(
                'Cannot deserialize the request: expected {"allOrNone", "records": [...]}'
            )
        all_or_none = body.get("allOrNone", False)
        if not isinstance(all_or_none, bool):
            raise _parser_error(
                f"Cannot deserialize instance of boolean from {_token(all_or_none)} value {all_or_none}"
            )
        rows: list[Any] = body["records"]
        if len(rows) > MAX_COLLECTION_RECORDS:
            raise _too_many()
        return all_or_none, rows

    def _deserialize(self, spec: SObjectSpec, body: Any) -> _Prepared:
        if not isinstance(body, Mapping):
            raise _parser_error(
                f"Cannot deserialize instance of {spec.name} from {_token(body)} value "
                f"{_shown(body)} or request may be missing a required field"
            )
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key == "attributes":
                continue
            field = spec.field(str(key))
            if field is None:
                raise ApiError(
                    400,
                    ErrorItem(
                        f"No such column '{key}' on sobject of type {spec.name}", "INVALID_FIELD"
                    ),
                )
            values[field.name] = _coerce(field, value)
        return _Prepared(spec, values)

    # ================================================================== internals: stage 2

    def _check(
        self, spec: SObjectSpec, values: Mapping[str, Any], *, existing: Record | None
    ) -> list[ErrorItem]:
        errors: list[ErrorItem] = []
        locked = [name for name in values if not _writable(spec, name, creating=existing is None)]
        if locked:
            errors.append(
                ErrorItem(
                    f"Unable to create/update fields: {', '.join(locked)}. Please check the "
                    "security settings of this field and verify that it is read/write for your "
                    "profile or permission set.",
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    tuple(locked),
                )
            )
        for name, value in values.items():
            field = spec.field(name)
            if field is None or name in locked or value is None:
                continue
            error = self._check_value(field, value)
            if error is not None:
                errors.append(error)
        if existing is not None:
            merged = dict(existing.values)
        else:
            # On create, defaults fill what the body leaves out; OwnerId defaults to the caller.
            merged = {**spec.defaults, "OwnerId": "(the caller)"}
        merged.update(values)
        missing = [f.name for f in spec.fields if f.required and merged.get(f.name) is None]
        if missing:
            errors.append(
                ErrorItem(
                    f"Required fields are missing: [{', '.join(missing)}]",
                    "REQUIRED_FIELD_MISSING",
                    tuple(missing),
                )
            )
        for field in spec.fields:
            if not field.unique or values.get(field.name) is None or field.name in locked:
                continue
            holders = self._matches(spec.name, field.name, str(values[field.name]))
            others = [h for h in holders if existing is None or h != existing.id]
            if others:
                errors.append(
                    ErrorItem(
                        f"duplicate value found: {field.name} duplicates value on record with "
                        f"id: {others[0]}",
                        "DUPLICATE_VALUE",
                        (),
                    )
                )
        return errors

    def _check_value(self, field: FieldSpec, value: Any) -> ErrorItem | None:
        if field.type.is_text and field.length and len(str(value)) > field.length:
            return ErrorItem(
                f"{field.label}: data value too large: {str(value)[:64]} (max length={field.length})",
                "STRING_TOO_LONG",
                (field.name,),
            )
        if field.type is FieldType.PICKLIST and field.restricted and value not in field.picklist:
            return ErrorItem(
                f"{field.label}: bad value for restricted picklist field: {value}",
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                (field.name,),
            )
        if field.type is FieldType.EMAIL and not _EMAIL.match(str(value)):
            return ErrorItem(
                f"{field.label}: invalid email address: {value}",
                "INVALID_EMAIL_ADDRESS",
                (field.name,),
            )
        if field.type is FieldType.REFERENCE:
            return self._check_reference(field, str(value))
        return None

    def _check_reference(self, field: FieldSpec, value: str) -> ErrorItem | None:
        record_id = normalize(value)
        if record_id is None:
            return ErrorItem(
                f"{field.label}: id value of incorrect type: {value}", "MALFORMED_ID", (field.name,)
            )
        target = self._prefixes.get(key_prefix(record_id))
        allowed_prefixes = {KEY_PREFIXES.get(name) for name in field.reference_to}
        if key_prefix(record_id) not in allowed_prefixes:
            return ErrorItem(
                f"{field.label}: id value of incorrect type: {value}",
                "FIELD_INTEGRITY_EXCEPTION",
                (field.name,),
            )
        if target is None or record_id not in self._records[target]:
            # Salesforce's wording for a well-formed id of the right object that does not exist.
            return ErrorItem(
                "invalid cross reference id", "INVALID_CROSS_REFERENCE_KEY", (field.name,)
            )
        return None

    # ================================================================== internals: writes

    def _create(self, prepared: _Prepared, user_id: str) -> str:
        errors: list[ErrorItem] = []
        if "Id" in prepared.values:
            errors.append(
                ErrorItem("cannot specify Id in an insert call", "INVALID_FIELD", ("Id",))
            )
        errors.extend(self._check(prepared.spec, prepared.values, existing=None))
        if errors:
            raise ApiError(400, errors)
        return self._create_checked(prepared, user_id)

    def _create_checked(self, prepared: _Prepared, user_id: str) -> str:
        spec = prepared.spec
        record_id = self.ids.next(spec.key_prefix)
        now = salesforce_datetime(self.wall_clock())
        values: dict[str, Any] = {f.name: None for f in spec.fields}
        values.update(spec.defaults)
        if spec.field("OwnerId") is not None:
            values["OwnerId"] = user_id
        values.update({k: _canonical_id(spec, k, v) for k, v in prepared.values.items()})
        values.update(
            Id=record_id,
            CreatedDate=now,
            CreatedById=user_id,
            LastModifiedDate=now,
            LastModifiedById=user_id,
            SystemModstamp=now,
            IsDeleted=False,
        )
        if spec.name == "Case":
            values["CaseNumber"] = f"{next(self._case_numbers):08d}"
        if spec.name == "CTI_Call__c":
            values["Name"] = f"CTI-{next(self._call_numbers):06d}"
        _compute(spec, values)
        record = Record(spec.name, values, self.clock())
        self._store(record, before=None)
        return record_id

    def _update(self, record: Record, values: Mapping[str, Any], user_id: str) -> None:
        spec = self.schema[record.sobject]
        before = Record(record.sobject, dict(record.values), record.touched_at)
        self._unindex(record)
        record.values.update({k: _canonical_id(spec, k, v) for k, v in values.items()})
        now = salesforce_datetime(self.wall_clock())
        record.values.update(LastModifiedDate=now, LastModifiedById=user_id, SystemModstamp=now)
        _compute(spec, record.values)
        record.touched_at = self.clock()
        self._reindex(record)
        if self._journal is not None:
            self._journal.append(_Change(record.sobject, record.id, before))

    def _upsert_one(
        self,
        spec: SObjectSpec,
        field: FieldSpec,
        value: str,
        values: Mapping[str, Any],
        user_id: str,
    ) -> tuple[str, bool, list[ErrorItem]] | list[str]:
        """``(id, created, errors)``, or the matching ids when there are several."""
        body_value = values.get(field.name)
        if body_value is not None and _text_key(body_value) != _text_key(value):
            # Wording ours: Salesforce refuses a body whose external id differs from the URL's.
            error = ErrorItem(
                f"{field.name}: the value in the request body does not match the value in the URL",
                "INVALID_FIELD",
                (field.name,),
            )
            return "", False, [error]
        matches = self._matches(spec.name, field.name, value)
        if len(matches) > 1:
            return matches
        changes = dict(values)
        if not matches:
            new_values = {**changes, field.name: value}
            errors = self._check(spec, new_values, existing=None)
            if errors:
                return "", False, errors
            return self._create_checked(_Prepared(spec, new_values), user_id), True, []
        record = self._records[spec.name][matches[0]]
        update = {
            k: v
            for k, v in changes.items()
            if not (k == field.name and _text_key(v) == _text_key(value))
        }
        errors = self._check(spec, update, existing=record)
        if errors:
            return record.id, False, errors
        self._update(record, update, user_id)
        return record.id, False, []

    def _remove(self, record: Record) -> None:
        self._unindex(record)
        del self._records[record.sobject][record.id]
        self._deleted.add(record.id)
        if self._journal is not None:
            self._journal.append(
                _Change(
                    record.sobject,
                    record.id,
                    Record(record.sobject, record.values, record.touched_at),
                )
            )

    def _store(self, record: Record, *, before: Record | None) -> None:
        self._records[record.sobject][record.id] = record
        self._reindex(record)
        if self._journal is not None:
            self._journal.append(_Change(record.sobject, record.id, before))

    def _find(self, sobject: str | None, record_id: str) -> Record | None:
        canonical = normalize(record_id)
        if canonical is None or sobject is None:
            return None
        return self._records[self._spec(sobject).name].get(canonical)

    def _matches(self, sobject: str, field: str, value: str) -> list[str]:
        index = self._index.get((sobject, field))
        key = _text_key(value)
        if index is None or key is None:
            return []
        return list(index.get(key, ()))

    def _reindex(self, record: Record) -> None:
        for (sobject, field), index in self._index.items():
            if sobject == record.sobject:
                key = _text_key(record.values.get(field))
                if key is not None:
                    index.setdefault(key, []).append(record.id)

    def _unindex(self, record: Record) -> None:
        for (sobject, field), index in self._index.items():
            if sobject == record.sobject:
                key = _text_key(record.values.get(field))
                holders = index.get(key, []) if key is not None else []
                if record.id in holders:
                    holders.remove(record.id)
                    if not holders:
                        del index[key]  # type: ignore[arg-type]

    def _multiple(self, sobject: str, ids: Sequence[str], version: str) -> ApiError:
        urls = [f"/services/data/v{version}/sobjects/{sobject}/{record_id}" for record_id in ids]
        error = ErrorItem(
            f"More than one record found for the external id: {len(ids)} records",
            "MULTIPLE_CHOICES",
        )
        return ApiError(300, error, body=urls)

    # ================================================================== internals: all or none

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    def _settle(
        self, results: list[dict[str, Any]], all_or_none: bool, journal: list[_Change]
    ) -> list[dict[str, Any]]:
        if not all_or_none or all(result["success"] for result in results):
            return results
        created_ids = {change.record_id for change in journal if change.before is None}
        self._rollback(journal)
        settled = []
        for result in results:
            if result["success"]:
                # A created record that is rolled back never existed: no id, as for failures.
                record_id = None if result["id"] in created_ids else result["id"]
                created = False if "created" in result else None
                settled.append(_failure(record_id, [_ROLLED_BACK], created=created))
            else:
                settled.append(result)
        return settled

    def _rollback(self, journal: list[_Change]) -> None:
        for change in reversed(journal):
            current = self._records[change.sobject].get(change.record_id)
            if current is not None:
                self._unindex(current)
                del self._records[change.sobject][change.record_id]
            if change.before is not None:
                self._deleted.discard(change.record_id)
                self._records[change.sobject][change.record_id] = change.before
                self._reindex(change.before)
        journal.clear()


class _Transaction:
    """Journals every write of a collection request so allOrNone can undo them."""

    def __init__(self, model: SalesforceModel) -> None:
        self._model = model
        self._journal: list[_Change] = []

    def __enter__(self) -> list[_Change]:
        self._model._journal = self._journal
        return self._journal

    def __exit__(self, *exc_info: object) -> None:
        self._model._journal = None


# ====================================================================== module helpers


def _success(record_id: str, *, created: bool | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"id": record_id, "success": True, "errors": []}
    if created is not None:
        result["created"] = created
    return result


def _failure(
    record_id: str | None, errors: Sequence[ErrorItem], *, created: bool | None = None
) -> dict[str, Any]:
    # A record that was never saved has no id: Salesforce leaves the key out.
    result: dict[str, Any] = {} if record_id is None else {"id": record_id}
    result.update(success=False, errors=[e.to_result_json() for e in errors])
    if created is not None:
        result["created"] = created
    return result


def _too_many() -> ApiError:
    return ApiError(
        400,
        ErrorItem(
            f"record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records "
            "into this call",
            "EXCEEDED_ID_LIMIT",
        ),
    )


def _parser_error(message: str) -> ApiError:
    return ApiError(400, ErrorItem(message, "JSON_PARSER_ERROR"))


def _token(value: Any) -> str:
    """Jackson's name for the JSON token ``value`` was (what Salesforce's messages quote)."""
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, Mapping):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    return "VALUE_NULL"


def _shown(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{"
    if isinstance(value, list):
        return "["
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _wrong_type(field: FieldSpec, value: Any) -> ApiError:
    type_name = _JSON_TYPE_NAMES.get(field.type, "string")
    # Salesforce appends " at [line:1, column:N]"; the emulator does not track positions.
    return _parser_error(
        f"Cannot deserialize instance of {type_name} from {_token(value)} value {_shown(value)} "
        "or request may be missing a required field"
    )


def _coerce(field: FieldSpec, value: Any) -> Any:
    """Stage 1 for one value: the typed value, or JSON_PARSER_ERROR."""
    if value is None:
        return None
    kind = field.type
    if isinstance(value, Mapping | list):
        raise _wrong_type(field, value)
    if kind is FieldType.INT:
        if isinstance(value, bool):
            raise _wrong_type(field, value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER.match(value):
            return int(value)
        raise _wrong_type(field, value)
    if kind is FieldType.DOUBLE:
        if isinstance(value, bool):
            raise _wrong_type(field, value)
        if isinstance(value, int | float):
            return float(value)
        try:
            number = float(value)
        except ValueError:
            raise _wrong_type(field, value) from None
        if not math.isfinite(number):
            raise _wrong_type(field, value)
        return number
    if kind is FieldType.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _wrong_type(field, value)
    if kind is FieldType.DATE:
        if isinstance(value, str) and _DATE.match(value):
            try:
                date.fromisoformat(value)
            except ValueError:
                raise _wrong_type(field, value) from None
            return value
        raise _wrong_type(field, value)
    if kind is FieldType.DATETIME:
        if not isinstance(value, str):
            raise _wrong_type(field, value)
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _wrong_type(field, value) from None
        return salesforce_datetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    # Text, ids and references: JSON numbers and booleans are taken as their text.
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text if text != "" else None


def _writable(spec: SObjectSpec, name: str, *, creating: bool) -> bool:
    field = spec.field(name)
    return field is not None and (field.createable if creating else field.updateable)


def _canonical_id(spec: SObjectSpec, name: str, value: Any) -> Any:
    field = spec.field(name)
    if value is not None and field is not None and field.type is FieldType.REFERENCE:
        return normalize(str(value)) or value
    return value


def _compute(spec: SObjectSpec, values: dict[str, Any]) -> None:
    if spec.name in ("Contact", "Lead", "User"):
        parts = [values.get("FirstName"), values.get("LastName")]
        values["Name"] = " ".join(str(p) for p in parts if p)


def _text_key(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text.lower() if text else None
