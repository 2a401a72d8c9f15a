"""Shared fakes for the platform tests (a uniquely named module, so no other test tree clashes)."""

from __future__ import annotations

import httpx

from crmphone.clock import ManualClock

API = "https://api.example.test"
LOGIN = "https://login.example.test"
SECRET = "s3cr3t-client-secret-value"
ACCESS = "tok-AAAA-secret-access-token"


class RecordedSleeps:
    """An injectable sleep that returns at once, records each delay and advances the clock."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


def token_response(value: str = ACCESS, expires_in: float = 86400) -> httpx.Response:
    """A login host's successful client-credentials answer."""
    return httpx.Response(
        200, json={"access_token": value, "token_type": "bearer", "expires_in": expires_in}
    )
