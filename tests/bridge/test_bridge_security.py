"""The bridge's trust decisions without a socket: the token file, origins, the CSP, the hello."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from crmphone.bridge import (
    DEFAULT_ALLOWED_ORIGINS,
    BridgeSettings,
    BridgeToken,
    OriginPattern,
    OriginPolicy,
    UnauthenticatedError,
    authenticate,
    content_security_policy,
)
from crmphone.errors import ConfigError

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


# ---------------------------------------------------------------------------------------------
# The token


@posix_only
def test_a_new_token_file_is_private_and_kept(tmp_path: Path) -> None:
    """The first load makes a 43-character urlsafe token in a 0600 file (folders 0700); the next
    load reads the same token back."""
    path = tmp_path / "config" / "crmphone" / "bridge.token"
    first = BridgeToken.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first.reveal()) == 43
    assert path.read_text().strip() == first.reveal()
    second = BridgeToken.load_or_create(path)
    assert second.reveal() == first.reveal()
    assert second.path == path
    assert [p.name for p in path.parent.iterdir()] == ["bridge.token"]  # no scratch file left


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o622])
def test_a_token_file_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    """A token readable or writable by group or others is refused, saying how to fix it and
    without showing the token."""
    path = tmp_path / "bridge.token"
    value = BridgeToken.load_or_create(path).reveal()
    path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        BridgeToken.load_or_create(path)
    assert f"chmod 600 {path}" in str(info.value)
    assert info.value.key == "bridge.token_path"
    assert value not in str(info.value)


@posix_only
@pytest.mark.parametrize("content", [b"", b"short\n", "é".encode() * 40, b"has space " * 5])
def test_a_token_file_without_a_token_is_refused(tmp_path: Path, content: bytes) -> None:
    """An empty, short or garbled token file is a ConfigError that does not quote the content."""
    path = tmp_path / "bridge.token"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="does not hold a token") as info:
        BridgeToken.load_or_create(path)
    assert "has space" not in str(info.value)


@posix_only
def test_a_symlinked_token_file_is_refused(tmp_path: Path) -> None:
    """A symbolic link where the token file should be is not followed."""
    real = tmp_path / "real.token"
    BridgeToken.load_or_create(real)
    link = tmp_path / "bridge.token"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="symbolic link"):
        BridgeToken.load_or_create(link)


def test_processes_starting_together_share_one_token(tmp_path: Path) -> None:
    """Eight simultaneous first starts all end up with the same token."""
    path = tmp_path / "bridge.token"
    barrier = threading.Barrier(8)
    values: list[str] = []

    def start() -> None:
        barrier.wait()
        values.append(BridgeToken.load_or_create(path).reveal())

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(values) == 8
    assert len(set(values)) == 1


def test_matches_compares_exactly_and_tolerates_any_string() -> None:
    """Only the very token matches; other lengths, non-ASCII and lone surrogates do not raise."""
    token = BridgeToken(value="A" * 43)
    assert token.matches("A" * 43)
    for other in ["A" * 42, "A" * 44, "B" + "A" * 42, "", "é" * 43, "\ud800" * 43]:
        assert not token.matches(other)


def test_the_token_never_shows_in_reprs() -> None:
    """Neither the token's repr and str nor the settings' repr hold its value."""
    token = BridgeToken.generate()
    settings = BridgeSettings(token=token)
    for text in (repr(token), str(token), repr(settings)):
        assert token.reveal() not in text
    assert token != BridgeToken(value=token.reveal())  # equality is identity, not a value compare


def test_short_tokens_are_refused() -> None:
    """A token given in configuration must be at least 16 characters."""
    with pytest.raises(ConfigError, match="16"):
        BridgeToken(value="short")


# ---------------------------------------------------------------------------------------------
# Origins


ORIGIN_TABLE = [
    ("https://*.zendesk.com", "https://acme.zendesk.com", True),
    ("https://*.zendesk.com", "https://a.b.zendesk.com", True),
    ("https://*.zendesk.com", "https://ACME.Zendesk.COM", True),
    ("https://*.zendesk.com", "https://acme.zendesk.com:443", True),
    ("https://*.zendesk.com", "https://zendesk.com", False),
    ("https://*.zendesk.com", "https://evilzendesk.com", False),
    ("https://*.zendesk.com", "https://acme.zendesk.com.evil.example", False),
    ("https://*.zendesk.com", "https://.zendesk.com", False),
    ("https://*.zendesk.com", "https://acme..zendesk.com", False),
    ("https://*.zendesk.com", "https://acme.zendesk.com.", False),
    ("https://*.zendesk.com", "http://acme.zendesk.com", False),
    ("https://*.zendesk.com", "https://acme.zendesk.com:8443", False),
    ("https://*.zendesk.com", "https://acme.zendesk.com/", False),
    ("https://*.zendesk.com", "https://acme.zendesk.com/path", False),
    ("https://*.zendesk.com", "https://user@acme.zendesk.com", False),
    ("https://*.zendesk.com", "wss://acme.zendesk.com", False),
    ("https://*.zendesk.com", "null", False),
    ("https://*.zendesk.com", "", False),
    ("https://*.zendesk.com", " https://acme.zendesk.com", False),
    ("https://*.zendesk.com", "https://acme.zendesk.com\n", False),
    ("https://*.zendesk.com", "https://acmé.zendesk.com", False),
    ("https://*.zendesk.com", "https://acme-.zendesk.com", False),
    ("https://*.my.salesforce.com", "https://acme.my.salesforce.com", True),
    ("https://*.my.salesforce.com", "https://acme.salesforce.com", False),
    ("https://*.lightning.force.com", "https://acme--dev.sandbox.lightning.force.com", True),
    ("http://127.0.0.1:8707", "http://127.0.0.1:8707", True),
    ("http://127.0.0.1:8707", "http://127.0.0.1:8708", False),
    ("http://127.0.0.1:8707", "http://127.0.0.1", False),
    ("http://127.0.0.1:8707", "https://127.0.0.1:8707", False),
    ("http://localhost:80", "http://localhost", True),
    ("http://[::1]:8707", "http://[::1]:8707", True),
    ("https://crm.example.com", "https://crm.example.com", True),
    ("https://crm.example.com", "https://x.crm.example.com", False),
]


@pytest.mark.parametrize(("pattern", "origin", "allowed"), ORIGIN_TABLE)
def test_origin_patterns_match_whole_labels_scheme_and_port(
    pattern: str, origin: str, allowed: bool
) -> None:
    """``*.`` stands for one or more whole labels; scheme and (default) port must be equal."""
    assert OriginPattern.parse(pattern).matches(origin) is allowed


@pytest.mark.parametrize(
    "pattern",
    [
        "*",
        "https://*",
        "https://*.com",
        "*.zendesk.com",
        "ftp://x.example.com",
        "https://x.com/path",
        "https://*.127.0.0.1",
        "https://x.com:99999",
        "zendesk.com",
        "https://*.*.zendesk.com",
    ],
)
def test_bad_or_too_broad_patterns_are_configuration_errors(pattern: str) -> None:
    """A pattern that is not scheme://host[:port], or lets in a whole top-level domain, is refused."""
    with pytest.raises(ConfigError) as info:
        OriginPattern.parse(pattern)
    assert info.value.key == "bridge.allowed_origins"


def test_the_policy_lets_in_missing_origins_only_when_told() -> None:
    """No Origin header (a tool, not a browser) passes only with allow_missing."""
    strict = OriginPolicy(DEFAULT_ALLOWED_ORIGINS)
    assert strict.allows("https://acme.zendesk.com")
    assert strict.allows("https://acme.zdusercontent.com")
    assert not strict.allows(None)
    assert OriginPolicy(DEFAULT_ALLOWED_ORIGINS, allow_missing=True).allows(None)
    assert not OriginPolicy(()).allows("https://acme.zendesk.com")


def test_patterns_print_as_csp_sources() -> None:
    """A pattern prints as written, default ports left out, others kept."""
    assert str(OriginPattern.parse("https://*.Zendesk.com:443")) == "https://*.zendesk.com"
    assert str(OriginPattern.parse("http://127.0.0.1:8707")) == "http://127.0.0.1:8707"


# ---------------------------------------------------------------------------------------------
# The CSP


def test_the_csp_allows_only_the_bridge_and_the_framing_crms() -> None:
    """Scripts, styles and images from the bridge; its WebSocket; framed by the allowed CRMs."""
    csp = content_security_policy(
        websocket_origins=["ws://127.0.0.1:8707"],
        frame_ancestors=[OriginPattern.parse("https://*.zendesk.com")],
        script_sources=["https://static.zdassets.com"],
    )
    assert csp == (
        "default-src 'none'; script-src 'self' https://static.zdassets.com; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self' ws://127.0.0.1:8707; "
        "frame-ancestors 'self' https://*.zendesk.com; base-uri 'none'; form-action 'none'"
    )


@pytest.mark.parametrize(
    "source",
    [
        "'unsafe-inline'",
        "'unsafe-eval'",
        "*",
        "https:",
        "data:",
        "https://x.com; script-src *",
        "https://x.com 'unsafe-inline'",
        "'strict-dynamic'",
        "blob:",
    ],
)
def test_script_sources_that_would_undo_the_policy_are_refused(source: str) -> None:
    """Keywords, whole schemes, wildcards and smuggled directives are configuration errors."""
    with pytest.raises(ConfigError) as info:
        BridgeSettings(token=BridgeToken.generate(), csp_script_sources=(source,))
    assert info.value.key == "bridge.csp_script_sources"


def test_host_and_hash_script_sources_are_accepted() -> None:
    """A host (with wildcard, port or path) or a script hash is a fine extra source."""
    sources = (
        "https://static.zdassets.com",
        "https://*.force.com",
        "https://acme.my.salesforce.com:443/support/api/",
        "'sha256-abcDEF0123+/xyz='",
    )
    assert (
        BridgeSettings(token=BridgeToken.generate(), csp_script_sources=sources).csp_script_sources
        == sources
    )


# ---------------------------------------------------------------------------------------------
# The hello


def hello(token: str, client: str = "salesforce") -> str:
    """A hello frame."""
    return json.dumps({"type": "hello", "token": token, "client": client})


def test_a_hello_with_the_token_authenticates() -> None:
    """The right token in a well-formed hello yields the hello."""
    token = BridgeToken.generate()
    assert authenticate(hello(token.reveal()), token).client == "salesforce"


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (hello("W" * 43), "authentication failed"),
        (json.dumps({"type": "command", "id": 1, "command": "answer"}), "expected a hello first"),
        ("not json", "expected a hello first"),
        ("[]", "expected a hello first"),
        ("x" * 70_000, "expected a hello first"),
        (json.dumps({"type": "hello", "client": "salesforce"}), "malformed hello"),
        (json.dumps({"type": "hello", "token": ["t"], "client": "salesforce"}), "malformed hello"),
    ],
)
def test_anything_but_a_good_hello_is_unauthenticated(frame: str, reason: str) -> None:
    """Wrong token, another message, garbage or a malformed hello: refused with a short reason
    that holds neither the real token nor the one sent."""
    token = BridgeToken.generate()
    with pytest.raises(UnauthenticatedError) as info:
        authenticate(frame, token)
    assert info.value.reason == reason
    assert len(info.value.reason.encode()) <= 123  # what fits in a WebSocket close frame
    for text in (info.value.reason, info.value.detail, str(info.value)):
        assert token.reveal() not in text
        assert "W" * 43 not in text


@pytest.mark.skipif(sys.platform == "win32", reason="file modes are POSIX")
def test_settings_want_exactly_one_token_source(tmp_path: Path) -> None:
    """Neither or both of token and token_path is a configuration error."""
    with pytest.raises(ConfigError, match="exactly one"):
        BridgeSettings()
    with pytest.raises(ConfigError, match="exactly one"):
        BridgeSettings(token=BridgeToken.generate(), token_path=tmp_path / "t")
    assert BridgeSettings(token_path=str(tmp_path / "t")).token_path == tmp_path / "t"
