"""Where a Genesys Cloud organisation lives: from a region name to its API and login base URLs.

Genesys Cloud serves each region from two hosts, ``api.{region}`` (REST) and ``login.{region}``
(OAuth). Users configure the short region domain (``mypurecloud.com``, ``usw2.pure.cloud``); the
local sandbox serves both on one loopback URL. :func:`resolve_region` accepts either and returns the
pair every other module needs.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

from crmphone.errors import ConfigError

__all__ = ["RegionUrls", "resolve_region"]

# A region domain: dot-separated DNS labels; the last label (the TLD) is not all digits, which
# keeps an IP address from being mistaken for a region.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_REGION_RE = re.compile(rf"^(?:{_LABEL}\.)+(?=[a-z0-9-]*[a-z])({_LABEL})$")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_KEY = "platform.region"


class RegionUrls(NamedTuple):
    """The two base URLs of one region (no trailing slash); unpacks as ``api_base, login_base``."""

    api_base: str
    login_base: str


def resolve_region(value: str) -> RegionUrls:
    """Turn a configured region into its API and login base URLs; call once at configuration time.

    - ``"mypurecloud.com"`` (or ``"api.mypurecloud.com"``, ``"login.mypurecloud.com"``) →
      ``("https://api.mypurecloud.com", "https://login.mypurecloud.com")``.
    - ``"https://api.mypurecloud.de"`` → that URL and its ``https://login.`` sibling (and the other
      way round for a ``https://login.…`` URL).
    - Any other full URL (a proxy, the sandbox ``"http://127.0.0.1:8080"``) → the same URL for both.

    Plain ``http`` is allowed only for loopback hosts, so tokens never cross a network unencrypted.
    Raises :class:`~crmphone.errors.ConfigError` naming the value when it is none of these.
    """
    if not isinstance(value, str):
        raise ConfigError(f"expected a region domain or URL, got {type(value).__name__}", key=_KEY)
    text = value.strip()
    if not text:
        raise ConfigError(
            "is empty; set a region such as 'mypurecloud.com' or a URL such as "
            "'http://127.0.0.1:8080' for the sandbox",
            key=_KEY,
        )
    if "://" in text:
        return _from_url(value, text)
    return _from_domain(value, text.lower().rstrip("."))


def _from_domain(original: str, domain: str) -> RegionUrls:
    for prefix in ("api.", "login."):
        if domain.startswith(prefix):
            domain = domain[len(prefix) :]
            break
    if not _REGION_RE.match(domain):
        raise ConfigError(
            f"{original!r} is not a region domain; expected something like 'mypurecloud.com', "
            "'usw2.pure.cloud', or a full URL such as 'https://api.mypurecloud.de'",
            key=_KEY,
        )
    return RegionUrls(f"https://api.{domain}", f"https://login.{domain}")


def _from_url(original: str, text: str) -> RegionUrls:
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise ConfigError(f"{original!r} is not a valid URL ({exc})", key=_KEY) from exc
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    problem = None
    if scheme not in ("http", "https"):
        problem = "the scheme must be https (or http for a loopback sandbox)"
    elif not host:
        problem = "it has no host"
    elif scheme == "http" and host not in _LOOPBACK_HOSTS:
        problem = "plain http is only allowed for a loopback sandbox (127.0.0.1); use https"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = "give only scheme, host and port (no path such as /api/v2, no query)"
    elif parts.username is not None or parts.password is not None:
        problem = "it must not carry credentials"
    if problem:
        raise ConfigError(f"{original!r} is not a usable platform URL: {problem}", key=_KEY)
    netloc_host = f"[{host}]" if ":" in host else host
    suffix = f":{port}" if port is not None else ""
    base = f"{scheme}://{netloc_host}{suffix}"
    if scheme == "https" and host.startswith("api."):
        return RegionUrls(base, f"https://login.{host[4:]}{suffix}")
    if scheme == "https" and host.startswith("login."):
        return RegionUrls(f"https://api.{host[6:]}{suffix}", base)
    return RegionUrls(base, base)
