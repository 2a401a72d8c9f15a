"""The Salesforce adapter's options: an ``[[adapters]]`` table, validated into frozen values.

.. code-block:: toml

    [[adapters]]
    name = "salesforce"
    instance_url = "https://acme.my.salesforce.com"
    api_version = "62.0"                  # pinned; never the library's default
    auth = "client_credentials"           # or "session" or "jwt"
    login_url = "https://acme.my.salesforce.com"   # token endpoint host (client_credentials, jwt)
    client_id_env = "SF_CLIENT_ID"        # NAMES of environment variables, never the secrets
    client_secret_env = "SF_CLIENT_SECRET"
    # session:  session_id_env = "SF_SESSION_ID"
    # jwt:      client_id_env, username = "crm@acme.com", private_key_file = "/etc/crmphone/sf.key"
    verify = "/etc/ssl/private-ca.pem"    # optional, the general way: true (default), a CA bundle,
                                          # or false (no checks; the connector warns at every start)
    # ca_file = "/etc/ssl/private-ca.pem" # the plugin's own way to trust a CA (checks stay on)
    timeout = 10.0                        # seconds per request
    external_id_field = "CTI_Call_Id__c"  # an External ID (unique) field on Task
    # ... or, where Task cannot carry an External ID: a custom object keyed by the call
    # call_object = "CTI_Call__c"         # with call_object_key (External ID) and call_object_task
    status_in_progress = "In Progress"
    status_completed = "Completed"
    lookup = "sosl"                       # or "soql" (exact match on Phone), or "none"
    lookup_cache_seconds = 60
    request_limit_wait = 300              # seconds to wait once the daily API allowance is spent
    [adapters.fields]                     # call attribute -> Task field
    queue_name = "Queue__c"
    "attributes.recordingUrl" = "Recording_URL__c"

``verify`` and ``timeout`` are the connector's keys of every ``[[adapters]]`` table; they reach
:meth:`SalesforceSettings.from_options` as ``base_verify`` and ``base_timeout``. Every error is a
:class:`~crmphone.errors.ConfigError` whose ``key`` names the option.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import attrs

from crmphone.adapters.options import OptionReader
from crmphone.adapters.worker_http import resolve_verify
from crmphone.errors import ConfigError

__all__ = ["AuthKind", "LookupKind", "SalesforceSettings"]

DEFAULT_API_VERSION = "62.0"
_API_VERSION = re.compile(r"^\d{2,3}\.0$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: Call values a field mapping may name (``attributes.X`` names a platform call attribute).
MAPPABLE = frozenset(
    {
        "queue_name",
        "queue_id",
        "dnis",
        "ani",
        "customer_number",
        "conversation_id",
        "disconnect_type",
        "who_hung_up",
        "holds",
        "held_seconds",
        "transferred_to",
        "wrapup_seconds",
    }
)


class AuthKind(enum.StrEnum):
    """How the adapter gets its Salesforce session."""

    SESSION = "session"  # a session id from the environment (cannot be renewed)
    CLIENT_CREDENTIALS = "client_credentials"  # OAuth client credentials flow (renewable)
    JWT = "jwt"  # OAuth JWT bearer flow with a private key (renewable)


class LookupKind(enum.StrEnum):
    """How callers are found."""

    SOSL = "sosl"  # search phone fields (any format; the index may lag minutes)
    SOQL = "soql"  # exact match on Phone fields (immediate, format-sensitive)
    NONE = "none"


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'***'"


@attrs.frozen(kw_only=True)
class SalesforceSettings:
    """Validated options of one Salesforce adapter. Secrets are read from the environment when
    the options are parsed and never shown in a repr."""

    instance_url: str
    api_version: str = DEFAULT_API_VERSION
    auth: AuthKind = AuthKind.SESSION
    login_url: str | None = None
    client_id: str | None = attrs.field(default=None, repr=_secret_repr)
    client_secret: str | None = attrs.field(default=None, repr=_secret_repr)
    session_id: str | None = attrs.field(default=None, repr=_secret_repr)
    username: str | None = None
    private_key: str | None = attrs.field(default=None, repr=_secret_repr)
    ca_file: str | None = None
    """The plugin's own option: a PEM CA bundle to verify Salesforce's certificate against
    (checks stay on). ``verify`` on the ``[[adapters]]`` table is the general way to do this."""
    verify: bool | str = attrs.field(
        default=attrs.Factory(lambda self: self.ca_file or True, takes_self=True)
    )
    """TLS verification as resolved from the table's ``verify`` and ``ca_file`` (what the
    sessions use): True for the system store, a CA bundle's path, or False for no checks.
    Defaults to ``ca_file`` when that is set, else True."""
    timeout: float = 10.0
    external_id_field: str = "CTI_Call_Id__c"
    call_object: str | None = None
    call_object_key: str = "Call_Id__c"
    call_object_task: str = "Task_Id__c"
    status_in_progress: str = "In Progress"
    status_completed: str = "Completed"
    lookup: LookupKind = LookupKind.SOSL
    lookup_cache_seconds: float = 60.0
    request_limit_wait: float = 300.0
    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_options(
        cls,
        options: Mapping[str, Any],
        *,
        prefix: str = "adapters.salesforce",
        environ: Mapping[str, str] | None = None,
        base_timeout: float = 10.0,
        base_verify: bool | str = True,
    ) -> Self:
        """Validate an ``[[adapters]]`` table's options (everything but the connector's own).

        ``base_timeout`` and ``base_verify`` are the table's ``timeout`` and ``verify``
        (:class:`~crmphone.adapters.AdapterContext`); ``ca_file`` is resolved against
        ``base_verify`` by :func:`~crmphone.adapters.worker_http.resolve_verify`.

        :raises ConfigError: an option is missing, unknown or invalid, or ``ca_file`` contradicts
            ``verify``; ``key`` names it.
        """
        reader = _Reader(options, prefix=prefix, environ=environ)
        reader.check_unknown()
        instance_url = reader.https_url("instance_url", required=True)
        assert instance_url is not None
        auth = reader.choice("auth", AuthKind, AuthKind.SESSION)
        ca_file = reader.file("ca_file")
        values: dict[str, Any] = {
            "instance_url": instance_url,
            "api_version": reader.api_version(),
            "auth": auth,
            "ca_file": ca_file,
            "verify": resolve_verify(base_verify, ca_file, key=reader.key("ca_file")),
            "timeout": reader.positive("timeout", base_timeout),
            "external_id_field": reader.field_name("external_id_field", "CTI_Call_Id__c"),
            "call_object": reader.optional_field_name("call_object"),
            "call_object_key": reader.field_name("call_object_key", "Call_Id__c"),
            "call_object_task": reader.field_name("call_object_task", "Task_Id__c"),
            "status_in_progress": reader.text("status_in_progress", "In Progress"),
            "status_completed": reader.text("status_completed", "Completed"),
            "lookup": reader.choice("lookup", LookupKind, LookupKind.SOSL),
            "lookup_cache_seconds": reader.positive("lookup_cache_seconds", 60.0, zero=True),
            "request_limit_wait": reader.positive("request_limit_wait", 300.0),
            "fields": reader.field_map("fields"),
        }
        if auth is AuthKind.SESSION:
            values["session_id"] = reader.secret("session_id_env")
        else:
            values["login_url"] = reader.https_url("login_url", required=False) or instance_url
            values["client_id"] = reader.secret("client_id_env")
            if auth is AuthKind.CLIENT_CREDENTIALS:
                values["client_secret"] = reader.secret("client_secret_env")
            else:
                values["username"] = reader.text("username", None)
                values["private_key"] = reader.private_key("private_key_file")
        return cls(**values)

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint."""
        return f"{(self.login_url or self.instance_url).rstrip('/')}/services/oauth2/token"


class _Reader(OptionReader):
    """The shared checks, plus Salesforce's own: URLs, API versions, field names, the JWT key."""

    _KNOWN = (
        "instance_url",
        "api_version",
        "auth",
        "login_url",
        "client_id_env",
        "client_secret_env",
        "session_id_env",
        "username",
        "private_key_file",
        "ca_file",
        "timeout",
        "external_id_field",
        "call_object",
        "call_object_key",
        "call_object_task",
        "status_in_progress",
        "status_completed",
        "lookup",
        "lookup_cache_seconds",
        "request_limit_wait",
        "fields",
    )

    def check_unknown(self) -> None:
        self.check_known(self._KNOWN, what="the Salesforce adapter")

    def https_url(self, name: str, *, required: bool) -> str | None:
        value = self.options.get(name)
        if value is None:
            if required:
                raise ConfigError(
                    'is required: the org\'s URL, e.g. "https://acme.my.salesforce.com"',
                    key=self.key(name),
                )
            return None
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            raise ConfigError(
                f"must be an https:// URL (Salesforce speaks only TLS), got {value!r}",
                key=self.key(name),
            )
        if parts.username or parts.password or parts.query:
            raise ConfigError(
                "must not carry credentials or a query; credentials come from *_env options",
                key=self.key(name),
            )
        return str(value).rstrip("/")

    def api_version(self) -> str:
        value = self.options.get("api_version", DEFAULT_API_VERSION)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = f"{float(value):.1f}"
        if not isinstance(value, str) or not _API_VERSION.match(value.removeprefix("v")):
            raise ConfigError(
                f'must be an API version such as "62.0", got {value!r}', key=self.key("api_version")
            )
        return value.removeprefix("v")

    def field_name(self, name: str, default: str) -> str:
        value = self.options.get(name, default)
        if not isinstance(value, str) or not _FIELD_NAME.match(value):
            raise ConfigError(
                f"must be a Salesforce field API name such as 'CTI_Call_Id__c', got {value!r}",
                key=self.key(name),
            )
        return value

    def optional_field_name(self, name: str) -> str | None:
        if self.options.get(name) is None:
            return None
        return self.field_name(name, "")

    def private_key(self, name: str) -> str:
        path = self.file(name)
        if path is None:
            raise ConfigError(
                'is required for auth = "jwt": the PEM private key whose certificate the '
                "connected app holds",
                key=self.key(name),
            )
        text = Path(path).read_text(encoding="utf-8")
        if "PRIVATE KEY" not in text:
            raise ConfigError(f"{path} holds no PEM private key", key=self.key(name))
        return text

    def field_map(self, name: str) -> tuple[tuple[str, str], ...]:
        table = self.options.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError("must be a table of call value = Task field", key=self.key(name))
        pairs: list[tuple[str, str]] = []
        for source, target in table.items():
            where = self.key(f"{name}.{source}")
            if source not in MAPPABLE and not (
                source.startswith("attributes.") and len(source) > len("attributes.")
            ):
                known = ", ".join(sorted(MAPPABLE))
                raise ConfigError(
                    f"names no call value; use one of {known}, or attributes.<name>", key=where
                )
            if not isinstance(target, str) or not _FIELD_NAME.match(target):
                raise ConfigError(f"must be a Task field API name, got {target!r}", key=where)
            pairs.append((source, target))
        return tuple(pairs)
