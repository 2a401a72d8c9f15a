"""The seeded org: users, accounts, contacts, leads and cases with phone numbers to call from.

Names and which account a contact belongs to come from the seed; the phone numbers do not, so
tests and the demo can rely on them:

* every seeded phone is a fictional ``+1 555 01x xxxx`` number, stored in one of four real-world
  formats in turn: ``(555) 010-0001``, ``+1 555 010 0002``, ``555.010.0003``, ``+15550100004``;
* 30 contacts (``+15550100001`` … ``+15550100030``; every sixth also has a mobile
  ``+1555011000n``), 12 leads (``+15550100031`` … ``+15550100042``) and 8 accounts
  (``+15550200001`` … ``+15550200008``): each number matches exactly one record;
* :data:`HTML_NAME` — a contact named ``<img src=x onerror=alert(1)> Mallory`` — answers
  :data:`HTML_NAME_NUMBER`, for testing that pages show names as text;
* :data:`MANY_MATCH_NUMBERS`: ``+15550100090`` is held by a contact and a lead,
  ``+15550100091`` by two contacts of one account (one as Phone, one as MobilePhone);
* :data:`NO_MATCH_NUMBERS` match nothing.

Users: the integration user (``integration@crmphone.example``, who client-credentials sessions act
as) and ``agents`` agent users named, and addressed, like the sandbox's first agents
(``Ada Lovelace``, ``ada.lovelace@sandbox.example``, ...). Five cases belong to the first contacts.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .model import Outcome, SalesforceModel

__all__ = [
    "HTML_NAME",
    "HTML_NAME_NUMBER",
    "INTEGRATION_USERNAME",
    "MANY_MATCH_NUMBERS",
    "NO_MATCH_NUMBERS",
    "ONE_MATCH_NUMBER",
    "Seeded",
    "e164",
    "format_phone",
    "seed_org",
]

INTEGRATION_USERNAME = "integration@crmphone.example"
"""The username of the integration user (client-credentials sessions and the session id)."""

ONE_MATCH_NUMBER = "+15550100001"
"""A number that matches exactly one seeded record (a contact, stored as ``(555) 010-0001``)."""

HTML_NAME = "<img src=x onerror=alert(1)> Mallory"
"""The name of the seeded contact whose name is HTML."""

HTML_NAME_NUMBER = "+15550100066"
"""The number of the contact named :data:`HTML_NAME` (one match)."""

MANY_MATCH_NUMBERS = ("+15550100090", "+15550100091")
"""Numbers that match two seeded records each."""

NO_MATCH_NUMBERS = ("+15550199999", "+15550100099", "+15559990000")
"""Numbers that match no seeded record."""

_AGENT_NAMES = (
    ("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing"), ("Edsger", "Dijkstra"),
    ("Barbara", "Liskov"), ("Donald", "Knuth"), ("Frances", "Allen"), ("Ken", "Thompson"),
)  # fmt: skip
_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sofia", "Elijah", "Mia", "Lucas",
    "Isla", "Mateo", "Aisha", "Kenji", "Priya", "Tomás", "Ingrid", "Kwame", "Leila", "Dmitri",
    "Chloé", "Ravi", "Hana", "Jonas", "Fatima", "Marco", "Yuki", "Nadia", "Owen", "Zara",
)  # fmt: skip
_LAST_NAMES = (
    "Garcia", "Smith", "Nguyen", "Okafor", "Müller", "Rossi", "Kowalski", "Tanaka", "Patel",
    "O'Brien", "Johansson", "Haddad", "Silva", "Kim", "Dubois", "Novak", "Mensah", "Ivanova",
    "Fischer", "Lopez", "Chen", "Andersen", "Ali", "Moreau", "Brown", "Sato", "Costa", "Weber",
    "Murphy", "Khan",
)  # fmt: skip
_COMPANIES = (
    "Acme Corporation", "Globex", "Initech", "Umbrella Health", "Stark Logistics", "Wayne Foods",
    "Hooli", "Vandelay Industries", "Soylent Energy", "Tyrell Systems", "Cyberdyne Retail",
    "Wonka Confections",
)  # fmt: skip
_INDUSTRIES = ("Banking", "Education", "Energy", "Healthcare", "Retail", "Technology")

_CONTACTS = 30
_LEADS = 12
_ACCOUNTS = 8
_CASES = 5
_MOBILE_EVERY = 6


def e164(local: int) -> str:
    """The E.164 form of the fictional number ``+1 555`` + ``local`` (seven digits)."""
    return f"+1555{local:07d}"


def format_phone(local: int, style: int) -> str:
    """``+1 555`` + ``local`` in one of the four stored formats (``style`` modulo 4)."""
    digits = f"{local:07d}"
    exchange, line = digits[:3], digits[3:]
    return (
        f"(555) {exchange}-{line}",
        f"+1 555 {exchange} {line}",
        f"555.{exchange}.{line}",
        f"+1555{digits}",
    )[style % 4]


@attrs.frozen
class Seeded:
    """What seeding produced: the user ids and the numbers by outcome."""

    integration_user_id: str
    agent_user_ids: tuple[str, ...]
    numbers: Mapping[Outcome, tuple[str, ...]]


def seed_org(model: SalesforceModel, *, agents: int) -> Seeded:
    """Fill ``model`` with the seeded org (see the module docstring)."""
    rng = random.Random(f"crmphone-salesforce-seed-{model.seed}")
    first_names = list(_FIRST_NAMES)
    last_names = list(_LAST_NAMES)
    companies = list(_COMPANIES)
    rng.shuffle(first_names)
    rng.shuffle(last_names)
    rng.shuffle(companies)
    people = (
        (
            first_names[i % len(first_names)],
            last_names[(i * 7 + i // len(last_names)) % len(last_names)],
        )
        for i in itertools.count()
    )

    # The integration user creates everything, itself included (its audit fields name itself).
    integration = model.insert(
        "User",
        {
            "FirstName": "crmphone",
            "LastName": "Integration",
            "Username": INTEGRATION_USERNAME,
            "Email": INTEGRATION_USERNAME,
            "Alias": "crmint",
        },
        as_user="",
    )
    stored = model._records["User"][integration]
    stored.values.update(CreatedById=integration, LastModifiedById=integration)
    model.integration_user_id = integration

    agent_ids = []
    for index in range(agents):
        first, last = (
            _AGENT_NAMES[index] if index < len(_AGENT_NAMES) else ("Agent", str(index + 1))
        )
        email = f"{first}.{last}".lower() + "@sandbox.example"
        agent_ids.append(model.add_user(first, last, username=email, email=email))
    owners = agent_ids or [integration]

    account_numbers: list[str] = []
    accounts = []
    for index in range(_ACCOUNTS):
        local = 200001 + index
        accounts.append(
            model.add_account(
                companies[index % len(companies)],
                phone=format_phone(local, index),
                Industry=_INDUSTRIES[index % len(_INDUSTRIES)],
                Type="Customer - Direct",
                OwnerId=owners[index % len(owners)],
            )
        )
        account_numbers.append(e164(local))

    one: list[str] = []
    contacts = []
    mobiles = []
    for index in range(_CONTACTS):
        first, last = next(people)
        local = 100001 + index
        mobile = None
        if index % _MOBILE_EVERY == _MOBILE_EVERY - 1:
            mobile_local = 110001 + index // _MOBILE_EVERY
            mobile = format_phone(mobile_local, index + 1)
            mobiles.append(e164(mobile_local))
        contacts.append(
            model.add_contact(
                last,
                first_name=first,
                phone=format_phone(local, index),
                mobile_phone=mobile,
                account_id=rng.choice(accounts),
                OwnerId=owners[index % len(owners)],
            )
        )
        one.append(e164(local))
    one.extend(mobiles)

    for index in range(_LEADS):
        first, last = next(people)
        local = 100031 + index
        model.add_lead(
            last,
            first_name=first,
            company=rng.choice(companies),
            phone=format_phone(local, index),
            OwnerId=owners[index % len(owners)],
        )
        one.append(e164(local))

    first_html, _, last_html = HTML_NAME.rpartition(" ")
    model.add_contact(
        last_html,
        first_name=first_html,
        phone=format_phone(100066, 1),
        account_id=accounts[0],
    )
    one.append(HTML_NAME_NUMBER)
    one.extend(account_numbers)

    shared_contact, shared_lead = next(people), next(people)
    model.add_contact(shared_contact[1], first_name=shared_contact[0], phone=format_phone(100090, 0), account_id=accounts[1])  # fmt: skip
    model.add_lead(shared_lead[1], first_name=shared_lead[0], company=companies[-1], phone=format_phone(100090, 1))  # fmt: skip
    front_desk, manager = next(people), next(people)
    model.add_contact(front_desk[1], first_name=front_desk[0], phone=format_phone(100091, 2), account_id=accounts[2])  # fmt: skip
    model.add_contact(manager[1], first_name=manager[0], mobile_phone=format_phone(100091, 3), account_id=accounts[2])  # fmt: skip

    for index in range(_CASES):
        contact = model.record("Contact", contacts[index])
        assert contact is not None
        model.add_case(
            f"Case {index + 1}: {('Billing question', 'Login problem', 'Delivery delayed', 'Refund request', 'Upgrade')[index]}",
            ContactId=contact["Id"],
            AccountId=contact["AccountId"],
            OwnerId=owners[index % len(owners)],
        )

    # Seeded records were indexed long ago: search-index lag never hides them.
    for table in model._records.values():
        for record in table.values():
            record.touched_at = float("-inf")

    numbers: dict[Outcome, tuple[str, ...]] = {
        "one": tuple(one),
        "many": MANY_MATCH_NUMBERS,
        "none": NO_MATCH_NUMBERS,
    }
    return Seeded(integration, tuple(agent_ids), MappingProxyType(numbers))
