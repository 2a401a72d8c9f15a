"""The media binding: one aiortc peer connection with the platform's media edge.

A :class:`MediaSession` is created for a set-up (first call, or login), answers the platform's
offer, and then lives as long as the persistent connection does. It never renegotiates: the edge's
offer has one audio m-line, our answer takes its transceiver, and every later call switches what
that transceiver sends with ``replaceTrack`` — the microphone during a call, an idle track that
sends nothing between calls (so no audio leaves between calls and no timer wakes up to check).
The remote track is consumed from the moment it arrives to the end, by the configured sink
(PROTOCOLS.md §5: an unread track grows memory without bound).

Liveness: a task samples what arrived (RTP during calls, the edge's RTCP sender reports between
calls) and a :class:`~crmphone.phone.liveness.MediaLiveness` declares the path dead after a quiet
``window`` — seconds, where aiortc alone needs about 30.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpTransceiver, RTCSessionDescription

from crmphone import _webrtc
from crmphone._webrtc import IceSettings
from crmphone.audio import AudioSink, AudioSource, _idle_track, _switch_track

from .liveness import MediaLiveness

__all__ = ["MediaSession"]

logger = logging.getLogger(__name__)


class MediaSession:
    """One peer connection with the edge (internal to the phone; no aiortc types leak out).

    ``on_up`` is called once when ICE and DTLS complete; ``on_failed(detail)`` once when the
    connection fails, closes under us, or goes quiet for ``liveness_window`` seconds.
    """

    def __init__(
        self,
        *,
        session_id: str,
        ice: IceSettings,
        source: AudioSource,
        sink: AudioSink,
        on_up: Callable[[], None],
        on_failed: Callable[[str], None],
        liveness_window: float = 2.5,
        sample_interval: float = 0.25,
    ) -> None:
        self.session_id = session_id
        self._ice = ice
        self._source = source
        self._sink = sink
        self._on_up = on_up
        self._on_failed = on_failed
        self._liveness = MediaLiveness(liveness_window)
        self._sample_interval = sample_interval
        self._pc = _webrtc.create_peer_connection(ice)
        self._transceiver: RTCRtpTransceiver | None = None
        self._offered = asyncio.Event()
        self._microphone_live = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._reported = False
        self._connected = False
        self._pc.on("track", self._consume)
        self._pc.on("connectionstatechange", self._state_changed)

    async def accept_offer(self, sdp: str, *, microphone_live: bool) -> str:
        """Take the edge's offer and return our answer's SDP (ICE then runs by itself)."""
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        transceivers = self._pc.getTransceivers()
        if len(transceivers) != 1 or transceivers[0].kind != "audio":
            kinds = [t.kind for t in transceivers]
            raise ValueError(f"expected one audio m-line in the offer, got {kinds}")
        self._transceiver = transceivers[0]
        self._transceiver.direction = "sendrecv"
        self._offered.set()
        self.set_microphone(microphone_live)
        answer = await self._pc.createAnswer()
        await _webrtc.set_local_description(self._pc, answer, self._ice)
        return str(self._pc.localDescription.sdp)

    def set_microphone(self, live: bool) -> None:
        """Send the microphone (``live``) or nothing, on the same transceiver: no renegotiation."""
        if self._transceiver is None:
            self._microphone_live = live
            return
        sender = self._transceiver.sender
        if live == self._microphone_live and sender.track is not None:
            return
        _switch_track(sender, self._source._open_track() if live else _idle_track())
        self._microphone_live = live

    async def first_rtp_after(self, mark: datetime, within: float) -> datetime | None:
        """When the first RTP packet later than ``mark`` arrived from the edge (None: none came)."""
        try:
            async with asyncio.timeout(within):
                await self._offered.wait()
        except TimeoutError:
            return None
        assert self._transceiver is not None
        return await _webrtc.first_rtp_at(self._transceiver.receiver, after=mark, within=within)

    async def close(self) -> None:
        """Close the peer connection and stop everything it started."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        track = self._transceiver.sender.track if self._transceiver is not None else None
        with contextlib.suppress(Exception):
            await self._pc.close()
        if track is not None:
            track.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ internals

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _consume(self, track: MediaStreamTrack) -> None:
        self._spawn(self._sink._consume(track), f"crmphone-media-sink-{self.session_id}")

    def _state_changed(self) -> None:
        state = self._pc.connectionState
        if state == "connected" and not self._connected:
            self._connected = True
            self._on_up()
            self._spawn(self._watch(), f"crmphone-media-liveness-{self.session_id}")
        elif state in ("failed", "closed") and not self._closing:
            self._fail(f"the peer connection is {state}")

    def _fail(self, detail: str) -> None:
        if not self._reported:
            self._reported = True
            self._on_failed(detail)

    async def _watch(self) -> None:
        assert self._transceiver is not None
        receiver = self._transceiver.receiver
        while not self._closing:
            signature = await _webrtc.arrival_signature(receiver)
            if self._liveness.observe(signature, time.monotonic()):
                self._fail(f"no RTP or RTCP from the edge for {self._liveness.window:g} s")
                return
            await asyncio.sleep(self._sample_interval)
