"""The Salesforce emulator as ``crmphone demo`` finds and uses it: crmphone's demo CRM
conformance suite, plus what only the Salesforce demo promises."""

from __future__ import annotations

from crmphone.testing import DemoCrmConformance
from crmphone_salesforce import SalesforceAdapter
from crmphone_salesforce.demo import DEMO_API_LIMIT, SalesforceDemo
from crmphone_salesforce.emulator import HTML_NAME_NUMBER


class TestSalesforceDemoCrm(DemoCrmConformance):
    """The demo CRM conformance suite against SalesforceDemo and the unmodified adapter."""

    name = "salesforce"
    adapter_class = SalesforceAdapter
    demo_class = SalesforceDemo

    async def test_the_daily_api_allowance_is_out_of_reach(self) -> None:
        """The adapter sees the demo org's daily API allowance, far beyond any demo's use."""
        with self.started() as demo:
            async with self.adapter_on(demo) as adapter:
                assert isinstance(adapter, SalesforceAdapter)
                gauges = adapter.gauges()
                assert gauges.get("api_requests_allowed") == DEMO_API_LIMIT, gauges

    def test_the_html_named_contact_is_a_known_caller(self) -> None:
        """The contact whose name is HTML is among the known callers, so a demo pops it."""
        with self.started() as demo:
            assert HTML_NAME_NUMBER in demo.known_callers()

    def test_options_use_client_credentials(self) -> None:
        """The options sign in with client credentials, naming both variables of environ()."""
        with self.started() as demo:
            options = demo.adapter_options()
            assert options["auth"] == "client_credentials"
            wanted = {options["client_id_env"], options["client_secret_env"]}
            assert wanted == set(demo.environ())
