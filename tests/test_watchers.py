"""Watchers: every callback gets every item, a failing one is logged and kept, removal works."""

from __future__ import annotations

import logging

import pytest

from crmphone._watchers import Watchers


def test_a_failing_watcher_is_logged_and_the_others_still_get_every_item(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A watcher that raises is reported with a traceback, keeps watching, and costs no one else."""
    watchers: Watchers[int] = Watchers(logging.getLogger("crmphone.test"))
    seen: list[int] = []
    failures: list[int] = []

    def broken(item: int) -> None:
        failures.append(item)
        raise RuntimeError("a view's bug")

    watchers.add(broken)
    stop = watchers.add(seen.append)
    with caplog.at_level(logging.ERROR):
        watchers.notify(1)
        watchers.notify(2)
    assert seen == [1, 2]
    assert failures == [1, 2]
    assert sum("a watcher failed on int" in r.getMessage() for r in caplog.records) == 2
    stop()
    watchers.notify(3)
    assert seen == [1, 2]
