"""The Zendesk adapter's options: an ``[[adapters]]`` table, validated into frozen values.

.. code-block:: toml

    [[adapters]]
    name = "zendesk"
    subdomain = "acme"                    # https://acme.zendesk.com; or base_url = "https://…"
    email = "crm-bot@acme.com"            # with token_env (API token), or oauth_token_env
    token_env = "ZENDESK_API_TOKEN"       # the NAME of the environment variable
    verify = "/etc/ssl/private-ca.pem"    # optional, the general way: true (default), a CA bundle,
                                          # or false (no checks; the connector warns at every start)
    # ca_file = "/etc/ssl/private-ca.pem" # the plugin's own way to trust a CA (checks stay on)
    timeout = 10.0
    app_id = 0                            # the Talk Partner Edition app id on call records
    tickets_for = ["answered", "missed", "voicemail", "outbound"]
    create_users = true                   # an unknown caller becomes an end user
    subject = "Call with {number}"        # {number}, {direction}, {agent}
    tags = ["crmphone", "phone"]
    public_comment = false
    lookup_cache_seconds = 60

The agent map (``[agents.crm_users]``) maps platform users to Zendesk agent ids (numbers).
``verify`` and ``timeout`` are the connector's keys of every ``[[adapters]]`` table; they reach
:meth:`ZendeskSettings.from_options` as ``base_verify`` and ``base_timeout``. Every error is a
:class:`~crmphone.errors.ConfigError` whose ``key`` names the option.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import urlsplit

import attrs

from crmphone.adapters.options import OptionReader
from crmphone.adapters.worker_http import resolve_verify
from crmphone.errors import ConfigError

__all__ = ["TicketRule", "ZendeskSettings"]

_SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PLACEHOLDERS = frozenset({"number", "direction", "agent"})


class TicketRule(enum.StrEnum):
    """Which calls get a ticket."""

    ANSWERED = "answered"
    MISSED = "missed"
    VOICEMAIL = "voicemail"
    OUTBOUND = "outbound"


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'***'"


@attrs.frozen(kw_only=True)
class ZendeskSettings:
    """Validated options of one Zendesk adapter; secrets never in a repr."""

    base_url: str
    email: str | None = None
    api_token: str | None = attrs.field(default=None, repr=_secret_repr)
    oauth_token: str | None = attrs.field(default=None, repr=_secret_repr)
    ca_file: str | None = None
    """The plugin's own option: a PEM CA bundle to verify Zendesk's certificate against (checks
    stay on). ``verify`` on the ``[[adapters]]`` table is the general way to do this."""
    verify: bool | str = attrs.field(
        default=attrs.Factory(lambda self: self.ca_file or True, takes_self=True)
    )
    """TLS verification as resolved from the table's ``verify`` and ``ca_file`` (what the
    sessions use): True for the system store, a CA bundle's path, or False for no checks.
    Defaults to ``ca_file`` when that is set, else True."""
    timeout: float = 10.0
    app_id: int = 0
    tickets_for: frozenset[TicketRule] = frozenset(TicketRule)
    create_users: bool = True
    subject: str = "Call with {number}"
    tags: tuple[str, ...] = ("crmphone", "phone")
    public_comment: bool = False
    lookup_cache_seconds: float = 60.0

    @classmethod
    def from_options(
        cls,
        options: Mapping[str, Any],
        *,
        prefix: str = "adapters.zendesk",
        environ: Mapping[str, str] | None = None,
        base_timeout: float = 10.0,
        base_verify: bool | str = True,
    ) -> Self:
        """Validate an ``[[adapters]]`` table's options.

        ``base_timeout`` and ``base_verify`` are the table's ``timeout`` and ``verify``
        (:class:`~crmphone.adapters.AdapterContext`); ``ca_file`` is resolved against
        ``base_verify`` by :func:`~crmphone.adapters.worker_http.resolve_verify`.

        :raises ConfigError: an option is missing, unknown or invalid, or ``ca_file`` contradicts
            ``verify``; ``key`` names it.
        """
        read = OptionReader(options, prefix=prefix, environ=environ)
        key = read.key
        read.check_known(_KNOWN, what="the Zendesk adapter")
        base_url = _base_url(options, key)
        values: dict[str, Any] = {"base_url": base_url}
        if "oauth_token_env" in options:
            if "token_env" in options:
                raise ConfigError(
                    "set token_env (with email) or oauth_token_env, not both", key=key("token_env")
                )
            values["oauth_token"] = read.secret("oauth_token_env")
        else:
            email = options.get("email")
            if not isinstance(email, str) or "@" not in email:
                raise ConfigError(
                    "is required with an API token: the agent or admin the token belongs to, "
                    'e.g. email = "crm-bot@acme.com" (or use oauth_token_env)',
                    key=key("email"),
                )
            values["email"] = email
            values["api_token"] = read.secret("token_env")
        values["ca_file"] = read.file("ca_file")
        values["verify"] = resolve_verify(base_verify, values["ca_file"], key=key("ca_file"))
        values["timeout"] = read.positive("timeout", base_timeout)
        values["lookup_cache_seconds"] = read.positive("lookup_cache_seconds", 60.0, zero=True)
        app_id = options.get("app_id", 0)
        if isinstance(app_id, bool) or not isinstance(app_id, int) or app_id < 0:
            raise ConfigError(f"must be a whole number, got {app_id!r}", key=key("app_id"))
        values["app_id"] = app_id
        rules = options.get("tickets_for", [rule.value for rule in TicketRule])
        try:
            values["tickets_for"] = frozenset(TicketRule(rule) for rule in rules)
        except (TypeError, ValueError):
            allowed = ", ".join(rule.value for rule in TicketRule)
            raise ConfigError(
                f"must be a list of {allowed}, got {rules!r}", key=key("tickets_for")
            ) from None
        values["create_users"] = read.flag("create_users", True)
        values["public_comment"] = read.flag("public_comment", False)
        subject = options.get("subject", "Call with {number}")
        fields = set(re.findall(r"{(\w*)}", subject)) if isinstance(subject, str) else {"?"}
        if not isinstance(subject, str) or not subject.strip() or fields - _PLACEHOLDERS:
            raise ConfigError(
                "must be text with only {number}, {direction} and {agent} placeholders, "
                f"got {subject!r}",
                key=key("subject"),
            )
        values["subject"] = subject
        tags = options.get("tags", ["crmphone", "phone"])
        if not isinstance(tags, list) or not all(
            isinstance(tag, str) and tag and " " not in tag for tag in tags
        ):
            raise ConfigError(
                f"must be a list of tags without spaces, got {tags!r}", key=key("tags")
            )
        values["tags"] = tuple(tags)
        return cls(**values)


_KNOWN = (
    "subdomain",
    "base_url",
    "email",
    "token_env",
    "oauth_token_env",
    "ca_file",
    "timeout",
    "app_id",
    "tickets_for",
    "create_users",
    "subject",
    "tags",
    "public_comment",
    "lookup_cache_seconds",
)


def _base_url(options: Mapping[str, Any], key: Any) -> str:
    subdomain, base_url = options.get("subdomain"), options.get("base_url")
    if (subdomain is None) == (base_url is None):
        raise ConfigError(
            'set one of subdomain = "acme" (https://acme.zendesk.com) or base_url = "https://…"',
            key=key("subdomain"),
        )
    if subdomain is not None:
        if not isinstance(subdomain, str) or not _SUBDOMAIN.match(subdomain):
            raise ConfigError(
                f"must be the account's subdomain such as 'acme', got {subdomain!r}",
                key=key("subdomain"),
            )
        return f"https://{subdomain}.zendesk.com"
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or parts.path not in ("", "/")
    ):
        raise ConfigError(
            f"must be an https:// URL without a path, got {base_url!r}", key=key("base_url")
        )
    if parts.username or parts.password:
        raise ConfigError("must not carry credentials", key=key("base_url"))
    return f"https://{parts.netloc}"
