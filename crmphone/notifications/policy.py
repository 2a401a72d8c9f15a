"""What the channel does between sockets: pure decisions, no I/O.

Two questions are answered here, so that the asyncio layer only carries them out:

- after a socket ended, how to get a live one back (:func:`plan_reconnect`): refresh the token?
  create a new channel, or reconnect to the same ``connectUri``? (Genesys's own streaming client
  reuses a channel at most 10 times, and always starts afresh after ``no_longer_subscribed``);
- when to roll over proactively (:func:`rollover_due`): before the channel's 24-hour ``expires`` or the
  expiry of the token the channel is bound to, whichever comes first.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from crmphone.notifications.diagnosis import LikelyCause

__all__ = ["Reconnect", "Rollover", "plan_reconnect", "rollover_due"]


@attrs.frozen
class Reconnect:
    """How to get a live socket back.

    ``refresh_token``: get a fresh token before anything else (the old one is gone or going).
    ``new_channel``: create a new channel and subscribe it, rather than reconnect to the old
    ``connectUri`` (which may no longer exist, or may be bound to a dead token).
    """

    refresh_token: bool
    new_channel: bool


# (refresh_token, new_channel) per cause. Causes that leave the channel and its token intact reconnect
# to the same connectUri first, which keeps the subscriptions; anything that says the channel or the
# token is gone starts afresh.
_RECONNECT_TABLE: dict[LikelyCause, tuple[bool, bool]] = {
    LikelyCause.MAINTENANCE: (False, False),
    LikelyCause.NETWORK_SILENCE: (False, False),
    LikelyCause.SERVER_ERROR: (False, False),
    LikelyCause.IDLE_TIMEOUT: (False, False),
    LikelyCause.UNKNOWN: (False, False),
    LikelyCause.CHANNEL_EXPIRED: (False, True),
    LikelyCause.EVICTED: (False, True),
    # Someone else connected to our channel: reconnecting to it would start a displacement war.
    LikelyCause.DISPLACED: (False, True),
    LikelyCause.TOKEN_EXPIRED: (True, True),
    LikelyCause.TOKEN_REVOKED: (True, True),
    LikelyCause.NO_LONGER_SUBSCRIBED: (True, True),
    LikelyCause.CLIENT_CLOSED: (False, False),
}


def plan_reconnect(cause: LikelyCause, *, reuses: int, reuse_limit: int) -> Reconnect:
    """Decide how to reconnect after a socket ended for ``cause``.

    ``reuses`` counts how many times the current channel has been reconnected to already; past
    ``reuse_limit`` a new channel is created whatever the cause.
    """
    refresh_token, new_channel = _RECONNECT_TABLE[cause]  # every cause has a row (tested)
    return Reconnect(refresh_token=refresh_token, new_channel=new_channel or reuses >= reuse_limit)


@attrs.frozen
class Rollover:
    """A proactive rollover to a new channel at ``at``; ``refresh_token`` when the token is the reason."""

    at: datetime
    refresh_token: bool


def _margin(created: datetime | None, expires: datetime, margin: timedelta) -> timedelta:
    # Short-lived tokens (the platform allows 300 s) must not roll over at once: never use more than
    # a tenth of the lifetime as margin.
    if created is None:
        return margin
    return min(margin, (expires - created) / 10)


def rollover_due(
    *,
    channel_created: datetime | None,
    channel_expires: datetime | None,
    token_issued: datetime | None,
    token_expires: datetime | None,
    margin: timedelta,
) -> Rollover | None:
    """When to open a replacement channel before this one dies of old age, or ``None`` if never.

    The channel is bound to the token that created it, so whichever of the two expires first sets
    the time.
    """
    candidates: list[Rollover] = []
    if channel_expires is not None:
        at = channel_expires - _margin(channel_created, channel_expires, margin)
        candidates.append(Rollover(at=at, refresh_token=False))
    if token_expires is not None:
        at = token_expires - _margin(token_issued, token_expires, margin)
        candidates.append(Rollover(at=at, refresh_token=True))
    if not candidates:
        return None
    return min(candidates, key=lambda rollover: rollover.at)
