"""mkdocs hooks: the parts of the crmphone docs that are generated from crmphone's own code.

A page asks for a generated part with a line of its own, ``{crmphone:NAME}``; at every build
:func:`on_page_markdown` replaces it with what :data:`GENERATED` makes of the code as it is now.
So the state diagrams are drawn from the transition tables, the bridge's messages and error codes
come from its protocol module, the conformance checks from the suite, the metrics from the
connector's registry: they cannot drift from the code. An unknown name, or code that no longer
matches what a generator expects (a trigger nobody described), fails the build with a message.

Two more hooks tidy what comes from elsewhere: :func:`on_config` re-indents the GitHub-style
nested lists of the READMEs the guides include (between ``<!-- commonmark lists -->`` markers),
and :func:`on_page_content` turns the Sphinx roles docstrings use into code, linked when the
object is documented.
"""

from __future__ import annotations

import enum
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from crmphone_docs_config import configuration_reference
from crmphone_docs_diagram import Edge, state_diagram

# Python-Markdown ships no type information.
from markdown import Markdown  # type: ignore[import-untyped]
from markdown.extensions import Extension  # type: ignore[import-untyped]
from markdown.preprocessors import Preprocessor  # type: ignore[import-untyped]
from mkdocs.exceptions import PluginError

__all__ = [
    "GENERATED",
    "commonmark_lists",
    "on_config",
    "on_page_content",
    "on_page_markdown",
]

_DIRECTIVE = re.compile(r"^\{crmphone:(?P<name>[a-z0-9-]+)\}[ \t]*$", re.MULTILINE)


# ---------------------------------------------------------------------------------------------
# Markdown and reST helpers


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ").strip()


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


_ROLE = re.compile(r":[a-z]+:`(?P<tilde>~?)(?P<target>[^`]+)`")


def rst_inline(text: str) -> str:
    """reST inline markup as markdown: ````x```` and ``:role:`~a.B``` become code spans."""

    def role(match: re.Match[str]) -> str:
        target = match["target"]
        return f"`{target.rsplit('.', 1)[-1] if match['tilde'] else target}`"

    return _ROLE.sub(role, text.replace("``", "`"))


def rst_code_blocks(doc: str) -> list[str]:
    """The bodies of the ``.. code-block::`` directives of a docstring, dedented."""
    blocks: list[str] = []
    lines = inspect.cleandoc(doc).splitlines()
    for index, line in enumerate(lines):
        if not line.strip().startswith(".. code-block::"):
            continue
        indent = len(line) - len(line.lstrip())
        body: list[str] = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        blocks.append(textwrap.dedent("\n".join(body)).strip("\n"))
    return blocks


def rst_tables(doc: str) -> list[list[list[str]]]:
    """The reST simple tables of a docstring: rows of cells (a header row first, if any).

    A line whose first cell is empty continues the row above it, as in reST.
    """
    lines = inspect.cleandoc(doc).splitlines()
    border = re.compile(r"^\s*=+(\s+=+)+\s*$")
    tables: list[list[list[str]]] = []
    index = 0
    while index < len(lines):
        if not border.match(lines[index]):
            index += 1
            continue
        starts = [m.start() for m in re.finditer(r"=+", lines[index])]
        rows: list[list[str]] = []
        borders = 1
        index += 1
        while index < len(lines) and borders < 3:
            line = lines[index]
            if border.match(line):
                borders += 1
                # A two-border table ends at its second border unless a header row came first.
                if borders == 2 and (
                    len(rows) != 1 or index + 1 >= len(lines) or not lines[index + 1].strip()
                ):
                    break
            elif line.strip():
                cells = [
                    line[start : starts[n + 1] if n + 1 < len(starts) else None].strip()
                    for n, start in enumerate(starts)
                ]
                # A blank cell continues the row above (reST says: a blank first cell).
                if all(cells) or not rows:
                    rows.append(cells)
                else:
                    rows[-1] = [
                        f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)
                    ]
            else:
                break
            index += 1
        tables.append([[rst_inline(c) for c in row] for row in rows])
        index += 1
    return tables


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PluginError(f"crmphone docs: {message}")


# ---------------------------------------------------------------------------------------------
# The persistent connection's states


_TRIGGERS = {
    "AWAIT_SETUP": "login on a persistent station with `routing:conversation:acceptOffQueue`: "
    "the platform's silent set-up is awaited (`login()`)",
    "PROCEED": "the phone accepts the platform's proposal: a first call, or the login set-up "
    "(`proposal()`); the offer/answer, ICE and DTLS follow",
    "MEDIA_UP": "ICE and DTLS completed: media can flow (`media_up()`)",
    "SETUP_FAILED": "offer/answer, ICE or DTLS failed, the platform refused, or the set-up took "
    "longer than `setup_timeout` (15 s)",
    "CALL_CONNECTED": "the agent's leg of a call connected (notification channel)",
    "CALL_ENDED": "the call ended; the station keeps connections, so this one stays up",
    "CALL_ENDED_CLOSE": "the call ended on a station without persistent connections: the "
    "connection lived for one call",
    "IDLE_TIMEOUT": "no call for `inactivity_timeout` (600 s); restarted at every call's start "
    "and end",
    "STOP": "the agent stopped it (`stop()`, the bridge's `stop_persistent`)",
    "FORCED_STOP": "`stop(force=True)` during a call: the call is hung up first, and the event "
    "names it",
    "LOGOUT": "the softphone closed: any call is hung up, the platform told",
    "MEDIA_FAILED": "no RTP or RTCP arrived for `liveness_window` (2.5 s): the path is dead",
    "PLATFORM_DISCONNECTED": "the platform reported `DISCONNECTED`, sent `terminate`, or proposed "
    "a new session while ours was up",
    "PLATFORM_FAILED": "the platform reported `FAILED`",
}


def _grouped_edges(pairs: Iterable[tuple[str, str, str, str]]) -> list[Edge]:
    """Edges from ``(source, target, trigger, label line)``, one per source and target."""
    grouped: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for source, target, trigger, line in pairs:
        grouped.setdefault((source, target), []).append((trigger, line))
    return [
        Edge(source, target, tuple(t for t, _ in items), tuple(line for _, line in items))
        for (source, target), items in grouped.items()
    ]


def connection_states() -> str:
    """The phone's persistent-connection states: a diagram and a table, from ``TRANSITIONS``."""
    from crmphone.events import ConnectionState
    from crmphone.phone.session import TRANSITIONS, Trigger

    described = set(_TRIGGERS)
    actual = {trigger.name for trigger in Trigger}
    _require(
        described == actual,
        "crmphone.phone.session.Trigger changed; describe in docs/hooks/crmphone_docs.py "
        f"_TRIGGERS: {sorted(actual - described)}, remove: {sorted(described - actual)}",
    )
    diagram = state_diagram(
        [state.value for state in ConnectionState],
        _grouped_edges(
            (state.value, target.value, trigger.value, trigger.value)
            for (state, trigger), target in TRANSITIONS.items()
        ),
        initial=ConnectionState.IDLE.value,
        title="The persistent connection's states (crmphone.phone.session.TRANSITIONS)",
        ident="crmphone-connection-states",
    )
    rows: dict[tuple[Any, Any], list[str]] = {}
    for (state, trigger), target in TRANSITIONS.items():
        rows.setdefault((trigger, target), []).append(state.value)
    body = table(
        ["from", "trigger", "to", "when"],
        (
            [
                ", ".join(f"`{s}`" for s in froms),
                f"`{trigger.value}`",
                f"`{target.value}`",
                _TRIGGERS[trigger.name],
            ]
            for (trigger, target), froms in rows.items()
        ),
    )
    return f"{diagram}\n\n{body}\n"


def call_states() -> str:
    """The per-call state machine: a diagram and a table, from ``crmphone.calls.TRANSITIONS``."""
    from crmphone.calls import TRANSITIONS, CallState

    def events(kinds: Sequence[type]) -> str:
        return ", ".join(kind.__name__ for kind in kinds)

    diagram = state_diagram(
        [state.value for state in CallState],
        _grouped_edges(
            (state.value, target.value, step.value, f"{step.value}: {events(kinds)}")
            for (state, step), (target, kinds) in TRANSITIONS.items()
        ),
        initial=CallState.NEW.value,
        title="One agent leg's states and the events each step emits (crmphone.calls.TRANSITIONS)",
        ident="crmphone-call-states",
    )
    body = table(
        ["from", "step", "to", "events emitted, in order"],
        (
            [
                f"`{state.value}`",
                f"`{step.value}`",
                f"`{target.value}`",
                ", ".join(f"`{kind.__name__}`" for kind in kinds),
            ]
            for (state, step), (target, kinds) in TRANSITIONS.items()
        ),
    )
    return f"{diagram}\n\n{body}\n"


def call_event_order() -> str:
    """The order of one call's events, as the events module draws it."""
    import crmphone.events

    blocks = rst_code_blocks(crmphone.events.__doc__ or "")
    _require(len(blocks) == 1, "crmphone.events' docstring should draw one call's events once")
    return f"```text\n{blocks[0]}\n```\n"


def _event_rows(kinds: Iterable[type], base: type | None) -> list[list[str]]:
    import attrs

    inherited = {f.name for f in attrs.fields(base)} if base is not None else set()
    rows = []
    for kind in kinds:
        fields = [f"`{f.name}`" for f in attrs.fields(kind) if f.name not in inherited]
        first = (inspect.getdoc(kind) or "").split("\n\n")[0]
        rows.append(
            [
                f"`{kind.__name__}`",
                f"`{getattr(kind, 'name', '')}`",  # every event class has a stable name
                ", ".join(fields) or "—",
                rst_inline(" ".join(first.split())),
            ]
        )
    return rows


def call_events() -> str:
    """Every call event: class, stable name, its own fields, what it means."""
    import typing

    from crmphone.events import BaseCallEvent, CallEvent

    return (
        table(
            ["event", "`name`", "fields (besides the common ones)", "meaning"],
            _event_rows(typing.get_args(CallEvent), BaseCallEvent),
        )
        + "\n"
    )


def status_events() -> str:
    """The events that describe *now*: the phone's and the agent's presence."""
    import typing

    from crmphone.events import StatusEvent

    kinds = [
        k for union in typing.get_args(StatusEvent) for k in typing.get_args(union) or (union,)
    ]
    return table(["event", "`name`", "fields", "meaning"], _event_rows(kinds, None)) + "\n"


# ---------------------------------------------------------------------------------------------
# Adapters


def adapter_flow() -> str:
    """Which event makes which work and calls which hook, as ``crmphone.adapters.base`` draws it."""
    import crmphone.adapters.base as base

    blocks = rst_code_blocks(base.__doc__ or "")
    _require(len(blocks) == 1, "crmphone.adapters.base's docstring should draw one table")
    header, rule, *body = blocks[0].splitlines()
    # The drawing is a table whose columns the rule under the header marks (runs of ─).
    starts = [match.start() for match in re.finditer(r"─+", rule)]
    _require(len(starts) >= 2, "crmphone.adapters.base's table lost its column rule")

    def cells(line: str) -> list[str]:
        ends = [*starts[1:], None]
        return [line[start:end].strip() for start, end in zip(starts, ends, strict=True)]

    rows: list[list[list[str]]] = []  # each cell: its lines
    for line in body:
        row = [" ".join(cell.split()) for cell in cells(line)]
        if rows and not row[0]:  # a blank first cell continues the row above
            for lines, cell in zip(rows[-1], row, strict=True):
                lines.extend([cell] if cell else [])
        elif any(row):
            rows.append([[cell] if cell else [] for cell in row])
    hook = len(starts) - 1  # the last column names hooks: show them as code
    return (
        table(
            cells(header),
            (
                [
                    "<br>".join(f"`{line}`" if n == hook else line for line in lines)
                    for n, lines in enumerate(row)
                ]
                for row in rows
            ),
        )
        + "\n"
    )


def conformance_checks() -> str:
    """The conformance suite's checks and what each proves (their docstrings)."""
    from crmphone.testing import AdapterConformance

    checks = [
        (name, inspect.getdoc(member) or "")
        for name, member in vars(AdapterConformance).items()
        if name.startswith("test_") and callable(member)
    ]
    _require(bool(checks), "AdapterConformance has no test_ methods")
    return table(["check", "proves"], ([f"`{name}`", doc] for name, doc in checks)) + "\n"


def adapter_hooks() -> str:
    """Every public method of ``Adapter``, with the first line of its docstring."""
    from crmphone.adapters import Adapter

    rows = []
    for name, member in vars(Adapter).items():
        if name.startswith("_"):
            continue
        function = member.__func__ if isinstance(member, classmethod) else member
        if not callable(function):
            continue
        first = (inspect.getdoc(function) or "").split("\n\n")[0]
        rows.append([f"`{name}`", rst_inline(first)])
    return table(["method", "what it is for"], rows) + "\n"


# ---------------------------------------------------------------------------------------------
# The bridge


def bridge_messages() -> str:
    """The bridge protocol's frames, both ways, from ``crmphone.bridge.protocol``'s docstring."""
    import crmphone.bridge.protocol as protocol

    blocks = rst_code_blocks(protocol.__doc__ or "")
    _require(len(blocks) >= 2, "crmphone.bridge.protocol should show page→bridge and bridge→page")
    return (
        "**Page → bridge**\n\n"
        f"```text\n{blocks[0]}\n```\n\n"
        "**Bridge → page**\n\n"
        f"```text\n{blocks[1]}\n```\n"
    )


def bridge_errors() -> str:
    """The stable error codes of failed results, checked against ``ErrorCode``."""
    import crmphone.bridge.protocol as protocol

    tables = rst_tables(protocol.__doc__ or "")
    _require(len(tables) == 1, "crmphone.bridge.protocol's docstring should hold one table")
    rows = tables[0]
    codes = [row[0].strip("`") for row in rows]
    _require(
        codes == [code.value for code in protocol.ErrorCode],
        f"the error table in crmphone.bridge.protocol ({codes}) does not list ErrorCode in order",
    )
    return table(["code", "meaning"], rows) + "\n"


def _docstring_table(doc: str | None, what: str) -> str:
    tables = rst_tables(doc or "")
    _require(len(tables) == 1, f"{what}'s docstring should hold one table")
    header, *rows = tables[0]
    return table(header, rows) + "\n"


def bridge_socket() -> str:
    """A page's WebSocket, state by state, from ``crmphone.bridge.server``'s docstring."""
    import crmphone.bridge.server

    return _docstring_table(crmphone.bridge.server.__doc__, "crmphone.bridge.server")


def bridge_audience() -> str:
    """Which pages see which messages, from ``crmphone.bridging``'s docstring."""
    import crmphone.bridging

    return _docstring_table(crmphone.bridging.__doc__, "crmphone.bridging")


def bridge_commands() -> str:
    """The commands a page may send, with the fields each takes, from the command classes."""
    import attrs

    import crmphone.bridge.protocol as protocol

    classes = {
        "answer": protocol.Answer,
        "hangup": protocol.Hangup,
        "mute": protocol.Mute,
        "hold": protocol.Hold,
        "dial": protocol.Dial,
        "stop_persistent": protocol.StopPersistent,
    }
    _require(
        sorted(classes) == sorted(protocol.COMMANDS),
        f"crmphone.bridge.protocol.COMMANDS is now {protocol.COMMANDS}; map each to its class in "
        "docs/hooks/crmphone_docs.py bridge_commands",
    )
    rows = []
    for name in protocol.COMMANDS:
        kind = classes[name]
        fields = []
        for field in attrs.fields(kind):
            optional = field.default is not attrs.NOTHING
            fields.append(f"`{field.name}`" + (" (optional)" if optional else ""))
        doc = " ".join((inspect.getdoc(kind) or "").split())
        rows.append([f"`{name}`", ", ".join(fields) or "—", rst_inline(doc)])
    return table(["command", "fields", "does"], rows) + "\n"


# ---------------------------------------------------------------------------------------------
# Operations


def metrics() -> str:
    """The connector's Prometheus series, from ``ConnectorMetrics``."""
    from crmphone.health import ConnectorMetrics, Counter, Gauge

    registry = ConnectorMetrics()
    rows = [
        [
            f"`{family.name}`",
            family.kind,
            ", ".join(f"`{n}`" for n in family.label_names) or "—",
            family.help,
        ]
        for family in vars(registry).values()
        if isinstance(family, Counter | Gauge)
    ]
    _require(bool(rows), "ConnectorMetrics defines no series")
    return table(["metric", "type", "labels", "what it counts"], rows) + "\n"


def down_reasons() -> str:
    """Why a persistent connection ended: ``DownReason`` and its members' docstrings."""
    from crmphone.events import DownReason

    docs = _member_docs(DownReason)
    _require(
        set(docs) == {reason.name for reason in DownReason},
        "every DownReason member needs a docstring (crmphone.events)",
    )
    return (
        table(
            ["`reason`", "meaning"],
            ([f"`{reason.value}`", rst_inline(docs[reason.name])] for reason in DownReason),
        )
        + "\n"
    )


def _member_docs(kind: type[enum.Enum]) -> dict[str, str]:
    """The docstrings written under an enum's members (``NAME = value`` then a string)."""
    import ast

    source = textwrap.dedent(inspect.getsource(kind))
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    docs: dict[str, str] = {}
    for statement, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.targets[0].id] = " ".join(following.value.value.split())
    return docs


def error_tree() -> str:
    """crmphone's exception tree, from the classes themselves (every crmphone module imported).

    Each line's words come from the tree ``crmphone.errors`` draws in its docstring when it names
    the class, else from the class's own docstring. The sandbox's server-side errors are left out.
    """
    import importlib
    import pkgutil

    import crmphone
    import crmphone.errors as errors

    for module in pkgutil.walk_packages(crmphone.__path__, "crmphone."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    drawn: dict[str, str] = {}
    for block in rst_code_blocks(errors.__doc__ or ""):
        for line in block.splitlines():
            match = re.match(r"^[\s│├└─]*(?:\w+\.)?(?P<name>\w+)\s{2,}(?P<words>.+)$", line)
            if match:
                drawn[match["name"]] = match["words"].strip()

    order = {name: index for index, name in enumerate(drawn)}
    rows: list[tuple[str, str]] = [("CrmphoneError", "")]

    def walk(kind: type, prefix: str) -> None:
        subclasses: list[type] = kind.__subclasses__()
        children = sorted(
            (
                child
                for child in subclasses
                if not child.__name__.startswith("_")
                and not child.__module__.startswith("crmphone.sandbox")
            ),
            key=lambda child: (order.get(child.__name__, len(order)), child.__name__),
        )
        for index, child in enumerate(children):
            last = index == len(children) - 1
            module = child.__module__.removeprefix("crmphone.")
            name = child.__name__ if module == "errors" else f"{module}.{child.__name__}"
            doc = (inspect.getdoc(child) or "").split("\n")[0].rstrip(".")
            words = drawn.get(child.__name__) or doc[:1].lower() + doc[1:]
            rows.append((f"{prefix}{'└── ' if last else '├── '}{name}", words.replace("``", "")))
            walk(child, prefix + ("    " if last else "│   "))

    walk(errors.CrmphoneError, "")
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {words}".rstrip() for label, words in rows]
    return "```text\n" + "\n".join(lines) + "\n```\n"


def module_layers() -> str:
    """crmphone's modules in layers, from what each one imports (read from the source)."""
    import ast
    from pathlib import Path

    import crmphone

    root = Path(crmphone.__file__).parent
    imports: dict[str, set[str]] = {}
    docs: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] in ("__init__", "__main__"):
            continue  # the package's front door and `python -m`: they sit on top of everything
        unit = parts[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if len(parts) == 1 or parts[1:] == ("__init__",):
            docs[unit] = (ast.get_docstring(tree) or "").split("\n\n")[0]
        found = imports.setdefault(unit, set())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("crmphone.") and name.split(".")[1] != unit:
                    found.add(name.split(".")[1])

    layer: dict[str, int] = {}

    def depth(unit: str, seen: frozenset[str]) -> int:
        if unit not in layer:
            below = [depth(u, seen | {unit}) for u in imports.get(unit, ()) if u not in seen]
            layer[unit] = 1 + max(below, default=-1)
        return layer[unit]

    for unit in imports:
        depth(unit, frozenset())
    ordered = sorted(imports, key=lambda u: (-layer[u], u))
    rows = [
        [
            str(layer[u]),
            f"`crmphone.{u}`",
            rst_inline(" ".join(docs.get(u, "").split())),
            ", ".join(f"`{d}`" for d in sorted(imports[u], key=lambda d: (-layer.get(d, 0), d)))
            or "—",
        ]
        for u in ordered
    ]
    mutual = sorted(
        f"`{a}` ↔ `{b}`" for a in imports for b in imports[a] if a < b and a in imports.get(b, ())
    )
    note = (
        "\nModules that import each other (their layers are approximate): "
        + ", ".join(mutual)
        + ".\n"
        if mutual
        else ""
    )
    return table(["layer", "module", "what it is", "imports from crmphone"], rows) + "\n" + note


GENERATED: dict[str, Callable[[], str]] = {
    "connection-states": connection_states,
    "call-states": call_states,
    "call-event-order": call_event_order,
    "call-events": call_events,
    "status-events": status_events,
    "adapter-flow": adapter_flow,
    "conformance-checks": conformance_checks,
    "adapter-hooks": adapter_hooks,
    "bridge-messages": bridge_messages,
    "bridge-errors": bridge_errors,
    "bridge-socket": bridge_socket,
    "bridge-audience": bridge_audience,
    "bridge-commands": bridge_commands,
    "metrics": metrics,
    "down-reasons": down_reasons,
    "configuration": configuration_reference,
    "module-layers": module_layers,
    "error-tree": error_tree,
}
"""What ``{crmphone:NAME}`` in a page becomes: NAME → the function that makes it."""


# ---------------------------------------------------------------------------------------------
# READMEs written for GitHub, included with snippets


_LIST_ITEM = re.compile(r"^(?P<marker>[-*+]|\d+[.)])(?P<gap> +)\S")
_FENCE = re.compile(r"^(```|~~~)")
LISTS_BEGIN = "<!-- commonmark lists -->"
LISTS_END = "<!-- /commonmark lists -->"


def commonmark_lists(lines: Sequence[str]) -> list[str]:
    """Lines of CommonMark nested lists re-indented for Python-Markdown.

    GitHub nests a list item's content at the column of its text (2 or 3 spaces); Python-Markdown
    wants 4 spaces a level, or it flattens sub-lists and cuts a list at a code block inside it.
    Each line inside an item keeps its position relative to the item's text, at 4 a level.
    """
    # Open items, innermost last: (content column in the source, content column written).
    items: list[tuple[int, int]] = []
    fence: str | None = None
    result: list[str] = []
    for line in lines:
        text = line.lstrip(" ")
        if not text:
            result.append(line)
            continue
        indent = len(line) - len(text)
        if fence is None:
            while items and indent < items[-1][0]:
                match = _LIST_ITEM.match(text)
                if match and indent >= items[-1][0] - len(match["marker"]) - len(match["gap"]):
                    break  # a sibling of the innermost item
                items.pop()
            match = _LIST_ITEM.match(text)
            if match:
                if items and indent < items[-1][0]:
                    items.pop()  # the sibling replaces it
                written = items[-1][1] if items else indent
                items.append((indent + len(match["marker"]) + len(match["gap"]), written + 4))
                result.append(" " * written + text)
                continue
        if items and indent >= items[-1][0]:
            result.append(" " * (items[-1][1] + indent - items[-1][0]) + text)
        else:
            result.append(line)
        if _FENCE.match(text):
            fence = None if fence is not None and text.startswith(fence) else (fence or text[:3])
    return result


class _CommonmarkLists(Preprocessor):  # type: ignore[misc]
    """Re-indents the lists between :data:`LISTS_BEGIN` and :data:`LISTS_END` (after snippets)."""

    def run(self, lines: list[str]) -> list[str]:
        output: list[str] = []
        region: list[str] | None = None
        for line in lines:
            if line.strip() == LISTS_BEGIN:
                region = []
            elif line.strip() == LISTS_END and region is not None:
                output += commonmark_lists(region)
                region = None
            elif region is not None:
                region.append(line)
            else:
                output.append(line)
        return output + (region or [])


class _CommonmarkListsExtension(Extension):  # type: ignore[misc]
    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 - Python-Markdown's name
        # Snippets inserts the files at priority 32: this runs right after it.
        md.preprocessors.register(_CommonmarkLists(md), "crmphone_commonmark_lists", 31)


def on_config(config: Any, **_: Any) -> Any:
    """Add the list re-indenting for included READMEs to the site's Markdown extensions."""
    config.markdown_extensions.append(_CommonmarkListsExtension())
    return config


_HTML_ROLE = re.compile(r":[a-z]+:<code>(?P<tilde>~?)(?P<target>[\w.]+)</code>")


def on_page_content(html: str, **_: Any) -> str:
    """Show the Sphinx roles mkdocstrings leaves in docstrings (``:meth:`~a.B.c```) as code,
    linked to the object's reference when the docs document it (autorefs resolves the rest)."""

    def role(match: re.Match[str]) -> str:
        target = match["target"]
        shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
        return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'

    # The code under a reST ``.. code-block::`` already renders as code: drop the directive.
    html = re.sub(r"<p>\.\. code-block:: *[\w-]*</p>\n?", "", html)
    return _HTML_ROLE.sub(role, html)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace every ``{crmphone:NAME}`` line of a page with its generated markdown."""

    def generate(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in GENERATED:
            raise PluginError(
                f"{page.file.src_path}: {{crmphone:{name}}} names nothing; known: "
                + ", ".join(sorted(GENERATED))
            )
        return GENERATED[name]()

    return _DIRECTIVE.sub(generate, markdown)
