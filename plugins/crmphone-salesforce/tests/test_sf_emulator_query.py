"""The Salesforce emulator's SOQL and SOSL subsets, and its phone matching, without sockets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from simple_salesforce import format_soql

from crmphone.clock import ManualClock
from crmphone_salesforce.emulator import ApiError, SalesforceModel, escape_sosl
from crmphone_salesforce.emulator.soql import Comparison, Ordering, parse_soql
from crmphone_salesforce.emulator.sosl import parse_sosl, phones_match

V = "62.0"


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when told."""
    return ManualClock()


@pytest.fixture
def model(clock: ManualClock) -> SalesforceModel:
    """A seeded model on the manual clock."""
    return SalesforceModel(0, clock=clock.monotonic, wall_clock=clock.wall)


def query(model: SalesforceModel, template: str, *values: Any) -> list[dict[str, Any]]:
    """Run ``template`` with ``values`` quoted by simple-salesforce's format_soql."""
    records: list[dict[str, Any]] = model.query(format_soql(template, *values), version=V)[
        "records"
    ]
    return records


def find(model: SalesforceModel, term: str, returning: str = "") -> list[dict[str, Any]]:
    text = f"FIND {{{escape_sosl(term)}}} IN PHONE FIELDS {returning}"
    found: list[dict[str, Any]] = model.search(text, version=V)["searchRecords"]
    return found


def error_code(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(ApiError) as caught:
        call()
    item = caught.value.errors[0]
    return caught.value.status, item.error_code, item.message


# ---------------------------------------------------------------------- SOQL parsing


def test_parse_full_subset() -> None:
    """Every supported clause parses into the query value, keywords in any case."""
    parsed = parse_soql(
        "select Id, Subject from Task where CTI_Call_Id__c = 'it\\'s' and Status != null "
        "and CallType in ('Inbound', 'Outbound') order by CreatedDate desc nulls first, Id limit 5"
    )
    assert parsed.fields == ("Id", "Subject")
    assert parsed.sobject == "Task"
    assert parsed.conditions == (
        Comparison("CTI_Call_Id__c", "=", ("it's",)),
        Comparison("Status", "!=", (None,)),
        Comparison("CallType", "in", ("Inbound", "Outbound")),
    )
    assert parsed.order_by == (Ordering("CreatedDate", True, False), Ordering("Id", False, False))
    assert parsed.limit == 5


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("SELECT Account.Name FROM Contact", "relationship fields"),
        ("SELECT COUNT() FROM Contact", "functions such as COUNT()"),
        ("SELECT Id FROM Contact WHERE Name LIKE 'A%'", "LIKE"),
        ("SELECT Id FROM Contact GROUP BY Name", "GROUP BY"),
        ("SELECT Id FROM Contact LIMIT 5 OFFSET 5", "OFFSET"),
        (
            "SELECT Id FROM Contact WHERE Phone = '1' AND Name = 'a' OR Id = null",
            "mixing AND and OR",
        ),
        ("SELECT Id FROM Contact WHERE (Name = 'a')", "parentheses"),
        ("SELECT Id FROM Contact WHERE Id IN (SELECT WhoId FROM Task)", "subqueries"),
        ("SELECT Id FROM Contact WHERE Name > 'a'", "the operator >"),
        ("SELECT Id FROM Contact WHERE Name = 'unterminated", "unterminated"),
        ("SELECT Id Contact", "expected FROM"),
        ("", "empty"),
    ],
)
def test_unsupported_soql_is_malformed_query_naming_it(text: str, named: str) -> None:
    """Anything outside the subset is 400 MALFORMED_QUERY and the message names it."""
    status, code, message = error_code(lambda: parse_soql(text))
    assert (status, code) == (400, "MALFORMED_QUERY")
    assert named in message


# ---------------------------------------------------------------------- SOQL evaluation


def test_query_answers_the_salesforce_shape(model: SalesforceModel) -> None:
    """A query answers totalSize, done and records with attributes and selected fields only."""
    answer = model.query("SELECT Id, Name FROM Contact WHERE Phone = '(555) 010-0001'", version=V)
    assert answer["totalSize"] == 1
    assert answer["done"] is True
    (record,) = answer["records"]
    assert list(record) == ["attributes", "Id", "Name"]
    assert record["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v{V}/sobjects/Contact/{record['Id']}",
    }


def test_text_compares_case_insensitively_and_ids_in_both_forms(model: SalesforceModel) -> None:
    """Text equality ignores case; a 15-character id finds the record."""
    contact = model.records("Contact")[0]
    assert query(model, "SELECT Id FROM Contact WHERE Name = {}", contact["Name"].upper())
    by_short_id = query(model, "SELECT Id FROM Contact WHERE Id = {}", contact["Id"][:15])
    assert by_short_id[0]["Id"] == contact["Id"]


def test_and_or_in_order_and_limit(model: SalesforceModel) -> None:
    """AND narrows, OR widens, IN lists, ORDER BY sorts (nulls first), LIMIT cuts."""
    contacts = model.records("Contact")
    a, b = contacts[0], contacts[1]
    either = query(model, "SELECT Id FROM Contact WHERE Id = {} OR Id = {}", a["Id"], b["Id"])
    assert {r["Id"] for r in either} == {a["Id"], b["Id"]}
    both = query(model, "SELECT Id FROM Contact WHERE Id = {} AND Name = {}", a["Id"], b["Name"])
    assert both == []
    listed = query(model, "SELECT Id FROM Contact WHERE Id IN {}", [a["Id"], b["Id"]])
    assert len(listed) == 2
    ordered = query(model, "SELECT MobilePhone FROM Contact ORDER BY MobilePhone LIMIT 3")
    assert [r["MobilePhone"] for r in ordered] == [None, None, None]
    last = query(model, "SELECT LastName FROM Contact ORDER BY LastName DESC LIMIT 2")
    names = sorted((c["LastName"] for c in contacts), key=str.lower, reverse=True)[:2]
    assert [r["LastName"] for r in last] == names


def test_numbers_booleans_and_dates_compare_by_kind(model: SalesforceModel) -> None:
    """Unquoted numbers, booleans and dates match their fields; quoted ones are refused."""
    user = model.integration_user_id
    model.create("Task", {"CallDurationInSeconds": 30, "ActivityDate": "2026-01-31"}, user_id=user)
    assert query(model, "SELECT Id FROM Task WHERE CallDurationInSeconds = 30")
    assert query(model, "SELECT Id FROM Task WHERE ActivityDate = 2026-01-31")
    assert len(query(model, "SELECT Id FROM User WHERE IsActive = true")) == 5
    status, code, _ = error_code(lambda: model.query("SELECT Id FROM Task WHERE CallDurationInSeconds = '30'", version=V))  # fmt: skip
    assert (status, code) == (400, "INVALID_QUERY_FILTER_OPERATOR")
    _, code, message = error_code(
        lambda: model.query("SELECT Id FROM Task WHERE WhoId = 'abc'", version=V)
    )
    assert (code, message) == ("INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: abc")


def test_unknown_object_and_field(model: SalesforceModel) -> None:
    """Unknown objects are INVALID_TYPE, unknown fields INVALID_FIELD, repeats MALFORMED_QUERY."""
    assert error_code(lambda: model.query("SELECT Id FROM Nope__c", version=V))[1] == "INVALID_TYPE"
    status, code, message = error_code(lambda: model.query("SELECT Bogus FROM Task", version=V))
    assert (status, code) == (400, "INVALID_FIELD")
    assert message.startswith("No such column 'Bogus' on entity 'Task'.")
    assert (
        error_code(lambda: model.query("SELECT Id, id FROM Task", version=V))[1]
        == "MALFORMED_QUERY"
    )
    assert (
        error_code(lambda: model.query("SELECT Id FROM Task ORDER BY Bogus", version=V))[1]
        == "INVALID_FIELD"
    )


# ---------------------------------------------------------------------- phone matching and SOSL


@pytest.mark.parametrize(
    ("stored", "term", "match"),
    [
        ("(555) 010-0001", "15550100001", True),
        ("+1 555 010 0001", "5550100001", True),
        ("555.010.0001", "0100001", True),
        ("+15550100001", "100001", False),
        ("+15550100001", "15550100002", False),
        ("", "15550100001", False),
        ("ext. only", "", False),
    ],
)
def test_phones_match_on_digits_and_long_suffixes(stored: str, term: str, match: bool) -> None:
    """Digits must be equal, or one must end the other with at least seven digits."""
    assert phones_match(stored, term) is match


def test_sosl_unescapes_and_refuses_unescaped_reserved_characters() -> None:
    """Escaped reserved characters are unescaped; an unescaped one is MALFORMED_SEARCH."""
    parsed = parse_sosl("FIND {\\+1 \\(555\\) 010\\-0001} IN PHONE FIELDS RETURNING Contact(Id, Name) LIMIT 3")  # fmt: skip
    assert parsed.term == "+1 (555) 010-0001"
    assert parsed.digits == "15550100001"
    assert parsed.returning[0].fields == ("Id", "Name")
    assert parsed.limit == 3
    status, code, message = error_code(lambda: parse_sosl("FIND {+15550100001} IN PHONE FIELDS"))
    assert (status, code) == (400, "MALFORMED_SEARCH")
    assert "'+'" in message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("FIND {1} IN ALL FIELDS", "IN ALL FIELDS"),
        ("FIND {1}", "IN PHONE FIELDS"),
        ("FIND 1 IN PHONE FIELDS", "braces"),
        (
            "FIND {1} IN PHONE FIELDS RETURNING Contact(Id WHERE Name = 'x')",
            "WHERE inside RETURNING",
        ),
        ("FIND {1} IN PHONE FIELDS RETURNING Contact(Account.Name)", "relationship"),
        ("FIND {1} IN PHONE FIELDS WITH SNIPPET", "unexpected token"),
    ],
)
def test_unsupported_sosl_is_malformed_search(text: str, named: str) -> None:
    """Search forms outside the subset are refused, naming what is unsupported."""
    status, code, message = error_code(lambda: parse_sosl(text))
    assert (status, code) == (400, "MALFORMED_SEARCH")
    assert named in message


def test_search_returns_objects_in_returning_order(model: SalesforceModel) -> None:
    """A shared number finds the contact and the lead, each with the fields asked for."""
    found = find(model, "+15550100090", "RETURNING Lead(Id, Name), Contact(Id, Name, AccountId)")
    assert [r["attributes"]["type"] for r in found] == ["Lead", "Contact"]
    assert list(found[1]) == ["attributes", "Id", "Name", "AccountId"]
    assert found[1]["attributes"]["url"].endswith(found[1]["Id"])


def test_search_finds_mobile_and_account_phones(model: SalesforceModel) -> None:
    """MobilePhone and Account.Phone are phone fields too; LIMIT caps the answer."""
    mobile = model.seeded_numbers("one")[30]
    assert [r["attributes"]["type"] for r in find(model, mobile)] == ["Contact"]
    assert [r["attributes"]["type"] for r in find(model, "+15550200003")] == ["Account"]
    assert len(find(model, "+15550100091", "RETURNING Contact(Id) LIMIT 1")) == 1
    assert find(model, "call me") == []


def test_search_reports_unknown_objects_and_fields(model: SalesforceModel) -> None:
    """RETURNING an unknown object or field is refused like a query."""
    assert error_code(lambda: model.search("FIND {1} IN PHONE FIELDS RETURNING Nope(Id)", version=V))[1] == "INVALID_TYPE"  # fmt: skip
    assert error_code(lambda: model.search("FIND {1} IN PHONE FIELDS RETURNING Contact(Bogus)", version=V))[1] == "INVALID_FIELD"  # fmt: skip


def test_search_index_lag_hides_new_and_changed_records(
    model: SalesforceModel, clock: ManualClock
) -> None:
    """Records written less than search_lag seconds ago are invisible to search, not to query."""
    model.search_lag = 900.0
    contact = model.add_contact("Lagging", phone="+1 555 030 0001")
    assert find(model, "+15550300001") == []
    assert query(model, "SELECT Id FROM Contact WHERE Id = {}", contact)
    assert find(model, "+15550100001")  # seeded long ago
    clock.advance(900.0)
    assert [r["Id"] for r in find(model, "+15550300001")] == [contact]
    model.update("Contact", contact, {"Title": "Moved"}, user_id=model.integration_user_id)
    assert find(model, "+15550300001") == []
