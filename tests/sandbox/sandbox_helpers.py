"""Raw-protocol helpers for the sandbox's tests: httpx and websockets, no crmphone client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection

from crmphone.sandbox import SandboxConfig, SandboxServer

CLIENT_ID = "sandbox-tests"
CLIENT_SECRET = "sandbox-secret-42f7"
REDIRECT_URI = "http://127.0.0.1:9/callback"


def fast_config(**overrides: Any) -> SandboxConfig:
    """A sandbox configuration with timers in tenths of a second; keywords override."""
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "heartbeat_interval": 5.0,  # tests that watch heartbeats shorten it themselves
        "agents": 3,
        "ring_seconds": 0.05,
        "talk_seconds": 0.1,
        "wrapup_seconds": 0.05,
        "rate_limit_per_minute": 0,
        "sweep_interval": 0.02,
    }
    values.update(overrides)
    return SandboxConfig(**values)


def pkce_pair() -> tuple[str, str]:
    """A PKCE (verifier, S256 challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class Api:
    """Plain HTTP calls against one running sandbox."""

    def __init__(self, http: httpx.AsyncClient, server: SandboxServer) -> None:
        self.http = http
        self.server = server

    async def token(self, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
        """A client-credentials access token."""
        response = await self.http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def user_grant(self, agent_id: str | None = None) -> dict[str, Any]:
        """The token response of the PKCE authorization-code flow for ``agent_id``."""
        verifier, challenge = pkce_pair()
        params = {
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "xyz",
        }
        if agent_id is not None:
            params["sandbox_user"] = agent_id
        response = await self.http.get("/oauth/authorize", params=params)
        assert response.status_code == 302, response.text
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert query["state"] == ["xyz"]
        response = await self.http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": REDIRECT_URI,
                "client_id": CLIENT_ID,
                "code_verifier": verifier,
            },
        )
        assert response.status_code == 200, response.text
        grant: dict[str, Any] = response.json()
        return grant

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        """The Authorization header for ``token``."""
        return {"Authorization": f"Bearer {token}"}

    async def channel(self, token: str) -> dict[str, Any]:
        """Create a notification channel; returns its JSON."""
        response = await self.http.post("/api/v2/notifications/channels", headers=self.auth(token))
        assert response.status_code == 200, response.text
        channel: dict[str, Any] = response.json()
        return channel

    async def subscribe(
        self,
        token: str,
        channel_id: str,
        topics: list[str],
        *,
        method: str = "PUT",
        ignore_errors: bool = False,
    ) -> httpx.Response:
        """PUT/POST topics on a channel; returns the raw response."""
        params = {"ignoreErrors": "true"} if ignore_errors else {}
        return await self.http.request(
            method,
            f"/api/v2/notifications/channels/{channel_id}/subscriptions",
            headers=self.auth(token),
            params=params,
            json=[{"id": topic} for topic in topics],
        )

    async def channel_exists(self, token: str, channel_id: str) -> bool:
        """HEAD the channel: True on 200, False on 404."""
        response = await self.http.head(
            f"/api/v2/notifications/channels/{channel_id}", headers=self.auth(token)
        )
        assert response.status_code in (200, 404), response.status_code
        return response.status_code == 200


async def recv_frame(ws: ClientConnection, within: float = 2.0) -> dict[str, Any]:
    """The next frame, parsed; TimeoutError when none arrives ``within`` seconds."""
    async with asyncio.timeout(within):
        text = await ws.recv()
    frame: dict[str, Any] = json.loads(text)
    return frame


async def recv_event(ws: ClientConnection, within: float = 2.0) -> dict[str, Any]:
    """The next frame that is not ``channel.metadata`` (heartbeats and pongs are skipped)."""
    async with asyncio.timeout(within):
        while True:
            frame = await recv_frame(ws, within)
            if frame.get("topicName") != "channel.metadata":
                return frame


async def wait_until(predicate: Callable[[], bool], within: float = 2.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        # Polling is the point: the state belongs to the sandbox, which offers no event for it.
        while not predicate():
            await asyncio.sleep(0.01)


async def drain(ws: ClientConnection, quiet: float = 0.15) -> int:
    """Read frames until none arrives for ``quiet`` seconds; returns how many were read."""
    count = 0
    while True:
        try:
            await recv_frame(ws, quiet)
        except TimeoutError:
            return count
        count += 1


@asynccontextmanager
async def running(config: SandboxConfig) -> AsyncIterator[tuple[SandboxServer, Api]]:
    """A sandbox with ``config`` on loopback, and an Api helper for it."""
    async with (
        SandboxServer(config) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=5.0) as http,
    ):
        yield server, Api(http, server)
