"""The CRMs of ``crmphone demo``: emulators that plugins offer through entry point group
``crmphone.emulators``, so the core never imports a plugin.

A plugin whose adapter is ``<name>`` in ``crmphone.adapters`` may publish, under the same name in
``crmphone.emulators``, a class implementing :class:`DemoCrm`: a local emulator of its CRM that the
unmodified adapter talks to. ``crmphone demo`` starts each one it finds, configures the adapter
from it exactly as an admin would (``[[adapters]]`` options plus secrets in the environment),
places calls from numbers the CRM knows, and afterwards counts, *in the CRM*, what was written.

.. code-block:: toml

    [project.entry-points."crmphone.emulators"]
    salesforce = "crmphone_salesforce.demo:SalesforceDemo"
"""

from __future__ import annotations

import enum
import importlib.metadata
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from crmphone.errors import PluginError

__all__ = ["EMULATORS_GROUP", "CrmFault", "DemoCrm", "FaultyCrm", "load_demo_crms"]

logger = logging.getLogger(__name__)

EMULATORS_GROUP = "crmphone.emulators"
"""The entry point group of demo CRM emulators (name = the adapter's entry point name)."""


@runtime_checkable
class DemoCrm(Protocol):
    """A CRM emulator for the demo. Made with no arguments; used from one thread.

    :meth:`start` serves the emulator (on loopback, on its own thread or loop: it must keep
    answering while the caller's event loop is busy) and :meth:`stop` ends it. Everything else is
    called between the two.
    """

    def start(self, *, agents: Sequence[str], seed: int) -> None:
        """Serve a fresh emulated CRM with one CRM user for each platform agent in ``agents``."""
        ...

    def stop(self) -> None:
        """Stop serving and delete what :meth:`start` made (certificates, files)."""
        ...

    def adapter_options(self) -> Mapping[str, Any]:
        """The adapter's ``[[adapters]]`` options for this emulator (URLs, CA file, the NAMES of
        the environment variables that hold secrets), as an admin would write them."""
        ...

    def environ(self) -> Mapping[str, str]:
        """The secret values the options name: environment variable → value."""
        ...

    def crm_users(self) -> Mapping[str, str]:
        """Platform agent id → CRM user id (the ``[agents.crm_users]`` map)."""
        ...

    def known_callers(self) -> Sequence[str]:
        """E.164 numbers that each match exactly one record in this CRM (for screen pops)."""
        ...

    def call_records(self, conversation_ids: Collection[str]) -> Mapping[str, int]:
        """How many call records the CRM holds for each of ``conversation_ids`` (counted in the
        CRM's own data: 1 is right, 0 lost, 2 or more duplicated)."""
        ...

    def requests(self) -> int:
        """API requests the CRM has answered since :meth:`start`."""
        ...


class CrmFault(enum.StrEnum):
    """The ways a CRM lets a connector down that the fault matrix injects."""

    UNAVAILABLE = "unavailable"
    """The CRM is down: 503 (maintenance, an outage)."""
    RATE_LIMITED = "rate_limited"
    """Too many requests: 429 with ``Retry-After``, or the CRM's own equivalent."""
    EXPIRED_SESSION = "expired_session"
    """The session or token expired: 401 until the adapter signs in again."""


@runtime_checkable
class FaultyCrm(Protocol):
    """A :class:`DemoCrm` that can also fail on demand (the fault matrix, ``make bench``).

    Optional: an emulator without these methods is left out of the CRM rows of the matrix.
    """

    def inject(self, fault: CrmFault, count: int) -> str:
        """Make the next ``count`` API requests fail with ``fault``; return what the CRM
        answers, in a few words (``"503 Service Unavailable (HTML)"``)."""
        ...

    def heal(self) -> None:
        """Drop every fault not yet taken: the CRM answers normally again."""
        ...

    def accelerated_options(self) -> Mapping[str, Any]:
        """Adapter options that shorten the CRM's own waits (e.g. after a spent API allowance)
        so that an accelerated run does not sit out production delays."""
        ...


def load_demo_crms(names: Collection[str] | None = None) -> dict[str, DemoCrm]:
    """The installed demo emulators (those named in ``names``, or all), made and not started.

    Raises :class:`~crmphone.errors.PluginError` naming the entry point when one cannot load or
    does not implement :class:`DemoCrm`, or when a name in ``names`` has no emulator.
    """
    found: dict[str, DemoCrm] = {}
    for entry in sorted(
        importlib.metadata.entry_points(group=EMULATORS_GROUP), key=lambda e: e.name
    ):
        if names is not None and entry.name not in names:
            continue
        try:
            made = entry.load()()
        except Exception as exc:
            raise PluginError(
                f"the demo emulator {entry.name!r} ({entry.value}) failed to load: {exc}",
                plugin=entry.name,
            ) from exc
        if not isinstance(made, DemoCrm):
            raise PluginError(
                f"the demo emulator {entry.name!r} ({entry.value}) does not implement "
                "crmphone.demo.crm.DemoCrm",
                plugin=entry.name,
            )
        found[entry.name] = made
    missing = sorted(set(names or ()) - set(found))
    if missing:
        raise PluginError(
            f"no demo emulator installed for {', '.join(missing)} "
            f"(entry point group {EMULATORS_GROUP!r}): pip install crmphone-<name>",
            plugin=missing[0],
        )
    return found
