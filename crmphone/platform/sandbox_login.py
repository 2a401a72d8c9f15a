"""Signing an agent in to the sandbox platform, as a browser would (Authorization Code + PKCE).

The sandbox's ``/oauth/authorize`` has no login page: its ``sandbox_user`` parameter picks the
agent, and it redirects at once with a code. What a softphone, the demo or a test uses to get an
agent's own token from a sandbox (against Genesys Cloud the agent signs in in a browser).
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from crmphone.errors import AuthenticationError

from ._tls import ssl_context
from .auth import AuthorizationCode, authorization_url, make_pkce_pair

__all__ = ["SANDBOX_CLIENT_ID", "sign_in_sandbox_agent"]

SANDBOX_CLIENT_ID = "test-client"
"""The client id :func:`sign_in_sandbox_agent` uses unless told (the test suite's sandbox's)."""


async def sign_in_sandbox_agent(
    base_url: str,
    agent_id: str,
    *,
    client_id: str = SANDBOX_CLIENT_ID,
    redirect_uri: str = "http://127.0.0.1/callback",
    verify: bool | str = True,
) -> AuthorizationCode:
    """Sign ``agent_id`` in to the sandbox as a browser would (Authorization Code + PKCE).

    The sandbox's ``/oauth/authorize`` has no login page: ``sandbox_user`` picks the agent and it
    redirects at once with a code. Returns the token provider a softphone's client uses, which
    verifies TLS as ``verify`` says (see :class:`~crmphone.platform.PlatformClient`), as this
    sign-in does.
    """
    verifier, challenge = make_pkce_pair()
    state = secrets.token_urlsafe(16)
    url = authorization_url(base_url, client_id, redirect_uri, challenge, state)
    url += "&" + urlencode({"sandbox_user": agent_id})
    context = ssl_context(verify)
    async with httpx.AsyncClient(verify=context if context is not None else True) as http:
        response = await http.get(url)
    query = parse_qs(urlsplit(response.headers.get("location", "")).query)
    if response.status_code != 302 or query.get("state") != [state] or "code" not in query:
        raise AuthenticationError(
            f"sandbox sign-in of {agent_id} failed: HTTP {response.status_code}", status=401
        )
    return AuthorizationCode(
        login_base=base_url,
        client_id=client_id,
        redirect_uri=redirect_uri,
        code=query["code"][0],
        code_verifier=verifier,
        verify=verify,
    )
