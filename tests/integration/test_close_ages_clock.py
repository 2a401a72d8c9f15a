"""Close diagnoses measure ages on the monotonic clock, whatever the wall clock does meanwhile."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from crmphone.clock import SystemClock
from crmphone.notifications import CloseDiagnosis, NotificationStream
from crmphone.platform import PlatformClient
from crmphone.sandbox import SandboxServer
from crmphone.testing import fast_channel_settings

pytestmark = pytest.mark.timeout(30)


class _MovableWallClock(SystemClock):
    """The real clock, with a wall clock a test can set back or forward (as NTP or an operator
    would), while the monotonic clock runs on."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def wall(self) -> datetime:
        return super().wall() + self.offset


@pytest.mark.parametrize("jump", [timedelta(hours=-2), timedelta(hours=2)])
async def test_ages_at_a_close_ignore_a_wall_clock_jump(
    sandbox: SandboxServer, client: PlatformClient, jump: timedelta
) -> None:
    """A socket closed after the wall clock jumped 2 h reports the ages it really had (seconds),
    not ages off by the jump."""
    clock = _MovableWallClock()
    closes: list[CloseDiagnosis] = []
    topic = f"v2.users.{sandbox.sandbox.agents[0].id}.conversations.calls"
    settings = fast_channel_settings()
    async with NotificationStream(
        client, [topic], settings=settings, clock=clock, on_close=closes.append
    ):
        await asyncio.sleep(0.3)  # a heartbeat or two
        clock.offset = jump
        sandbox.sandbox.faults.close(code=1011, reason="internal error")
        async with asyncio.timeout(10):
            while not closes:
                await asyncio.sleep(0.02)
    ages = closes[0].ages
    bound = timedelta(seconds=20)
    for name in ("socket_age", "channel_age", "token_age", "last_frame_age"):
        age = getattr(ages, name)
        assert age is not None, name
        assert timedelta(0) <= age < bound, (name, age)
    assert "token_age=-" not in closes[0].one_line()
