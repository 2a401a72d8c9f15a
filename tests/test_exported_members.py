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
    "CrmError",
    "CrmPermanentError",
    "CrmRetryableError",
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
    "PluginError",
    "RateLimitedError",
    "RemoteError",
    "Resync",
    "ServerError",
    "StaticToken",
    "StorageError",
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


ADAPTERS_EXPECTED = {
    "Adapter",
    "AdapterContext",
    "CallLog",
    "CallLogged",
    "CallerMatch",
    "CallerMatched",
    "Commands",
    "CrmRecord",
    "LogStage",
    "Memory",
    "VolatileMemory",
    "MatchOutcome",
    "Outbox",
    "OutboxNotice",
    "OutboxSettings",
    "OutboxStats",
    "OutboxStore",
    "RetryPolicy",
    "WorkItem",
    "WorkKind",
    "crm_error_for_status",
}


def test_the_adapter_api_is_pinned_and_documented() -> None:
    """What plugin authors import from crmphone.adapters is deliberate, and documented."""
    import crmphone.adapters

    assert set(crmphone.adapters.__all__) == ADAPTERS_EXPECTED
    for name in crmphone.adapters.__all__:
        member = getattr(crmphone.adapters, name)
        if callable(member):
            assert member.__doc__, f"crmphone.adapters.{name} has no docstring"


TESTING_EXPECTED = {
    "TEST_CLIENT_ID",
    "TEST_CLIENT_SECRET",
    "AdapterConformance",
    "ConformanceBackend",
    "DemoCrmConformance",
    "HookCall",
    "RecordingAdapter",
    "fake_call",
    "fake_call_logs",
    "fast_channel_settings",
    "fast_sandbox_config",
    "sign_in_sandbox_agent",
}


def test_the_testing_api_is_pinned() -> None:
    """What plugin authors' tests import from crmphone.testing is deliberate."""
    import crmphone.testing

    assert set(crmphone.testing.__all__) == TESTING_EXPECTED
