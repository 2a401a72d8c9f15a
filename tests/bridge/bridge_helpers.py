"""What the bridge's socket tests share: fast settings, a recording handler, a page client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from crmphone.bridge import BridgeServer, BridgeSettings, BridgeToken, Command, ConnectedClient

PAGE_ORIGIN = "https://acme.my.salesforce.com"
"""An origin the default patterns allow (a Salesforce org's page)."""

WAIT = 5.0
"""The longest any single step of a socket test may take: a bound, never a sleep."""

Respond = Callable[[Command, ConnectedClient], Awaitable[Mapping[str, Any]]]


def fast_settings(token: BridgeToken, **overrides: Any) -> BridgeSettings:
    """Bridge settings for tests: the given token, short timeouts, everything else as shipped."""
    options: dict[str, Any] = {"token": token, "hello_timeout": 2.0, "close_timeout": 1.0}
    options.update(overrides)
    return BridgeSettings(**options)


class RecordingHandler:
    """A command handler that records every command and answers through ``respond`` (by default
    ``{"handled": <command name>}``)."""

    def __init__(self, respond: Respond | None = None) -> None:
        self.received: list[tuple[Command, ConnectedClient]] = []
        self._respond = respond

    async def handle(self, command: Command, client: ConnectedClient) -> Mapping[str, Any]:
        """Record ``command`` and answer it."""
        self.received.append((command, client))
        if self._respond is not None:
            return await self._respond(command, client)
        return {"handled": command.name}


async def open_socket(
    bridge: BridgeServer, *, origin: str | None = PAGE_ORIGIN, **options: Any
) -> ClientConnection:
    """A WebSocket to the bridge, not yet authenticated."""
    return await connect(
        bridge.ws_url,
        origin=None if origin is None else Origin(origin),
        open_timeout=WAIT,
        close_timeout=WAIT,
        **options,
    )


async def send_json(ws: ClientConnection, message: Mapping[str, Any]) -> None:
    """Send one JSON text frame."""
    await ws.send(json.dumps(message))


async def recv_json(ws: ClientConnection, within: float = WAIT) -> dict[str, Any]:
    """The next frame, parsed; fails the test if none comes ``within`` seconds."""
    async with asyncio.timeout(within):
        frame = await ws.recv()
    assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
    message = json.loads(frame)
    assert isinstance(message, dict)
    return message


async def open_page(
    bridge: BridgeServer,
    token: BridgeToken,
    *,
    client: str = "dashboard",
    origin: str | None = PAGE_ORIGIN,
    **options: Any,
) -> ClientConnection:
    """A WebSocket that said hello with ``token`` and got its welcome."""
    ws = await open_socket(bridge, origin=origin, **options)
    await send_json(ws, {"type": "hello", "token": token.reveal(), "client": client})
    welcome = await recv_json(ws)
    assert welcome["type"] == "welcome", welcome
    return ws


async def command(
    ws: ClientConnection, command_id: int | str, name: str, **arguments: Any
) -> dict[str, Any]:
    """Send a command and return the next frame (its result, when nothing else is published)."""
    await send_json(ws, {"type": "command", "id": command_id, "command": name, **arguments})
    return await recv_json(ws)


async def wait_until(condition: Callable[[], bool], within: float = WAIT) -> None:
    """Poll ``condition`` until it holds; fail the test if it does not ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.005)
