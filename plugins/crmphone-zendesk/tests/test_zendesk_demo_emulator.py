"""The Zendesk emulator as ``crmphone demo`` finds and uses it: the ``crmphone.emulators`` entry
point, the unmodified adapter configured from its options, and counts read from the account."""

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
from crmphone_zendesk import ZendeskAdapter
from crmphone_zendesk.demo import ZendeskDemo
from crmphone_zendesk.emulator import HTML_NAME_NUMBER, SHARED_NUMBER

AGENTS = ("platform-agent-a", "platform-agent-b")


@pytest.fixture
def demo() -> Iterator[DemoCrm]:
    """The entry point's emulator, started for two agents; stopped at the end."""
    made = load_demo_crms(["zendesk"])["zendesk"]
    made.start(agents=AGENTS, seed=0)
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
async def demo_adapter(
    demo: DemoCrm, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ZendeskAdapter]:
    """The real adapter, built from the demo's options with its secret in the environment."""
    for name, value in demo.environ().items():
        monkeypatch.setenv(name, value)
    context = AdapterContext(name="zendesk", agents=dict(demo.crm_users()), timeout=5.0)
    made = ZendeskAdapter.from_options(demo.adapter_options(), context)
    await made.start()
    try:
        yield made
    finally:
        await made.close()
        context.close()


def test_the_entry_point_offers_a_demo_crm() -> None:
    """load_demo_crms finds the Zendesk emulator by name, unstarted, implementing DemoCrm."""
    found = load_demo_crms(["zendesk"])
    assert isinstance(found["zendesk"], ZendeskDemo)
    assert isinstance(found["zendesk"], DemoCrm)
    assert "not running" in repr(found["zendesk"])


async def test_a_call_pops_one_user_and_logs_one_call_record(
    demo: DemoCrm, demo_adapter: ZendeskAdapter
) -> None:
    """A known caller matches one user, and the ended call is one log however often logged."""
    requests_before = demo.requests()
    agent = AGENTS[0]
    logs = fake_call_logs(
        number=demo.known_callers()[0],
        agent_id=agent,
        crm_user_id=demo.crm_users()[agent],
        conversation_id="demo-zd-conversation-1",
    )
    match = await demo_adapter.lookup_caller(logs[LogStage.CONNECTED])
    assert match.outcome is MatchOutcome.ONE
    ended = attrs.evolve(logs[LogStage.ENDED], match=match)
    await demo_adapter.log_call(ended)
    counts = demo.call_records(["demo-zd-conversation-1", "demo-zd-conversation-2"])
    assert counts == {"demo-zd-conversation-1": 1, "demo-zd-conversation-2": 0}
    await demo_adapter.log_call(ended)
    assert demo.call_records(["demo-zd-conversation-1"]) == {"demo-zd-conversation-1": 1}
    assert demo.requests() > requests_before


async def test_every_known_caller_matches_exactly_one_user(
    demo: DemoCrm, demo_adapter: ZendeskAdapter
) -> None:
    """Each known caller, the HTML-named one among them, is one match in the adapter's lookup."""
    callers = demo.known_callers()
    assert len(callers) >= 10
    assert len(set(callers)) == len(callers)
    assert all(e164(number) == number for number in callers)
    assert HTML_NAME_NUMBER in callers
    assert SHARED_NUMBER not in callers
    for number in callers:
        match = await demo_adapter.lookup_caller(fake_call_logs(number=number)[LogStage.CONNECTED])
        assert match.outcome is MatchOutcome.ONE, number


def test_options_name_the_token_and_users_map_each_agent(demo: DemoCrm) -> None:
    """The options use an API token by a CRMPHONE_DEMO_ variable name, never its value."""
    options = demo.adapter_options()
    environ = demo.environ()
    assert set(environ) == {options["token_env"]}
    assert all(name.startswith("CRMPHONE_DEMO_") for name in environ)
    assert not set(environ.values()) & {str(value) for value in options.values()}
    assert all(secret not in repr(demo) for secret in environ.values())
    users = demo.crm_users()
    assert set(users) == set(AGENTS)
    assert len(set(users.values())) == len(AGENTS)
    assert all(user.isdigit() for user in users.values())


def test_more_agents_than_seeded_get_agents_of_their_own() -> None:
    """Six platform agents get six distinct Zendesk agents (four seeded, two added)."""
    demo = ZendeskDemo()
    agents = [f"platform-agent-{number}" for number in range(6)]
    demo.start(agents=agents, seed=3)
    try:
        users = demo.crm_users()
        assert list(users) == agents
        assert len(set(users.values())) == len(agents)
    finally:
        demo.stop()


def test_stop_is_idempotent_and_use_before_start_is_refused() -> None:
    """Stopping twice (or before starting) is fine; reading an unstarted demo is a clear error."""
    demo = ZendeskDemo()
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
