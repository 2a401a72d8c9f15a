"""A local platform that speaks Genesys Cloud's wire protocol.

The sandbox is crmphone's embedded default (``crmphone demo``) and the server every test talks to.
It serves the notification API (OAuth, channels, subscriptions, WebSocket events with heartbeats),
the directory and conversation calls real clients use — the official Genesys SDK included —
generates realistic calls, and breaks on demand (fault injection).

.. code-block:: python

    from crmphone.sandbox import SandboxConfig, SandboxServer

    async with SandboxServer(SandboxConfig(heartbeat_interval=0.05)) as server:
        server.base_url                      # login and API on one port
        agent = server.sandbox.agents[0]
        await server.sandbox.calls.place_inbound(agent.id)
        server.sandbox.faults.socket_closing(close_after=0.2)

Modules: :mod:`~crmphone.sandbox.config` (settings), :mod:`~crmphone.sandbox.world` (the pure model
of clients, tokens, channels and sockets), :mod:`~crmphone.sandbox.topics` (subscription rules),
:mod:`~crmphone.sandbox.conversation` (one call as a state machine), :mod:`~crmphone.sandbox.calls`
(the call generator), :mod:`~crmphone.sandbox.edge` (the media edge: an aiortc peer per station,
persistent between calls) with :mod:`~crmphone.sandbox.signalling` (the softphones' signalling
sockets) and :mod:`~crmphone.sandbox.relay` (network emulation), :mod:`~crmphone.sandbox.faults`,
:mod:`~crmphone.sandbox.hub` (sockets and fan-out), :mod:`~crmphone.sandbox.app` (HTTP routes),
:mod:`~crmphone.sandbox.server`.
"""

from __future__ import annotations

from .calls import CallGenerator
from .config import SandboxConfig, SecondSocketPolicy
from .faults import FaultRecord, Faults
from .hub import Emitted, Sandbox
from .server import SandboxServer, SandboxThread, serve
from .world import Agent, CloseReason, Queue, Station, World

__all__ = [
    "Agent",
    "CallGenerator",
    "CloseReason",
    "Emitted",
    "FaultRecord",
    "Faults",
    "Queue",
    "Sandbox",
    "SandboxConfig",
    "SandboxServer",
    "SandboxThread",
    "SecondSocketPolicy",
    "Station",
    "World",
    "serve",
]
