"""The Salesforce emulator's model without sockets: ids, seed, validation, upsert, collections."""

from __future__ import annotations

from typing import Any

import pytest

from crmphone.clock import ManualClock
from crmphone.errors import ConfigError
from crmphone_salesforce.emulator import (
    HTML_NAME,
    HTML_NAME_NUMBER,
    MANY_MATCH_NUMBERS,
    NO_MATCH_NUMBERS,
    ONE_MATCH_NUMBER,
    ApiError,
    ExternalId,
    SalesforceModel,
    SalesforceSettings,
)
from crmphone_salesforce.emulator.ids import IdSource, checksum, normalize
from crmphone_salesforce.emulator.seed import format_phone

V = "62.0"


def make_model(seed: int = 0, **settings: Any) -> tuple[SalesforceModel, ManualClock]:
    clock = ManualClock()
    model = SalesforceModel(
        seed, SalesforceSettings(**settings), clock=clock.monotonic, wall_clock=clock.wall
    )
    return model, clock


def codes(error: ApiError) -> list[str]:
    return [item.error_code for item in error.errors]


def error_codes(result: dict[str, Any]) -> list[str]:
    return [error["statusCode"] for error in result["errors"]]


# ---------------------------------------------------------------------- ids


def test_checksum_matches_salesforce_algorithm() -> None:
    """The 18-character suffix encodes which of the first 15 characters are upper case."""
    assert checksum("001000000000000") == "AAA"
    assert checksum("0036i00007ZFAzf") == "AAH"  # Z, F, A upper case in the last chunk: 0b00111
    assert checksum("ABCDEABCDEABCDE") == "555"


def test_normalize_accepts_both_forms_and_rejects_the_malformed() -> None:
    """15-character ids gain their suffix; bad suffixes, lengths and characters are refused."""
    assert normalize("0036i00007ZFAzf") == "0036i00007ZFAzfAAH"
    assert normalize("0036i00007ZFAzfaah") == "0036i00007ZFAzfAAH"
    assert normalize("0036i00007ZFAzfAAA") is None
    assert normalize("0036i00007ZFA") is None
    assert normalize("0036i00007ZFAz!AAH") is None


def test_id_source_is_deterministic_unique_and_prefixed() -> None:
    """The same seed hands out the same ids; they never repeat and carry the key prefix."""
    first, second = IdSource(7), IdSource(7)
    ids = [first.next("00T") for _ in range(500)]
    assert ids == [second.next("00T") for _ in range(500)]
    assert len(set(ids)) == 500
    assert all(len(i) == 18 and i.startswith("00T") and normalize(i) == i for i in ids)
    assert IdSource(8).next("00T") != IdSource(7).next("00T")


# ---------------------------------------------------------------------- seed


def test_seed_is_deterministic_and_has_the_promised_shape() -> None:
    """Two models with one seed hold the same records; agents mirror the sandbox's agents."""
    one, _ = make_model(3)
    two, _ = make_model(3)
    assert one.records("Contact") == two.records("Contact")
    assert one.count("User") == 5
    assert one.count("Account") == 8
    assert one.count("Case") == 5
    agents = [one.record("User", user_id) for user_id in one.agent_user_ids]
    assert [a["Name"] for a in agents if a] == [
        "Ada Lovelace",
        "Grace Hopper",
        "Alan Turing",
        "Edsger Dijkstra",
    ]
    assert one.user_id("ada.lovelace@sandbox.example") == one.agent_user_ids[0]
    assert {c["Name"] for c in one.records("Contact")} >= {HTML_NAME}


def test_seeded_phones_use_four_formats() -> None:
    """Seeded phones are stored as people type them, in four formats."""
    model, _ = make_model()
    phones = [c["Phone"] for c in model.records("Contact")[:4]]
    assert phones == [format_phone(100001 + i, i) for i in range(4)]
    assert phones == ["(555) 010-0001", "+1 555 010 0002", "555.010.0003", "+15550100004"]


@pytest.mark.parametrize(
    ("outcome", "matches"),
    [("one", 1), ("many", 2), ("none", 0)],
)
def test_seeded_numbers_match_as_promised(outcome: Any, matches: int) -> None:
    """Every number of an outcome finds exactly that many records in a phone search."""
    model, _ = make_model()
    numbers = model.seeded_numbers(outcome)
    assert numbers
    for number in numbers:
        escaped = number.replace("+", "\\+")
        found = model.search(f"FIND {{{escaped}}} IN PHONE FIELDS RETURNING Contact(Id), Lead(Id), Account(Id)", version=V)  # fmt: skip
        assert len(found["searchRecords"]) == matches, number


def test_seed_constants_agree_with_the_model() -> None:
    """The documented constants are what seeded_numbers reports."""
    model, _ = make_model()
    assert model.seeded_numbers("one")[0] == ONE_MATCH_NUMBER
    assert HTML_NAME_NUMBER in model.seeded_numbers("one")
    assert model.seeded_numbers("many") == MANY_MATCH_NUMBERS
    assert model.seeded_numbers("none") == NO_MATCH_NUMBERS
    assert len(model.seeded_numbers("one")) + 2 * len(MANY_MATCH_NUMBERS) >= 50


# ---------------------------------------------------------------------- create and validation


def test_task_create_applies_defaults_and_audit_fields() -> None:
    """A new Task gets Status, Priority, TaskSubtype and OwnerId defaults and audit fields."""
    model, clock = make_model()
    user = model.agent_user_ids[1]
    task_id = model.create("task", {"Subject": "Call", "CallType": "Inbound"}, user_id=user)
    task = model.record("Task", task_id)
    assert task is not None
    assert task_id.startswith("00T")
    assert len(task_id) == 18
    assert task["Status"] == "Not Started"
    assert task["Priority"] == "Normal"
    assert task["TaskSubtype"] == "Task"
    assert task["OwnerId"] == user
    assert task["CreatedById"] == user
    assert task["CreatedDate"] == clock.wall().strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def test_unknown_field_is_invalid_field() -> None:
    """A field the object does not have is refused at deserialization."""
    model, _ = make_model()
    with pytest.raises(ApiError) as caught:
        model.create("Task", {"Subject": "x", "Bogus__c": 1}, user_id=model.integration_user_id)
    assert caught.value.status == 400
    assert caught.value.to_json() == [
        {
            "message": "No such column 'Bogus__c' on sobject of type Task",
            "errorCode": "INVALID_FIELD",
        }
    ]


@pytest.mark.parametrize("value", ["", "twelve", 1.5, True, {"seconds": 3}])
def test_call_duration_must_be_an_integer(value: Any) -> None:
    """CallDurationInSeconds refuses "" and other non-integers with JSON_PARSER_ERROR."""
    model, _ = make_model()
    with pytest.raises(ApiError) as caught:
        model.create("Task", {"CallDurationInSeconds": value}, user_id=model.integration_user_id)
    assert codes(caught.value) == ["JSON_PARSER_ERROR"]
    assert "Cannot deserialize instance of int" in caught.value.errors[0].message


def test_call_duration_accepts_integers_and_integral_text() -> None:
    """Integers (and their JSON text form) are stored as integers."""
    model, _ = make_model()
    first = model.create("Task", {"CallDurationInSeconds": 42}, user_id=model.integration_user_id)
    second = model.create("Task", {"CallDurationInSeconds": "7"}, user_id=model.integration_user_id)
    assert model.record("Task", first)["CallDurationInSeconds"] == 42  # type: ignore[index]
    assert model.record("Task", second)["CallDurationInSeconds"] == 7  # type: ignore[index]


def test_restricted_picklists_refuse_unknown_values() -> None:
    """CallType and Status are restricted picklists; every bad value is reported with its field."""
    model, _ = make_model()
    with pytest.raises(ApiError) as caught:
        model.create(
            "Task", {"CallType": "inbound", "Status": "Done"}, user_id=model.integration_user_id
        )
    assert [i.to_json() for i in caught.value.errors] == [
        {
            "message": "Call Type: bad value for restricted picklist field: inbound",
            "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "fields": ["CallType"],
        },
        {
            "message": "Status: bad value for restricted picklist field: Done",
            "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "fields": ["Status"],
        },
    ]


def test_task_statuses_are_configurable() -> None:
    """An org's own Status values replace the defaults; the first is the default."""
    model, _ = make_model(task_statuses=("Open", "Logged"))
    task_id = model.create("Task", {}, user_id=model.integration_user_id)
    assert model.record("Task", task_id)["Status"] == "Open"  # type: ignore[index]
    with pytest.raises(ApiError):
        model.create("Task", {"Status": "Completed"}, user_id=model.integration_user_id)


def test_references_check_format_object_and_existence() -> None:
    """WhoId/WhatId/OwnerId: malformed, wrong object and missing ids have distinct errors."""
    model, _ = make_model()
    account = model.records("Account")[0]["Id"]
    contact = model.records("Contact")[0]["Id"]
    with pytest.raises(ApiError) as caught:
        model.create(
            "Task",
            {"WhoId": account, "WhatId": contact, "OwnerId": "not-an-id"},
            user_id=model.integration_user_id,
        )
    assert [(i.error_code, i.fields) for i in caught.value.errors] == [
        ("FIELD_INTEGRITY_EXCEPTION", ("WhoId",)),
        ("FIELD_INTEGRITY_EXCEPTION", ("WhatId",)),
        ("MALFORMED_ID", ("OwnerId",)),
    ]
    assert caught.value.errors[0].message == f"Name ID: id value of incorrect type: {account}"
    ghost = "0036i0000000001"  # a well-formed Contact id no record has
    with pytest.raises(ApiError) as caught:
        model.create("Task", {"WhoId": ghost}, user_id=model.integration_user_id)
    assert codes(caught.value) == ["INVALID_CROSS_REFERENCE_KEY"]


def test_references_are_stored_in_18_character_form() -> None:
    """A 15-character reference is accepted and stored as its 18-character id."""
    model, _ = make_model()
    contact = model.records("Contact")[0]["Id"]
    task_id = model.create("Task", {"WhoId": contact[:15]}, user_id=model.integration_user_id)
    assert model.record("Task", task_id)["WhoId"] == contact  # type: ignore[index]


def test_required_read_only_and_long_values() -> None:
    """Missing required fields, read-only fields and too long text are DML errors."""
    model, _ = make_model()
    with pytest.raises(ApiError) as caught:
        model.create("Contact", {"Name": "Full Name", "Title": "x" * 200}, user_id=model.integration_user_id)  # fmt: skip
    assert codes(caught.value) == [
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "STRING_TOO_LONG",
        "REQUIRED_FIELD_MISSING",
    ]
    assert caught.value.errors[2].message == "Required fields are missing: [LastName]"


def test_empty_text_is_stored_as_null() -> None:
    """Salesforce stores an empty string as null."""
    model, _ = make_model()
    task_id = model.create("Task", {"Description": ""}, user_id=model.integration_user_id)
    assert model.record("Task", task_id)["Description"] is None  # type: ignore[index]


def test_id_in_a_create_body_is_refused() -> None:
    """An insert cannot choose its own Id."""
    model, _ = make_model()
    with pytest.raises(ApiError) as caught:
        model.create("Task", {"Id": "00T000000000001"}, user_id=model.integration_user_id)
    assert "INVALID_FIELD" in codes(caught.value)


def test_update_recomputes_name_and_refuses_create_only_fields() -> None:
    """Updating a contact's name recomputes Name; TaskSubtype cannot change after create."""
    model, _ = make_model()
    contact = model.add_contact("Doe", first_name="Jane")
    model.update("Contact", contact, {"FirstName": "Janet"}, user_id=model.integration_user_id)
    assert model.record("Contact", contact)["Name"] == "Janet Doe"  # type: ignore[index]
    task = model.create("Task", {"TaskSubtype": "Call"}, user_id=model.integration_user_id)
    with pytest.raises(ApiError) as caught:
        model.update("Task", task, {"TaskSubtype": "Call"}, user_id=model.integration_user_id)
    assert codes(caught.value) == ["INVALID_FIELD_FOR_INSERT_UPDATE"]
    assert caught.value.errors[0].fields == ("TaskSubtype",)


def test_retrieve_and_delete_answer_404_shapes() -> None:
    """Unknown objects and records are NOT_FOUND; a non-id is read as an external id field."""
    model, _ = make_model()
    task = model.create("Task", {}, user_id=model.integration_user_id)
    with pytest.raises(ApiError) as caught:
        model.retrieve("Nope", task)
    assert caught.value.status == 404
    assert codes(caught.value) == ["NOT_FOUND"]
    with pytest.raises(ApiError) as caught:
        model.retrieve("Task", "hello")
    assert caught.value.errors[0].message == (
        "Provided external ID field does not exist or is not accessible: hello"
    )
    model.delete("Task", task)
    with pytest.raises(ApiError) as caught:
        model.delete("Task", task)
    assert codes(caught.value) == ["ENTITY_IS_DELETED"]
    with pytest.raises(ApiError):
        model.retrieve("Task", task)


# ---------------------------------------------------------------------- upsert


def test_upsert_creates_then_updates_one_record() -> None:
    """The first upsert creates (created true), the second updates the same record."""
    model, _ = make_model()
    user = model.integration_user_id
    first = model.upsert("Task", "CTI_Call_Id__c", "conv-1", {"Subject": "a"}, user_id=user, version=V)  # fmt: skip
    second = model.upsert("Task", "cti_call_id__c", "CONV-1", {"Status": "Completed"}, user_id=user, version=V)  # fmt: skip
    assert first[1] is True
    assert second == (first[0], False)
    assert model.count("Task") == 1
    task = model.record("Task", first[0])
    assert task is not None
    assert task["CTI_Call_Id__c"] == "conv-1"
    assert task["Status"] == "Completed"


def test_upsert_by_a_field_that_is_no_external_id_is_404() -> None:
    """Upsert needs an External ID field; the 404 names the field."""
    model, _ = make_model()
    with pytest.raises(ApiError) as caught:
        model.upsert("Task", "Subject", "x", {}, user_id=model.integration_user_id, version=V)
    assert caught.value.status == 404
    assert caught.value.to_json() == [
        {
            "message": "Provided external ID field does not exist or is not accessible: Subject",
            "errorCode": "NOT_FOUND",
        }
    ]


def test_upsert_with_several_matches_is_300_listing_them() -> None:
    """A non-unique external id shared by two records makes upsert answer 300 with their URLs."""
    model, _ = make_model(external_ids=(ExternalId("Task", "CTI_Call_Id__c", unique=False),))
    user = model.integration_user_id
    ids = [model.create("Task", {"CTI_Call_Id__c": "dup"}, user_id=user) for _ in range(2)]
    with pytest.raises(ApiError) as caught:
        model.upsert("Task", "CTI_Call_Id__c", "dup", {}, user_id=user, version=V)
    assert caught.value.status == 300
    assert caught.value.to_json() == [f"/services/data/v{V}/sobjects/Task/{i}" for i in ids]


def test_unique_external_id_refuses_a_second_record() -> None:
    """Creating a second Task with a taken CTI_Call_Id__c is DUPLICATE_VALUE."""
    model, _ = make_model()
    user = model.integration_user_id
    first = model.create("Task", {"CTI_Call_Id__c": "c-9"}, user_id=user)
    with pytest.raises(ApiError) as caught:
        model.create("Task", {"CTI_Call_Id__c": "C-9"}, user_id=user)
    assert codes(caught.value) == ["DUPLICATE_VALUE"]
    assert first in caught.value.errors[0].message


def test_external_ids_must_name_text_fields() -> None:
    """Configuring a non-text external id is a ConfigError."""
    with pytest.raises(ConfigError):
        make_model(external_ids=(ExternalId("Task", "CallDurationInSeconds"),))


def test_custom_object_keyed_by_call_id() -> None:
    """CTI_Call__c upserts by Call_Id__c and numbers its records."""
    model, _ = make_model()
    user = model.integration_user_id
    call_id, created = model.upsert(
        "CTI_Call__c", "Call_Id__c", "conv-5", {"Duration__c": 12}, user_id=user, version=V
    )
    assert created
    assert call_id.startswith("a0X")
    assert model.record("CTI_Call__c", call_id)["Name"] == "CTI-000001"  # type: ignore[index]


# ---------------------------------------------------------------------- collections


def task_rows(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"attributes": {"type": "Task"}, **row} for row in rows]


def test_collection_create_reports_each_record() -> None:
    """Without allOrNone good records are saved and bad ones fail on their own."""
    model, _ = make_model()
    body = {"allOrNone": False, "records": task_rows({"Subject": "ok"}, {"CallType": "Bogus"})}
    results = model.collection_create(body, user_id=model.integration_user_id)
    assert results[0]["success"] is True
    assert results[0]["errors"] == []
    assert results[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                "message": "Call Type: bad value for restricted picklist field: Bogus",
                "fields": ["CallType"],
            }
        ],
    }
    assert model.count("Task") == 1


def test_collection_all_or_none_rolls_everything_back() -> None:
    """With allOrNone one bad record undoes the others, which report the rollback."""
    model, _ = make_model()
    user = model.integration_user_id
    existing = model.create("Task", {"Subject": "before"}, user_id=user)
    body = {
        "allOrNone": True,
        "records": task_rows(
            {"Id": existing, "Subject": "after"}, {"Id": existing, "CallType": "x"}
        ),
    }
    results = model.collection_update(body, user_id=user)
    assert [r["success"] for r in results] == [False, False]
    assert error_codes(results[0]) == ["ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert results[0]["id"] == existing
    assert model.record("Task", existing)["Subject"] == "before"  # type: ignore[index]
    created = model.collection_create(
        {"allOrNone": True, "records": task_rows({"Subject": "n"}, {"Status": "?"})}, user_id=user
    )
    assert "id" not in created[0]
    assert error_codes(created[0]) == ["ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert model.count("Task") == 1


def test_collection_upsert_reports_created_per_record() -> None:
    """Collection upsert creates or updates by the external id and says which."""
    model, _ = make_model()
    user = model.integration_user_id
    model.upsert("Task", "CTI_Call_Id__c", "a", {}, user_id=user, version=V)
    rows = task_rows(
        {"CTI_Call_Id__c": "a", "Status": "Completed"},
        {"CTI_Call_Id__c": "b"},
        {"Subject": "no key"},
        {"CTI_Call_Id__c": "c"},
        {"CTI_Call_Id__c": "C"},
    )
    results = model.collection_upsert("Task", "CTI_Call_Id__c", {"records": rows}, user_id=user)
    assert [(r["success"], r["created"]) for r in results] == [
        (True, False),
        (True, True),
        (False, False),
        (False, False),
        (False, False),
    ]
    assert error_codes(results[2]) == ["MISSING_ARGUMENT"]
    assert error_codes(results[3]) == error_codes(results[4]) == ["DUPLICATE_VALUE"]
    assert model.count("Task") == 2


def test_collection_limit_and_request_level_errors() -> None:
    """Over 200 records, a wrong JSON type, or a missing type fail the whole request with 400."""
    model, _ = make_model()
    user = model.integration_user_id
    with pytest.raises(ApiError) as caught:
        model.collection_create({"records": task_rows(*[{}] * 201)}, user_id=user)
    assert caught.value.to_json() == [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]
    with pytest.raises(ApiError) as caught:
        model.collection_create(
            {"records": task_rows({}, {"CallDurationInSeconds": ""})}, user_id=user
        )
    assert codes(caught.value) == ["JSON_PARSER_ERROR"]
    with pytest.raises(ApiError) as caught:
        model.collection_create({"records": [{"Subject": "untyped"}]}, user_id=user)
    assert caught.value.status == 400
    assert model.count("Task") == 0


def test_collection_delete_and_update_missing_records() -> None:
    """Deleting and updating unknown records fail per record."""
    model, _ = make_model()
    user = model.integration_user_id
    task = model.create("Task", {}, user_id=user)
    results = model.collection_delete([task, task, "bogus"], all_or_none=False)
    assert [r["success"] for r in results] == [True, False, False]
    assert error_codes(results[1]) == ["ENTITY_IS_DELETED"]
    updated = model.collection_update({"records": task_rows({"Subject": "x"})}, user_id=user)
    assert error_codes(updated[0]) == ["MISSING_ARGUMENT"]
