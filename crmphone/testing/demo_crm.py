"""The demo CRM conformance suite: the checks a plugin runs to prove that its emulator keeps
:class:`crmphone.demo.crm.DemoCrm` and that its unmodified adapter works against it.

:class:`DemoCrmConformance` does what ``crmphone demo`` does with an emulator: it loads it through
entry point group ``crmphone.emulators``, starts it, builds the plugin's adapter from
:meth:`~crmphone.demo.crm.DemoCrm.adapter_options` with the secrets of
:meth:`~crmphone.demo.crm.DemoCrm.environ` in the environment, and checks what the demo relies on:
known callers are each one match, a call log is one record in the CRM however often it is written,
requests are counted, options name secrets without holding them, every agent has a CRM user of
its own, and the lifecycle refuses misuse. A plugin's test module subclasses it under a ``Test``
name and says which entry point and adapter class to use:

.. code-block:: python

    from crmphone.testing import DemoCrmConformance
    from my_plugin import MyAdapter

    class TestMyDemoCrm(DemoCrmConformance):
        '''crmphone's demo CRM conformance suite, run against the MyCRM emulator.'''

        name = "mycrm"
        adapter_class = MyAdapter

The checks take no fixtures: each starts its own emulator (and adapter) and stops it, so each
is also a plain method: ``await TestMyDemoCrm().test_…()`` (or a plain call, for the synchronous
ones) runs one outside pytest's collection and raises :class:`AssertionError` when the emulator
breaks it. The async checks need pytest-asyncio (``asyncio_mode = "auto"``, or mark the subclass
with ``pytest.mark.asyncio``). Checks of your own go in the subclass, on :meth:`~DemoCrmConformance.started`
and :meth:`~DemoCrmConformance.adapter_on`; class attributes (:attr:`~DemoCrmConformance.agents`,
:attr:`~DemoCrmConformance.min_known_callers`, …) tune the generic ones.
"""

from __future__ import annotations

import contextlib
import os
import unittest.mock
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import attrs

from crmphone.adapters import Adapter, AdapterContext, LogStage, MatchOutcome
from crmphone.adapters.numbers import e164
from crmphone.demo.crm import DemoCrm, load_demo_crms
from crmphone.errors import InvalidStateError
from crmphone.testing.recording import fake_call_logs

__all__ = ["DemoCrmConformance"]


class DemoCrmConformance:
    """The demo CRM checks; subclass it as ``Test…`` and set :attr:`name` and :attr:`adapter_class`.

    Not collected itself (its name has no ``Test`` prefix).
    """

    #: The emulator's entry point name in ``crmphone.emulators`` (the adapter's name as well).
    name: ClassVar[str]
    #: The plugin's adapter, built with :meth:`~crmphone.adapters.Adapter.from_options`.
    adapter_class: ClassVar[type[Adapter]]
    #: The emulator's class, when the entry point must load that one (None: any DemoCrm).
    demo_class: ClassVar[type[object] | None] = None
    #: The platform agents the checks start the emulator for.
    agents: ClassVar[tuple[str, ...]] = ("platform-agent-a", "platform-agent-b")
    #: The seed the checks start the emulator with.
    seed: ClassVar[int] = 0
    #: The fewest known callers a demo needs (it places calls from them, one after another).
    min_known_callers: ClassVar[int] = 10
    #: How the names of the environment variables in ``environ()`` begin, so a demo never
    #: reads (or overwrites) an admin's own configuration.
    environ_prefix: ClassVar[str] = "CRMPHONE_DEMO_"
    #: The adapter's request timeout (:attr:`AdapterContext.timeout`) in the checks.
    adapter_timeout: ClassVar[float] = 5.0

    def make_demo(self) -> DemoCrm:
        """The emulator as ``crmphone demo`` makes it: loaded by :attr:`name`, not started."""
        name = getattr(self, "name", None)
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__} must set name (the emulator's entry point)")
        return load_demo_crms([name])[name]

    @contextlib.contextmanager
    def started(
        self, agents: Sequence[str] | None = None, seed: int | None = None
    ) -> Iterator[DemoCrm]:
        """A fresh emulator, started for ``agents`` (default :attr:`agents`); stopped on exit."""
        demo = self.make_demo()
        demo.start(
            agents=self.agents if agents is None else agents,
            seed=self.seed if seed is None else seed,
        )
        try:
            yield demo
        finally:
            demo.stop()

    @contextlib.asynccontextmanager
    async def adapter_on(self, demo: DemoCrm) -> AsyncIterator[Adapter]:
        """The plugin's adapter, started on ``demo`` as an admin would configure it (its options,
        with the secrets in this process's environment while it lives); closed on exit."""
        context = AdapterContext(
            name=self.name, agents=dict(demo.crm_users()), timeout=self.adapter_timeout
        )
        # Adapters read their secrets from the environment, as in production; patch.dict
        # puts every variable back as it was afterwards.
        try:
            with unittest.mock.patch.dict(os.environ, demo.environ()):
                adapter = self.adapter_class.from_options(demo.adapter_options(), context)
                await adapter.start()
                try:
                    yield adapter
                finally:
                    await adapter.close()
        finally:
            context.close()

    # ------------------------------------------------------------------ the checks

    def test_the_entry_point_offers_an_unstarted_demo_crm(self) -> None:
        """The entry point loads an emulator (of demo_class, when set) that implements DemoCrm,
        has a repr, and is not yet running."""
        demo = self.make_demo()
        shown = repr(demo)  # a demo logs its emulators before it starts them
        assert isinstance(demo, DemoCrm), f"{shown} does not implement DemoCrm"
        if self.demo_class is not None:
            assert isinstance(demo, self.demo_class), (
                f"the entry point {self.name!r} loads {shown}, not a {self.demo_class.__name__}"
            )
        _refused(demo.adapter_options, "adapter_options() before start()")

    async def test_a_call_is_one_match_and_one_record(self) -> None:
        """A known caller is one match, and an ended call is one record however often it is
        logged (another conversation none)."""
        logged, other = f"demo-{self.name}-conversation-1", f"demo-{self.name}-conversation-2"
        with self.started() as demo:
            async with self.adapter_on(demo) as adapter:
                agent = self.agents[0]
                logs = fake_call_logs(
                    number=demo.known_callers()[0],
                    agent_id=agent,
                    crm_user_id=demo.crm_users()[agent],
                    conversation_id=logged,
                )
                match = await adapter.lookup_caller(logs[LogStage.CONNECTED])
                assert match.outcome is MatchOutcome.ONE, f"the first known caller: {match!r}"
                ended = attrs.evolve(logs[LogStage.ENDED], match=match)
                for attempt in ("once", "twice"):
                    await adapter.log_call(ended)
                    counts = dict(demo.call_records([logged, other]))
                    assert counts == {logged: 1, other: 0}, (
                        f"call_records after the ended call was logged {attempt}: {counts}"
                    )

    async def test_requests_count_what_the_adapter_asks(self) -> None:
        """requests() grows when the adapter asks the CRM something."""
        with self.started() as demo:
            async with self.adapter_on(demo) as adapter:
                before = demo.requests()
                number = demo.known_callers()[0]
                await adapter.lookup_caller(fake_call_logs(number=number)[LogStage.CONNECTED])
                assert demo.requests() > before, f"requests() stayed at {before} after a lookup"

    async def test_every_known_caller_is_one_match_in_e164(self) -> None:
        """The known callers are enough, distinct, in E.164, and each one match in a lookup."""
        with self.started() as demo:
            callers = list(demo.known_callers())
            assert len(callers) >= self.min_known_callers, f"only {len(callers)} known callers"
            assert len(set(callers)) == len(callers), f"known callers repeat: {callers}"
            assert all(e164(number) == number for number in callers), callers
            async with self.adapter_on(demo) as adapter:
                for number in callers:
                    logs = fake_call_logs(number=number)
                    match = await adapter.lookup_caller(logs[LogStage.CONNECTED])
                    assert match.outcome is MatchOutcome.ONE, f"{number}: {match.outcome.name}"

    def test_options_name_the_secrets_never_hold_them(self) -> None:
        """The options name each environ() variable and hold no secret value, nor does the repr."""
        with self.started() as demo:
            options = demo.adapter_options()
            environ = demo.environ()
            values = {str(value) for value in options.values()}
            assert environ, "environ() is empty: the demo's adapter would need no secret"
            assert set(environ) <= values, (
                f"options {sorted(options)} do not name every variable of environ()"
            )
            assert all(name.startswith(self.environ_prefix) for name in environ), sorted(environ)
            for name, secret in environ.items():
                assert secret not in values, f"an option holds the value of {name}"
                assert secret not in repr(demo), f"repr(demo) shows the value of {name}"

    def test_each_agent_has_a_crm_user_of_its_own(self) -> None:
        """crm_users() maps each platform agent, and only those, to a distinct CRM user."""
        with self.started() as demo:
            users = dict(demo.crm_users())
            assert set(users) == set(self.agents), f"crm_users() maps {sorted(users)}"
            assert len(set(users.values())) == len(users), f"agents share CRM users: {users}"

    def test_use_before_start_and_a_second_start_are_refused(self) -> None:
        """Reading an unstarted emulator, or starting a running one, raises InvalidStateError."""
        demo = self.make_demo()
        _refused(demo.requests, "requests() before start()")
        demo.start(agents=self.agents, seed=self.seed)
        try:
            _refused(lambda: demo.start(agents=self.agents, seed=self.seed), "a second start()")
        finally:
            demo.stop()

    def test_stop_is_idempotent_and_deletes_what_start_made(self) -> None:
        """stop() before start and twice after is fine, and removes the files the options name."""
        demo = self.make_demo()
        demo.stop()
        demo.start(agents=self.agents, seed=self.seed)
        made = _files_named(demo.adapter_options())
        demo.stop()
        demo.stop()
        _refused(demo.requests, "requests() after stop()")
        left = sorted(str(path) for path in made if path.exists())
        assert not left, f"stop() left files behind: {left}"


def _files_named(options: Mapping[str, object]) -> list[Path]:
    """The existing files whose absolute paths are option values (CA files, keys…)."""
    paths = [Path(value) for value in options.values() if isinstance(value, str)]
    return [path for path in paths if path.is_absolute() and path.is_file()]


def _refused(attempt: Callable[[], object], what: str) -> None:
    """Call ``attempt``; fail unless it raised :class:`InvalidStateError`."""
    try:
        attempt()
    except InvalidStateError:
        return
    except Exception as error:
        raise AssertionError(
            f"{what} raised {type(error).__name__}, not InvalidStateError: {error}"
        ) from error
    raise AssertionError(f"{what} went through: it must raise InvalidStateError")
