"""crmphone.platform's public names are pinned, resolvable and documented."""

from __future__ import annotations

import inspect

import crmphone.platform

EXPECTED = {
    "sign_in_sandbox_agent",
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
    "Station",
    "StaticToken",
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
}


def test_exported_names_are_pinned() -> None:
    """Adding or removing a public name is a deliberate change to this list."""
    assert set(crmphone.platform.__all__) == EXPECTED


def test_every_public_class_and_method_is_documented() -> None:
    """Each exported object, and each public method or property of its classes, is documented."""
    for name in crmphone.platform.__all__:
        member = getattr(crmphone.platform, name)
        assert inspect.getdoc(member), name
        if inspect.isclass(member):
            for attribute, raw in vars(member).items():
                value = getattr(member, attribute)
                if attribute.startswith("_") or not (callable(value) or isinstance(raw, property)):
                    continue
                assert inspect.getdoc(value), f"{name}.{attribute}"
