"""``python -m crmphone_zendesk.emulator``: run the Zendesk emulator until Ctrl+C.

Prints the URL, the CA file to trust and how to authenticate. The emulator's own generated
API token is printed once, on the terminal only: it is a local fake, valid while this runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from . import ZendeskEmulator

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crmphone_zendesk.emulator",
        description="Serve a local Zendesk emulator over HTTPS until Ctrl+C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="seed for ids and data (default 0)")
    parser.add_argument(
        "--rate-limit", type=int, default=700, help="requests per minute (default 700)"
    )
    parser.add_argument(
        "--search-lag", type=float, default=0.0, help="seconds before new records are searchable"
    )
    return parser


async def _serve(arguments: argparse.Namespace) -> None:
    emulator = ZendeskEmulator(
        arguments.seed, rate_limit=arguments.rate_limit, search_lag=arguments.search_lag
    )
    await emulator.start(arguments.host, arguments.port)
    try:
        where = (
            f"  zenpy:      Zenpy(subdomain={emulator.subdomain!r}, domain={emulator.domain!r}, ...)\n"
            if emulator.host == "127.0.0.1"
            else ""
        )
        sys.stdout.write(
            f"Zendesk emulator listening on {emulator.url}\n"
            f"  trust CA:   {emulator.ca_file}\n"
            f"{where}"
            f"  basic auth: {emulator.email}/token : {emulator.api_token}\n"
            f"  bearer:     {emulator.oauth_token}\n"
            f"  agents:     {', '.join(str(agent.id) for agent in emulator.model.agents)}\n"
            "Press Ctrl+C to stop.\n"
        )
        sys.stdout.flush()
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator with command-line ``argv``; the exit status."""
    arguments = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(arguments))
    return 0


if __name__ == "__main__":
    sys.exit(main())
