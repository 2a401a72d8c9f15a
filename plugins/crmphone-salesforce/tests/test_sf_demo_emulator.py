"""The Salesforce emulator as ``crmphone demo`` finds and uses it: the ``crmphone.emulators``
entry point, the unmodified adapter configured from its options, and counts read from the org."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest

from crmphone.adapters import AdapterContext, LogStage, MatchOutcome
from crmphone.adapters.numbers import e164
from crmphone.demo.crm import DemoCrm, load_demo_crms
from crmphone.errors import InvalidStateError
from crmphone.testing import fake_call_logs
from crmphone_salesforce import SalesforceAdapter
from crmphone_salesforce.demo import SalesforceDemo
from crmphone_salesforce.emulator import HTML_NAME_NUMBER

AGENTS = ("platform-agent-a", "platform-agent-b")


@pytest.fixture
def demo() -> Iterator[DemoCrm]:
    """The entry point's emulator, started for two agents; stopped at the end."""
    made = load_demo_crms(["salesforce"])["salesforce"]
    made.start(agents=AGENTS, seed=0)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
async def demo_adapter(
    demo: DemoCrm, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SalesforceAdapter]:
    """The real adapter, built from the demo's options with its secrets in the environment."""
    for name, value in demo.environ().items():
        monkeypatch.setenv(name, value)
    context = AdapterContext(name="salesforce", agents=dict(demo.crm_users()), timeout=5.0)
    made = SalesforceAdapter.from_options(demo.adapter_options(), context)
    await made.start()
    try:
        yield made
    finally:
        await made.close()
        context.close()


def test_the_entry_point_offers_a_demo_crm() -> None:
    """load_demo_crms finds the Salesforce emulator by name, unstarted, implementing DemoCrm."""
    found = load_demo_crms(["salesforce"])
    assert isinstance(found["salesforce"], SalesforceDemo)
    assert isinstance(found["salesforce"], DemoCrm)
    assert "not running" in repr(found["salesforce"])


async def test_a_call_pops_one_record_and_logs_one_task(
    demo: DemoCrm, demo_adapter: SalesforceAdapter
) -> None:
    """A known caller matches one record, and the ended call is one Task however often logged."""
    requests_before = demo.requests()
    agent = AGENTS[0]
    logs = fake_call_logs(
        number=demo.known_callers()[0],
        agent_id=agent,
        crm_user_id=demo.crm_users()[agent],
        conversation_id="demo-sf-conversation-1",
    )
    match = await demo_adapter.lookup_caller(logs[LogStage.CONNECTED])
    assert match.outcome is MatchOutcome.ONE
    ended = attrs.evolve(logs[LogStage.ENDED], match=match)
    await demo_adapter.log_call(ended)
    counts = demo.call_records(["demo-sf-conversation-1", "demo-sf-conversation-2"])
    assert counts == {"demo-sf-conversation-1": 1, "demo-sf-conversation-2": 0}
    await demo_adapter.log_call(ended)
    assert demo.call_records(["demo-sf-conversation-1"]) == {"demo-sf-conversation-1": 1}
    assert demo.requests() > requests_before


async def test_every_known_caller_matches_exactly_one_record(
    demo: DemoCrm, demo_adapter: SalesforceAdapter
) -> None:
    """Each known caller, the HTML-named contact among them, is one match in the adapter's lookup."""
    callers = demo.known_callers()
    assert len(callers) >= 10
    assert len(set(callers)) == len(callers)
    assert all(e164(number) == number for number in callers)
    assert HTML_NAME_NUMBER in callers
    for number in callers:
        match = await demo_adapter.lookup_caller(fake_call_logs(number=number)[LogStage.CONNECTED])
        assert match.outcome is MatchOutcome.ONE, number


def test_options_name_the_secrets_and_users_map_each_agent(demo: DemoCrm) -> None:
    """The options use client credentials with CRMPHONE_DEMO_ variable names, never the values."""
    options = demo.adapter_options()
    environ = demo.environ()
    assert options["auth"] == "client_credentials"
    assert {options["client_id_env"], options["client_secret_env"]} == set(environ)
    assert all(name.startswith("CRMPHONE_DEMO_") for name in environ)
    assert not set(environ.values()) & {str(value) for value in options.values()}
    assert all(secret not in repr(demo) for secret in environ.values())
    users = demo.crm_users()
    assert set(users) == set(AGENTS)
    assert len(set(users.values())) == len(AGENTS)


def test_stop_is_idempotent_and_use_before_start_is_refused() -> None:
    """Stopping twice (or before starting) is fine; reading an unstarted demo is a clear error."""
    demo = SalesforceDemo()
    demo.stop()
    with pytest.raises(InvalidStateError):
        demo.adapter_options()
    demo.start(agents=AGENTS, seed=1)
    with pytest.raises(InvalidStateError):
        demo.start(agents=AGENTS, seed=1)
    ca_file = demo.adapter_options()["ca_file"]
    demo.stop()
    demo.stop()
    with pytest.raises(InvalidStateError):
        demo.requests()
    assert not Path(ca_file).exists()
