"""crmphone: a contact center's platform events and phone, delivered into its CRM.

The public API is what ``__all__`` lists (pinned by ``tests/test_exported_members.py``); everything
else may change without notice. See the documentation's reference pages for each name.
"""

from importlib.metadata import PackageNotFoundError, version

from crmphone.clock import Clock, ManualClock, SystemClock
from crmphone.errors import (
    AuthenticationError,
    BadRequestError,
    ChannelError,
    ChannelLimitError,
    ConfigError,
    CrmError,
    CrmPermanentError,
    CrmphoneError,
    CrmRetryableError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    PluginError,
    RateLimitedError,
    RemoteError,
    ServerError,
    StorageError,
    SubscriptionError,
    TransportError,
    UsageError,
)
from crmphone.notifications import (
    ChannelSettings,
    CloseDiagnosis,
    LikelyCause,
    NotificationStream,
    Resync,
    TopicEvent,
)
from crmphone.platform import (
    AccessToken,
    AuthorizationCode,
    CallConversation,
    Channel,
    ClientCredentials,
    Participant,
    PlatformClient,
    StaticToken,
    TokenProvider,
    resolve_region,
)

try:
    __version__ = version("crmphone")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
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
]
