"""What tests import: a sandbox and channel settings scaled to run in tenths of a second, and the
adapter conformance suite (:class:`AdapterConformance`) a plugin runs to prove it keeps the contract.

Plugin authors and our own tests use these to run the real sandbox platform on loopback with timers
short enough for a test suite (heartbeats every 0.1 s instead of 30 s), so nothing has to sleep at
production values.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from crmphone.errors import AuthenticationError
from crmphone.notifications import BackoffPolicy, ChannelSettings
from crmphone.platform import AuthorizationCode, authorization_url, make_pkce_pair
from crmphone.sandbox import SandboxConfig
from crmphone.testing.conformance import AdapterConformance, ConformanceBackend
from crmphone.testing.recording import HookCall, RecordingAdapter, fake_call, fake_call_logs

__all__ = [
    "TEST_CLIENT_ID",
    "TEST_CLIENT_SECRET",
    "AdapterConformance",
    "ConformanceBackend",
    "HookCall",
    "RecordingAdapter",
    "fake_call",
    "fake_call_logs",
    "fast_channel_settings",
    "fast_sandbox_config",
    "sign_in_sandbox_agent",
]

TEST_CLIENT_ID = "test-client"
#: A known value, so tests can assert that it never leaks into logs, reprs or errors.
TEST_CLIENT_SECRET = "test-secret-5b1e"  # noqa: S105 - a published test credential


def fast_sandbox_config(**overrides: Any) -> SandboxConfig:
    """A sandbox configuration whose timers run in tenths of a second; keywords override."""
    values: dict[str, Any] = {
        "client_id": TEST_CLIENT_ID,
        "client_secret": TEST_CLIENT_SECRET,
        "heartbeat_interval": 0.1,
        "agents": 3,
        "ring_seconds": 0.05,
        "talk_seconds": 0.1,
        "wrapup_seconds": 0.05,
        "rate_limit_per_minute": 0,
    }
    values.update(overrides)
    return SandboxConfig(**values)


def fast_channel_settings(**overrides: Any) -> ChannelSettings:
    """Channel settings matched to :func:`fast_sandbox_config`: liveness in under a second."""
    values: dict[str, Any] = {
        "heartbeat_timeout": 0.5,
        "pong_timeout": 0.3,
        "backoff": BackoffPolicy(initial=0.05, cap=0.3, healthy_after=0.5),
        "drain_seconds": 0.3,
        "dedupe_window": 5.0,
        "open_timeout": 2.0,
        "close_timeout": 0.5,
        "head_check_timeout": 1.0,
    }
    values.update(overrides)
    return ChannelSettings(**values)


async def sign_in_sandbox_agent(
    base_url: str,
    agent_id: str,
    *,
    client_id: str = TEST_CLIENT_ID,
    redirect_uri: str = "http://127.0.0.1/callback",
) -> AuthorizationCode:
    """Sign ``agent_id`` in to the sandbox as a browser would (Authorization Code + PKCE).

    The sandbox's ``/oauth/authorize`` has no login page: ``sandbox_user`` picks the agent and it
    redirects at once with a code. Returns the token provider a softphone's client uses.
    """
    verifier, challenge = make_pkce_pair()
    state = secrets.token_urlsafe(16)
    url = authorization_url(base_url, client_id, redirect_uri, challenge, state)
    url += "&" + urlencode({"sandbox_user": agent_id})
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    query = parse_qs(urlsplit(response.headers.get("location", "")).query)
    if response.status_code != 302 or query.get("state") != [state] or "code" not in query:
        raise AuthenticationError(
            f"sandbox sign-in of {agent_id} failed: HTTP {response.status_code}", status=401
        )
    return AuthorizationCode(
        login_base=base_url,
        client_id=client_id,
        redirect_uri=redirect_uri,
        code=query["code"][0],
        code_verifier=verifier,
    )
