"""The Genesys Cloud REST client: OAuth tokens, notification channels, subscriptions, calls.

.. code-block:: python

    from crmphone.platform import ClientCredentials, PlatformClient, resolve_region

    api_base, login_base = resolve_region("mypurecloud.de")
    tokens = ClientCredentials(login_base=login_base, client_id=..., client_secret=...)
    async with PlatformClient(api_base=api_base, tokens=tokens) as client:
        channel = await client.create_channel()
        await client.put_subscriptions(channel.id, [f"v2.users.{user_id}.conversations.calls"])

Everything the platform sends arrives as frozen values (:class:`Channel`, :class:`CallConversation`,
…); every failure as a :mod:`crmphone.errors` exception.
"""

from .auth import (
    AccessToken,
    AuthorizationCode,
    ClientCredentials,
    StaticToken,
    TokenProvider,
    authorization_url,
    make_pkce_pair,
    pkce_challenge,
)
from .client import PlatformClient
from .models import (
    CallConversation,
    Channel,
    Participant,
    PresenceDefinition,
    Station,
    TopicSubscription,
    User,
    UserPresence,
    UserRoutingStatus,
    Wrapup,
    normalise_system_presence,
    parse_genesys_datetime,
)
from .regions import RegionUrls, resolve_region
from .retry import RetryPolicy, parse_retry_after
from .sandbox_login import sign_in_sandbox_agent

__all__ = [
    "AccessToken",
    "AuthorizationCode",
    "CallConversation",
    "Channel",
    "ClientCredentials",
    "Participant",
    "PlatformClient",
    "PresenceDefinition",
    "RegionUrls",
    "RetryPolicy",
    "StaticToken",
    "Station",
    "TokenProvider",
    "TopicSubscription",
    "User",
    "UserPresence",
    "UserRoutingStatus",
    "Wrapup",
    "authorization_url",
    "make_pkce_pair",
    "normalise_system_presence",
    "parse_genesys_datetime",
    "parse_retry_after",
    "pkce_challenge",
    "resolve_region",
    "sign_in_sandbox_agent",
]
