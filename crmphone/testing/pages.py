"""What page tests need: Debian's Chromium through Playwright, and a bridge command handler that
records what a page sent.

.. code-block:: python

    async with chromium() as browser:
        page = await browser.new_page()
        ...
    handler = RecordingCommandHandler()
    async with BridgeServer(settings, handler) as bridge:
        ...
        command = await handler.next()

Playwright is a test dependency (``pip install playwright``); the browser is the system's
``/usr/bin/chromium`` (Debian's ``chromium`` package), never a downloaded one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from crmphone.bridge import Command, ConnectedClient, Dial

if TYPE_CHECKING:
    from playwright.async_api import Browser

__all__ = ["CHROMIUM", "RecordingCommandHandler", "chromium"]

#: Debian's Chromium, which ``make test`` installs.
CHROMIUM = "/usr/bin/chromium"


class RecordingCommandHandler:
    """A :class:`~crmphone.bridge.CommandHandler` that keeps every command a page sent; a dial
    answers ``dialled_conversation``."""

    def __init__(self, dialled_conversation: str = "conv-dialled-1") -> None:
        self.commands: list[Command] = []
        self.dialled_conversation = dialled_conversation
        self._arrived = asyncio.Event()

    async def handle(self, command: Command, client: ConnectedClient) -> Mapping[str, Any]:
        """Record ``command``."""
        self.commands.append(command)
        self._arrived.set()
        if isinstance(command, Dial):
            return {"conversation_id": self.dialled_conversation}
        return {}

    async def next(self, within: float = 10.0) -> Command:
        """The oldest command not taken yet, waiting up to ``within`` seconds for one."""
        async with asyncio.timeout(within):
            while not self.commands:
                self._arrived.clear()
                await self._arrived.wait()
        return self.commands.pop(0)


@contextlib.asynccontextmanager
async def chromium(executable: str = CHROMIUM) -> AsyncIterator[Browser]:
    """Headless Chromium (the system's, at ``executable``) driven by Playwright."""
    from playwright.async_api import async_playwright  # a test dependency, imported on use

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            await browser.close()
