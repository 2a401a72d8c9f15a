"""`crmphone plugins`: what is installed, where from, and whether it loads."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crmphone.cli import main

GOOD = """
from crmphone.adapters.base import Adapter, CallLog


class CliAdapter(Adapter):
    description = "a plugin for the CLI test"

    async def log_call(self, log: CallLog) -> None:
        pass
"""

BROKEN = "raise ImportError('vendor SDK [v2] is missing')\n"


@pytest.fixture
def throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Two throwaway distributions on sys.path: plugin "clitest" loads, "clibroken" does not.

    Yields the suffix of their module names; the modules are forgotten afterwards.
    """
    token = uuid.uuid4().hex[:8]
    for dist, entry_point, module, source in (
        ("crmphone-clitest", "clitest", f"clitest_{token}", GOOD),
        ("crmphone-clibroken", "clibroken", f"clibroken_{token}", BROKEN),
    ):
        directory = tmp_path / dist
        dist_info = directory / f"{dist.replace('-', '_')}-4.5.6.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 4.5.6\n", encoding="utf-8"
        )
        (dist_info / "entry_points.txt").write_text(
            f"[crmphone.adapters]\n{entry_point} = {module}:CliAdapter\n", encoding="utf-8"
        )
        (directory / f"{module}.py").write_text(source, encoding="utf-8")
        monkeypatch.syspath_prepend(str(directory))  # only once the directory is complete
    yield token
    for name in [name for name in sys.modules if name.endswith(token)]:
        del sys.modules[name]


def listing(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["plugins", "--json", *args])
    assert result.exit_code == 0, result.output
    plugins: list[dict[str, Any]] = json.loads(result.stdout)
    return plugins


def test_json_lists_each_plugin_with_its_origin_and_status(throwaway: str) -> None:
    """--json gives name, distribution, version, location, status and description or error."""
    plugins = {plugin["name"]: plugin for plugin in listing()}
    good = plugins["clitest"]
    assert good["distribution"] == "crmphone-clitest"
    assert good["version"] == "4.5.6"
    assert good["value"] == f"clitest_{throwaway}:CliAdapter"
    assert good["location"].endswith(f"clitest_{throwaway}.py")
    assert good["status"] == "ok"
    assert good["description"] == "a plugin for the CLI test"
    assert good["error"] is None
    broken = plugins["clibroken"]
    assert broken["status"] == "error"
    assert "crmphone-clibroken 4.5.6" in broken["error"]
    assert "vendor SDK [v2] is missing" in broken["error"]
    assert broken["description"] is None


def test_the_webhook_example_is_listed() -> None:
    """The example distribution crmphone-webhook (installed by `make test`) provides "webhook"."""
    [webhook] = [plugin for plugin in listing() if plugin["name"] == "webhook"]
    assert webhook["distribution"] == "crmphone-webhook"
    assert webhook["value"] == "crmphone_webhook:WebhookAdapter"
    assert webhook["status"] == "ok"
    assert "Idempotency-Key" in webhook["description"]


def test_names_limit_the_listing(throwaway: str) -> None:
    """Naming plugins lists (and imports) only those."""
    assert [plugin["name"] for plugin in listing("clitest")] == ["clitest"]
    assert f"clibroken_{throwaway}" not in sys.modules


def test_the_table_shows_each_plugin_and_exits_0(throwaway: str) -> None:
    """The table names every plugin with its distribution; a broken one does not fail the command."""
    result = CliRunner().invoke(main, ["plugins"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    for text in ("clitest", "crmphone-clitest 4.5.6", "clibroken", "error:", "[v2]", "ok"):
        assert text in result.stdout


def test_no_match_says_how_to_install() -> None:
    """Asking for a plugin nobody installed says so, with the pip hint, and still exits 0."""
    result = CliRunner().invoke(main, ["plugins", "nosuchplugin"])
    assert result.exit_code == 0
    assert "no adapter plugin named nosuchplugin is installed" in result.stdout
    assert "pip install crmphone-<name>" in result.stdout
