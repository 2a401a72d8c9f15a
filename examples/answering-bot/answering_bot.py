"""An answering bot: a headless agent that answers every call and plays the caller a greeting.

With no arguments it brings its own platform (an embedded sandbox on 127.0.0.1 that rings it
``--calls`` times); with ``--api-base`` it answers on that platform as the agent whose access
token is in ``CRMPHONE_AGENT_TOKEN`` (which platforms: see the README). The first call sets the
WebRTC connection up; later calls ride that persistent connection, as the printed timings show.
"""
# ruff: noqa: T201 - a command-line example: what it prints is its output

import argparse
import array
import asyncio
import contextlib
import math
import os
import sys
import tempfile
import wave
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from crmphone import CrmphoneError
from crmphone.audio import AudioFile
from crmphone.phone import CallTiming, CallUpdate, IceSettings, PhoneCall, PhoneSettings, Softphone
from crmphone.platform import (
    PlatformClient,
    StaticToken,
    TokenProvider,
    resolve_region,
    sign_in_sandbox_agent,
)
from crmphone.sandbox import SandboxConfig, SandboxServer

TOKEN_VARIABLE = "CRMPHONE_AGENT_TOKEN"  # noqa: S105 - the variable's name, not a token
CHIME = ((659.25, 0.4), (523.25, 1.2))  # (Hz, seconds): E5 then C5, a doorbell's "ding-dong"
Ring = Callable[[], Coroutine[Any, Any, object]]


def write_chime(path: Path, rate: int = 48_000) -> float:
    """Write the greeting, a two-note chime, as a WAV file; return its length in seconds."""
    samples = array.array("h")
    for frequency, seconds in CHIME:
        for n in range(round(rate * seconds)):
            t = n / rate  # a 10 ms attack (no click), then a bell's slow decay
            level = 9000 * min(1.0, t / 0.01) * math.exp(-1.2 * t)
            samples.append(round(level * math.sin(2 * math.pi * frequency * t)))
    if sys.byteorder == "big":
        samples.byteswap()  # WAV samples are little-endian
    with wave.open(str(path), "wb") as out:
        out.setparams((1, 2, rate, len(samples), "NONE", "not compressed"))  # mono, 16 bits
        out.writeframes(samples.tobytes())
    return len(samples) / rate


def describe(number: int, call: PhoneCall, timing: CallTiming | None) -> str:
    """One line about an ended call, from what the phone measured of its answer."""
    line = f"call {number} from {(call.remote_number or 'unknown').removeprefix('tel:')}: "
    if timing is None or timing.answered_at is None:
        return line + "ended before it was answered"
    kind = "the persistent" if timing.over_existing_connection else "a new"
    line += f"answered over {kind} connection"
    if timing.first_rtp_at is None:
        return line + "; no audio from the caller"
    delay = (timing.first_rtp_at - timing.answered_at).total_seconds() * 1000
    return line + f"; first audio {delay:.0f} ms after answering"


async def answer_calls(phone: Softphone, count: int, greeting: float, ring: Ring | None) -> None:
    """Answer calls until ``count`` have ended: the greeting plays, then the bot hangs up."""

    async def goodbye(call: PhoneCall) -> None:
        await asyncio.sleep(greeting + 0.5)
        with contextlib.suppress(CrmphoneError):  # the caller may have hung up first
            await phone.hang_up(call.conversation_id)

    ended, greeted = 0, set[str]()
    async with asyncio.TaskGroup() as tasks:
        if ring is not None:
            tasks.create_task(ring())  # the first caller; it dials once the loop below listens
        async for update in phone.updates():
            if not isinstance(update, CallUpdate):
                continue  # connection and microphone events: the timings tell that story
            call = update.call
            # auto_answer has answered it, so the microphone (our greeting) is live now.
            if call.state == "connected" and call.conversation_id not in greeted:
                greeted.add(call.conversation_id)
                tasks.create_task(goodbye(call))
            elif call.state == "ended":
                ended += 1
                print(describe(ended, call, phone.timing(call.conversation_id)), flush=True)
                if ended == count:
                    return
                if ring is not None:
                    tasks.create_task(ring())  # the next caller, now that the line is free


@contextlib.asynccontextmanager
async def embedded_sandbox() -> AsyncIterator[tuple[str, TokenProvider, Ring]]:
    """A sandbox platform on 127.0.0.1 with one agent signed in: (API base, tokens, ring)."""
    # The caller stays on the line until the bot hangs up after its greeting.
    config = SandboxConfig(agents=1, heartbeat_interval=5.0, talk_seconds=30.0)
    async with SandboxServer(config) as server:
        agent_id = server.sandbox.agents[0].id
        tokens = await sign_in_sandbox_agent(server.base_url, agent_id, client_id=config.client_id)
        print(f"embedded sandbox platform on {server.base_url}", file=sys.stderr)
        yield server.base_url, tokens, lambda: server.sandbox.calls.place_inbound(agent_id)


async def run(count: int, api_base: str | None, ice_hosts: list[str] | None) -> None:
    """Sign the agent in (to the embedded sandbox, or to ``api_base``); answer ``count`` calls."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "greeting.wav")
        greeting = write_chime(path)
        async with contextlib.AsyncExitStack() as stack:
            ring: Ring | None = None
            if api_base is None:
                base, tokens, ring = await stack.enter_async_context(embedded_sandbox())
                ice_hosts = ice_hosts or ["127.0.0.1"]
            else:  # "mypurecloud.de" means https://api.mypurecloud.de (http: loopback only)
                base = resolve_region(api_base).api_base
                # The agent signed in elsewhere: a static token is used as is, never renewed.
                tokens = StaticToken(os.environ[TOKEN_VARIABLE])
            client = await stack.enter_async_context(PlatformClient(api_base=base, tokens=tokens))
            settings = PhoneSettings(auto_answer=True, ice=IceSettings(host_addresses=ice_hosts))
            source = AudioFile(path, loop=False)  # each call hears the chime once, from its start
            phone = await stack.enter_async_context(
                Softphone(client, settings=settings, source=source)
            )
            print(f"agent {phone.agent_id} signed in; answering {count} call(s)", file=sys.stderr)
            await answer_calls(phone, count, greeting, ring)


def main() -> int:
    """Parse the options and run the bot; exit 0 when done, 1 on failure, 2 usage, 130 Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3, metavar="N", help="stop after N (3)")
    parser.add_argument("--api-base", metavar="URL", help=f"a real platform (${TOKEN_VARIABLE})")
    parser.add_argument("--ice-host", action="append", metavar="IP", help="media address (repeat)")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    if args.api_base is not None and not os.environ.get(TOKEN_VARIABLE):
        parser.error(f"--api-base needs the agent's access token in {TOKEN_VARIABLE}")
    try:
        asyncio.run(run(args.calls, args.api_base, args.ice_host))
    except KeyboardInterrupt:  # asyncio.run has cancelled run(): the agent is signed out
        print("interrupted", file=sys.stderr)
        return 130
    except CrmphoneError as exc:  # the library's messages never carry a token
        print(f"answering-bot: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
