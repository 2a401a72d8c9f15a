"""The Zendesk emulator as ``crmphone demo`` finds and uses it: crmphone's demo CRM conformance
suite, plus what only the Zendesk demo promises."""

from __future__ import annotations

from crmphone.testing import DemoCrmConformance
from crmphone_zendesk import ZendeskAdapter
from crmphone_zendesk.demo import ZendeskDemo
from crmphone_zendesk.emulator import HTML_NAME_NUMBER, SHARED_NUMBER


class TestZendeskDemoCrm(DemoCrmConformance):
    """The demo CRM conformance suite against ZendeskDemo and the unmodified adapter."""

    name = "zendesk"
    adapter_class = ZendeskAdapter
    demo_class = ZendeskDemo

    def test_more_agents_than_seeded_get_agents_of_their_own(self) -> None:
        """Six platform agents get six distinct Zendesk agents (four seeded, two added)."""
        agents = [f"platform-agent-{number}" for number in range(6)]
        with self.started(agents=agents, seed=3) as demo:
            users = demo.crm_users()
            assert list(users) == agents
            assert len(set(users.values())) == len(agents)

    def test_known_callers_hold_the_html_name_not_the_shared_number(self) -> None:
        """The HTML-named user is a known caller; the number two users share is not."""
        with self.started() as demo:
            callers = demo.known_callers()
            assert HTML_NAME_NUMBER in callers
            assert SHARED_NUMBER not in callers

    def test_options_name_the_api_token(self) -> None:
        """The options name the API token's variable, the only one of environ()."""
        with self.started() as demo:
            assert set(demo.environ()) == {demo.adapter_options()["token_env"]}

    def test_crm_users_are_zendesk_user_ids(self) -> None:
        """Each agent's CRM user is a Zendesk user id, a number, as the adapter needs."""
        with self.started() as demo:
            assert all(user.isdigit() for user in demo.crm_users().values())
