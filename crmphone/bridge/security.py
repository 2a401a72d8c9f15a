"""Who may talk to the bridge, without the socket: the install's token, allowed origins, the CSP.

Three decisions, each a plain function or value the server asks:

* **Origins** — a browser names the page's origin on every WebSocket handshake. The handshake is
  refused (HTTP 403) unless :meth:`OriginPolicy.allows` says yes: the origin matches one of the
  patterns (``https://*.my.salesforce.com``: ``*.`` stands for one or more whole DNS labels; scheme
  and port must match, the default port being implied) or is the bridge's own. A handshake with
  no ``Origin`` comes from a non-browser tool and is let in only when configured.
* **The token** — a WebSocket handshake from a browser cannot carry headers, and a token in the
  URL ends up in logs, so the page sends it in its first frame, the hello. :func:`authenticate`
  decides; a :class:`UnauthenticatedError` refusal carries a short close reason without the token.
  :class:`BridgeToken` keeps the per-install secret: a file of mode 0600, compared in constant
  time, never shown by ``repr``.
* **The Content-Security-Policy** of the pages the bridge serves (:func:`content_security_policy`):
  scripts, styles and images from the bridge only, WebSocket to the bridge only, framed only by
  the allowed origins.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final, Self

import attrs

from crmphone.errors import ConfigError, UsageError

from .protocol import CommandError, ErrorCode, Hello, parse_hello

__all__ = [
    "CLOSE_UNAUTHENTICATED",
    "DEFAULT_ALLOWED_ORIGINS",
    "BridgeToken",
    "OriginPattern",
    "OriginPolicy",
    "UnauthenticatedError",
    "authenticate",
    "check_script_source",
    "content_security_policy",
    "parse_origin",
]

CLOSE_UNAUTHENTICATED: Final = 4401
"""The WebSocket close code for a page that did not authenticate (4000 + HTTP 401)."""

DEFAULT_ALLOWED_ORIGINS: Final = (
    "https://*.lightning.force.com",
    "https://*.my.salesforce.com",
    "https://*.zendesk.com",
    "https://*.zdusercontent.com",
)
"""Where Salesforce Lightning (Open CTI) and Zendesk apps run their pages."""

_TOKEN_BYTES: Final = 32
_MIN_TOKEN_LENGTH: Final = 16
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_LABEL_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IPV4_RE: Final = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}"
)
_IPV6_RE: Final = re.compile(r"\[[0-9a-f:.]+\]")
_ORIGIN_RE: Final = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[^\]]*\]|[^:/?#@\[\]]+)(?::(?P<port>[0-9]{1,5}))?"
)


# ---------------------------------------------------------------------------------------------
# The token


@attrs.frozen(eq=False)
class BridgeToken:
    """The per-install secret a page proves it knows in its hello.

    Make one with :meth:`generate` or, kept across restarts, :meth:`load_or_create`. The value is
    never in ``repr`` or ``str``; :meth:`reveal` gives it to what must show it to the admin (the
    page's configuration). Equality is identity: comparing values is :meth:`matches`' job.
    """

    _value: str = attrs.field(repr=False, alias="value")
    path: Path | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self._value, str) or len(self._value) < _MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"a bridge token must be a string of at least {_MIN_TOKEN_LENGTH} characters",
                key="bridge.token",
            )

    @classmethod
    def generate(cls) -> Self:
        """A fresh random token (``secrets.token_urlsafe(32)``), kept in memory only."""
        return cls(value=secrets.token_urlsafe(_TOKEN_BYTES))

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Self:
        """The token kept in ``path``, made there (mode 0600, folders 0700) if there is none.

        Raises :class:`~crmphone.errors.ConfigError` when the file is not a regular file of the
        current user, is readable or writable by anyone else (the fix is ``chmod 600``), or does
        not hold a token (the fix is deleting it, so the next start makes a new one).
        """
        target = Path(path)
        try:
            return cls._load(target)
        except FileNotFoundError:
            pass
        token = cls.generate()
        try:
            _create_private_file(target, token.reveal() + "\n")
        except FileExistsError:
            # Another process made it between our two looks: theirs is the install's token.
            return cls._load(target)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the token file {target}: {exc.strerror}", key="bridge.token_path"
            ) from exc
        return cls(value=token.reveal(), path=target)

    @classmethod
    def _load(cls, path: Path) -> Self:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(path, flags)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise ConfigError(
                f"cannot read the token file {path}: {exc.strerror} (a symbolic link is refused)",
                key="bridge.token_path",
            ) from exc
        with os.fdopen(descriptor, "rb") as file:
            info = os.fstat(file.fileno())
            _check_private(path, info)
            raw = file.read(4096)
        try:
            value = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            value = ""
        if len(value) < _MIN_TOKEN_LENGTH or not _TOKEN_RE.fullmatch(value):
            # The content is not named: a half-written file may still hold a secret.
            raise ConfigError(
                f"the token file {path} does not hold a token: delete it and a new one is made",
                key="bridge.token_path",
            )
        return cls(value=value, path=path)

    def matches(self, candidate: str) -> bool:
        """True when ``candidate`` is this token; the time taken does not depend on where they differ."""
        # surrogatepass: a JSON string may hold a lone surrogate, which strict UTF-8 refuses.
        return hmac.compare_digest(
            candidate.encode("utf-8", "surrogatepass"), self._value.encode("ascii")
        )

    def reveal(self) -> str:
        """The token's value, for the one place that must show it (the page's configuration)."""
        return self._value


def _create_private_file(path: Path, content: str) -> None:
    """Write ``content`` to a new file only its owner can read, appearing whole or not at all."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(
        scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
    )
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        # link() fails if the name exists: two processes starting at once keep one token, and no
        # reader ever sees a half-written file.
        os.link(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def _check_private(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"the token file {path} is not a regular file", key="bridge.token_path")
    if os.name != "posix":  # pragma: no cover - modes mean nothing on Windows
        return
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"the token file {path} belongs to another user: delete it, or run as its owner",
            key="bridge.token_path",
        )
    if info.st_mode & 0o077:
        raise ConfigError(
            f"the token file {path} can be read or written by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}): run `chmod 600 {path}`",
            key="bridge.token_path",
        )


# ---------------------------------------------------------------------------------------------
# Origins


def _valid_host(host: str) -> bool:
    if host.startswith("["):
        return bool(_IPV6_RE.fullmatch(host))
    if _IPV4_RE.fullmatch(host):
        return True
    labels = host.split(".")
    return all(_LABEL_RE.fullmatch(label) for label in labels)


def parse_origin(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a serialised origin (``https://a.example.com[:port]``), or None.

    Only http and https origins parse; ``null``, paths, user info, trailing dots and anything else
    a browser does not send are None (and so never allowed). Scheme and host are lowercased.
    """
    if not origin.isascii():
        return None
    match = _ORIGIN_RE.fullmatch(origin.lower())
    if match is None:
        return None
    scheme, host, port_text = match["scheme"], match["host"], match["port"]
    if scheme not in _DEFAULT_PORTS or not _valid_host(host):
        return None
    port = _DEFAULT_PORTS[scheme] if port_text is None else int(port_text)
    if not 0 < port < 65536:
        return None
    return scheme, host, port


@attrs.frozen
class OriginPattern:
    """One allowed origin, or a family of them: ``https://*.zendesk.com`` or
    ``http://127.0.0.1:8080``.

    With ``wildcard``, ``host`` is the part after ``*.``, and a matching origin's host is one or
    more labels followed by it (``acme.zendesk.com``, ``a.b.zendesk.com``; never ``zendesk.com``
    itself). Scheme and port must be equal; no port means the scheme's default.
    """

    scheme: str
    host: str
    port: int
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> Self:
        """The pattern written ``text``; :class:`~crmphone.errors.ConfigError` when it is not one."""
        wildcard = False
        candidate = text.strip()
        scheme, sep, rest = candidate.partition("://")
        if sep and rest.startswith("*."):
            wildcard, candidate = True, f"{scheme}://{rest[2:]}"
        parsed = parse_origin(candidate)
        if parsed is None:
            raise ConfigError(
                f"{text!r} is not an origin pattern: write scheme://host[:port], http or https, "
                "optionally with *. before the host (https://*.zendesk.com)",
                key="bridge.allowed_origins",
            )
        scheme, host, port = parsed
        if wildcard and (host.startswith("[") or _IPV4_RE.fullmatch(host) or host.count(".") < 1):
            # *.com would let in every site under a top-level domain.
            raise ConfigError(
                f"{text!r} is too broad: *. must stand before a domain of two labels or more",
                key="bridge.allowed_origins",
            )
        return cls(scheme=scheme, host=host, port=port, wildcard=wildcard)

    def matches(self, origin: str) -> bool:
        """True when the serialised ``origin`` is this one, or one of this family."""
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        scheme, host, port = parsed
        if scheme != self.scheme or port != self.port:
            return False
        if not self.wildcard:
            return host == self.host
        return host.endswith("." + self.host)

    def __str__(self) -> str:
        """The pattern as written in a CSP source list (default ports left out)."""
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{'*.' if self.wildcard else ''}{self.host}{port}"


def _patterns(values: Iterable[str | OriginPattern]) -> tuple[OriginPattern, ...]:
    if isinstance(values, str):
        raise ConfigError(
            "allowed origins are a list of patterns, not one string", key="bridge.allowed_origins"
        )
    return tuple(v if isinstance(v, OriginPattern) else OriginPattern.parse(v) for v in values)


@attrs.frozen
class OriginPolicy:
    """Which WebSocket handshakes may go on: those whose ``Origin`` one of ``patterns`` matches.

    ``allow_missing`` lets in a handshake without ``Origin``: a non-browser client (a test, a
    tool). Browsers always send one, so pages gain nothing from it.
    """

    patterns: tuple[OriginPattern, ...] = attrs.field(converter=_patterns)
    allow_missing: bool = False

    def allows(self, origin: str | None) -> bool:
        """True when a handshake with this ``Origin`` header (None: none sent) may go on."""
        if origin is None:
            return self.allow_missing
        return any(pattern.matches(origin) for pattern in self.patterns)


# ---------------------------------------------------------------------------------------------
# Content-Security-Policy

_HOST_SOURCE_RE: Final = re.compile(
    r"(?:https?://)?(?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?"
)
_HASH_SOURCE_RE: Final = re.compile(r"'sha(?:256|384|512)-[A-Za-z0-9+/]+={0,2}'")


def check_script_source(source: str) -> str:
    """``source`` when it is a safe extra ``script-src`` entry: a host (``https://static.zdassets.com``,
    ``https://*.force.com``) or a script hash (``'sha256-…'``).

    Raises :class:`~crmphone.errors.ConfigError` otherwise: keywords such as ``'unsafe-inline'``,
    whole schemes (``https:``, ``data:``) and ``*`` would undo the policy, and ``;`` or spaces
    would smuggle in directives.
    """
    if _HOST_SOURCE_RE.fullmatch(source) or _HASH_SOURCE_RE.fullmatch(source):
        return source
    raise ConfigError(
        f"{source!r} is not an acceptable script source: give a host such as "
        "https://static.zdassets.com or a 'sha256-…' hash",
        key="bridge.csp_script_sources",
    )


def content_security_policy(
    *,
    websocket_origins: Iterable[str],
    frame_ancestors: Iterable[OriginPattern],
    script_sources: Iterable[str] = (),
) -> str:
    """The ``Content-Security-Policy`` of the bridge's pages.

    ``websocket_origins`` are the bridge's own ``ws://host:port`` (``'self'`` does not cover
    WebSocket URLs in every browser); ``frame_ancestors`` the origins that may embed the pages
    (the CRMs), besides the bridge itself; ``script_sources`` extra script hosts (each checked by
    :func:`check_script_source`).
    """
    scripts = " ".join(["'self'", *(check_script_source(s) for s in script_sources)])
    connect = " ".join(["'self'", *websocket_origins])
    ancestors = " ".join(["'self'", *(str(pattern) for pattern in frame_ancestors)])
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            f"frame-ancestors {ancestors}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


# ---------------------------------------------------------------------------------------------
# The hello


class UnauthenticatedError(UsageError):
    """A page's first frame did not authenticate it; the bridge closes with 4401.

    ``reason`` is the short close reason the page sees; ``detail`` says more, for the bridge's log.
    Neither holds the token.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason


_NOT_A_HELLO: Final = frozenset(
    {ErrorCode.TOO_LARGE, ErrorCode.BAD_JSON, ErrorCode.NOT_OBJECT, ErrorCode.UNKNOWN_TYPE}
)


def authenticate(frame: str, token: BridgeToken) -> Hello:
    """Decide on a page's first frame: its :class:`~crmphone.bridge.protocol.Hello` when it is a
    hello carrying the install's token.

    Raises :class:`UnauthenticatedError` when it is not a hello, is malformed, or names another token.
    """
    try:
        hello = parse_hello(frame)
    except CommandError as exc:
        if exc.code in _NOT_A_HELLO:
            raise UnauthenticatedError("expected a hello first", exc.message) from None
        raise UnauthenticatedError("malformed hello", exc.message) from None
    if not token.matches(hello.token):
        raise UnauthenticatedError("authentication failed", f"wrong token from {hello.client!r}")
    return hello
