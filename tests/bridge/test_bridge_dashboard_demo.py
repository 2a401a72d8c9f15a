"""``crmphone demo`` end to end, with the dashboard open in real Chromium while it runs: the
dashboard shows the demo's agents, persistent connections, calls and CRM records, a screenshot of
it is a drawn page, and the demo's report holds only measured figures and no secret."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from dashboard_page_helpers import open_dashboard, png_summary, until_shown
from rich.console import Console

from crmphone.demo import DemoSettings, run_demo
from crmphone.service import Services
from crmphone.testing.pages import chromium

pytestmark = pytest.mark.timeout(180)


async def test_the_demo_runs_end_to_end_and_the_dashboard_shows_it(tmp_path: Path) -> None:
    """Six calls to two agents through both CRMs: every call answered, logged once in each CRM,
    first calls and persistent calls measured; the dashboard, screenshotted mid-run, shows the
    agents with their persistent connection active, and the records written."""
    shots: list[bytes] = []
    shown: list[dict[str, object]] = []
    secrets: list[str] = []

    async def watch_dashboard(services: Services) -> None:
        assert services.bridge is not None
        # The demo hands the adapters their credentials through the environment, as in
        # production: these are the values that must never show anywhere.
        secrets.extend(
            value
            for name, value in os.environ.items()
            if name.startswith("CRMPHONE_DEMO_")
            and any(word in name for word in ("SECRET", "TOKEN", "PASSWORD", "KEY", "SESSION"))
        )
        async with chromium() as browser:
            dashboard = await open_dashboard(browser, services.bridge)
            state = await until_shown(
                dashboard.page,
                lambda s: (
                    len(s["agents"]) == 2
                    and any(a["persistent"] == "on" for a in s["agents"])
                    and len(s["records"]) >= 2
                ),
                within=60,
            )
            shown.append(state)
            shots.append(await dashboard.page.screenshot(full_page=True))
            assert dashboard.problems == []

    output = io.StringIO()
    settings = DemoSettings(
        agents=2, calls=6, talk_seconds=0.8, output=tmp_path / "report", live=False
    )
    result = await run_demo(
        settings, console=Console(file=output, width=100), on_started=watch_dashboard
    )
    report = result.report
    assert result.ok, output.getvalue()
    assert len(report.calls) == 6
    assert {totals.adapter for totals in report.crm} == {"salesforce", "zendesk"}
    for totals in report.crm:
        assert totals.records == 6
        assert totals.duplicates == 0
        assert totals.dead_letters == 0
        assert totals.requests is not None
        assert totals.requests > 0
    first, persistent = report.latency(False), report.latency(True)
    assert first is not None
    assert first.n == 2  # each agent's first call set the connection up
    assert persistent is not None
    assert persistent.n == 4
    assert report.bridge_clients >= 1
    assert report.bridge_messages > 0

    (state,) = shown
    assert {agent["name"] for agent in state["agents"]} <= {c.agent_name for c in report.calls}
    width, height, colours = png_summary(shots[0])
    assert width >= 1000
    assert height >= 600
    assert len(colours) > 8  # a drawn page, not a blank one

    data = json.loads(result.json_path.read_text())
    assert data["summary"]["lost"] == 0
    html = result.html_path.read_text()
    assert "<svg" in html
    assert len(secrets) >= 3  # the platform's and both CRMs'
    for secret in secrets:
        assert secret not in output.getvalue()
        assert secret not in html
        assert secret not in result.json_path.read_text()
