"""`crmphone softphone` as a user runs it: a subprocess against its embedded sandbox."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


async def _softphone(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crmphone",
        "softphone",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_auto_answer_shows_the_persistent_connection_and_exits_cleanly() -> None:
    process = await _softphone("--auto-answer", "--call-every", "1.5", "--duration", "7")
    stdout, stderr = await asyncio.wait_for(process.communicate(), 45)
    out = stdout.decode()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "persistent connection active" in out
    assert "mic LIVE" in out  # during a call
    assert "ended" in out
    assert "logged out" in stderr.decode()


async def test_keys_answer_and_stop_then_ctrl_c_logs_out() -> None:
    process = await _softphone("--call-every", "1", "--timeout", "60")
    assert process.stdin is not None
    assert process.stdout is not None
    seen: list[str] = []

    async def read_until(text: str) -> None:
        assert process.stdout is not None
        while not any(text in line for line in seen):
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"exited before {text!r}: {seen}")
            seen.append(line)

    await asyncio.wait_for(read_until("ringing"), 20)
    process.stdin.write(b"a\n")
    await process.stdin.drain()
    await asyncio.wait_for(read_until("persistent connection active"), 20)
    process.stdin.write(b"s\n")  # refused during the call, stopped between calls
    await process.stdin.drain()
    await asyncio.wait_for(read_until("stop"), 20)
    process.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert "logged out" in stderr.decode()
