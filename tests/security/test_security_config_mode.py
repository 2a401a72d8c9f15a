"""A connector.toml other accounts can read or change is loaded with a loud warning: its mode
and the ``chmod 600`` that fixes it, from ``load_config``, ``crmphone check`` and the demo's own
file (which is made private). Real files, real modes, real owners."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from crmphone.cli import main
from crmphone.config import (
    bridge_exposure_warning,
    config_file_warning,
    load_config,
    security_warnings,
)
from crmphone.sandbox import SandboxServer
from crmphone.testing import TEST_CLIENT_ID, TEST_CLIENT_SECRET, fast_sandbox_config
from crmphone.testing.connector import connector_process

TEXT = '[platform]\nkind = "sandbox"\nurl = "http://127.0.0.1:9"\n'
SECRET = "s3cr3t-value-never-in-a-warning"


def config_file(tmp_path: Path, mode: int) -> Path:
    """A valid connector.toml with ``mode``."""
    path = tmp_path / "connector.toml"
    path.write_text(TEXT)
    path.chmod(mode)
    return path


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """WARNING messages of crmphone.config."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "crmphone.config" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize(
    ("mode", "who", "can"),
    [
        (0o640, "its group", "read"),
        (0o604, "all users", "read"),
        (0o620, "its group", "changed"),
        (0o602, "all users", "changed"),
        (0o644, "its group and all users", "read"),
        (0o666, "its group and all users", "read and changed"),
        (0o660, "its group", "read and changed"),
    ],
)
def test_a_file_others_can_read_or_change_is_loaded_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, who: str, can: str
) -> None:
    """Group or world read or write access: the config loads, and one WARNING says who can do
    what, the mode, and the exact chmod command for the file's absolute path."""
    path = config_file(tmp_path, mode)
    with caplog.at_level(logging.WARNING, logger="crmphone.config"):
        config = load_config(path, environ={"CRMPHONE_CLIENT_SECRET": SECRET})
    (warning,) = logged(caplog)
    assert f"can be {can} by {who}" in warning
    assert f"(mode {mode:04o})" in warning
    assert f"chmod 600 {path.absolute()}" in warning
    assert SECRET not in warning
    assert config_file_warning(path) == warning.removeprefix("config: ")
    assert security_warnings(config) == (warning.removeprefix("config: "),)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700, 0o711])
def test_a_private_file_loads_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    """Owner-only files (execute bits for others give nothing away) cause no warning."""
    path = config_file(tmp_path, mode)
    with caplog.at_level(logging.DEBUG, logger="crmphone.config"):
        config = load_config(path, environ={})
    assert logged(caplog) == []
    assert config_file_warning(path) is None
    assert security_warnings(config) == ()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another account needs root")
def test_a_file_of_another_account_is_reported(tmp_path: Path) -> None:
    """A private file that belongs to an account other than this one and root is reported:
    that account can change what the connector trusts."""
    path = config_file(tmp_path, 0o600)
    os.chown(path, 65534, 65534)
    warning = config_file_warning(path)
    assert warning is not None
    assert "belongs to another account (uid 65534)" in warning


def test_warn_false_leaves_the_warning_to_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """load_config(warn=False) logs nothing; security_warnings still has it."""
    path = config_file(tmp_path, 0o644)
    with caplog.at_level(logging.WARNING, logger="crmphone.config"):
        config = load_config(path, environ={}, warn=False)
    assert logged(caplog) == []
    (warning,) = security_warnings(config)
    assert "mode 0644" in warning


def test_check_prints_the_mode_warning_once(tmp_path: Path) -> None:
    """crmphone check prints the file's warning with its chmod, once, and --strict fails on it;
    after chmod 600 it passes."""
    path = config_file(tmp_path, 0o664)
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.count("chmod 600") == 1
    assert "warning: the configuration file" in result.output
    assert "mode 0664" in result.output
    assert CliRunner().invoke(main, ["check", "--config", str(path), "--strict"]).exit_code == 1
    path.chmod(0o600)
    result = CliRunner().invoke(main, ["check", "--config", str(path), "--strict"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_a_symlinked_config_is_judged_by_its_target(tmp_path: Path) -> None:
    """The mode that counts is the file read, not the link's (always 0777)."""
    target = config_file(tmp_path, 0o600)
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    assert stat.S_ISLNK(link.lstat().st_mode)
    assert config_file_warning(link) is None
    target.chmod(0o644)
    assert config_file_warning(link) is not None


@pytest.mark.parametrize(
    ("host", "tls", "exposed"),
    [
        ("127.0.0.1", False, False),
        ("127.0.0.2", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, True),  # noqa: S104 - a value to parse, nothing binds here
        ("::", False, True),
        ("192.168.1.20", False, True),
        ("192.168.1.20", True, True),
    ],
)
def test_a_bridge_beyond_loopback_is_a_warning(
    tmp_path: Path, host: str, tls: bool, exposed: bool
) -> None:
    """A [bridge] host other machines can reach is a security warning (worse without TLS);
    loopback is not."""
    text = TEXT + f'[bridge]\nhost = "{host}"\n'
    if tls:
        text += 'tls_cert_file = "cert.pem"\ntls_key_file = "key.pem"\n'
    config = load_config(config_file_text(tmp_path, text), environ={})
    warning = bridge_exposure_warning(config)
    assert (warning is not None) == exposed
    assert security_warnings(config) == ((warning,) if warning else ())
    if warning is not None:
        assert f"bridge.host = {host!r}" in warning
        assert ("unencrypted" in warning) == (not tls)


def config_file_text(tmp_path: Path, text: str) -> Path:
    """``text`` in a private connector.toml."""
    path = tmp_path / "connector.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


async def test_crmphone_run_logs_the_warning_in_the_configured_format(tmp_path: Path) -> None:
    """`crmphone run` with a world-readable file logs its warning once, as a JSON record like
    every other line (it is not a bare line printed before logging exists)."""
    async with SandboxServer(fast_sandbox_config(agents=1), host="127.0.0.1", port=0) as sandbox:
        path = tmp_path / "connector.toml"
        path.write_text(
            f'[platform]\nkind = "sandbox"\nurl = "{sandbox.base_url}"\n\n'
            '[log]\nformat = "json"\n\n[outbox]\npath = "outbox.sqlite3"\n'
        )
        path.chmod(0o644)
        lines: list[str] = []
        environment = dict(
            os.environ, CRMPHONE_CLIENT_ID=TEST_CLIENT_ID, CRMPHONE_CLIENT_SECRET=TEST_CLIENT_SECRET
        )
        async with connector_process(path, env=environment, on_line=lines.append):
            pass
    mentions = [line for line in lines if "chmod 600" in line]
    assert len(mentions) == 1, lines
    record = json.loads(mentions[0])
    assert record["level"] == "WARNING"
    assert "mode 0644" in record["message"]
