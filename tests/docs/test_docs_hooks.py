"""The docs' hooks: what they generate from the code, and how they refuse what they cannot."""

from __future__ import annotations

import importlib
import types
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

HOOKS = Path(__file__).resolve().parents[2] / "docs" / "hooks"


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The docs hook module, imported the way mkdocs imports it (its folder on the path)."""
    monkeypatch.syspath_prepend(str(HOOKS))
    return importlib.import_module("crmphone_docs")


@pytest.fixture
def diagram(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The state-diagram layout module."""
    monkeypatch.syspath_prepend(str(HOOKS))
    return importlib.import_module("crmphone_docs_diagram")


def test_every_generated_part_renders_from_the_code(hooks: types.ModuleType) -> None:
    """Each generator the pages may ask for produces markdown from the code as it is."""
    for name, generate in hooks.GENERATED.items():
        assert generate().strip(), name


def test_a_page_gets_its_generated_part_in_place(hooks: types.ModuleType) -> None:
    """A directive line becomes the generated markdown; the rest of the page is left alone."""
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_path="x.md"))
    out = hooks.on_page_markdown("# Title\n\n{crmphone:metrics}\n\nAfter.\n", page=page)
    assert out.startswith("# Title\n\n| metric |")
    assert "`crmphone_events_in_total`" in out
    assert out.endswith("\nAfter.\n")


def test_an_unknown_directive_fails_the_build(hooks: types.ModuleType) -> None:
    """A page naming a part nobody generates stops the build, naming the page and what exists."""
    page = types.SimpleNamespace(file=types.SimpleNamespace(src_path="concepts/x.md"))
    with pytest.raises(PluginError, match=r"concepts/x\.md: \{crmphone:nope\} names nothing"):
        hooks.on_page_markdown("{crmphone:nope}\n", page=page)


def test_rest_simple_tables_become_rows(hooks: types.ModuleType) -> None:
    """A reST simple table, with a header and a continued row, reads as rows of cells."""
    doc = """Intro.

    =====  ===============
    name   meaning
    =====  ===============
    one    ``first`` row
    two    second row, which
           goes on
    =====  ===============
    """
    assert hooks.rst_tables(doc) == [
        [["name", "meaning"], ["one", "`first` row"], ["two", "second row, which goes on"]]
    ]


def test_rest_roles_become_code(hooks: types.ModuleType) -> None:
    """Sphinx roles read as code spans, ``~`` keeping only the last name."""
    text = ":class:`~crmphone.errors.ConfigError` and :data:`MAX` and ``x``"
    assert hooks.rst_inline(text) == "`ConfigError` and `MAX` and `x`"


def test_a_diagram_draws_every_edge_once(diagram: types.ModuleType) -> None:
    """Each edge of a small machine, self-loop and back edge included, is one arrow group."""
    edges = [
        diagram.Edge("A", "B", ("go",), ("go",)),
        diagram.Edge("B", "B", ("stay",), ("stay",)),
        diagram.Edge("B", "C", ("end",), ("end",)),
        diagram.Edge("C", "A", ("again",), ("again",)),
        diagram.Edge("A", "C", ("skip",), ("skip",)),
    ]
    svg = diagram.state_diagram(["A", "B", "C"], edges, initial="A", title="t", ident="d")
    for edge in edges:
        marker = (
            f'data-from="{edge.source}" data-to="{edge.target}" data-triggers="{edge.triggers[0]}"'
        )
        assert svg.count(marker) == 1, marker
    assert "\n\n" not in svg  # one HTML block: a blank line would end it


def test_a_diagram_refuses_an_edge_to_an_unknown_state(diagram: types.ModuleType) -> None:
    """An edge naming a state that is not drawn is a mistake in the table, not a picture."""
    with pytest.raises(ValueError, match="unknown state"):
        diagram.state_diagram(
            ["A"], [diagram.Edge("A", "Z", ("go",), ("go",))], initial="A", title="t", ident="d"
        )


def test_github_nested_lists_are_reindented_for_python_markdown(hooks: types.ModuleType) -> None:
    """Items nested at their parent's text column, and a code block in an item, move to 4 a level."""
    readme = [
        "1. **First.** text",
        "   - nested",
        "     more of it",
        "     - deeper",
        "2. **Second:**",
        "",
        "   ```toml",
        "   - not = 'a list item'",
        "   ```",
        "",
        "3. Third.",
        "",
        "Outside.",
    ]
    assert hooks.commonmark_lists(readme) == [
        "1. **First.** text",
        "    - nested",
        "        more of it",
        "        - deeper",
        "2. **Second:**",
        "",
        "    ```toml",
        "    - not = 'a list item'",
        "    ```",
        "",
        "3. Third.",
        "",
        "Outside.",
    ]
