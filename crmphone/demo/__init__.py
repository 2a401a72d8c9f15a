"""``crmphone demo``: the whole system on one machine, watched live and reported at the end.

:mod:`crmphone.demo.model` holds the values (a :class:`~crmphone.demo.model.DemoSnapshot` for each
refresh of the live view, a :class:`~crmphone.demo.model.DemoReport` at the end),
:mod:`crmphone.demo.view` draws them with rich, and :mod:`crmphone.demo.report` writes the report as
JSON and as a self-contained HTML page.
"""

from crmphone.demo.run import DemoResult, DemoSettings, run_demo

__all__ = ["DemoResult", "DemoSettings", "run_demo"]
