"""Finding adapter plugins: installed distributions with an entry point in ``crmphone.adapters``.

A plugin is its own distribution. It declares its :class:`~crmphone.adapters.base.Adapter`
subclass under the entry point group :data:`ENTRY_POINT_GROUP`; the entry point's name is what a
connector's configuration calls it (``[[adapters]] name = "webhook"``):

.. code-block:: toml

    [project.entry-points."crmphone.adapters"]
    webhook = "crmphone_webhook:WebhookAdapter"

The core never imports a plugin it was not asked for. :func:`installed_plugins` lists the entry
points from the distributions' metadata alone (``load=True`` imports each, for
``crmphone plugins``); :func:`load_adapter_class` imports exactly one, after checking it against
the configuration's allow list. Every failure is a :class:`~crmphone.errors.PluginError` that says
which of these it is and what fixes it:

.. code-block:: text

    not allowed       the name is not in the allow list      → add it to the allow list
    not installed     no distribution provides the name      → pip install crmphone-<name>
    ambiguous         two distributions provide the name     → uninstall one of them
    broken            importing the entry point failed       → the original error is chained
    not an adapter    it names something else than an Adapter subclass, or an abstract one
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import json
import sys
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs

from crmphone.errors import PluginError

from .base import Adapter

__all__ = [
    "ALLOW_KEY",
    "ENTRY_POINT_GROUP",
    "InstalledPlugin",
    "installed_plugins",
    "load_adapter_class",
]

#: The entry point group an adapter plugin declares its class under.
ENTRY_POINT_GROUP = "crmphone.adapters"

#: The configuration key of the allow list, as error messages name it.
ALLOW_KEY = "plugins.allow"


@attrs.frozen
class InstalledPlugin:
    """One entry point of group ``crmphone.adapters``, and the distribution that declares it.

    ``name`` is the entry point's name (what ``[[adapters]] name`` refers to), ``value`` its
    target (``module:Class``). ``location`` says where the code comes from: the module's file (or,
    when it cannot be found without importing, the distribution's location). ``description`` and
    ``error`` are filled in only when the plugin was loaded (``installed_plugins(load=True)``),
    except that a name two distributions provide is an ``error`` without loading.
    """

    name: str
    value: str
    distribution: str | None
    version: str | None
    location: str | None
    description: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """No error is known (for a plugin listed without loading: none was looked for)."""
        return self.error is None

    @property
    def source(self) -> str:
        """``distribution version``, or ``unknown distribution`` when the metadata lacks one."""
        return _describe(self.distribution, self.version)

    def to_json(self) -> dict[str, Any]:
        """The plugin as JSON-ready data (``crmphone plugins --json``)."""
        return {
            "name": self.name,
            "value": self.value,
            "distribution": self.distribution,
            "version": self.version,
            "location": self.location,
            "status": "ok" if self.ok else "error",
            "description": self.description,
            "error": self.error,
        }


def installed_plugins(
    *, load: bool = False, names: Collection[str] | None = None
) -> tuple[InstalledPlugin, ...]:
    """Every entry point of group ``crmphone.adapters``, sorted by name then distribution.

    Without ``load`` nothing is imported: the list comes from the distributions' metadata.
    With ``load=True`` each plugin is imported to fill in its ``description``, or its ``error``
    when it cannot be loaded; a broken plugin is reported, never raised. ``names`` limits the
    list (and what is loaded) to those entry point names.
    """
    every = list(_entry_points())
    listed = sorted(
        (ep for ep in every if names is None or ep.name in names),
        key=lambda ep: (ep.name, _distribution_name(ep) or "", ep.value),
    )
    plugins = []
    for entry_point in listed:
        description = error = None
        rivals = _rivals(entry_point, every)
        if rivals:
            error = _ambiguous_message(entry_point.name, [entry_point, *rivals])
        elif load:
            try:
                adapter_class = _load(entry_point)
            except PluginError as exc:
                error = str(exc)
            else:
                description = adapter_class.description or None
        plugins.append(
            InstalledPlugin(
                name=entry_point.name,
                value=entry_point.value,
                distribution=_distribution_name(entry_point),
                version=_distribution_version(entry_point),
                location=_location(entry_point),
                description=description,
                error=error,
            )
        )
    return tuple(plugins)


def load_adapter_class(
    name: str,
    *,
    allow: Collection[str] | None = None,
    key: str | None = "adapters.name",
) -> type[Adapter]:
    """Import the adapter class of the plugin called ``name`` and return it.

    ``allow``: the names the configuration allows (None: any installed plugin); a name outside
    it is refused before anything is imported. ``key``: the configuration key that named the
    plugin, for error messages. Only this one plugin is imported.

    :raises PluginError: the plugin is not allowed, not installed, provided twice, fails to import
        (the original exception is chained), or is not an :class:`Adapter` subclass.
    """
    if allow is not None and name not in allow:
        allowed = ", ".join(sorted(allow)) or "nothing"
        raise PluginError(
            f'adapter plugin "{name}" is not allowed (allowed: {allowed}); '
            f'add "{name}" to the {ALLOW_KEY} list to use it',
            plugin=name,
            key=ALLOW_KEY,
        )
    every = list(_entry_points())
    matching = [ep for ep in every if ep.name == name]
    if not matching:
        installed = ", ".join(sorted({ep.name for ep in every})) or "none"
        raise PluginError(
            f'no adapter plugin named "{name}" is installed (installed: {installed}); '
            f"check the spelling, or install it, e.g. `pip install crmphone-{name}`",
            plugin=name,
            key=key,
        )
    if len(matching) > 1:
        raise PluginError(_ambiguous_message(name, matching), plugin=name, key=key)
    return _load(matching[0], key=key)


# ---------------------------------------------------------------------------------------------


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    # entry_points() already drops a distribution shadowed by one of the same name earlier on
    # sys.path (what the import system would do too), so what remains twice is a real conflict.
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _load(entry_point: importlib.metadata.EntryPoint, *, key: str | None = None) -> type[Adapter]:
    """Import one entry point and check that it names a concrete Adapter subclass."""
    name, value = entry_point.name, entry_point.value
    origin = _describe(_distribution_name(entry_point), _distribution_version(entry_point))
    try:
        loaded = entry_point.load()
    except Exception as exc:
        # A plugin's import can fail in any way its code can; all of it is "broken plugin".
        raise PluginError(
            f'adapter plugin "{name}" ({origin}, entry point {value}) fails to import: '
            f"{type(exc).__name__}: {exc}; fix or reinstall that distribution, or remove it",
            plugin=name,
            key=key,
        ) from exc
    if not (inspect.isclass(loaded) and issubclass(loaded, Adapter)):
        raise PluginError(
            f'adapter plugin "{name}" ({origin}) names {value}, which is {_what(loaded)}, '
            f"not a subclass of crmphone.adapters.base.Adapter; its entry point must name the "
            f"plugin's Adapter class",
            plugin=name,
            key=key,
        )
    if inspect.isabstract(loaded):
        missing = ", ".join(sorted(getattr(loaded, "__abstractmethods__", ())))
        raise PluginError(
            f'adapter plugin "{name}" ({origin}) names {value}, an abstract Adapter that does '
            f"not implement {missing}; the plugin must implement them",
            plugin=name,
            key=key,
        )
    return loaded


def _rivals(
    entry_point: importlib.metadata.EntryPoint, every: Iterable[importlib.metadata.EntryPoint]
) -> list[importlib.metadata.EntryPoint]:
    return [ep for ep in every if ep.name == entry_point.name and ep is not entry_point]


def _ambiguous_message(name: str, providers: Iterable[importlib.metadata.EntryPoint]) -> str:
    each = " and ".join(
        sorted(
            f"{_describe(_distribution_name(ep), _distribution_version(ep))} ({ep.value})"
            for ep in providers
        )
    )
    return (
        f'adapter plugin "{name}" is provided by more than one distribution: {each}; '
        f"uninstall all but one of them"
    )


def _describe(distribution: str | None, version: str | None) -> str:
    if distribution is None:
        return "unknown distribution"
    return f"{distribution} {version}" if version else distribution


def _what(value: object) -> str:
    if inspect.isclass(value):
        return f"the class {value.__module__}.{value.__qualname__}"
    return f"an instance of {type(value).__qualname__}"


def _distribution_name(entry_point: importlib.metadata.EntryPoint) -> str | None:
    dist = entry_point.dist
    if dist is None:
        return None
    name = dist.metadata["Name"]
    return str(name) if name else None


def _distribution_version(entry_point: importlib.metadata.EntryPoint) -> str | None:
    dist = entry_point.dist
    return None if dist is None else dist.version


def _location(entry_point: importlib.metadata.EntryPoint) -> str | None:
    """Where the entry point's module is (or would be imported from), without importing it."""
    module = sys.modules.get(entry_point.module)
    file = getattr(module, "__file__", None)
    if file:
        return str(file)
    found = _find_module_file(entry_point.module)
    if found is not None:
        return found
    dist = entry_point.dist
    if dist is None:
        return None
    return _editable_source(dist) or str(dist.locate_file(""))


def _find_module_file(module: str) -> str | None:
    """The file ``module`` would be imported from, found without running any module's code.

    ``find_spec`` of a dotted name would import its parent packages, so only the top-level
    package is looked up and the rest of the path is followed on disk.
    """
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return spec.origin if spec.has_location and spec.origin else None
    for directory in spec.submodule_search_locations or ():
        base = Path(directory, *rest[:-1])
        for candidate in (base / f"{rest[-1]}.py", base / rest[-1] / "__init__.py"):
            if candidate.is_file():
                return str(candidate)
    return None


def _editable_source(dist: importlib.metadata.Distribution) -> str | None:
    """The source directory of an editable install (PEP 610 ``direct_url.json``), if it is one."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        direct_url = json.loads(text)
    except ValueError:
        return None
    url = direct_url.get("url") if isinstance(direct_url, dict) else None
    if not isinstance(url, str) or not url.startswith("file://"):
        return None
    return unquote(urlsplit(url).path)
