"""What tests import: a sandbox and channel settings scaled to run in tenths of a second, and the
adapter conformance suite (:class:`AdapterConformance`) a plugin runs to prove it keeps the contract.

Plugin authors and our own tests use these to run the real sandbox platform on loopback with timers
short enough for a test suite (heartbeats every 0.1 s instead of 30 s), so nothing has to sleep at
production values.
"""

from __future__ import annotations

from typing import Any

from crmphone.notifications import BackoffPolicy, ChannelSettings
from crmphone.platform import sign_in_sandbox_agent
from crmphone.platform.sandbox_login import SANDBOX_CLIENT_ID
from crmphone.sandbox import SandboxConfig
from crmphone.testing.conformance import AdapterConformance, ConformanceBackend
from crmphone.testing.demo_crm import DemoCrmConformance
from crmphone.testing.recording import HookCall, RecordingAdapter, fake_call, fake_call_logs

__all__ = [
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
]

TEST_CLIENT_ID = SANDBOX_CLIENT_ID
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
