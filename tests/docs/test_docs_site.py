"""The documentation site, built as `make docs` builds it, checked against the code it describes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import attrs
import pytest

from crmphone.calls import TRANSITIONS as CALL_TRANSITIONS
from crmphone.config import load_config
from crmphone.notifications import ChannelSettings
from crmphone.phone.session import TRANSITIONS as CONNECTION_TRANSITIONS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "docs" / "guides" / "connector.example.toml"


class _Page(HTMLParser):
    """What the checks read from a built page: the diagrams' edges and the tables' rows."""

    def __init__(self) -> None:
        super().__init__()
        self.edges: list[tuple[str, str, tuple[str, ...]]] = []
        self.rows: list[list[str]] = []
        self.loads: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "g" and "crmphone-edge" in (values.get("class") or "").split():
            triggers = tuple((values.get("data-triggers") or "").split())
            self.edges.append(
                (values.get("data-from") or "", values.get("data-to") or "", triggers)
            )
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        for name in ("src", "href"):
            target = values.get(name) or ""
            # What the browser fetches by itself: scripts, styles, images, frames (not links).
            if tag != "a" and re.match(r"(https?:)?//", target):
                self.loads.append(f"<{tag} {name}={target}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with --strict and without --quiet, so that any warning fails the build."""
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(  # noqa: S603 - this interpreter's mkdocs, on this repository
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]
    return target


def _read(site: Path, page: str) -> _Page:
    parser = _Page()
    parser.feed((site / page / "index.html").read_text(encoding="utf-8"))
    return parser


def _pages(site: Path) -> Iterator[Path]:
    yield from sorted(site.rglob("*.html"))


def test_every_connection_transition_is_drawn_and_listed(site: Path) -> None:
    """Each transition of the persistent connection's table is an arrow and a row of its page."""
    page = _read(site, "concepts/persistent-connection")
    assert page.edges, "the page draws no state diagram"
    for (state, trigger), target in CONNECTION_TRANSITIONS.items():
        assert any(
            (source, to) == (state.value, target.value) and trigger.value in triggers
            for source, to, triggers in page.edges
        ), f"no arrow {state.value} -> {target.value} for {trigger.value}"
        assert any(
            state.value in row[0].split(", ") and row[1:3] == [trigger.value, target.value]
            for row in page.rows
            if len(row) >= 3
        ), f"no table row {state.value} --{trigger.value}--> {target.value}"


def test_the_connection_diagram_draws_nothing_but_the_table(site: Path) -> None:
    """Every arrow of the persistent connection's diagram stands for transitions of the table."""
    page = _read(site, "concepts/persistent-connection")
    table = {(s.value, t.value, g.value) for (s, t), g in CONNECTION_TRANSITIONS.items()}
    for source, target, triggers in page.edges:
        for trigger in triggers:
            assert (source, trigger, target) in table, f"{source} -{trigger}-> {target}"


def test_every_call_transition_is_drawn_and_listed(site: Path) -> None:
    """Each step of the call state machine is an arrow and a row of the calls page."""
    page = _read(site, "concepts/calls")
    for (state, step), (target, events) in CALL_TRANSITIONS.items():
        assert any(
            (source, to) == (state.value, target.value) and step.value in triggers
            for source, to, triggers in page.edges
        ), f"no arrow {state.value} -> {target.value} for {step.value}"
        names = ", ".join(event.__name__ for event in events)
        assert [state.value, step.value, target.value, names] in page.rows


def test_no_page_loads_anything_from_the_network(site: Path) -> None:
    """The docs work offline: no page fetches a script, a style, a font or an image from a host."""
    for path in _pages(site):
        parser = _Page()
        parser.feed(path.read_text(encoding="utf-8"))
        assert not parser.loads, f"{path.relative_to(site)} loads {parser.loads}"
    for path in site.rglob("*.css"):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert not re.search(r"@import\s+(url\()?[\"']?https?:", text), path


def test_every_key_of_the_example_configuration_is_in_the_reference(site: Path) -> None:
    """Each table and key the example file sets has a row in the configuration reference."""
    page = _read(site, "reference/configuration")
    documented = {row[0] for row in page.rows if row}
    example = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    for table, keys in example.items():
        entries = keys if isinstance(keys, list) else [keys]
        for entry in entries:
            for key, value in entry.items():
                if table == "adapters" and key not in ("name", "instance", "threads", "timeout"):
                    continue  # the rest are the webhook plugin's own options
                if table == "agents" and isinstance(value, dict):
                    key = "crm_users"
                assert key in documented, f"[{table}] {key} is not in the reference"


def test_the_example_configuration_is_valid() -> None:
    """The example file the connector guide shows is a configuration crmphone accepts."""
    environ = {
        "CRMPHONE_CLIENT_ID": "client",
        "CRMPHONE_CLIENT_SECRET": "secret",
        "CRMPHONE_AGENT_TOKEN": "token",
    }
    config = load_config(EXAMPLE_CONFIG, environ=environ)
    assert config.adapters
    assert config.bridge is not None


def test_every_channel_setting_is_in_the_notification_channel_page() -> None:
    """The hand-written settings table of the notification channel names every ChannelSettings field."""
    text = (ROOT / "docs" / "concepts" / "notification-channel.md").read_text(encoding="utf-8")
    for field in attrs.fields(ChannelSettings):
        assert f"`{field.name}`" in text, (
            f"ChannelSettings.{field.name} is not in the settings table"
        )
