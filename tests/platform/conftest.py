"""Fixtures for the platform client's tests: a manual clock, instant sleeps, mocked hosts."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator

import pytest
import respx
from platform_fakes import ACCESS, API, LOGIN, SECRET, RecordedSleeps

from crmphone.clock import ManualClock
from crmphone.platform import ClientCredentials, PlatformClient, RetryPolicy, StaticToken


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when a test (or a recorded sleep) says so."""
    return ManualClock()


@pytest.fixture
def sleeps(clock: ManualClock) -> RecordedSleeps:
    """Instant, recorded sleeps tied to the manual clock."""
    return RecordedSleeps(clock)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    """A respx router for the fake API and login hosts; unmatched requests fail the test."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
async def mocked_client(
    mock: respx.MockRouter, clock: ManualClock, sleeps: RecordedSleeps
) -> AsyncIterator[PlatformClient]:
    """A PlatformClient on the mocked API host with a static token and instant, seeded retries."""
    async with PlatformClient(
        api_base=API,
        tokens=StaticToken(ACCESS, clock=clock),
        sleep=sleeps,
        rng=random.Random(7),
        clock=clock,
        retry=RetryPolicy(),
    ) as platform_client:
        yield platform_client


@pytest.fixture
def credentials(clock: ManualClock, sleeps: RecordedSleeps) -> ClientCredentials:
    """Client credentials against the mocked login host, on the manual clock."""
    return ClientCredentials(
        login_base=LOGIN,
        client_id="my-client",
        client_secret=SECRET,
        clock=clock,
        sleep=sleeps,
        rng=random.Random(3),
    )
