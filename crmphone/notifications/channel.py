"""The notification channel: the asyncio + websockets layer over the sans-I/O core.

:class:`NotificationStream` follows a set of topics and yields every :class:`TopicEvent` exactly once,
whatever the platform does to the sockets underneath:

- topics are planned over as many channels as the 1,000-topics limit needs (one of the 20 channels a
  user may have is kept free, so a make-before-break rollover never evicts one of our own);
- each channel is run by a ``_ChannelRunner``: it connects, subscribes (PUT, after every connect),
  watches liveness through :class:`ChannelProtocol`, and replaces the socket when needed;
- ``socket_closing``, an approaching channel or token expiry, ``no_longer_subscribed`` and
  ``token_revoked`` trigger **make-before-break**: the replacement is connected and subscribed while the
  old socket still delivers; both deliver until the old one ends, and the :class:`Deduplicator` drops
  the copies;
- any other close is diagnosed (:func:`diagnose`), reported, and followed by a reconnect planned by
  :func:`plan_reconnect` after a jittered backoff; when continuity was broken the resync hook is called
  so the call layer can re-read live calls over REST (the platform has no replay).

The runner only carries out decisions; the decisions (liveness, backoff, reconnect plan, rollover time,
diagnosis, de-duplication) are the pure modules beside this one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Self

import attrs
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from crmphone.clock import Clock, SystemClock
from crmphone.errors import (
    AuthenticationError,
    ChannelError,
    CrmphoneError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    SubscriptionError,
    TransportError,
)
from crmphone.notifications.backoff import Backoff, BackoffPolicy
from crmphone.notifications.dedupe import Deduplicator, event_key
from crmphone.notifications.diagnosis import (
    CloseDiagnosis,
    CloseFacts,
    LikelyCause,
    SystemMessage,
    diagnose,
)
from crmphone.notifications.messages import (
    MalformedFrame,
    Message,
    NoLongerSubscribed,
    SocketClosing,
    TokenRevoked,
    TopicEvent,
)
from crmphone.notifications.policy import Reconnect, Rollover, plan_reconnect, rollover_due
from crmphone.notifications.protocol import Abandon, ChannelProtocol, ProtocolSettings, SendPing
from crmphone.notifications.topics import plan_channels
from crmphone.platform._tls import TLS_ADVICE, certificate_problem, websocket_tls

if TYPE_CHECKING:
    from crmphone.platform import AccessToken, Channel, PlatformClient, TokenProvider

__all__ = ["ChannelSettings", "NotificationStream", "Resync", "StreamStats"]

log = logging.getLogger(__name__)

_USER_AGENT = "crmphone (notification channel)"


@attrs.frozen
class ChannelSettings:
    """How a :class:`NotificationStream` behaves; every duration in seconds.

    ``heartbeat_timeout``/``pong_timeout``: silence before a ping, and how long the ping may go
    unanswered before the socket is abandoned. ``rollover_margin``: how long before the channel's or
    token's expiry to roll over (at most a tenth of its lifetime). ``drain_seconds``: how long the old
    socket keeps delivering after its replacement is live. ``reuse_limit``: reconnects to the same
    channel before a new one is created. ``dedupe_window``: how long after an overlap copies are still
    recognised. ``allow_rejected_topics``: go on with the permitted topics when the platform rejects
    some (otherwise :class:`SubscriptionError`). ``backlog_warning``: events waiting for the
    consumer at which the stream warns that its consumer falls behind (once, until it catches up).
    """

    heartbeat_timeout: float = 35.0
    pong_timeout: float = 5.0
    max_frame_size: int = 1 << 20
    transport_max_size: int = 16 << 20
    open_timeout: float = 10.0
    close_timeout: float = 2.0
    backoff: BackoffPolicy = attrs.field(factory=BackoffPolicy)
    rollover_margin: float = 600.0
    drain_seconds: float = 5.0
    reuse_limit: int = 10
    dedupe_window: float = 30.0
    max_topics_per_channel: int = 1000
    max_channels: int = 20
    allow_rejected_topics: bool = False
    head_check_timeout: float = 3.0
    backlog_warning: int = 10_000

    def protocol_settings(self) -> ProtocolSettings:
        """The per-socket protocol's settings."""
        return ProtocolSettings(
            heartbeat_timeout=self.heartbeat_timeout,
            pong_timeout=self.pong_timeout,
            max_frame_size=self.max_frame_size,
        )


@attrs.frozen
class Resync:
    """What the resync hook is told after a reconnect.

    ``gap_started`` is when the previous socket ended, ``None`` when make-before-break kept a socket
    live throughout (nothing can have been missed, but a cautious consumer may still re-read).
    """

    channel_id: str
    topics: tuple[str, ...]
    gap_started: datetime | None
    gap_ended: datetime
    cause: LikelyCause | None

    @property
    def gap(self) -> timedelta | None:
        """How long no socket was live, or ``None`` when there was no gap."""
        return None if self.gap_started is None else self.gap_ended - self.gap_started


@attrs.define
class StreamStats:
    """Counters of a stream's life, for metrics and the ``--explain`` output."""

    events: int = 0
    duplicates_dropped: int = 0
    malformed: int = 0
    channels_created: int = 0
    sockets_opened: int = 0
    reconnects: int = 0
    rollovers: int = 0
    resyncs: int = 0
    max_pending: int = 0
    """The most events ever waiting for the consumer at once."""
    closes: collections.deque[CloseDiagnosis] = attrs.field(
        factory=lambda: collections.deque(maxlen=100)
    )


# Closes that are part of normal life (announced maintenance, our own rollovers): logged at INFO.
_EXPECTED_CAUSES = frozenset({LikelyCause.CLIENT_CLOSED, LikelyCause.MAINTENANCE})

CloseHook = Callable[[CloseDiagnosis], object]


async def _cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel our tasks and wait until they are done.

    gather with return_exceptions collects the tasks' own CancelledErrors, yet still raises when
    the *caller* is cancelled; suppressing CancelledError around ``await task`` would swallow that.
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


ResyncHook = Callable[[Resync], Awaitable[object] | object]


@attrs.frozen
class _Lease:
    """A channel and what bounds its life: when we created it, and the token it is bound to."""

    channel: Channel
    created_at: datetime
    token: AccessToken | None
    created_mono: float  # the monotonic twin of created_at, for ages (see _Socket._facts)

    def seconds_left(self, now: datetime) -> float | None:
        """Seconds until the channel or its token expires, whichever is first; ``None`` if unknown."""
        deadlines = (self.channel.expires, None if self.token is None else self.token.expires_at)
        known = [deadline for deadline in deadlines if deadline is not None]
        return (min(known) - now).total_seconds() if known else None


@attrs.frozen
class _Replace:
    """A request to replace ``socket`` while it still runs (make-before-break)."""

    socket: _Socket
    reason: str
    plan: Reconnect
    # When events stopped flowing on the old socket although it stays open (its subscriptions were
    # dropped or its token revoked): a gap to report even though a socket was live throughout.
    gap_since: datetime | None = None


@attrs.frozen
class _Ended:
    socket: _Socket


_Signal = _Replace | _Ended


class _Failed:
    """Queued to the consumer when the stream cannot go on."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _RetryableOpenError(Exception):
    """One attempt to open a socket failed in a way worth retrying."""


# What is worth another attempt after a backoff: our own open failures and the platform's
# transient ones (PlatformError subclasses carry the platform's Retry-After, when it gave one).
_RETRYABLE = (_RetryableOpenError, TransportError, ServerError, RateLimitedError)


class _Socket:
    """One WebSocket of a channel: reads frames, watches liveness, and reports its end."""

    def __init__(
        self,
        runner: _ChannelRunner,
        ws: ClientConnection,
        lease: _Lease,
        serial: int,
    ) -> None:
        self.runner = runner
        self.ws = ws
        # The lifetimes this socket lives by; its own, since a replacement's lease has other ones.
        self.lease = lease
        self.channel = lease.channel
        self.serial = serial
        clock = runner.stream.clock
        self.protocol = ChannelProtocol(
            runner.stream.settings.protocol_settings(), clock.monotonic()
        )
        self.opened_wall = clock.wall()
        self.opened_mono = clock.monotonic()
        self.socket_closing_mono: float | None = None
        self.system_message: SystemMessage | None = None
        self.liveness_failed = False
        self.client_closing = False
        self.ended_wall: datetime | None = None
        self.ended_mono: float | None = None
        self.diagnosis: CloseDiagnosis | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        return f"<socket #{self.serial} of channel {self.channel.id}>"

    def start(self) -> None:
        """Start reading frames and watching liveness."""
        self._tasks = [
            asyncio.create_task(self._read(), name=f"crmphone-read-{self.serial}"),
            asyncio.create_task(self._watch(), name=f"crmphone-watch-{self.serial}"),
        ]

    @property
    def ended(self) -> bool:
        """Whether the socket has ended (its diagnosis is then available)."""
        return self.ended_wall is not None

    async def close(self, reason: str) -> None:
        """Close from our side with a closing handshake bounded by ``close_timeout``."""
        if self.ended:
            return
        self.client_closing = True
        with contextlib.suppress(Exception):
            await self.ws.close(1000, reason)

    async def close_later(self, delay: float, reason: str) -> None:
        """Let the socket deliver for ``delay`` more seconds, then close it."""
        await asyncio.sleep(delay)
        await self.close(reason)

    def abort(self) -> None:
        """Drop the TCP connection at once: a dead link cannot answer a closing handshake."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    async def cancel(self) -> None:
        """Stop the tasks (used at shutdown, after :meth:`close`)."""
        await _cancel_and_wait(self._tasks)

    async def _read(self) -> None:
        runner = self.runner
        monotonic = runner.stream.clock.monotonic
        protocol = self.protocol
        try:
            async for frame in self.ws:
                if isinstance(frame, str):
                    message = protocol.receive_text(frame, monotonic())
                else:
                    message = protocol.receive_bytes(frame, monotonic())
                runner.on_message(self, message)
        except ConnectionClosed:
            pass  # the close frame (or its absence) is read from the protocol below
        except Exception:
            # A bug of ours must not freeze the channel silently: end this socket, let it be replaced.
            log.exception("notification channel %s: reader failed", self.channel.id)
            self.abort()
        finally:
            for task in self._tasks:
                if task is not asyncio.current_task():
                    task.cancel()
            await self._finish()

    async def _watch(self) -> None:
        protocol = self.protocol
        monotonic = self.runner.stream.clock.monotonic
        while True:
            delay = protocol.next_deadline() - monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for action in protocol.tick(monotonic()):
                if isinstance(action, SendPing):
                    try:
                        await self.ws.send(action.text)
                    except ConnectionClosed:
                        return
                elif isinstance(action, Abandon):
                    self.liveness_failed = True
                    log.warning(
                        "notification channel %s: abandoning a silent socket (%s)",
                        self.channel.id,
                        action.reason,
                    )
                    self.abort()
                    return

    async def _finish(self) -> None:
        stream = self.runner.stream
        clock = stream.clock
        self.ended_wall = clock.wall()
        self.ended_mono = clock.monotonic()
        protocol = self.ws.protocol
        received = protocol.close_rcvd
        sent = protocol.close_sent
        if self.client_closing and not self.liveness_failed:
            closed_by = "client"
        elif received is not None:
            closed_by = "server"
        else:
            closed_by = "network"
        close = received or sent
        exists_after = None
        if closed_by == "server" and self.socket_closing_mono is None:
            # Only a HEAD tells an evicted channel from other server closes.
            exists_after = await self.runner.channel_exists(self.channel.id)
        self.diagnosis = diagnose(self._facts(closed_by, close, exists_after))
        stream._record_close(self.diagnosis)
        self.runner.signal(_Ended(self))

    def _facts(
        self, closed_by: str, close: websockets.frames.Close | None, exists_after: bool | None
    ) -> CloseFacts:
        clock = self.runner.stream.clock
        now_wall = self.ended_wall or clock.wall()
        now_mono = clock.monotonic() if self.ended_mono is None else self.ended_mono

        # Every time of ours is re-read from the monotonic clock as "so long before the close":
        # had the wall clock been set back or forward since (NTP, an operator), ages computed
        # from wall times would be wrong by the jump, negative even.
        def wall_of(mono: float | None) -> datetime | None:
            return None if mono is None else now_wall - timedelta(seconds=now_mono - mono)

        stats = self.protocol.stats
        lease = self.lease
        created = wall_of(lease.created_mono)
        token = lease.token
        token_issued = token_expires = None
        if token is not None and created is not None:
            # The token's times are its provider's wall clock; placed relative to the lease,
            # which was made just after the token arrived.
            token_issued = created - (lease.created_at - token.issued_at)
            token_expires = token_issued + (token.expires_at - token.issued_at)
        return CloseFacts(
            channel_id=self.channel.id,
            close_code=None if close is None else close.code,
            close_reason=None if close is None else close.reason,
            closed_by=closed_by,
            at=now_wall,
            last_frame_at=wall_of(stats.last_frame_at),
            last_heartbeat_at=wall_of(stats.last_heartbeat_at),
            socket_opened_at=wall_of(self.opened_mono),
            channel_created_at=created,
            channel_expires=self.channel.expires,
            token_issued_at=token_issued,
            token_expires_at=token_expires,
            socket_closing_at=wall_of(self.socket_closing_mono),
            system_message=self.system_message,
            liveness_failed=self.liveness_failed,
            channel_exists_after=exists_after,
        )


class _ChannelRunner:
    """Keeps one channel's topics flowing: connects, replaces, reconnects."""

    def __init__(self, stream: NotificationStream, index: int, topics: tuple[str, ...]) -> None:
        self.stream = stream
        self.index = index
        self.topics = topics
        self.signals: asyncio.Queue[_Signal] = asyncio.Queue()
        self.current: _Socket | None = None
        self.live: set[_Socket] = set()
        self.lease: _Lease | None = None
        self.reuses = 0
        self.backoff = Backoff(stream.settings.backoff, stream.rng)
        self.dedupe = Deduplicator(window=stream.settings.dedupe_window)
        self.dedupe_until = 0.0
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._first_subscribe = True
        self._background: set[asyncio.Task[None]] = set()

    # -- called by sockets -------------------------------------------------------------------------

    def signal(self, signal: _Signal) -> None:
        """Queue a signal for the supervising loop."""
        if isinstance(signal, _Ended):
            self.live.discard(signal.socket)
            # Copies may still trail in on the surviving socket for a while.
            self.dedupe_until = self.stream.clock.monotonic() + self.stream.settings.dedupe_window
            self.backoff.closed(self.stream.clock.monotonic())
        self.signals.put_nowait(signal)

    def on_message(self, socket: _Socket, message: Message) -> None:
        """Dispatch one parsed frame (the hot path: keep it short)."""
        stream = self.stream
        if type(message) is TopicEvent:
            now = stream.clock.monotonic()
            overlapping = len(self.live) > 1 or self.dedupe_until > now
            if overlapping and not self.dedupe.admit(socket.serial, event_key(message), now):
                stream.stats.duplicates_dropped += 1
                return
            stream.stats.events += 1
            stream._deliver(message)
        elif isinstance(message, SocketClosing):
            socket.socket_closing_mono = stream.clock.monotonic()
            log.info(
                "notification channel %s: socket_closing received (maintenance)", socket.channel.id
            )
            self.signals.put_nowait(
                _Replace(
                    socket, "socket_closing", Reconnect(refresh_token=False, new_channel=False)
                )
            )
        elif isinstance(message, NoLongerSubscribed | TokenRevoked):
            socket.system_message = SystemMessage.from_message(message)
            log.warning(
                "notification channel %s: %s (%s)",
                socket.channel.id,
                message.topic_name,
                socket.system_message.reason or "no reason given",
            )
            self.signals.put_nowait(
                _Replace(
                    socket,
                    message.topic_name,
                    Reconnect(refresh_token=True, new_channel=True),
                    gap_since=stream.clock.wall(),
                )
            )
        elif isinstance(message, MalformedFrame):
            stream.stats.malformed += 1
            log.warning(
                "notification channel %s: ignored a malformed frame: %s",
                socket.channel.id,
                message,
            )

    async def channel_exists(self, channel_id: str) -> bool | None:
        """HEAD the channel, ``None`` when that cannot be told (network down, timeout)."""
        try:
            async with asyncio.timeout(self.stream.settings.head_check_timeout):
                return await self.stream.client.channel_exists(channel_id)
        except (CrmphoneError, TimeoutError):
            return None

    # -- the supervising loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Open the first socket, then keep one live until cancelled."""
        try:
            self.current = await self._open_until_live(Reconnect(False, True))
            self.started.set_result(None)
            await self._supervise()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed on whole to whoever awaits the stream
            if not self.started.done():
                self.started.set_exception(exc)
            else:
                self.stream._fail(exc)

    async def _supervise(self) -> None:
        settings = self.stream.settings
        while True:
            rollover = self._rollover()
            timeout = None
            if rollover is not None:
                timeout = max(0.0, (rollover.at - self.stream.clock.wall()).total_seconds())
            # asyncio.timeout rather than wait_for: on Python 3.11, wait_for can swallow a
            # cancellation that coincides with the queue yielding, and a stop would hang.
            try:
                async with asyncio.timeout(timeout):
                    signal = await self.signals.get()
            except TimeoutError:
                assert rollover is not None
                assert self.current is not None
                signal = _Replace(
                    self.current, "rollover", Reconnect(rollover.refresh_token, new_channel=True)
                )
            if signal.socket is not self.current:
                continue  # about a socket already replaced
            old = signal.socket
            if isinstance(signal, _Replace):
                self.stream.stats.rollovers += 1
                log.info(
                    "notification channel %s: make-before-break replacement (%s)",
                    old.channel.id,
                    signal.reason,
                )
                new = await self._open_until_live(signal.plan)
                self.current = new
                if not old.ended:
                    self._spawn(old.close_later(self._drain_time(old), "replaced"))
                gap_started = signal.gap_since
                if old.ended_wall and old.ended_wall < new.opened_wall:
                    gap_started = min(filter(None, (gap_started, old.ended_wall)))
                cause = old.diagnosis.cause if old.diagnosis else None
                await self._resync(new, gap_started, cause)
            else:
                diagnosis = old.diagnosis
                assert diagnosis is not None
                plan = plan_reconnect(
                    diagnosis.cause, reuses=self.reuses, reuse_limit=settings.reuse_limit
                )
                delay = self.backoff.next_delay()
                log.info(
                    "notification channel %s: reconnecting in %.1f s (%s)",
                    old.channel.id,
                    delay,
                    diagnosis.cause.name,
                )
                await asyncio.sleep(delay)
                self.stream.stats.reconnects += 1
                self.current = await self._open_until_live(plan)
                # A socket that went silent stopped delivering at its last frame, well before it
                # was declared dead: the gap starts there, or calls that ended in between are
                # outside the resync's window.
                gap_started = old.ended_wall
                last_frame = diagnosis.facts.last_frame_at
                if last_frame is not None and (gap_started is None or last_frame < gap_started):
                    gap_started = last_frame
                await self._resync(self.current, gap_started, diagnosis.cause)

    def _drain_time(self, old: _Socket) -> float:
        # Close the replaced socket ourselves before its channel or token dies on it, so that its end
        # is ours to explain (a drain past the expiry would end in a needless server close).
        drain = self.stream.settings.drain_seconds
        remaining = old.lease.seconds_left(self.stream.clock.wall())
        return drain if remaining is None else max(0.0, min(drain, remaining / 2))

    def _rollover(self) -> Rollover | None:
        if self.lease is None:
            return None
        token = self.lease.token
        return rollover_due(
            channel_created=self.lease.created_at,
            channel_expires=self.lease.channel.expires,
            token_issued=None if token is None else token.issued_at,
            token_expires=None if token is None else token.expires_at,
            margin=timedelta(seconds=self.stream.settings.rollover_margin),
        )

    async def _resync(
        self, socket: _Socket, gap_started: datetime | None, cause: LikelyCause | None
    ) -> None:
        hook = self.stream.on_resync
        self.stream.stats.resyncs += 1
        if hook is None:
            return
        resync = Resync(
            channel_id=socket.channel.id,
            topics=self.topics,
            gap_started=gap_started,
            gap_ended=socket.opened_wall,
            cause=cause,
        )
        try:
            result = hook(resync)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("notification channel %s: the resync hook failed", socket.channel.id)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- opening a socket --------------------------------------------------------------------------

    async def _open_until_live(self, plan: Reconnect) -> _Socket:
        refreshed_for_401 = False
        while True:
            try:
                async with self.stream._open_lock:
                    socket = await self._open(plan)
            except AuthenticationError:
                if refreshed_for_401:
                    raise
                refreshed_for_401 = True
                plan = Reconnect(refresh_token=True, new_channel=True)
                continue
            except _RETRYABLE as exc:
                delay = self.backoff.next_delay(getattr(exc, "retry_after", None))
                log.warning("notification channel: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            self.backoff.opened(self.stream.clock.monotonic())
            return socket

    async def _open(self, plan: Reconnect) -> _Socket:
        stream = self.stream
        if plan.refresh_token:
            await stream.tokens.refresh()
        ws: ClientConnection | None = None
        lease = self.lease
        if lease is not None and not plan.new_channel and self.reuses < stream.settings.reuse_limit:
            try:
                ws = await self._connect(lease.channel)
                self.reuses += 1
            except _RetryableOpenError as exc:
                log.info(
                    "notification channel %s: %s; creating a new channel", lease.channel.id, exc
                )
        if ws is None:
            channel = await stream.client.create_channel()
            lease = _Lease(
                channel, stream.clock.wall(), stream.tokens.current, stream.clock.monotonic()
            )
            self.reuses = 0
            stream.stats.channels_created += 1
            ws = await self._connect(channel)
        assert lease is not None
        self.lease = lease
        channel = lease.channel
        stream.stats.sockets_opened += 1
        socket = _Socket(self, ws, lease, stream._next_serial())
        # Registered before subscribing: from here on both sockets count as overlapping, so the copies
        # of events emitted after the PUT are recognised whichever socket delivers them first.
        self.live.add(socket)
        socket.start()
        try:
            await self._subscribe(channel)
        except BaseException:
            await socket.close("subscription failed")
            raise
        log.info(
            "notification channel %s: live with %d topic(s)%s",
            channel.id,
            len(self.topics),
            f" (reconnect {self.reuses})" if self.reuses else "",
        )
        return socket

    async def _connect(self, channel: Channel) -> ClientConnection:
        settings = self.stream.settings
        try:
            return await websockets.connect(
                channel.connect_uri,
                open_timeout=settings.open_timeout,
                ping_interval=None,  # liveness is ours: heartbeats + the platform's ping message
                ping_timeout=None,
                close_timeout=settings.close_timeout,
                max_size=settings.transport_max_size,
                user_agent_header=_USER_AGENT,
                # The socket trusts exactly what the REST client trusts ([platform] verify).
                **websocket_tls(channel.connect_uri, self.stream.client.ssl_context),
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise _RetryableOpenError(
                f"the platform refused the WebSocket with HTTP {status}"
            ) from exc
        except InvalidURI as exc:
            raise ChannelError(
                f"the platform gave an unusable connectUri {channel.connect_uri!r}"
            ) from exc
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            problem = certificate_problem(exc)
            if problem is not None:
                # Retried like any failed open (a proxy may be mid-change), but said plainly.
                raise _RetryableOpenError(
                    f"TLS verification failed for the channel's socket ({problem}). {TLS_ADVICE}"
                ) from exc
            raise _RetryableOpenError(f"could not connect to the channel ({exc!r})") from exc

    async def _subscribe(self, channel: Channel) -> None:
        stream = self.stream
        try:
            subscriptions = await stream.client.put_subscriptions(
                channel.id, self.topics, ignore_errors=True
            )
        except NotFoundError as exc:
            raise _RetryableOpenError("the channel vanished before it could be subscribed") from exc
        rejected = [s for s in subscriptions if (s.state or "").lower() == "rejected"]
        if rejected:
            details = [(s.id, s.rejection_reason or "", s.missing_permissions) for s in rejected]
            listing = "; ".join(
                f"{topic} ({reason or 'rejected'}"
                + (f", missing {', '.join(perms)}" if perms else "")
                + ")"
                for topic, reason, perms in details
            )
            message = f"the platform rejected {len(rejected)} topic(s): {listing}"
            if not stream.settings.allow_rejected_topics and self._first_subscribe:
                raise SubscriptionError(
                    message + ". Grant the missing permissions to the OAuth client, or remove "
                    "the topics.",
                    rejected=details,
                )
            log.warning("notification channel %s: %s", channel.id, message)
        self._first_subscribe = False

    async def stop(self) -> None:
        """Close every socket and stop."""
        for task in list(self._background):
            task.cancel()
        for socket in list(self.live):
            await socket.close("client stopping")
            await socket.cancel()


class NotificationStream:
    """Follow topics on the platform's notification channels; iterate to receive every event once.

    Use as an async context manager: entering plans the channels, connects and subscribes them all
    (raising :class:`SubscriptionError` or :class:`ChannelLimitError` when the platform refuses, or an
    :class:`AuthenticationError` on bad credentials); ``async for event in stream`` then yields
    :class:`TopicEvent` values until the stream is closed or fails beyond repair (the error is raised
    from the iteration). ``on_close`` is called with the diagnosis of every socket that ends;
    ``on_resync`` (sync or async) after every reconnect, with what the gap was.
    """

    def __init__(
        self,
        client: PlatformClient,
        topics: Iterable[str],
        *,
        tokens: TokenProvider | None = None,
        settings: ChannelSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_close: CloseHook | None = None,
        on_resync: ResyncHook | None = None,
    ) -> None:
        self.client = client
        self.tokens: TokenProvider = tokens if tokens is not None else client.tokens
        self.settings = settings or ChannelSettings()
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.on_close = on_close
        self.on_resync = on_resync
        self.stats = StreamStats()
        # Keep one channel free so that a make-before-break replacement never evicts one of ours.
        self.plan = plan_channels(
            topics,
            max_topics_per_channel=self.settings.max_topics_per_channel,
            max_channels=max(1, self.settings.max_channels - 1),
        )
        # Unbounded on purpose: a reader that stopped reading to push back would stop seeing
        # heartbeats and pings too, and the platform would close the socket (losing more). The
        # consumer takes everything waiting in one go instead (:meth:`next_batch`), and a growing
        # backlog is logged and measured (:meth:`pending`).
        self._queue: asyncio.Queue[TopicEvent | _Failed] = asyncio.Queue()
        self._failure: _Failed | None = None
        self._backlog_warned = False
        self._runners: list[_ChannelRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._serial = 0
        self._closed = False
        self._open_lock = asyncio.Lock()

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic followed, in plan order."""
        return tuple(topic for group in self.plan for topic in group)

    @property
    def channel_ids(self) -> tuple[str, ...]:
        """The ids of the channels currently in use."""
        return tuple(r.lease.channel.id for r in self._runners if r.lease is not None)

    def _next_serial(self) -> int:
        """A number for the next socket (for logs and de-duplication)."""
        self._serial += 1
        return self._serial

    def _deliver(self, event: TopicEvent) -> None:
        """Hand an event to the consumer."""
        self._queue.put_nowait(event)
        pending = self._queue.qsize()
        if pending > self.stats.max_pending:
            self.stats.max_pending = pending
        if pending >= self.settings.backlog_warning and not self._backlog_warned:
            self._backlog_warned = True
            log.warning(
                "notification stream: %d events are waiting for the consumer, which falls behind "
                "the platform (a slow outbox disk or an overloaded process); nothing is dropped, "
                "but memory grows until it catches up",
                pending,
            )

    def _fail(self, error: BaseException) -> None:
        """End the iteration with ``error``."""
        self._queue.put_nowait(_Failed(error))

    def _record_close(self, diagnosis: CloseDiagnosis) -> None:
        """Keep and report a socket's close diagnosis."""
        self.stats.closes.append(diagnosis)
        if diagnosis.cause in _EXPECTED_CAUSES:
            log.info("notification channel closed: %s", diagnosis.one_line())
        else:
            log.warning("notification channel closed: %s", diagnosis.one_line())
        if self.on_close is not None:
            try:
                self.on_close(diagnosis)
            except Exception:
                log.exception("the on_close hook failed")

    async def __aenter__(self) -> Self:
        self._runners = [_ChannelRunner(self, i, group) for i, group in enumerate(self.plan)]
        self._tasks = [
            asyncio.create_task(runner.run(), name=f"crmphone-channel-{runner.index}")
            for runner in self._runners
        ]
        try:
            await asyncio.gather(*(runner.started for runner in self._runners))
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every socket and stop; pending events already received stay readable."""
        if self._closed:
            return
        self._closed = True
        await _cancel_and_wait(self._tasks)
        for runner in self._runners:
            await runner.stop()
            if not runner.started.done():
                runner.started.cancel()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> TopicEvent:
        batch = await self.next_batch(1)
        if not batch:
            raise StopAsyncIteration
        return batch[0]

    async def next_batch(self, limit: int = 1000) -> list[TopicEvent]:
        """Wait for the next event, and return it with every other one already waiting (at most
        ``limit``, in order): a consumer that stores events pays one commit per batch, not per
        event, so it catches up after a burst.

        Returns an empty list once the stream is closed and drained; raises what ended the stream
        (after the events received before it were returned).
        """
        if self._failure is not None:
            raise self._failure.error
        if self._closed and self._queue.empty():
            return []
        batch: list[TopicEvent] = []
        item = await self._queue.get()
        while True:
            if isinstance(item, _Failed):
                if not batch:
                    raise item.error
                self._failure = item
                break
            batch.append(item)
            if len(batch) >= limit or self._queue.empty():
                break
            item = self._queue.get_nowait()
        if self._backlog_warned and self._queue.qsize() < self.settings.backlog_warning // 2:
            self._backlog_warned = False
            log.info(
                "notification stream: the consumer caught up (%d waiting)", self._queue.qsize()
            )
        return batch

    def pending(self) -> int:
        """Events received and not yet consumed."""
        return self._queue.qsize()
