"""`crmphone run` refuses bad configuration clearly; `crmphone outbox` shows and replays."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from crmphone.adapters import OutboxStore
from crmphone.adapters.store import AdapterRoute
from crmphone.cli import main
from crmphone.testing.recording import fake_call


def test_run_with_a_bad_key_exits_2_naming_it(tmp_path: Path) -> None:
    """A typo in connector.toml is one message naming the key, and exit code 2."""
    config = tmp_path / "connector.toml"
    config.write_text('[outbox]\nmax_attempt = 3\n[platform]\nkind = "sandbox"\n')
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "outbox.max_attempt" in result.output
    assert "max_attempts" in result.output  # the suggestion


def test_run_with_an_unknown_plugin_exits_2_listing_what_is_installed(tmp_path: Path) -> None:
    """A plugin that is not installed is named, with the fix."""
    config = tmp_path / "connector.toml"
    config.write_text('[platform]\nkind = "sandbox"\n[[adapters]]\nname = "salesforse"\n')
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "salesforse" in result.output
    assert "webhook" in result.output  # what is installed


def test_run_with_bad_adapter_options_exits_2(tmp_path: Path) -> None:
    """The adapter's own options are checked before anything connects."""
    config = tmp_path / "connector.toml"
    config.write_text('[platform]\nkind = "sandbox"\n[[adapters]]\nname = "webhook"\n')
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "url" in result.output


def make_outbox_with_a_dead_letter(path: Path) -> None:
    store = OutboxStore(path)
    try:
        with store.transaction():
            store.enqueue(fake_call()[:2], [AdapterRoute(name="webhook", pops=False)])
        item = store.items()[-1]
        with store.transaction():
            store.fail([item.id], "CrmPermanentError: 400 bad field", retry_in=None)
    finally:
        store.close()


def test_outbox_list_retry_and_purge(tmp_path: Path) -> None:
    """Dead letters are listed with their error, queued again, and purged."""
    path = tmp_path / "outbox.sqlite3"
    make_outbox_with_a_dead_letter(path)
    runner = CliRunner()

    listed = runner.invoke(main, ["outbox", "list", "--path", str(path)])
    assert listed.exit_code == 0, listed.output
    assert "webhook: 1 dead" in listed.output
    assert "400 bad field" in listed.output

    as_json = runner.invoke(main, ["outbox", "list", "--path", str(path), "--dead", "--json"])
    (line,) = as_json.output.splitlines()
    assert json.loads(line)["state"] == "dead"

    retried = runner.invoke(main, ["outbox", "retry", "--path", str(path)])
    assert "1 dead letter(s) queued again" in retried.output
    listed = runner.invoke(main, ["outbox", "list", "--path", str(path), "--dead"])
    assert "webhook: 1 pending" in listed.output

    make_outbox_with_a_dead_letter(path)
    purged = runner.invoke(main, ["outbox", "purge", "--path", str(path), "--yes"])
    assert "1 dead letter(s) deleted" in purged.output
    store = OutboxStore(path)
    try:
        assert [item.state for item in store.items()] == ["pending"]
    finally:
        store.close()


def test_outbox_commands_need_an_existing_outbox(tmp_path: Path) -> None:
    """A wrong path is a usage error, not an empty outbox created by accident."""
    result = CliRunner().invoke(main, ["outbox", "list", "--path", str(tmp_path / "nope.db")])
    assert result.exit_code == 2
    assert "no outbox" in result.output
    assert not (tmp_path / "nope.db").exists()
