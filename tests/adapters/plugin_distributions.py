"""Throwaway plugin distributions on disk, found by importlib.metadata like installed ones.

Each distribution is a ``*.dist-info`` directory (METADATA, entry_points.txt) beside its module,
in a directory of its own that the test puts on ``sys.path``: exactly what an installed wheel
leaves in site-packages, without installing anything.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Mapping
from pathlib import Path

import attrs
import pytest

GOOD_ADAPTER = """
from crmphone.adapters.base import Adapter, CallLog


class {cls}(Adapter):
    description = "A plugin that loads"

    async def log_call(self, log: CallLog) -> None:
        pass
"""

BROKEN_IMPORT = """
import crmphone_vendor_sdk_that_is_not_installed  # noqa: F401
"""

NOT_AN_ADAPTER = """
class {cls}:
    description = "looks like one, but is not an Adapter"
"""

ABSTRACT_ADAPTER = """
from crmphone.adapters.base import Adapter


class {cls}(Adapter):
    description = "forgot log_call"
"""


@attrs.define
class PluginSite:
    """Builds distributions under ``root`` and puts each on ``sys.path`` once it is complete."""

    root: Path
    monkeypatch: pytest.MonkeyPatch
    #: A suffix that keeps this test's module names apart from every other test's.
    token: str = attrs.field(factory=lambda: uuid.uuid4().hex[:8])

    def module_name(self, stem: str) -> str:
        """A module name unique to this test."""
        return f"{stem}_{self.token}"

    def distribution(
        self,
        name: str,
        *,
        version: str = "1.0",
        entry_points: Mapping[str, str],
        modules: Mapping[str, str],
    ) -> Path:
        """Write distribution ``name`` with ``entry_points`` (name → ``module:attr``) and
        ``modules`` (module name → source), then put its directory on ``sys.path``."""
        # One directory per distribution: importlib.metadata caches a directory's listing, so
        # a directory is put on sys.path only once everything in it is written.
        directory = self.root / f"{name}-{version}"
        dist_info = directory / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = [f"{ep_name} = {value}" for ep_name, value in entry_points.items()]
        (dist_info / "entry_points.txt").write_text(
            "[crmphone.adapters]\n" + "\n".join(lines) + "\n", encoding="utf-8"
        )
        for module, source in modules.items():
            (directory / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        self.monkeypatch.syspath_prepend(str(directory))
        return directory

    def forget_modules(self) -> None:
        """Drop this test's modules from ``sys.modules`` (the next test starts clean)."""
        for name in [name for name in sys.modules if name.endswith(self.token)]:
            del sys.modules[name]
