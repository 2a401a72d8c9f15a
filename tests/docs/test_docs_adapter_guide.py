"""The plugin author guide keeps up with the adapter contract and the example it is built from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crmphone.adapters import Adapter
from crmphone.testing import AdapterConformance

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guides" / "write-an-adapter.md"
# `--8<-- "path:start:end"`, inline or in the block form (path alone on the next line).
_RANGE = re.compile(r"(?P<path>examples/[^\s\":]+):(?P<start>\d+):(?P<end>\d+)")


def _hooks() -> list[str]:
    """The public methods of the adapter base class: every one is part of the contract."""
    return [
        name
        for name, member in vars(Adapter).items()
        if not name.startswith("_")
        and callable(member.__func__ if isinstance(member, classmethod) else member)
    ]


def test_the_contract_has_hooks() -> None:
    """The hook list the next test checks is not empty (it would pass vacuously)."""
    assert {"log_call", "lookup_caller", "screen_pop", "from_options"} <= set(_hooks())


@pytest.mark.parametrize("hook", _hooks())
def test_every_adapter_hook_is_explained_in_the_guide(hook: str) -> None:
    """Each public method of Adapter is named in the guide's own text, not only in generated parts."""
    text = GUIDE.read_text(encoding="utf-8")
    assert re.search(rf"`{hook}\(|`{hook}`|`Adapter\.{hook}\(", text), (
        f"Adapter.{hook} is not explained in {GUIDE.relative_to(ROOT)}: say when it is called "
        "and what it is for"
    )


def test_every_conformance_check_has_a_docstring() -> None:
    """The guide's table of checks is made from their docstrings, so each one needs one."""
    checks = [name for name in vars(AdapterConformance) if name.startswith("test_")]
    assert checks
    for name in checks:
        assert (getattr(AdapterConformance, name).__doc__ or "").strip(), name


def test_included_line_ranges_still_frame_whole_blocks() -> None:
    """Each line range the guide includes from the example starts a block and ends where it ends."""
    ranges = _RANGE.findall(GUIDE.read_text(encoding="utf-8"))
    assert ranges, "the guide includes no line ranges (update this test)"
    for path, start, end in ranges:
        lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
        first, last = int(start), int(end)
        opening = lines[first - 1]
        assert opening.strip(), f"{path}:{first} is blank: the range no longer starts a block"
        indent = len(opening) - len(opening.lstrip())
        before = lines[first - 2] if first >= 2 else ""
        assert not before.strip() or len(before) - len(before.lstrip()) <= indent, (
            f"{path}:{first} is in the middle of a block"
        )
        after = lines[last] if last < len(lines) else ""
        assert not after.strip() or len(after) - len(after.lstrip()) <= indent, (
            f"{path}:{last} cuts a block short: the range should end further down"
        )
