"""OptionReader: an adapter's options checked, each error naming its key and never a secret."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import pytest

from crmphone.adapters.options import OptionReader
from crmphone.errors import ConfigError


class Mode(enum.StrEnum):
    """A choice for the tests."""

    FAST = "fast"
    SAFE = "safe"


def reader(**options: Any) -> OptionReader:
    return OptionReader(options, prefix="adapters.acme", environ={"ACME_TOKEN": "t0ps3cret"})


def test_values_are_read_with_their_defaults(tmp_path: Path) -> None:
    """Present options are checked and typed; absent ones take their defaults."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    read = reader(token_env="ACME_TOKEN", timeout=2, mode="safe", ca_file=str(ca), fast=False)
    read.check_known(("token_env", "timeout", "mode", "ca_file", "fast"), what="acme")
    assert read.secret("token_env") == "t0ps3cret"
    assert read.positive("timeout", 10.0) == 2.0
    assert read.positive("retry", 0.0, zero=True) == 0.0
    assert read.choice("mode", Mode, Mode.FAST) is Mode.SAFE
    assert read.choice("other", Mode, Mode.FAST) is Mode.FAST
    assert read.file("ca_file") == str(ca)
    assert read.file("absent") is None
    assert read.flag("fast", True) is False
    assert read.text("name", "default") == "default"


@pytest.mark.parametrize(
    ("options", "check", "key", "text"),
    [
        (
            {"tokn_env": "X"},
            lambda r: r.check_known(("token_env",), what="acme"),
            "tokn_env",
            "unknown option",
        ),
        (
            {"token_env": "NOT SET"},
            lambda r: r.secret("token_env"),
            "token_env",
            "environment variable",
        ),
        ({"token_env": "UNSET_VAR"}, lambda r: r.secret("token_env"), "token_env", "not set"),
        ({"timeout": 0}, lambda r: r.positive("timeout", 1.0), "timeout", "positive"),
        ({"timeout": True}, lambda r: r.positive("timeout", 1.0), "timeout", "positive"),
        ({"mode": "quick"}, lambda r: r.choice("mode", Mode, Mode.FAST), "mode", "one of"),
        ({"ca_file": "/no/such/file"}, lambda r: r.file("ca_file"), "ca_file", "readable file"),
        ({"fast": "yes"}, lambda r: r.flag("fast", True), "fast", "true or false"),
        ({"name": " "}, lambda r: r.text("name", None), "name", "non-empty"),
    ],
)
def test_each_bad_option_is_one_error_naming_its_key(
    options: dict[str, Any], check: Any, key: str, text: str
) -> None:
    """The ConfigError's key is adapters.<instance>.<option>; its message says what is allowed."""
    with pytest.raises(ConfigError, match=text) as caught:
        check(reader(**options))
    assert caught.value.key == f"adapters.acme.{key}"
    assert "t0ps3cret" not in str(caught.value)
