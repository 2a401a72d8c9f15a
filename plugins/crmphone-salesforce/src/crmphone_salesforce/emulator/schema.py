"""The emulated org's objects and fields: what exists, of which type, and what may be written.

Seven objects: ``User``, ``Account``, ``Contact``, ``Lead``, ``Case``, ``Task`` (with the call
fields connectors write, see PROTOCOLS.md §2, plus the custom fields ``CTI_Call_Id__c``,
``Queue__c`` and ``Recording_URL__c``) and the custom object ``CTI_Call__c`` (a call keyed by
``Call_Id__c``, for orgs where Task cannot carry an external id). Field names, types, labels,
lengths and create/update rights follow Salesforce's object reference; the emulator keeps the
fields a telephony connector touches, not every field of the real objects.

Which text fields are *external ids* (the key of upsert) is a setting
(:class:`ExternalId`), as are the Task ``Status`` values (an org configures its own).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from crmphone.errors import ConfigError

from .ids import KEY_PREFIXES

__all__ = [
    "DEFAULT_EXTERNAL_IDS",
    "DEFAULT_TASK_STATUSES",
    "PHONE_FIELDS",
    "ExternalId",
    "FieldSpec",
    "FieldType",
    "SObjectSpec",
    "build_schema",
    "salesforce_datetime",
]


def salesforce_datetime(moment: datetime) -> str:
    """A datetime as Salesforce writes it: ``2026-01-31T09:15:00.000+0000`` (UTC; naive is UTC)."""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


class FieldType(enum.StrEnum):
    """A field's type as describe names it (``soapType`` aside)."""

    ID = "id"
    REFERENCE = "reference"
    STRING = "string"
    TEXTAREA = "textarea"
    PICKLIST = "picklist"
    PHONE = "phone"
    EMAIL = "email"
    URL = "url"
    INT = "int"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"

    @property
    def is_text(self) -> bool:
        """Whether values are strings compared as text (ids and references excluded)."""
        return self in _TEXT_TYPES


_TEXT_TYPES = frozenset(
    {
        FieldType.STRING,
        FieldType.TEXTAREA,
        FieldType.PICKLIST,
        FieldType.PHONE,
        FieldType.EMAIL,
        FieldType.URL,
    }
)


@attrs.frozen
class FieldSpec:
    """One field: its API name, type, label and rules.

    ``required`` fields must have a value after defaults apply (Salesforce: not nillable and not
    defaulted on create). ``restricted`` picklists refuse values outside ``picklist``.
    ``computed`` fields are derived by the emulator (``Name`` of people, ``CaseNumber``).
    """

    name: str
    type: FieldType
    label: str
    length: int = 0
    reference_to: tuple[str, ...] = ()
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    external_id: bool = False
    unique: bool = False
    createable: bool = True
    updateable: bool = True
    required: bool = False
    computed: bool = False

    @property
    def custom(self) -> bool:
        """Whether this is a custom field (``__c``)."""
        return self.name.endswith("__c")

    def describe(self) -> dict[str, Any]:
        """This field as ``GET /sobjects/{T}/describe`` lists it (the commonly read keys)."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type.value,
            "length": self.length,
            "custom": self.custom,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.external_id or self.type is FieldType.ID,
            "nillable": not self.required and self.type is not FieldType.ID,
            "createable": self.createable,
            "updateable": self.updateable,
            "calculated": self.computed,
            "referenceTo": list(self.reference_to),
            "restrictedPicklist": self.restricted,
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": value, "value": value}
                for value in self.picklist
            ],
        }


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@attrs.frozen
class SObjectSpec:
    """One object type: name, label, key prefix and fields (looked up case-insensitively)."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldSpec, ...]
    defaults: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen)
    _by_lower: Mapping[str, FieldSpec] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(
            self, "_by_lower", MappingProxyType({f.name.lower(): f for f in self.fields})
        )

    @property
    def custom(self) -> bool:
        """Whether this is a custom object (``__c``)."""
        return self.name.endswith("__c")

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name`` (any case), or None."""
        return self._by_lower.get(name.lower())

    @property
    def phone_fields(self) -> tuple[str, ...]:
        """The fields SOSL's ``IN PHONE FIELDS`` searches on this object."""
        return PHONE_FIELDS.get(self.name, ())

    def describe(self, version: str) -> dict[str, Any]:
        """``GET /sobjects/{T}/describe``: the object and its fields."""
        return {
            **self.summary(version),
            "fields": [spec.describe() for spec in self.fields],
            "childRelationships": [],
            "recordTypeInfos": [],
        }

    def summary(self, version: str) -> dict[str, Any]:
        """The object as the global describe (``GET /sobjects``) lists it."""
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "createable": self.name != "User",
            "updateable": True,
            "deletable": self.name != "User",
            "queryable": True,
            "searchable": True,
            "urls": {
                "sobject": base,
                "describe": f"{base}/describe",
                "rowTemplate": f"{base}/{{ID}}",
            },
        }


@attrs.frozen
class ExternalId:
    """A text field configured as an External ID (the key of upsert).

    ``unique`` external ids refuse a second record with the same value (``DUPLICATE_VALUE``);
    non-unique ones let several records share a value, so an upsert can meet 300.
    """

    sobject: str
    field: str
    unique: bool = True


DEFAULT_EXTERNAL_IDS = (
    ExternalId("Task", "CTI_Call_Id__c"),
    ExternalId("CTI_Call__c", "Call_Id__c"),
)
"""External ids of the emulated org unless configured otherwise."""

DEFAULT_TASK_STATUSES = ("Not Started", "In Progress", "Completed")
"""Task ``Status`` values unless configured otherwise; the first is the default on create."""

PHONE_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Contact": ("Phone", "MobilePhone"),
        "Lead": ("Phone", "MobilePhone"),
        "Account": ("Phone",),
    }
)
"""The phone fields SOSL searches, per object."""

_CALL_TYPES = ("Inbound", "Outbound", "Internal")


def _audit_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("CreatedDate", FieldType.DATETIME, "Created Date", createable=False, updateable=False),
        FieldSpec("CreatedById", FieldType.REFERENCE, "Created By ID", reference_to=("User",), createable=False, updateable=False),
        FieldSpec("LastModifiedDate", FieldType.DATETIME, "Last Modified Date", createable=False, updateable=False),
        FieldSpec("LastModifiedById", FieldType.REFERENCE, "Last Modified By ID", reference_to=("User",), createable=False, updateable=False),
        FieldSpec("SystemModstamp", FieldType.DATETIME, "System Modstamp", createable=False, updateable=False),
        FieldSpec("IsDeleted", FieldType.BOOLEAN, "Deleted", createable=False, updateable=False),
    )  # fmt: skip


def _id_field() -> FieldSpec:
    return FieldSpec("Id", FieldType.ID, "Record ID", length=18, createable=False, updateable=False)


def _owner() -> FieldSpec:
    return FieldSpec("OwnerId", FieldType.REFERENCE, "Owner ID", length=18, reference_to=("User",))


def _person_name() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("FirstName", FieldType.STRING, "First Name", length=40),
        FieldSpec("LastName", FieldType.STRING, "Last Name", length=80, required=True),
        FieldSpec("Name", FieldType.STRING, "Full Name", length=121, createable=False, updateable=False, computed=True),
    )  # fmt: skip


def _user() -> SObjectSpec:
    fields = (
        _id_field(),
        FieldSpec("Username", FieldType.STRING, "Username", length=80, required=True, unique=True),
        *_person_name(),
        FieldSpec("Email", FieldType.EMAIL, "Email", length=128, required=True),
        FieldSpec("Alias", FieldType.STRING, "Alias", length=8),
        FieldSpec("Title", FieldType.STRING, "Title", length=80),
        FieldSpec("Phone", FieldType.PHONE, "Phone", length=40),
        FieldSpec("IsActive", FieldType.BOOLEAN, "Active"),
        *_audit_fields(),
    )
    return SObjectSpec("User", "User", "Users", KEY_PREFIXES["User"], fields, {"IsActive": True})


def _account() -> SObjectSpec:
    fields = (
        _id_field(),
        FieldSpec("Name", FieldType.STRING, "Account Name", length=255, required=True),
        FieldSpec("Phone", FieldType.PHONE, "Account Phone", length=40),
        FieldSpec("Type", FieldType.PICKLIST, "Account Type", length=255, picklist=("Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other")),
        FieldSpec("Industry", FieldType.PICKLIST, "Industry", length=255, picklist=("Banking", "Education", "Energy", "Healthcare", "Retail", "Technology")),
        FieldSpec("Website", FieldType.URL, "Website", length=255),
        FieldSpec("BillingCity", FieldType.STRING, "Billing City", length=40),
        FieldSpec("Description", FieldType.TEXTAREA, "Account Description", length=32000),
        _owner(),
        *_audit_fields(),
    )  # fmt: skip
    return SObjectSpec("Account", "Account", "Accounts", KEY_PREFIXES["Account"], fields)


def _contact() -> SObjectSpec:
    fields = (
        _id_field(),
        *_person_name(),
        FieldSpec("AccountId", FieldType.REFERENCE, "Account ID", length=18, reference_to=("Account",)),
        FieldSpec("Title", FieldType.STRING, "Title", length=128),
        FieldSpec("Phone", FieldType.PHONE, "Business Phone", length=40),
        FieldSpec("MobilePhone", FieldType.PHONE, "Mobile Phone", length=40),
        FieldSpec("Email", FieldType.EMAIL, "Email", length=80),
        FieldSpec("Description", FieldType.TEXTAREA, "Contact Description", length=32000),
        _owner(),
        *_audit_fields(),
    )  # fmt: skip
    return SObjectSpec("Contact", "Contact", "Contacts", KEY_PREFIXES["Contact"], fields)


_LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")  # fmt: skip


def _lead() -> SObjectSpec:
    fields = (
        _id_field(),
        *_person_name(),
        FieldSpec("Company", FieldType.STRING, "Company", length=255, required=True),
        FieldSpec("Title", FieldType.STRING, "Title", length=128),
        FieldSpec("Phone", FieldType.PHONE, "Phone", length=40),
        FieldSpec("MobilePhone", FieldType.PHONE, "Mobile Phone", length=40),
        FieldSpec("Email", FieldType.EMAIL, "Email", length=80),
        FieldSpec("Status", FieldType.PICKLIST, "Status", length=255, picklist=_LEAD_STATUSES, restricted=True, required=True),
        _owner(),
        *_audit_fields(),
    )  # fmt: skip
    return SObjectSpec(
        "Lead", "Lead", "Leads", KEY_PREFIXES["Lead"], fields, {"Status": _LEAD_STATUSES[0]}
    )


def _case() -> SObjectSpec:
    fields = (
        _id_field(),
        FieldSpec("CaseNumber", FieldType.STRING, "Case Number", length=30, createable=False, updateable=False, computed=True),
        FieldSpec("Subject", FieldType.STRING, "Subject", length=255),
        FieldSpec("Status", FieldType.PICKLIST, "Status", length=255, picklist=("New", "Working", "Escalated", "Closed"), required=True),
        FieldSpec("Origin", FieldType.PICKLIST, "Case Origin", length=255, picklist=("Phone", "Email", "Web")),
        FieldSpec("Priority", FieldType.PICKLIST, "Priority", length=255, picklist=("High", "Medium", "Low")),
        FieldSpec("ContactId", FieldType.REFERENCE, "Contact ID", length=18, reference_to=("Contact",)),
        FieldSpec("AccountId", FieldType.REFERENCE, "Account ID", length=18, reference_to=("Account",)),
        FieldSpec("SuppliedPhone", FieldType.STRING, "Web Phone", length=40),
        FieldSpec("Description", FieldType.TEXTAREA, "Description", length=32000),
        _owner(),
        *_audit_fields(),
    )  # fmt: skip
    return SObjectSpec(
        "Case",
        "Case",
        "Cases",
        KEY_PREFIXES["Case"],
        fields,
        {"Status": "New", "Priority": "Medium"},
    )


def _task(statuses: tuple[str, ...]) -> SObjectSpec:
    # TaskSubtype is create-only on Salesforce ("Create, Defaulted on create, Restricted picklist"):
    # an update (or the update half of an upsert) that carries it is refused.
    fields = (
        _id_field(),
        FieldSpec("Subject", FieldType.STRING, "Subject", length=255),
        FieldSpec("TaskSubtype", FieldType.PICKLIST, "Task Subtype", length=255, picklist=("Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"), restricted=True, updateable=False),
        FieldSpec("Type", FieldType.PICKLIST, "Type", length=255, picklist=("Call", "Email", "Meeting", "Other")),
        FieldSpec("CallType", FieldType.PICKLIST, "Call Type", length=255, picklist=_CALL_TYPES, restricted=True),
        FieldSpec("CallObject", FieldType.STRING, "Call Object Identifier", length=255),
        FieldSpec("CallDurationInSeconds", FieldType.INT, "Call Duration"),
        FieldSpec("CallDisposition", FieldType.STRING, "Call Result", length=255),
        FieldSpec("Status", FieldType.PICKLIST, "Status", length=255, picklist=statuses, restricted=True, required=True),
        FieldSpec("Priority", FieldType.PICKLIST, "Priority", length=255, picklist=("High", "Normal", "Low"), restricted=True, required=True),
        FieldSpec("ActivityDate", FieldType.DATE, "Due Date Only"),
        FieldSpec("WhoId", FieldType.REFERENCE, "Name ID", length=18, reference_to=("Contact", "Lead")),
        FieldSpec("WhatId", FieldType.REFERENCE, "Related To ID", length=18, reference_to=("Account", "Case", "Opportunity")),
        FieldSpec("OwnerId", FieldType.REFERENCE, "Assigned To ID", length=18, reference_to=("User",), required=True),
        FieldSpec("Description", FieldType.TEXTAREA, "Description", length=32000),
        FieldSpec("CTI_Call_Id__c", FieldType.STRING, "CTI Call Id", length=255),
        FieldSpec("Queue__c", FieldType.STRING, "Queue", length=255),
        FieldSpec("Recording_URL__c", FieldType.URL, "Recording URL", length=255),
        *_audit_fields(),
    )  # fmt: skip
    defaults = {"Status": statuses[0], "Priority": "Normal", "TaskSubtype": "Task"}
    return SObjectSpec("Task", "Task", "Tasks", KEY_PREFIXES["Task"], fields, defaults)


def _cti_call() -> SObjectSpec:
    fields = (
        _id_field(),
        FieldSpec("Name", FieldType.STRING, "CTI Call Name", length=80, createable=False, updateable=False, computed=True),
        FieldSpec("Call_Id__c", FieldType.STRING, "Call Id", length=255),
        FieldSpec("Task_Id__c", FieldType.STRING, "Task Id", length=18),
        FieldSpec("Agent__c", FieldType.REFERENCE, "Agent", length=18, reference_to=("User",)),
        FieldSpec("Direction__c", FieldType.PICKLIST, "Direction", length=255, picklist=_CALL_TYPES),
        FieldSpec("Duration__c", FieldType.DOUBLE, "Duration"),
        _owner(),
        *_audit_fields(),
    )  # fmt: skip
    return SObjectSpec("CTI_Call__c", "CTI Call", "CTI Calls", KEY_PREFIXES["CTI_Call__c"], fields)


def build_schema(
    *,
    task_statuses: Iterable[str] = DEFAULT_TASK_STATUSES,
    external_ids: Iterable[ExternalId] = DEFAULT_EXTERNAL_IDS,
) -> Mapping[str, SObjectSpec]:
    """Every object of the emulated org, with ``task_statuses`` and ``external_ids`` applied.

    ConfigError when there are no statuses or an external id names no text field.
    """
    statuses = tuple(task_statuses)
    if not statuses:
        raise ConfigError("at least one Task status is needed", key="task_statuses")
    objects = {
        spec.name: spec
        for spec in (
            _user(),
            _account(),
            _contact(),
            _lead(),
            _case(),
            _task(statuses),
            _cti_call(),
        )
    }
    for external in external_ids:
        spec = objects.get(external.sobject)
        found = spec.field(external.field) if spec is not None else None
        if spec is None or found is None or found.type not in (FieldType.STRING, FieldType.EMAIL):
            raise ConfigError(
                f"{external.sobject}.{external.field} is not a text field of the emulated org",
                key="external_ids",
            )
        if found.computed or not found.createable:
            raise ConfigError(
                f"{external.sobject}.{external.field} is not writable", key="external_ids"
            )
        changed = attrs.evolve(found, external_id=True, unique=external.unique)
        objects[spec.name] = attrs.evolve(
            spec, fields=tuple(changed if f is found else f for f in spec.fields)
        )
    return MappingProxyType(objects)
