"""The call generator: places sandbox calls and drives them through their lifecycle.

Each call is a pure :class:`~crmphone.sandbox.conversation.Conversation`; this module adds time.
Every snapshot a move produces is published on the agent's two user topics
(``v2.users.{id}.conversations.calls`` and ``v2.users.{id}.conversations``) and, for queue
calls, on ``v2.routing.queues.{id}.conversations.calls`` and ``...conversations``.

* Automatic calls (``auto=True``) ring ``ring_seconds``, talk ``talk_seconds``, then the customer
  hangs up; the wrap-up arrives ``wrapup_seconds`` later. When the agent's softphone is online (a
  :class:`CallObserver`, the media edge, says so) an automatic inbound call is not answered for
  the agent: it rings like a manual call until the softphone answers or ``alerting_timeout``, and
  once answered the customer still hangs up after ``talk_seconds``.
* Manual calls (``auto=False``) ring until the agent answers or rejects with the REST PATCH, or
  until ``alerting_timeout``; once connected they last until someone hangs up (PATCH, or
  :meth:`CallGenerator.customer_hangs_up`). Wrap-up is always automatic.
* With ``calls_per_minute > 0`` a background task places automatic calls with Poisson arrivals,
  each to a random idle agent.
* The :attr:`CallGenerator.observer` (the media edge) hears of every call placed and every move,
  synchronously: it binds a call's media before the move's events are published and before a
  ``PATCH`` answer returns.

Timings run on the event loop's timers (not the injected clock); timestamps inside events come
from the injected clock's wall time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from crmphone.clock import Clock
from crmphone.errors import BadRequestError, InvalidStateError, NotFoundError

from .config import SandboxConfig
from .conversation import (
    WRAPUP_CODES,
    CallDirection,
    Conversation,
    Move,
    Phase,
    Snapshot,
)
from .world import World

__all__ = ["CallGenerator", "CallObserver", "Publisher"]

logger = logging.getLogger(__name__)

Publisher = Callable[[str, Any], object]
"""What the generator publishes through: ``publish(topic, event_body)``."""

DEFAULT_DNIS = "+18005550100"
"""The number sandbox customers dial (the contact centre's line)."""

KEEP_CLOSED_CALLS = 500
"""Finished calls kept for ``GET /api/v2/conversations/calls/{id}``."""


class CallObserver(Protocol):
    """Who follows calls besides the notification topics: the sandbox's media edge.

    Every method is called synchronously on the sandbox's loop and must not raise (failures are
    logged and ignored).
    """

    def softphone_online(self, agent_id: str) -> bool:
        """True when the agent's softphone can answer for itself (no automatic answer then)."""

    def call_placed(self, conversation: Conversation, *, auto_answer: bool) -> None:
        """A call started alerting (its opening events are already published)."""

    def call_moved(self, conversation: Conversation, move: Move) -> None:
        """``move`` was applied to the call; its events are published right after this returns."""


@attrs.define
class _CallRun:
    conversation: Conversation
    auto: bool
    alerting_timeout: float
    answers_itself: bool = False
    """The generator answers for the agent after ``ring_seconds`` (an automatic call and no
    softphone online, or an outbound call that the customer picks up)."""
    changed: asyncio.Event = attrs.field(factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def wait_for_change(self, limit: float | None) -> bool:
        """Wait until the call changes (True) or ``limit`` seconds pass (False; None: forever)."""
        self.changed.clear()
        try:
            async with asyncio.timeout(limit):
                await self.changed.wait()
        except TimeoutError:
            return False
        return True


class CallGenerator:
    """Places calls for sandbox agents and runs them; one per sandbox.

    Use it on the sandbox's event loop. :meth:`start` launches the background generator (when
    ``calls_per_minute > 0``); :meth:`close` cancels every running call.
    """

    def __init__(
        self, world: World, publish: Publisher, config: SandboxConfig, clock: Clock
    ) -> None:
        self._world = world
        self._publish = publish
        self._config = config
        self._clock = clock
        self._rng = random.Random(config.seed + 2)
        self._runs: dict[str, _CallRun] = {}
        self._closed: collections.deque[str] = collections.deque()
        self._background: asyncio.Task[None] | None = None
        self.observer: CallObserver | None = None
        """Told of every call and move (the sandbox sets its media edge here)."""

    # ------------------------------------------------------------------ placing calls

    async def place_inbound(
        self,
        agent_id: str,
        *,
        ani: str | None = None,
        dnis: str = DEFAULT_DNIS,
        queue_id: str | None = None,
        auto: bool = True,
        alerting_timeout: float | None = None,
        auto_answer: bool = False,
    ) -> str:
        """Offer an inbound call to ``agent_id``; returns the conversation id once it alerts.

        ``ani`` defaults to a random ``+1555…`` number; ``queue_id`` defaults to the first queue.
        ``auto_answer`` is the call's auto-answer flag as the softphone receives it (in the
        signalling ``propose``); the softphone decides what to do with it. NotFoundError for an
        unknown agent or queue.
        """
        agent = self._world.agent(agent_id)
        queue = self._world.queue(queue_id) if queue_id else self._world.queues[0]
        timeout = self._config.alerting_timeout if alerting_timeout is None else alerting_timeout
        conversation = Conversation.inbound(
            new_id=self._world.conversation_ids.uuid,
            agent_id=agent.id,
            agent_name=agent.name,
            queue_id=queue.id,
            queue_name=queue.name,
            ani=ani or self.random_ani(),
            dnis=dnis,
            now=self._clock.wall(),
            alerting_timeout_ms=round(timeout * 1000),
            wrapup_code=self._rng.choice(WRAPUP_CODES),
        )
        online = self._observe(lambda o: o.softphone_online(agent.id), default=False)
        self._start(_CallRun(conversation, auto, timeout, auto and not online), auto_answer)
        self._world.counters["calls_inbound"] += 1
        return conversation.id

    async def place_outbound(
        self, agent_id: str, phone_number: str, *, queue_id: str | None = None
    ) -> str:
        """The agent dials ``phone_number``; the customer answers after ``ring_seconds``.

        Returns the conversation id. NotFoundError for an unknown agent or queue.
        """
        agent = self._world.agent(agent_id)
        if queue_id:
            self._world.queue(queue_id)
        conversation = Conversation.outbound(
            new_id=self._world.conversation_ids.uuid,
            agent_id=agent.id,
            agent_name=agent.name,
            agent_address=DEFAULT_DNIS,
            phone_number=phone_number,
            queue_id=queue_id or None,
            now=self._clock.wall(),
            wrapup_code=self._rng.choice(WRAPUP_CODES),
        )
        self._start(_CallRun(conversation, True, self._config.alerting_timeout, True), True)
        self._world.counters["calls_outbound"] += 1
        return conversation.id

    def random_ani(self) -> str:
        """A realistic caller number in the fictional +1 555 range."""
        return f"+1555{self._rng.randrange(10_000_000):07d}"

    # ------------------------------------------------------------------ looking and steering

    @property
    def conversations(self) -> tuple[Conversation, ...]:
        """Calls that are running or recently ended, oldest first."""
        return tuple(run.conversation for run in self._runs.values())

    def get(self, conversation_id: str) -> Conversation:
        """The call ``conversation_id``; NotFoundError (404) when unknown."""
        run = self._runs.get(conversation_id)
        if run is None:
            raise NotFoundError(
                f"Conversation {conversation_id} not found.", status=404, code="not.found"
            )
        return run.conversation

    def patch_participant(
        self,
        conversation_id: str,
        participant_id: str,
        *,
        state: str | None = None,
        muted: bool | None = None,
        held: bool | None = None,
    ) -> None:
        """What ``PATCH …/participants/{id}`` does: answer, hang up/reject, mute, hold.

        ``state="connected"`` on the agent answers an alerting inbound call;
        ``state="disconnected"`` on the agent rejects (ringing) or hangs up (talking), on the
        customer hangs up. NotFoundError for unknown ids, BadRequestError for anything illegal in
        the call's current state.
        """
        conversation = self.get(conversation_id)
        participant = conversation.participant(participant_id)
        if participant is None:
            raise NotFoundError(
                f"Participant {participant_id} not found in conversation {conversation_id}.",
                status=404,
                code="not.found",
            )
        moves: list[Move] = []
        is_agent = participant is conversation.agent
        if state is not None:
            if (
                state == "connected"
                and is_agent
                and conversation.direction is CallDirection.INBOUND
            ):
                moves.append(Move.ANSWER)
            elif state == "disconnected" and is_agent:
                moves.append(
                    Move.REJECT if conversation.phase is Phase.RINGING else Move.AGENT_HANGUP
                )
            elif state == "disconnected" and participant is conversation.customer:
                moves.append(Move.CUSTOMER_HANGUP)
            else:
                raise _bad_request(
                    f"Cannot set state {state!r} on the {participant.purpose} participant."
                )
        if held is not None or muted is not None:
            if not is_agent:
                raise _bad_request("Only the agent participant can be held or muted here.")
            if held is not None:
                moves.append(Move.HOLD if held else Move.UNHOLD)
            if muted is not None:
                moves.append(Move.MUTE if muted else Move.UNMUTE)
        if not moves:
            raise _bad_request("Nothing to change: give state, muted or held.")
        run = self._runs[conversation_id]
        for move in moves:
            try:
                self._move(run, move)
            except InvalidStateError as exc:
                raise _bad_request(str(exc)) from exc

    def customer_hangs_up(self, conversation_id: str) -> None:
        """The caller hangs up now (ringing or talking); NotFoundError / InvalidStateError."""
        self.get(conversation_id)
        self._move(self._runs[conversation_id], Move.CUSTOMER_HANGUP)

    def agent_answers(self, conversation_id: str) -> None:
        """The agent picks up a ringing inbound call (its softphone's media came up)."""
        self.get(conversation_id)
        self._move(self._runs[conversation_id], Move.ANSWER)

    def agent_rejects(self, conversation_id: str) -> None:
        """The agent declines a ringing call (disconnectType ``client``)."""
        self.get(conversation_id)
        self._move(self._runs[conversation_id], Move.REJECT)

    def agent_hangs_up(self, conversation_id: str) -> None:
        """The agent ends a connected call (disconnectType ``client``)."""
        self.get(conversation_id)
        self._move(self._runs[conversation_id], Move.AGENT_HANGUP)

    async def wait_closed(self, conversation_id: str) -> Conversation:
        """Wait until the call has finished (wrap-up included) and return it."""
        run = self._runs.get(conversation_id)
        if run is None:
            return self.get(conversation_id)  # raises NotFoundError
        if run.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(run.task)
        return run.conversation

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the background generator when ``calls_per_minute > 0`` (idempotent)."""
        if self._config.calls_per_minute > 0 and self._background is None:
            self._background = asyncio.get_running_loop().create_task(
                self._generate(), name="sandbox-call-generator"
            )

    async def close(self) -> None:
        """Stop the background generator and every running call."""
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        if self._background is not None:
            tasks.append(self._background)
            self._background = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ internals

    def _start(self, run: _CallRun, auto_answer: bool) -> None:
        conversation = run.conversation
        self._runs[conversation.id] = run
        for snapshot in conversation.opening():
            self._emit(snapshot)
        run.task = asyncio.get_running_loop().create_task(
            self._drive(run), name=f"sandbox-call-{conversation.id}"
        )
        self._observe(lambda o: o.call_placed(conversation, auto_answer=auto_answer))

    def _move(self, run: _CallRun, move: Move) -> None:
        snapshots = run.conversation.apply(move, self._clock.wall())
        # Media first: a PATCH answer's audio must not wait for the events' serialisation.
        self._observe(lambda o: o.call_moved(run.conversation, move))
        for snapshot in snapshots:
            self._emit(snapshot)
        run.changed.set()

    def _observe(self, call: Callable[[CallObserver], Any], default: Any = None) -> Any:
        if self.observer is None:
            return default
        try:
            return call(self.observer)
        except Exception:
            logger.exception("the call observer failed")
            return default

    def _emit(self, snapshot: Snapshot) -> None:
        user_topic = f"v2.users.{snapshot.agent_id}.conversations"
        self._publish(f"{user_topic}.calls", snapshot.calls_body)
        self._publish(user_topic, snapshot.conversation_body)
        if snapshot.queue_id is not None:
            queue_topic = f"v2.routing.queues.{snapshot.queue_id}.conversations"
            self._publish(f"{queue_topic}.calls", snapshot.calls_body)
            self._publish(queue_topic, snapshot.conversation_body)

    async def _drive(self, run: _CallRun) -> None:
        conversation = run.conversation
        loop = asyncio.get_running_loop()
        config = self._config
        try:
            ring = config.ring_seconds if run.answers_itself else run.alerting_timeout
            ring_deadline = loop.time() + ring
            while conversation.phase is Phase.RINGING:
                if not await run.wait_for_change(max(0.0, ring_deadline - loop.time())):
                    self._move(run, Move.ANSWER if run.answers_itself else Move.ALERT_TIMEOUT)
            talk_deadline = loop.time() + config.talk_seconds if run.auto else None
            while conversation.phase is Phase.TALKING:
                remaining = None if talk_deadline is None else max(0.0, talk_deadline - loop.time())
                if not await run.wait_for_change(remaining):
                    self._move(run, Move.CUSTOMER_HANGUP)
            if conversation.phase is Phase.WRAPUP:
                await asyncio.sleep(config.wrapup_seconds)
                self._move(run, Move.FINISH_WRAPUP)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sandbox call %s failed", conversation.id)
        finally:
            self._retire(conversation.id)

    def _retire(self, conversation_id: str) -> None:
        self._closed.append(conversation_id)
        while len(self._closed) > KEEP_CLOSED_CALLS:
            self._runs.pop(self._closed.popleft(), None)

    def _busy_agents(self) -> set[str]:
        # One pass over the calls, not one per agent: with 1,000 agents the generator would
        # otherwise scan every call a thousand times for each call it places.
        return {
            run.conversation.agent_id
            for run in self._runs.values()
            if run.conversation.phase is not Phase.CLOSED
        }

    async def _generate(self) -> None:
        rate = self._config.calls_per_minute / 60.0
        while True:
            await asyncio.sleep(self._rng.expovariate(rate))
            busy = self._busy_agents()
            idle = [agent for agent in self._world.agents if agent.id not in busy]
            if not idle:
                self._world.counters["calls_skipped_all_busy"] += 1
                continue
            agent = self._rng.choice(idle)
            try:
                await self.place_inbound(agent.id)
            except Exception:
                logger.exception("background call to %s failed", agent.id)


def _bad_request(message: str) -> BadRequestError:
    return BadRequestError(message, status=400, code="bad.request")
