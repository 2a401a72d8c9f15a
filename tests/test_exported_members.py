"""The public API is exactly what we say it is."""

import crmphone

EXPECTED = {
    "AccessToken",
    "AuthenticationError",
    "AuthorizationCode",
    "BadRequestError",
    "CallConversation",
    "Channel",
    "ChannelError",
    "ChannelLimitError",
    "ChannelSettings",
    "ClientCredentials",
    "Clock",
    "CloseDiagnosis",
    "ConfigError",
    "CrmphoneError",
    "InvalidStateError",
    "LikelyCause",
    "ManualClock",
    "NotFoundError",
    "NotificationStream",
    "Participant",
    "PermissionDeniedError",
    "PlatformClient",
    "PlatformError",
    "RateLimitedError",
    "RemoteError",
    "Resync",
    "ServerError",
    "StaticToken",
    "SubscriptionError",
    "SystemClock",
    "TokenProvider",
    "TopicEvent",
    "TransportError",
    "UsageError",
    "__version__",
    "resolve_region",
}


def test_exported_members_are_pinned() -> None:
    """Adding or removing a public name is a deliberate change to this list and the changelog."""
    assert set(crmphone.__all__) == EXPECTED


def test_every_exported_member_exists_and_is_documented() -> None:
    """Each public name resolves, and each public class or function has a docstring."""
    for name in crmphone.__all__:
        member = getattr(crmphone, name)
        if callable(member):
            assert member.__doc__, f"crmphone.{name} has no docstring"


def test_every_error_derives_from_the_one_root() -> None:
    """Users can catch CrmphoneError and know they have caught everything crmphone raises."""
    for name in crmphone.__all__:
        member = getattr(crmphone, name)
        if isinstance(member, type) and issubclass(member, Exception):
            assert issubclass(member, crmphone.CrmphoneError), name
