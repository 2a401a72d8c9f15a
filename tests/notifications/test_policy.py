"""The pure decisions between sockets: how to reconnect, and when to roll over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmphone.notifications.diagnosis import LikelyCause
from crmphone.notifications.policy import Reconnect, plan_reconnect, rollover_due

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(hours=24)
TEN_MINUTES = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (LikelyCause.MAINTENANCE, Reconnect(refresh_token=False, new_channel=False)),
        (LikelyCause.NETWORK_SILENCE, Reconnect(refresh_token=False, new_channel=False)),
        (LikelyCause.SERVER_ERROR, Reconnect(refresh_token=False, new_channel=False)),
        (LikelyCause.IDLE_TIMEOUT, Reconnect(refresh_token=False, new_channel=False)),
        (LikelyCause.UNKNOWN, Reconnect(refresh_token=False, new_channel=False)),
        (LikelyCause.CHANNEL_EXPIRED, Reconnect(refresh_token=False, new_channel=True)),
        (LikelyCause.EVICTED, Reconnect(refresh_token=False, new_channel=True)),
        (LikelyCause.DISPLACED, Reconnect(refresh_token=False, new_channel=True)),
        (LikelyCause.TOKEN_EXPIRED, Reconnect(refresh_token=True, new_channel=True)),
        (LikelyCause.TOKEN_REVOKED, Reconnect(refresh_token=True, new_channel=True)),
        (LikelyCause.NO_LONGER_SUBSCRIBED, Reconnect(refresh_token=True, new_channel=True)),
    ],
)
def test_each_cause_has_its_reconnect_plan(cause: LikelyCause, expected: Reconnect) -> None:
    """Intact channels are reused; a gone channel or token starts afresh."""
    assert plan_reconnect(cause, reuses=0, reuse_limit=10) == expected


def test_every_cause_is_planned_explicitly() -> None:
    """A new cause added to the diagnosis must be given a plan on purpose, not by default."""
    from crmphone.notifications.policy import _RECONNECT_TABLE

    assert set(_RECONNECT_TABLE) == set(LikelyCause)


def test_a_channel_reused_too_often_is_replaced() -> None:
    """Past the reuse limit even a reusable channel is exchanged for a new one."""
    assert (
        plan_reconnect(LikelyCause.NETWORK_SILENCE, reuses=9, reuse_limit=10).new_channel is False
    )
    assert (
        plan_reconnect(LikelyCause.NETWORK_SILENCE, reuses=10, reuse_limit=10).new_channel is True
    )


def test_rollover_comes_before_the_channel_expires() -> None:
    """A 24-hour channel with a 24-hour token rolls over the margin before the channel's expiry."""
    rollover = rollover_due(
        channel_created=T0,
        channel_expires=T0 + DAY,
        token_issued=T0 - timedelta(hours=1),
        token_expires=T0 + DAY + timedelta(hours=1),
        margin=TEN_MINUTES,
    )
    assert rollover is not None
    assert rollover.at == T0 + DAY - TEN_MINUTES
    assert rollover.refresh_token is False


def test_an_earlier_token_expiry_sets_the_time_and_asks_for_a_fresh_token() -> None:
    """The channel dies with its token, so the token's earlier expiry decides, with a refresh."""
    rollover = rollover_due(
        channel_created=T0,
        channel_expires=T0 + DAY,
        token_issued=T0,
        token_expires=T0 + timedelta(hours=2),
        margin=TEN_MINUTES,
    )
    assert rollover is not None
    assert rollover.at == T0 + timedelta(hours=2) - TEN_MINUTES
    assert rollover.refresh_token is True


def test_a_short_lifetime_uses_at_most_a_tenth_as_margin() -> None:
    """A 300-second token rolls over 30 s before expiry, not ten minutes (i.e. at once)."""
    rollover = rollover_due(
        channel_created=None,
        channel_expires=None,
        token_issued=T0,
        token_expires=T0 + timedelta(seconds=300),
        margin=TEN_MINUTES,
    )
    assert rollover is not None
    assert rollover.at == T0 + timedelta(seconds=270)


def test_nothing_known_means_no_rollover() -> None:
    """Without any expiry there is nothing to roll over for."""
    assert (
        rollover_due(
            channel_created=None,
            channel_expires=None,
            token_issued=None,
            token_expires=None,
            margin=TEN_MINUTES,
        )
        is None
    )
