"""Callbacks that follow what a component does, for live views: added and removed at will, each
called in turn, and one that raises is logged and kept (a view's bug never stops the work)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Watchers"]

_T = TypeVar("_T")


class Watchers(Generic[_T]):
    """The watchers of one component; ``logger`` names that component in failure reports."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._callbacks: list[Callable[[_T], None]] = []

    def add(self, callback: Callable[[_T], None]) -> Callable[[], None]:
        """Call ``callback`` with every item from now on; return what stops it."""
        self._callbacks.append(callback)
        return functools.partial(self._callbacks.remove, callback)

    def notify(self, item: _T) -> None:
        """Hand ``item`` to every watcher (on the caller's thread, without waiting)."""
        for callback in list(self._callbacks):
            try:
                callback(item)
            except Exception:
                self._logger.exception("a watcher failed on %s (a bug)", type(item).__name__)
