"""The bridge: a local web server that CRM-embedded pages talk to.

Pages (the Salesforce Open CTI softphone, the Zendesk app, the dashboard) load from it, open its
WebSocket, authenticate with the install's token in their first frame, then receive events
(calls, the phone's persistent connection and microphone, presence, screen pops) and send
commands (answer, hang up, mute, hold, dial, stop the persistent connection).

* :mod:`crmphone.bridge.protocol` — the wire format (sans-I/O): :func:`parse_command`,
  :func:`event_message`, :func:`pop_message`, the command values, :class:`CommandError`.
* :mod:`crmphone.bridge.security` — the token, allowed origins, the pages' CSP, the hello decision.
* :mod:`crmphone.bridge.server` — :class:`BridgeServer` on uvicorn, given a :class:`CommandHandler`.

The bridge knows nothing of the phone or the platform: the connector hands it a
:class:`CommandHandler` that carries commands out, and publishes events to it.

:data:`BRIDGE_PAGE_SCRIPTS` are the browser side every page loads: ``crmphone-bridge.js`` (the
protocol: token from the URL fragment, hello, reconnects, commands) and ``crmphone-phone.js`` (the
phone panel, with hooks for the CRM's own glue).
"""

from pathlib import Path

from crmphone.bridge.protocol import (
    COMMANDS,
    MAX_FRAME_BYTES,
    PROTOCOL,
    Answer,
    Command,
    CommandError,
    CommandId,
    CommandRequest,
    Dial,
    ErrorCode,
    Hangup,
    Hello,
    Hold,
    Mute,
    StopPersistent,
    agents_message,
    encode,
    error_message,
    event_message,
    logged_message,
    parse_command,
    parse_hello,
    pop_message,
    result_message,
    welcome_message,
)
from crmphone.bridge.security import (
    CLOSE_UNAUTHENTICATED,
    DEFAULT_ALLOWED_ORIGINS,
    BridgeToken,
    OriginPattern,
    OriginPolicy,
    UnauthenticatedError,
    authenticate,
    content_security_policy,
)
from crmphone.bridge.server import (
    CLOSE_GOING_AWAY,
    CLOSE_TOO_SLOW,
    HEALTH_PATH,
    WEBSOCKET_PATH,
    BridgeServer,
    BridgeSettings,
    BridgeStats,
    CommandHandler,
    ConnectedClient,
)
from crmphone.errors import ConfigError

_STATIC = Path(__file__).resolve().parent / "static"
#: The scripts every page loads beside its own (serve them next to the page).
BRIDGE_PAGE_SCRIPTS = (_STATIC / "crmphone-bridge.js", _STATIC / "crmphone-phone.js")
#: What every phone page serves beside its own files: the scripts and the panel's stylesheet.
_SHARED_PAGE_FILES = (*BRIDGE_PAGE_SCRIPTS, _STATIC / "crmphone-phone.css")


def builtin_pages(*names: str) -> dict[str, Path]:
    """The pages crmphone ships, as :attr:`BridgeSettings.pages` takes them: URL path → file.

    Each page set lives in its own folder and is served under ``/<name>/``, with the shared
    :data:`BRIDGE_PAGE_SCRIPTS` and the phone panel's stylesheet (``crmphone-phone.css``) beside
    it: ``salesforce`` (the Open CTI softphone, ``/salesforce/softphone.html``), ``zendesk`` (the
    Zendesk app, ``/zendesk/iframe.html``) and ``dashboard`` (``/dashboard/index.html``). No names: all of them. An unknown name raises
    :class:`~crmphone.errors.ConfigError`.
    """
    available = sorted(folder.name for folder in _STATIC.iterdir() if folder.is_dir())
    for name in names:
        if name not in available:
            raise ConfigError(
                f"no built-in page set {name!r}; there are {', '.join(available)}",
                key="bridge.builtin_pages",
            )
    pages: dict[str, Path] = {}
    for name in names or available:
        folder = _STATIC / name
        for file in sorted(folder.iterdir()):
            if file.is_file():
                pages[f"/{name}/{file.name}"] = file
        for shared in _SHARED_PAGE_FILES:
            pages[f"/{name}/{shared.name}"] = shared
    return pages


__all__ = [
    "BRIDGE_PAGE_SCRIPTS",
    "CLOSE_GOING_AWAY",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNAUTHENTICATED",
    "COMMANDS",
    "DEFAULT_ALLOWED_ORIGINS",
    "HEALTH_PATH",
    "MAX_FRAME_BYTES",
    "PROTOCOL",
    "WEBSOCKET_PATH",
    "Answer",
    "BridgeServer",
    "BridgeSettings",
    "BridgeStats",
    "BridgeToken",
    "Command",
    "CommandError",
    "CommandHandler",
    "CommandId",
    "CommandRequest",
    "ConnectedClient",
    "Dial",
    "ErrorCode",
    "Hangup",
    "Hello",
    "Hold",
    "Mute",
    "OriginPattern",
    "OriginPolicy",
    "StopPersistent",
    "UnauthenticatedError",
    "agents_message",
    "authenticate",
    "builtin_pages",
    "content_security_policy",
    "encode",
    "error_message",
    "event_message",
    "logged_message",
    "parse_command",
    "parse_hello",
    "pop_message",
    "result_message",
    "welcome_message",
]
