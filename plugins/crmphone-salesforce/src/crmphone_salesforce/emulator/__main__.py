"""``python -m crmphone_salesforce.emulator``: run a local Salesforce org until Ctrl+C.

Prints the URL, the CA certificate to trust and how to authenticate. The credentials printed are
the emulator's own fake ones, shown once on the terminal (never logged).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from crmphone.errors import CrmphoneError

from . import ONE_MATCH_NUMBER, SalesforceEmulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crmphone_salesforce.emulator",
        description="Run the crmphone Salesforce emulator (HTTPS on loopback) until Ctrl+C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and ids (default 0)")
    return parser


def _describe(emulator: SalesforceEmulator) -> str:
    numbers = emulator.model.seeded_numbers
    return "\n".join(
        (
            f"Salesforce emulator listening on {emulator.url}",
            f"  trust this CA certificate: {emulator.ca_file}",
            f"  session id (Salesforce(session_id=..., instance_url={emulator.url!r})):",
            f"    {emulator.session_id}",
            f"  OAuth client credentials: POST {emulator.token_url}",
            f"    client_id={emulator.client_id}",
            f"    client_secret={emulator.client_secret}",
            (
                f"  numbers: one match {ONE_MATCH_NUMBER}, many {', '.join(numbers('many'))}, "
                f"none {numbers('none')[0]}"
            ),
            "Press Ctrl+C to stop.",
        )
    )


async def _serve(host: str, port: int, seed: int) -> None:
    emulator = await SalesforceEmulator(seed).start(host, port)
    try:
        print(_describe(emulator), flush=True)  # noqa: T201 - this command's whole output
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator; the exit status."""
    options = _parser().parse_args(argv)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(options.host, options.port, options.seed))
    except CrmphoneError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - this command's whole output
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
