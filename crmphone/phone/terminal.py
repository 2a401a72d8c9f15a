"""``crmphone softphone``: a terminal softphone for one agent.

A live status line (persistent-connection indicator, microphone, current call and its timer) and
single keys: ``a`` answer, ``h`` hang up, ``m`` mute/unmute, ``o`` hold/resume, ``d`` dial,
``s`` stop the persistent connection (``S`` forces it during a call), ``q`` quit. When standard
input is not a terminal (a pipe, a test) the same letters are read one command per line and each
status change is printed as a line instead of redrawn.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from crmphone.errors import CrmphoneError

from .softphone import CallUpdate, PhoneStatus, Softphone

__all__ = ["HELP", "TerminalSoftphone", "render_status"]

HELP = "a answer · h hang up · m mute · o hold · d dial · s stop (S force) · q quit"


def render_status(status: PhoneStatus, call_started: float | None, now: float) -> Text:
    """One line: ``● persistent · mic off · call +1555… connected 00:12``."""
    line = Text()
    if status.persistent_active:
        line.append("● persistent connection active", style="bold green")
    else:
        line.append(f"○ connection {status.connection.value.lower()}", style="dim")
    line.append("  ·  ")
    if status.microphone_live:
        line.append("mic LIVE", style="bold red")
    else:
        line.append("mic off", style="dim")
    line.append("  ·  ")
    call = status.call
    if call is not None:
        elapsed = int(now - call_started) if call_started is not None else 0
        label = f"{call.remote_number or 'unknown'} {call.state}"
        if call.held:
            label += " (held)"
        if call.muted:
            label += " (muted)"
        line.append(f"call {label} {elapsed // 60:02d}:{elapsed % 60:02d}", style="bold")
    elif status.ringing:
        ringing = status.ringing[-1]
        line.append(f"ringing: {ringing.remote_number or 'unknown'} — press a", style="bold yellow")
    else:
        line.append("no call", style="dim")
    return line


class TerminalSoftphone:
    """Drives a :class:`Softphone` from the keyboard and draws its status."""

    def __init__(
        self,
        phone: Softphone,
        *,
        stdin: TextIO | None = None,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.phone = phone
        self._stdin = stdin or sys.stdin
        self._console = console or Console()
        self._clock = clock
        self._interactive = self._stdin.isatty() and self._console.is_terminal
        self._call_started: float | None = None
        self._commands: asyncio.Queue[str] = asyncio.Queue()
        self._last_line = ""

    async def run(self, *, duration: float | None = None) -> None:
        """Run until ``q``, end of input, or ``duration`` seconds."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self._stdin.fileno(), self._read_input)
        try:
            with self._keys(), self._screen() as redraw:
                async with asyncio.timeout(duration):
                    await self._serve(redraw)
        except TimeoutError:
            pass
        finally:
            loop.remove_reader(self._stdin.fileno())

    async def _serve(self, redraw: Callable[[], None]) -> None:
        updates = asyncio.create_task(self._follow(redraw))
        try:
            redraw()
            while True:
                command = await self._commands.get()
                if command in ("q", ""):
                    return
                try:
                    await self._run_command(command)
                except CrmphoneError as exc:
                    self._say(f"! {exc}")
                redraw()
        finally:
            updates.cancel()
            await asyncio.gather(updates, return_exceptions=True)

    async def _follow(self, redraw: Callable[[], None]) -> None:
        ticker = asyncio.create_task(self._tick(redraw))
        try:
            async for update in self.phone.updates():
                if isinstance(update, CallUpdate):
                    if update.call.state == "connected" and self._call_started is None:
                        self._call_started = self._clock()
                    elif update.call.state == "ended":
                        self._call_started = None
                        self._say(f"call {update.call.conversation_id} ended")
                redraw()
        finally:
            ticker.cancel()

    async def _tick(self, redraw: Callable[[], None]) -> None:
        while True:  # the call timer moves once a second
            await asyncio.sleep(1.0)
            redraw()

    async def _run_command(self, command: str) -> None:
        phone = self.phone
        key, _, argument = command.partition(" ")
        match key:
            case "a":
                ringing = phone.status.ringing
                if not ringing:
                    self._say("! nothing is ringing")
                    return
                await phone.answer(ringing[-1].conversation_id)
            case "h":
                await phone.hang_up()
            case "m":
                call = phone.status.call
                await phone.mute(not (call is not None and call.muted))
            case "o":
                call = phone.status.call
                await phone.hold(not (call is not None and call.held))
            case "d":
                number = argument.strip() or await self._ask("number to dial: ")
                if number:
                    conversation_id = await phone.dial(number)
                    self._say(f"dialling {number} ({conversation_id})")
            case "s" | "S":
                await phone.stop(force=key == "S")
                self._say("persistent connection stopped")
            case "?":
                self._say(HELP)
            case _:
                self._say(f"! unknown key {key!r} ({HELP})")

    async def _ask(self, prompt: str) -> str:
        self._say(prompt)
        if not self._interactive:
            return (await self._commands.get()).strip()
        typed: list[str] = []
        while (key := await self._commands.get()) not in ("\r", "\n", ""):
            typed.append(key)
        return "".join(typed).strip()

    def _read_input(self) -> None:
        if self._interactive:
            key = self._stdin.read(1)
            self._commands.put_nowait(key)
            return
        line = self._stdin.readline()
        self._commands.put_nowait(line.strip() if line else "")

    def _say(self, message: str) -> None:
        self._console.print(message, markup=False, highlight=False)

    @contextlib.contextmanager
    def _keys(self) -> Iterator[None]:
        if not self._interactive:
            yield
            return
        fd = self._stdin.fileno()
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        try:
            yield
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    @contextlib.contextmanager
    def _screen(self) -> Iterator[Callable[[], None]]:
        def line() -> Text:
            return render_status(self.phone.status, self._call_started, self._clock())

        if self._interactive:
            self._say(HELP)
            with Live(line(), console=self._console, auto_refresh=False) as live:
                yield lambda: live.update(line(), refresh=True)
            return

        def print_changes() -> None:
            # No running timer here: a line is printed when something changes, not every second.
            text = render_status(self.phone.status, None, 0.0).plain
            if text != self._last_line:
                self._last_line = text
                self._say(text)

        yield print_changes
