"""Reading an adapter's ``[[adapters]]`` options: the checks every plugin needs, with errors that
name the key (``adapters.<instance>.<option>``) and say what to write instead.

.. code-block:: python

    read = OptionReader(options, prefix=f"adapters.{context.name}")
    read.check_known(("url", "token_env", "timeout"), what="the Acme adapter")
    token = read.secret("token_env")          # the value of the environment variable it names
    timeout = read.positive("timeout", 10.0)

Secrets are named in the file by the *environment variable* that holds them (``token_env =
"ACME_TOKEN"``), never written there; :meth:`OptionReader.secret` reads the variable, and no
message ever shows a value.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from crmphone.errors import ConfigError

__all__ = ["OptionReader"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_E = TypeVar("_E", bound=enum.Enum)


class OptionReader:
    """Typed, checked access to one adapter's options; ``environ`` defaults to ``os.environ``."""

    def __init__(
        self, options: Mapping[str, Any], *, prefix: str, environ: Mapping[str, str] | None = None
    ) -> None:
        self.options = options
        self.prefix = prefix
        self.environ = os.environ if environ is None else environ

    def key(self, name: str) -> str:
        """The configuration key of option ``name``."""
        return f"{self.prefix}.{name}"

    def check_known(self, known: Sequence[str], *, what: str) -> None:
        """ConfigError naming the first option that is not in ``known``."""
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown option {unknown[0]!r}; {what} takes {', '.join(known)}",
                key=self.key(unknown[0]),
            )

    def text(self, name: str, default: str | None) -> str | None:
        """A non-empty string (stripped), or ``default`` when absent."""
        value = self.options.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"must be a non-empty string, got {value!r}", key=self.key(name))
        return value.strip()

    def flag(self, name: str, default: bool) -> bool:
        """``true`` or ``false``."""
        value = self.options.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", key=self.key(name))
        return value

    def positive(self, name: str, default: float, *, zero: bool = False) -> float:
        """A number of seconds above zero (``zero``: zero allowed too)."""
        value = self.options.get(name, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or (value == 0 and not zero)
        ):
            raise ConfigError(
                f"must be a {'non-negative' if zero else 'positive'} number of seconds, "
                f"got {value!r}",
                key=self.key(name),
            )
        return float(value)

    def choice(self, name: str, kind: type[_E], default: _E) -> _E:
        """One of the enum ``kind``'s values."""
        value = self.options.get(name, default.value)
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(repr(member.value) for member in kind)
            raise ConfigError(
                f"must be one of {allowed}, got {value!r}", key=self.key(name)
            ) from None

    def file(self, name: str) -> str | None:
        """The path of a readable file, or None when absent."""
        value = self.options.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not Path(value).is_file():
            raise ConfigError(f"must name a readable file, got {value!r}", key=self.key(name))
        return value

    def secret(self, name: str) -> str:
        """The value of the environment variable option ``name`` names (never shown)."""
        variable = self.options.get(name)
        if not isinstance(variable, str) or not _ENV_NAME.match(variable):
            raise ConfigError(
                "must name the environment variable that holds the secret (e.g. "
                f'"{name.removesuffix("_env").upper()}"), got {variable!r}',
                key=self.key(name),
            )
        value = self.environ.get(variable)
        if not value:
            raise ConfigError(
                f"the environment variable {variable} is not set (or empty)", key=self.key(name)
            )
        return value
