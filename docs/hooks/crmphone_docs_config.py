"""The configuration reference, generated from ``crmphone.config``: every table and key of
``connector.toml`` with its type, default and meaning.

Nothing here lists keys by hand. The code is asked:

* **Which tables and keys exist**: the parser itself, which names the keys it allows when it
  meets one it does not know (``parse_config("[outbox]\\n__probe__ = 1")``). A table whose parser
  takes any key (``[[adapters]]``: the adapter's own options) is found out by the field the probe
  lands in; its fixed keys are those the parser checks (a value of the wrong type is refused
  naming the key).
* **Types**: the annotations of the ``@attrs.frozen`` class that holds the table
  (``ConnectorConfig.<table>``), enums written out as their choices.
* **Defaults**: what the parser makes of a minimal file, so they are the defaults that apply.
* **Meanings**: the attribute docstrings in ``crmphone/config.py`` (the string under each field).

A key the parser takes with no same-named field needs an entry in :data:`KEYS_WITHOUT_FIELD`, and
a key without a docstring fails the build: document it in ``crmphone/config.py``.
"""

from __future__ import annotations

import ast
import enum
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from mkdocs.exceptions import PluginError

__all__ = ["KEYS_WITHOUT_FIELD", "configuration_reference"]

_PROBE = "__probe__"
_ALLOWED = re.compile(r"\((?:keys|sections) allowed here: (?P<keys>[^)]*)\)")
_BASE = Path("/connector-dir")

KEYS_WITHOUT_FIELD: dict[str, tuple[str, str]] = {
    "platform.region": (
        "string",
        (
            "Genesys Cloud: the region's domain, such as `mypurecloud.de` or `usw2.pure.cloud` "
            "(the `api.` and `login.` hosts are derived from it: "
            "`crmphone.platform.resolve_region`); instead of `api_base` and `login_base`."
        ),
    ),
}
"""Keys the parser takes that no config field of the same name holds: type and meaning."""


def _fail(message: str) -> typing.NoReturn:
    raise PluginError(f"crmphone docs, configuration reference: {message}")


def _parse(text: str, environ: Mapping[str, str] | None = None) -> Any:
    from crmphone.config import parse_config

    return parse_config(text, base_dir=_BASE, environ=environ or {})


def _allowed(text: str) -> list[str] | None:
    """The keys the parser lists as allowed when ``text`` has an unknown one; None if it took it."""
    from crmphone.errors import ConfigError

    try:
        _parse(text)
    except ConfigError as exc:
        match = _ALLOWED.search(str(exc))
        if match is None:
            _fail(f"the parser refused {text!r} without listing what it allows: {exc}")
        return [key.strip() for key in match["keys"].split(",")]
    return None


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a class's fields (``name: type = default`` then a string)."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    docs: dict[str, str] = {}
    for statement, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(inspect.cleandoc(following.value.value).split())
    return docs


def _rst(text: str) -> str:
    def role(match: re.Match[str]) -> str:
        target = match["target"]
        return f"`{target.rsplit('.', 1)[-1] if match['tilde'] else target}`"

    return re.sub(r":[a-z]+:`(?P<tilde>~?)(?P<target>[^`]+)`", role, text.replace("``", "`"))


def type_name(annotation: Any) -> str:
    """A TOML-minded name for a field's type."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        names = [type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(dict.fromkeys(names))
    if origin is tuple:
        return f"array of {type_name(typing.get_args(annotation)[0])}s"
    if origin is not None and issubclass(origin, Mapping):
        args = typing.get_args(annotation)
        return f"table of {type_name(args[1])}s" if args else "table"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " or ".join(f'`"{member.value}"`' for member in annotation)
    plain: dict[Any, str] = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        Path: "path",
    }
    if annotation in plain:
        return plain[annotation]
    return str(getattr(annotation, "__name__", annotation))


def default_text(value: Any) -> str:
    """How a parsed default reads in TOML."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, enum.Enum):
        return f'`"{value.value}"`'
    if isinstance(value, Path):
        shown = value.relative_to(_BASE) if value.is_relative_to(_BASE) else value
        return f'`"{shown}"`'
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(f'"{item}"' for item in value) + "]`"
    if isinstance(value, Mapping) and not value:
        return "empty"
    return f"`{value}`"


@attrs.frozen
class _Key:
    name: str
    type: str
    default: str
    meaning: str
    only: str = ""


@attrs.frozen
class _Table:
    name: str
    array: bool
    intro: str
    keys: tuple[_Key, ...]
    other_keys: str | None = None


def _section_class(name: str) -> tuple[type | None, bool]:
    """The class holding table ``name`` and whether the table is an array of tables."""
    from crmphone.config import ConnectorConfig

    hints = typing.get_type_hints(ConnectorConfig)
    if name not in hints:
        return None, False
    annotation = hints[name]
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):  # optional table
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0], True
    return annotation, False


def _minimal(name: str) -> tuple[Any, str]:
    """Table ``name`` as the parser makes it of the least it accepts, and its required key."""
    from crmphone.errors import ConfigError

    value = getattr(_parse(""), name)
    if value is not None:
        return value, ""
    try:
        return getattr(_parse(f"[{name}]\n"), name), ""
    except ConfigError as exc:
        required = (exc.key or "").removeprefix(f"{name}.")
        if not required or "." in required:
            raise
    return getattr(_parse(f'[{name}]\n{required} = "probe"\n'), name), required


def _closed_table(name: str, cls: type) -> _Table:
    """A table whose parser refuses unknown keys: its keys are what the parser lists."""
    minimal, required = _minimal(name)
    hints = typing.get_type_hints(cls)
    docs = attribute_docs(cls)
    kinds: dict[str, list[str]] = {}
    kind_type = hints.get("kind")
    variants: list[tuple[str, str]] = [("", "")]
    if isinstance(kind_type, type) and issubclass(kind_type, enum.Enum):
        variants = [(f'kind = "{m.value}"\n', str(m.value)) for m in kind_type]
    for prefix, variant in variants:
        needed = f'{required} = "probe"\n' if required else ""
        allowed = _allowed(f"[{name}]\n{prefix}{needed}{_PROBE} = 1\n")
        if allowed is None:
            _fail(f"[{name}] took an unknown key")
        for key in allowed:
            kinds.setdefault(key, []).append(variant)
    keys = []
    for key, in_variants in kinds.items():
        only = "" if len(in_variants) == len(variants) else ", ".join(in_variants)
        if key in hints:
            meaning = docs.get(key)
            if not meaning:
                _fail(f"{name}.{key} has no docstring: document {cls.__name__}.{key} in config.py")
            value = getattr(minimal, key)
            if only and only != str(getattr(minimal, "kind", "")):
                value = None
            shown = "required" if key == required else default_text(value)
            keys.append(_Key(key, type_name(hints[key]), shown, meaning, only))
        elif f"{name}.{key}" in KEYS_WITHOUT_FIELD:
            kind, meaning = KEYS_WITHOUT_FIELD[f"{name}.{key}"]
            keys.append(_Key(key, kind, "—", meaning, only))
        else:
            _fail(
                f"the parser takes {name}.{key}, which no field of {cls.__name__} holds: describe "
                "it in docs/hooks/crmphone_docs_config.py KEYS_WITHOUT_FIELD"
            )
    return _Table(name, False, _intro(cls), tuple(keys))


def _open_table(name: str, cls: type) -> _Table:
    """An array of tables that takes any key: its fixed keys are the ones the parser checks."""
    from crmphone.errors import ConfigError

    hints = typing.get_type_hints(cls)
    docs = attribute_docs(cls)
    # An empty entry is refused naming the key it cannot do without.
    try:
        _parse(f"[[{name}]]\n")
    except ConfigError as exc:
        required = (exc.key or "").rsplit(".", 1)[-1]
    else:
        required = ""
    if required not in hints:
        _fail(f"an empty [[{name}]] should be refused naming a required key")
    base = f'[[{name}]]\n{required} = "probe"\n'
    minimal = _first(_parse(f"{base}{_PROBE} = 1\n"), name)
    catch_all = next(
        (
            f
            for f in hints
            if isinstance(getattr(minimal, f), Mapping) and _PROBE in getattr(minimal, f)
        ),
        None,
    )
    if catch_all is None:
        _fail(f"[[{name}]] took an unknown key but no field holds it")
    keys = []
    for field in hints:
        if field == catch_all:
            continue
        if field != required:
            # A table where the field wants something else: refused naming the key if it is one.
            try:
                parsed = _first(_parse(f"{base}{field} = {{ x = 1 }}\n"), name)
            except ConfigError as exc:
                if not (exc.key or "").endswith(f".{field}"):
                    raise
            else:
                if field in getattr(parsed, catch_all):
                    continue  # not a key: the probe went to the catch-all
        if not docs.get(field):
            _fail(f"{name}.{field} has no docstring: document {cls.__name__}.{field} in config.py")
        shown = "required" if field == required else default_text(getattr(minimal, field))
        if field != required and getattr(minimal, field) == "probe":
            shown = f"the `{required}`"  # it took the value of the required key
        keys.append(_Key(field, type_name(hints[field]), shown, docs[field]))
    return _Table(name, True, _intro(cls), tuple(keys), docs.get(catch_all, ""))


def _first(config: Any, name: str) -> Any:
    return getattr(config, name)[0]


def _intro(cls: type) -> str:
    """The first paragraph of the class's docstring, without its leading ``[table]:``."""
    doc = inspect.getdoc(cls) or ""
    text = re.sub(r"^``\[+\w+\]+``:\s*", "", " ".join(doc.split("\n\n")[0].split()))
    return _rst(text[:1].upper() + text[1:])


def _orphan_table(name: str) -> _Table:
    """A table no class holds: its keys live on ``ConnectorConfig`` as ``<table>_<key>``."""
    from crmphone.config import ConnectorConfig

    allowed = _allowed(f"[{name}]\n{_PROBE} = 1\n")
    if allowed is None:
        _fail(f"[{name}] took an unknown key")
    hints = typing.get_type_hints(ConnectorConfig)
    docs = attribute_docs(ConnectorConfig)
    minimal = _parse("")
    keys = []
    for key in allowed:
        field = f"{name}_{key}"
        if field not in hints or not docs.get(field):
            _fail(f"{name}.{key}: document ConnectorConfig.{field} in config.py")
        keys.append(
            _Key(key, type_name(hints[field]), default_text(getattr(minimal, field)), docs[field])
        )
    first = docs.get(f"{name}_{allowed[0]}", "").split(". ")[0]
    intro = re.sub(r"^``\[\w+\][^`]*``:\s*", "", first)
    return _Table(name, False, _rst(intro[:1].upper() + intro[1:] + "."), tuple(keys))


def tables() -> list[_Table]:
    """Every table of ``connector.toml``, in the parser's order, with its keys."""
    sections = _allowed(f"{_PROBE} = 1\n")
    if sections is None:
        _fail("the parser took an unknown top-level name")
    result = []
    for name in sections:
        cls, array = _section_class(name)
        if cls is None:
            result.append(_orphan_table(name))
        elif array:
            result.append(_open_table(name, cls))
        else:
            result.append(_closed_table(name, cls))
    return result


def configuration_reference() -> str:
    """Markdown: one section per table, one row per key."""
    parts = []
    for table in tables():
        heading = f"[[{table.name}]]" if table.array else f"[{table.name}]"
        rows = [
            "| key | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for key in table.keys:
            only = f" ({key.only} only)" if key.only else ""
            meaning = _rst(key.meaning).replace("|", "\\|")
            rows.append(f"| `{key.name}` | {key.type} | {key.default} | {meaning}{only} |")
        if table.other_keys is not None:
            rows.append(f"| *any other key* | | | {_rst(table.other_keys)} |")
        parts.append(f"## `{heading}`\n\n{table.intro}\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)
