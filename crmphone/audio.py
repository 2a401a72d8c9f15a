"""Pluggable audio: where the audio crmphone sends comes from, and where received audio goes.

Both ends of a call use this module: the softphone sends a source (its microphone) and plays or
records what the edge sends; the sandbox's media edge plays a caller (a tone) and captures what the
agent sends, to check it. Pick one :class:`AudioSource` and one :class:`AudioSink`:

.. code-block:: python

    from crmphone.audio import AudioCapture, AudioDevice, AudioFileSink, Tone

    source = Tone(440.0)                                     # a test caller or agent
    source = AudioDevice("default", format="pulse")          # a real microphone (Linux)
    sink = AudioFileSink("call.wav")                         # record what arrives
    sink = AudioCapture(keep_seconds=1.0)                    # or analyse it
    ...                                                      # hand them to the phone / the edge
    assert sink.has_tone(440.0)                              # after a call carrying a 440 Hz tone
    print(sink.level_dbfs(), sink.first_frame_at)

Sources: :class:`Tone`, :class:`Silence`, :class:`AudioFile`, :class:`AudioDevice`. Sinks:
:class:`Discard` (the default), :class:`AudioCapture`, :class:`AudioFileSink`,
:class:`AudioDeviceSink`. Other sources and sinks subclass :class:`AudioSource` (implement
``_open_track``) or :class:`AudioSink` (implement ``_consume``); those two hooks speak aiortc and
are the only place where its types appear.

How one sender carries call after call (for code that drives aiortc directly)
------------------------------------------------------------------------------
A persistent connection keeps one audio transceiver for its whole life and switches what it sends
with ``sender.replaceTrack(track)``: a source's track during a call, :func:`_idle_track` between
calls. aiortc's sender keeps reading the *old* track until that track's pending ``recv()``
returns, and it stops for good (no renegotiation can revive it) when a ``recv()`` raises or when a
frame's format differs from the first one it encoded. So every track made here:

* produces one format, **s16 stereo 48 kHz in 20 ms frames** (960 samples) — the format of
  aiortc's decoded audio and of its MediaPlayer, so their tracks can follow ours on a sender;
* stamps ``pts`` on one process-wide 48 kHz grid derived from ``time.monotonic()``
  (``pts = slot * 960``, slot = 20 ms since an epoch fixed at import), so that when tracks follow
  each other on a sender (tone A, idle, tone B) the RTP timestamps keep increasing with the wall
  clock, and aiortc's persistent encoder and the far end's jitter buffer see one continuous stream
  with a gap. A track's first frame is returned at once, stamped with the next slot or, when
  :func:`_switch_track` told it which track it follows, the slot after that track's last frame
  if that is later; every later frame is returned when its slot is due, never before;
* answers a ``recv()`` that is pending when the track is stopped with one more frame (the idle
  track: one frame of silence, on a slot after anything it followed, at once when it knows what
  that was), and raises
  ``MediaStreamError`` only from a ``recv()`` called after the stop. Hence the switching rule:
  **first** ``sender.replaceTrack(new)``, **then** ``old.stop()`` (see :func:`_switch_track`);
  stopping first would end the sender.

The tracks of :class:`AudioFile` and :class:`AudioDevice` are normalised to that format and grid
(:func:`_normalised_track` does the same for any aiortc audio track, e.g. one relayed from another
connection). A file played without ``loop`` falls silent at its end instead of ending the track.
"""

from __future__ import annotations

import abc
import array
import asyncio
import fractions
import functools
import logging
import math
import operator
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.contrib.media import MediaPlayer, MediaRecorder
from aiortc.mediastreams import MediaStreamError

from crmphone.errors import ConfigError

__all__ = [
    "AudioCapture",
    "AudioDevice",
    "AudioDeviceSink",
    "AudioFile",
    "AudioFileSink",
    "AudioSink",
    "AudioSource",
    "Discard",
    "Silence",
    "Tone",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# The frame grid shared by every track this process makes

_SAMPLE_RATE = 48_000
_FRAME_SAMPLES = 960  # 20 ms, aiortc's audio packetisation
_FRAME_NS = 20_000_000
_CHANNELS = 2
_LAYOUT = "stereo"
_FRAME_BYTES = _FRAME_SAMPLES * _CHANNELS * 2
_TIME_BASE = fractions.Fraction(1, _SAMPLE_RATE)
_SILENCE = bytes(_FRAME_BYTES)
_EPOCH_NS = time.monotonic_ns()
# A track that fell further behind than this (a stalled event loop, a slow device) skips ahead
# to the present instead of bursting out the backlog: latency stays bounded.
_MAX_LAG_SLOTS = 3
# Frames a normalised track buffers ahead of its reader before dropping the oldest.
_MAX_BUFFERED_FRAMES = 10
_WAKE_MARGIN_SECONDS = 50e-6


def _slot_now() -> int:
    """The 20 ms slot the monotonic clock is in (integer nanoseconds: no float rounding)."""
    return (time.monotonic_ns() - _EPOCH_NS) // _FRAME_NS


async def _sleep_until_due(slot: int) -> None:
    """Sleep until ``slot`` has begun.

    asyncio may run a timer up to its clock resolution early; the small margin makes sure the
    slot has begun when we wake (the ordering of slots across tracks relies on it).
    """
    delay_ns = _EPOCH_NS + slot * _FRAME_NS - time.monotonic_ns()
    if delay_ns > 0:
        await asyncio.sleep(delay_ns / 1e9 + _WAKE_MARGIN_SECONDS)


def _make_frame(payload: bytes, slot: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout=_LAYOUT, samples=_FRAME_SAMPLES)
    frame.planes[0].update(payload)
    frame.pts = slot * _FRAME_SAMPLES
    frame.sample_rate = _SAMPLE_RATE
    frame.time_base = _TIME_BASE
    return frame


class _FrameClock:
    """Hands one track its slots: the first one at once (the next slot), later ones when due.

    Frames on one sender must carry increasing slots across the tracks that follow each other
    on it. When :func:`_switch_track` put this track on its sender, it knows the track it follows
    (or that nothing came before), so its first slot need only come after that track's last one
    and nothing has to wait. A track put on a sender some other way cannot know what came before
    and stays on the safe side: its release frame waits for a slot two after its reader began
    waiting.
    """

    def __init__(self) -> None:
        self.started: int | None = None
        self.last: int | None = None
        self._follows: _FrameClock | None = None
        self._follows_known = False

    def follow(self, previous: _FrameClock | None) -> None:
        """This track comes after ``previous``'s on its sender (None: after nothing)."""
        self._follows, self._follows_known = previous, True

    def floor(self) -> int | None:
        """The lowest slot this track's next frame may carry; None when that is unknown."""
        if self.last is not None:
            return self.last + 1
        if not self._follows_known:
            return None
        # The sender read the previous track to its end before reading this one, so its last
        # slot is final by now. The chain is at most a few tracks long: see _take().
        return 0 if self._follows is None else self._follows.floor()

    def reading(self) -> None:
        """Note that a reader began waiting on this track (the first time only)."""
        if self.started is None:
            self.started = _slot_now()

    async def next_slot(self) -> int:
        now = _slot_now()
        if self.last is None:
            slot = max(now + 1, self.floor() or 0)
        elif self.last + 1 < now - _MAX_LAG_SLOTS:
            slot = now
        else:
            slot = self.last + 1
            await _sleep_until_due(slot)
        return self._take(slot)

    async def release_slot(self) -> int:
        """A slot for one last frame that sorts after everything before it on this sender.

        Known floor (this track returned frames, or _switch_track told it what it follows): the
        slot after that, at once — the track read next is told about this one in turn. Unknown:
        two slots after this track's reader began waiting (whatever that reader got before, from
        another track, carried a slot at most one after that), returned only when due, so that a
        track read next starts on a later slot even if it knows nothing of this one.
        """
        self.reading()
        floor = self.floor()
        if floor is not None:
            return self._take(max(_slot_now(), floor))
        assert self.started is not None
        slot = max(_slot_now(), self.started + 2)
        await _sleep_until_due(slot)
        return self._take(slot)

    def _take(self, slot: int) -> int:
        self.last = slot
        self._follows = None  # our own last slot says it all now; let the old track go
        return slot


class _GridTrack(MediaStreamTrack):
    """An audio track of this module: frames on the process grid, paced by a _FrameClock."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._clock = _FrameClock()


class _GeneratedTrack(_GridTrack):
    """A paced track computing each frame's payload from its slot."""

    def __init__(self, payload: Callable[[int], bytes]) -> None:
        super().__init__()
        self._payload = payload

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        slot = await self._clock.next_slot()
        # A stop while we slept still gets this frame: the sender may be waiting on it.
        return _make_frame(self._payload(slot), slot)


class _IdleTrack(_GridTrack):
    """The paused microphone: ``recv()`` waits (no timer, no polling) until the track is stopped."""

    def __init__(self) -> None:
        super().__init__()
        self._stopped = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._clock.reading()
        await self._stopped.wait()
        slot = await self._clock.release_slot()
        return _make_frame(_SILENCE, slot)

    def stop(self) -> None:
        super().stop()
        self._stopped.set()


def _idle_track() -> MediaStreamTrack:
    """An audio track that sends nothing: what a persistent sender carries between calls.

    Its ``recv()`` blocks on an event (zero wakeups, so idle sessions cost no CPU) until the track
    is stopped. A ``recv()`` pending at the stop then returns one 20 ms frame of silence, so a
    sender waiting here moves on to the track that replaced this one; a ``recv()`` after the stop
    raises ``MediaStreamError``. aiortc's sender with no track at all polls every 20 ms instead.
    """
    return _IdleTrack()


def _switch_track(sender: RTCRtpSender, track: MediaStreamTrack) -> None:
    """Make ``sender`` send ``track`` from now on and stop the track it sent before.

    In that order: the stop releases the sender's pending read of the old track; stopping first
    would end the sender. A track of this module learns which one it follows, so its first frame
    goes out at once instead of waiting for a slot that surely sorts after the old track's.
    """
    old: MediaStreamTrack | None = sender.track  # None before the first track
    if isinstance(track, _GridTrack):
        if old is None:
            track._clock.follow(None)
        elif isinstance(old, _GridTrack):
            track._clock.follow(old._clock)
    sender.replaceTrack(track)
    if old is not None and old is not track:
        old.stop()


class _NormalisedTrack(_GridTrack):
    """Any aiortc audio track, re-cut to s16 stereo 48 kHz 20 ms frames on the process grid.

    A pump task reads the inner track from the first ``recv()`` on; frames are paced like a
    generated track's. When the inner track ends, this one falls silent (``recv()`` waits until
    stopped) rather than ending a sender it may be feeding.
    """

    def __init__(self, inner: MediaStreamTrack) -> None:
        super().__init__()
        self._inner = inner
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pump_task: asyncio.Task[None] | None = None
        self.source_ended = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._clock.reading()
        if self._pump_task is None:
            self._pump_task = asyncio.get_running_loop().create_task(
                self._pump(), name="crmphone-audio-pump"
            )
        payload = await self._queue.get()
        if payload is None:
            slot = await self._clock.release_slot()
            return _make_frame(_SILENCE, slot)
        slot = await self._clock.next_slot()
        return _make_frame(payload, slot)

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._offer(None)
            if self._pump_task is not None:
                self._pump_task.cancel()
            self._inner.stop()

    def _offer(self, payload: bytes | None) -> None:
        if payload is not None and self._queue.qsize() >= _MAX_BUFFERED_FRAMES:
            self._queue.get_nowait()  # the reader fell behind: drop the oldest, keep latency
        self._queue.put_nowait(payload)

    async def _pump(self) -> None:
        resampler = av.AudioResampler(
            format="s16", layout=_LAYOUT, rate=_SAMPLE_RATE, frame_size=_FRAME_SAMPLES
        )
        try:
            while True:
                frame = await self._inner.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                for out in resampler.resample(frame):
                    self._offer(bytes(out.planes[0])[:_FRAME_BYTES])
        except MediaStreamError:
            self.source_ended.set()
        except Exception:
            # A source that fails to decode or changes format mid-stream: treat it as ended
            # (nobody awaits this task, so say it here).
            logger.exception("audio source failed; sending nothing until the call ends")
            self.source_ended.set()


def _normalised_track(track: MediaStreamTrack) -> MediaStreamTrack:
    """``track`` (any aiortc audio track) as a track safe to put on a persistent sender."""
    return _NormalisedTrack(track)


# ---------------------------------------------------------------------------------------------
# Sources


class AudioSource(abc.ABC):
    """Where the audio crmphone sends comes from.

    A source is a recipe, not a stream: the phone (or the edge) asks it for a fresh track at each
    call and stops that track when the call ends, so one source serves any number of calls.
    """

    @abc.abstractmethod
    def _open_track(self) -> MediaStreamTrack:
        """A new aiortc audio track for one call (s16 stereo 48 kHz 20 ms frames, see above)."""


def _tone_payload_table(frequency: float, amplitude: float) -> Callable[[int], bytes]:
    """Payload of slot ``n`` for a sine whose phase follows the absolute pts (no clicks)."""
    peak = amplitude * 32767.0
    step = 2.0 * math.pi * frequency / _SAMPLE_RATE
    if frequency.is_integer():
        # The waveform repeats every 48000/gcd(f, 48000) samples: slice a precomputed table.
        period = _SAMPLE_RATE // math.gcd(int(frequency), _SAMPLE_RATE)
        table = _tone_table(period, step, peak)

        def from_table(slot: int) -> bytes:
            start = (slot * _FRAME_SAMPLES) % period * _CHANNELS * 2
            return table[start : start + _FRAME_BYTES]

        return from_table

    def computed(slot: int) -> bytes:
        first = slot * _FRAME_SAMPLES
        samples = array.array("h", bytes(_FRAME_BYTES))
        for i in range(_FRAME_SAMPLES):
            value = round(peak * math.sin(step * (first + i)))
            samples[2 * i] = samples[2 * i + 1] = value
        return samples.tobytes()

    return computed


@functools.lru_cache(maxsize=32)
def _tone_table(period: int, step: float, peak: float) -> bytes:
    """One period of the sine and a frame more, interleaved stereo, as s16 bytes."""
    samples = array.array("h")
    for i in range(period + _FRAME_SAMPLES):
        value = round(peak * math.sin(step * i))
        samples.append(value)
        samples.append(value)
    return samples.tobytes()


class Tone(AudioSource):
    """A sine tone: a test caller, or a test agent whose audio the edge can recognise.

    :param frequency: in Hz, below the 24 kHz Nyquist limit (300-3400 Hz survives any codec).
    :param amplitude: peak level as a fraction of full scale, ``0 < amplitude <= 1``.
    """

    def __init__(self, frequency: float = 440.0, *, amplitude: float = 0.25) -> None:
        if not (math.isfinite(frequency) and 0 < frequency < _SAMPLE_RATE / 2):
            raise ConfigError(
                f"must be between 0 and {_SAMPLE_RATE // 2} Hz, not {frequency!r}",
                key="tone.frequency",
            )
        if not (math.isfinite(amplitude) and 0 < amplitude <= 1):
            raise ConfigError(
                f"must be a fraction of full scale in (0, 1], not {amplitude!r}",
                key="tone.amplitude",
            )
        self.frequency = float(frequency)
        self.amplitude = float(amplitude)

    def __repr__(self) -> str:
        return f"Tone({self.frequency:g}, amplitude={self.amplitude:g})"

    def _open_track(self) -> MediaStreamTrack:
        return _GeneratedTrack(_tone_payload_table(self.frequency, self.amplitude))


class Silence(AudioSource):
    """Digital silence, sent as real packets (unlike the idle track between calls, which sends none).

    Useful where the far end must see media flowing but no sound is wanted.
    """

    def __repr__(self) -> str:
        return "Silence()"

    def _open_track(self) -> MediaStreamTrack:
        return _GeneratedTrack(lambda _slot: _SILENCE)


def _check_audio_input(path: str, key: str, *, loop: bool) -> None:
    """Raise a ConfigError unless ``path`` is a file av can open that has an audio stream."""
    if not os.path.isfile(path):
        raise ConfigError(f"no such file: {path!r}", key=key)
    try:
        with av.open(path, mode="r") as container:
            has_audio = any(stream.type == "audio" for stream in container.streams)
            seekable = container.duration is not None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path!r} as media: {exc}", key=key) from exc
    if not has_audio:
        raise ConfigError(f"{path!r} has no audio stream", key=key)
    if loop and not seekable:
        raise ConfigError(f"{path!r} has no known duration, so it cannot loop", key=key)


class AudioFile(AudioSource):
    """Plays an audio file (any format FFmpeg reads) through aiortc's MediaPlayer.

    Each call plays the file from its start. With ``loop`` (the default) it repeats for as long as
    the call lasts; without, the call falls silent at the end of the file (the track does not end:
    that would end the connection's sender).

    :param path: the file; checked when the source is made, so a missing or unreadable file
        raises :class:`~crmphone.errors.ConfigError` (key ``audio_file``) here, not mid-call.
    """

    def __init__(self, path: str | os.PathLike[str], *, loop: bool = True) -> None:
        self.path = os.fspath(path)
        self.loop = loop
        _check_audio_input(self.path, "audio_file", loop=loop)

    def __repr__(self) -> str:
        return f"AudioFile({self.path!r}, loop={self.loop})"

    def _open_track(self) -> MediaStreamTrack:
        try:
            player = MediaPlayer(self.path, loop=self.loop)
        except (av.FFmpegError, OSError) as exc:
            raise ConfigError(f"cannot open {self.path!r}: {exc}", key="audio_file") from exc
        assert player.audio is not None  # checked at construction
        return _NormalisedTrack(player.audio)


def _check_format(format: str, key: str, *, output: bool) -> None:
    try:
        container_format = av.ContainerFormat(format)
    except ValueError as exc:
        raise ConfigError(f"FFmpeg knows no format {format!r}", key=key) from exc
    if output and not container_format.is_output:
        raise ConfigError(f"FFmpeg cannot write format {format!r}", key=key)
    if not output and not container_format.is_input:
        raise ConfigError(f"FFmpeg cannot read format {format!r}", key=key)


class AudioDevice(AudioSource):
    """Captures a sound device (a microphone) through aiortc's MediaPlayer.

    ``device`` and ``format`` are FFmpeg's input device and its name, for example
    ``AudioDevice("default", format="pulse")``, ``AudioDevice("hw:0", format="alsa")``,
    ``AudioDevice(":0", format="avfoundation")`` on macOS, or an FFmpeg filter as a test source:
    ``AudioDevice("sine=frequency=700", format="lavfi")``. ``options`` are FFmpeg's device options.
    The device is opened at each call; an unknown ``format`` raises
    :class:`~crmphone.errors.ConfigError` when the source is made, a device that cannot be opened
    when the call starts (key ``audio_device``).
    """

    def __init__(
        self, device: str, *, format: str, options: Mapping[str, str] | None = None
    ) -> None:
        _check_format(format, "audio_device.format", output=False)
        self.device = device
        self.format = format
        self.options = dict(options or {})

    def __repr__(self) -> str:
        return f"AudioDevice({self.device!r}, format={self.format!r})"

    def _open_track(self) -> MediaStreamTrack:
        try:
            player = MediaPlayer(self.device, format=self.format, options=dict(self.options))
        except (av.FFmpegError, OSError) as exc:
            raise ConfigError(
                f"cannot open {self.format} device {self.device!r}: {exc}", key="audio_device"
            ) from exc
        if player.audio is None:
            raise ConfigError(
                f"{self.format} device {self.device!r} has no audio", key="audio_device"
            )
        return _NormalisedTrack(player.audio)


# ---------------------------------------------------------------------------------------------
# Sinks


class AudioSink(abc.ABC):
    """Where received audio goes. Every remote track is consumed by exactly one sink task.

    aiortc buffers every frame a remote track receives until someone reads it, so a sink must read
    frames for as long as the track lives, whatever it does with them.
    """

    @abc.abstractmethod
    async def _consume(self, track: MediaStreamTrack) -> None:
        """Read ``track`` until it ends (``MediaStreamError``) or the task is cancelled.

        Never leave frames unread: stop reading only when the track has ended.
        """


async def _drain(track: MediaStreamTrack) -> None:
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            return


class Discard(AudioSink):
    """Reads and drops every frame (the default sink): no playback, no recording."""

    def __repr__(self) -> str:
        return "Discard()"

    async def _consume(self, track: MediaStreamTrack) -> None:
        await _drain(track)


# Analysis constants of AudioCapture.
_SILENT_RMS = 32768 * 10 ** (-55 / 20)  # quieter than -55 dBFS counts as silence
_LEVEL_FLOOR_DBFS = -120.0
_MIN_ANALYSIS_SECONDS = 0.05
_MIN_PERIODS = 4
_MIN_PURITY = 0.5


class AudioCapture(AudioSink):
    """Keeps the last ``keep_seconds`` of received audio and tells what is in it.

    Meant for tests and the sandbox's edge: did the far end send a 440 Hz tone, how loud, and
    when did its first frame arrive. The audio is kept as mono int16 (the first channel; WebRTC
    sends a mono source as identical channels) in a bounded ring; analysis runs only when asked,
    in a few milliseconds for a second of audio.

    ``frames_received`` counts every frame since the capture was made; ``first_frame_at`` is the
    ``time.monotonic()`` of the first frame since the capture was made or last :meth:`reset`.
    One capture should consume one track at a time (two at once would interleave their audio).

    On a connection that pauses between calls, aiortc's receiver holds the previous call's last
    four frames (80 ms) in its jitter buffer until the next call's first packet pushes them out.
    So after a :meth:`reset` at a call boundary, ``first_frame_at`` marks the arrival of the new
    call's first packet (its own audio is decoded about 80 ms later), and the kept audio starts
    with those leftovers; :meth:`dominant_frequency` looks past them.
    """

    def __init__(self, *, keep_seconds: float = 2.0) -> None:
        if not (math.isfinite(keep_seconds) and keep_seconds > 0):
            raise ConfigError(
                f"must be a positive number of seconds, not {keep_seconds!r}",
                key="audio_capture.keep_seconds",
            )
        self.keep_seconds = float(keep_seconds)
        self._frames_received = 0
        self._first_frame_at: float | None = None
        self._chunks: deque[array.array[int]] = deque()
        self._kept = 0
        self._rate = 0

    def __repr__(self) -> str:
        return f"AudioCapture(keep_seconds={self.keep_seconds:g})"

    @property
    def frames_received(self) -> int:
        """Frames consumed since this capture was made (not reset by :meth:`reset`)."""
        return self._frames_received

    @property
    def first_frame_at(self) -> float | None:
        """``time.monotonic()`` when the first frame since the last :meth:`reset` arrived."""
        return self._first_frame_at

    def reset(self) -> None:
        """Forget the kept audio and ``first_frame_at``: call at a call boundary."""
        self._chunks.clear()
        self._kept = 0
        self._first_frame_at = None

    def dominant_frequency(self) -> float | None:
        """The frequency of the tone that fills most of the kept audio, in Hz.

        None when less than 50 ms is kept, when it is silent (below -55 dBFS), or when no single
        tone dominates it (speech, noise). Estimated from the spacing of zero crossings over the
        longest stretch where that spacing is steady, then confirmed with a Goertzel filter: the
        stretch's energy must lie mostly at that frequency.
        """
        samples, rate = self._samples(), self._rate
        if len(samples) < rate * _MIN_ANALYSIS_SECONDS:
            return None
        stride = max(1, rate // 12_000)
        rms = _rms(samples[::stride])
        if rms < _SILENT_RMS:
            return None
        rising = _rising_crossings(samples, rms / 2)
        steady = _longest_steady_run(rising)
        if steady is None:
            return None
        first, last, periods = steady
        frequency = periods * rate / (last - first)
        if _tone_purity(samples[first:last], rate, frequency) < _MIN_PURITY:
            return None
        return frequency

    def has_tone(self, frequency: float, *, tolerance: float = 0.03) -> bool:
        """Whether the kept audio is dominated by ``frequency`` (within ``tolerance``, relative)."""
        found = self.dominant_frequency()
        return found is not None and abs(found - frequency) <= tolerance * frequency

    def level_dbfs(self) -> float | None:
        """RMS level of the kept audio in dBFS (floored at -120); None when nothing is kept."""
        samples = self._samples()
        if not samples:
            return None
        rms = _rms(samples)
        if rms <= 0:
            return _LEVEL_FLOOR_DBFS
        return max(_LEVEL_FLOOR_DBFS, 20 * math.log10(rms / 32768))

    async def _consume(self, track: MediaStreamTrack) -> None:
        converter: av.AudioResampler | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            self._frames_received += 1
            if self._first_frame_at is None:
                self._first_frame_at = time.monotonic()
            mono, converter = _first_channel(frame, converter)
            self._keep(mono, frame.sample_rate)

    def _keep(self, samples: array.array[int], rate: int) -> None:
        if rate != self._rate:
            self.reset()
            self._rate = rate
        self._chunks.append(samples)
        self._kept += len(samples)
        excess = self._kept - round(self.keep_seconds * rate)
        while excess > 0:
            oldest = self._chunks[0]
            if len(oldest) <= excess:
                self._chunks.popleft()
                self._kept -= len(oldest)
                excess -= len(oldest)
            else:
                self._chunks[0] = oldest[excess:]
                self._kept -= excess
                excess = 0

    def _samples(self) -> array.array[int]:
        joined = array.array("h")
        for chunk in self._chunks:
            joined.extend(chunk)
        return joined


def _first_channel(
    frame: av.AudioFrame, converter: av.AudioResampler | None
) -> tuple[array.array[int], av.AudioResampler | None]:
    """The frame's first channel as int16 samples (and the converter used for other formats)."""
    if frame.format.name in ("s16", "s16p"):
        channels = 1 if frame.format.is_planar else frame.layout.nb_channels
        samples = array.array("h")
        samples.frombytes(bytes(frame.planes[0])[: frame.samples * channels * 2])
        return (samples[::channels] if channels > 1 else samples), converter
    # Anything else (float, planar float, 32-bit): let FFmpeg convert, keeping the rate.
    if converter is None or converter.rate != frame.sample_rate:
        converter = av.AudioResampler(format="s16", layout="mono", rate=frame.sample_rate)
    samples = array.array("h")
    try:
        converted = converter.resample(frame)
    except ValueError:  # the format changed mid-stream: start a new converter
        converter = av.AudioResampler(format="s16", layout="mono", rate=frame.sample_rate)
        converted = converter.resample(frame)
    for out in converted:
        samples.frombytes(bytes(out.planes[0])[: out.samples * 2])
    return samples, converter


def _rms(samples: array.array[int]) -> float:
    if not samples:
        return 0.0
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples))


def _rising_crossings(samples: array.array[int], threshold: float) -> list[int]:
    """Indices where the signal rises from below ``-threshold`` to above ``threshold``.

    The dead band between the two (hysteresis) keeps codec noise near zero from counting.
    """
    rising: list[int] = []
    below = False
    low = -threshold
    for index, value in enumerate(samples):
        if value > threshold:
            if below:
                rising.append(index)
                below = False
        elif value < low:
            below = True
    return rising


def _longest_steady_run(rising: list[int]) -> tuple[int, int, int] | None:
    """The longest stretch of near-equal periods: ``(first index, last index, periods)``.

    A period belongs to the current stretch while it stays within 10 % (plus a sample and a half
    of quantisation) of the stretch's mean period.
    """
    best: tuple[int, int, int] | None = None
    start = 0
    total = 0
    count = 0
    for k in range(len(rising) - 1):
        period = rising[k + 1] - rising[k]
        if count and abs(period - total / count) > 0.1 * total / count + 1.5:
            if best is None or total > best[1] - best[0]:
                best = (rising[start], rising[start + count], count)
            start, total, count = k, 0, 0
        total += period
        count += 1
    if count and (best is None or total > best[1] - best[0]):
        best = (rising[start], rising[start + count], count)
    if best is None or best[2] < _MIN_PERIODS:
        return None
    return best


def _tone_purity(samples: array.array[int], rate: int, frequency: float) -> float:
    """Share of the energy of ``samples`` at ``frequency`` (Goertzel): 1.0 for a pure tone.

    ``samples`` spans whole periods, so the tone falls exactly on the filter's frequency. The
    signal is decimated (every n-th sample) down to no less than four samples per period, for speed.
    """
    stride = max(1, min(rate // 12_000, int(rate / (4 * frequency))))
    picked = samples[::stride]
    n = len(picked)
    energy = float(sum(map(operator.mul, picked, picked)))
    if n == 0 or energy == 0:
        return 0.0
    coefficient = 2 * math.cos(2 * math.pi * frequency * stride / rate)
    s1 = s2 = 0.0
    for value in picked:
        s1, s2 = value + coefficient * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coefficient * s1 * s2
    return 2 * power / (n * energy)


class _RecorderFeed(MediaStreamTrack):
    """What a MediaRecorder reads: ``inner``'s frames, with time stamps a muxer accepts.

    Received frames carry RTP time stamps: 32 bits from a random origin, so they wrap (within a
    day, at a random moment) and a muxer rejects the backward step. Re-based to start at 0 and
    kept increasing. ``ended`` is set when ``inner`` ends.
    """

    kind = "audio"

    def __init__(self, inner: MediaStreamTrack) -> None:
        super().__init__()
        self._inner = inner
        self._last_in: int | None = None
        self._last_out = 0
        self._last_samples = 0
        self.ended = asyncio.Event()

    async def recv(self) -> Any:
        try:
            frame = await self._inner.recv()
        except BaseException:
            self.ended.set()
            raise
        if isinstance(frame, av.AudioFrame) and frame.pts is not None:
            if self._last_in is None:
                out = 0
            else:
                step = (frame.pts - self._last_in) % 2**32
                if step >= 2**31:  # a step back: carry on right after the last frame
                    step = 0
                out = self._last_out + max(step, self._last_samples)
            self._last_in, self._last_out, self._last_samples = frame.pts, out, frame.samples
            frame.pts = out
        return frame


class _RecorderSink(AudioSink):
    """A sink writing through aiortc's MediaRecorder, opened per consumed track."""

    @abc.abstractmethod
    def _open_recorder(self) -> MediaRecorder: ...

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            recorder = self._open_recorder()
        except (av.FFmpegError, OSError, ValueError):
            # Nobody awaits a sink task's result, and an unread track grows without bound:
            # say so loudly, then keep the track drained.
            logger.exception("%r cannot record; discarding the received audio", self)
            await _drain(track)
            return
        feed = _RecorderFeed(track)
        recorder.addTrack(feed)
        await recorder.start()
        try:
            await feed.ended.wait()
        finally:
            await recorder.stop()


class AudioFileSink(_RecorderSink):
    """Records received audio to a file through aiortc's MediaRecorder.

    The container follows the extension: ``.wav`` (16-bit PCM), ``.ogg`` (Opus), ``.mp3``, others
    AAC. The file is written from the first frame until the track ends (the connection closes) and
    is complete only then; a second track consumed by the same sink overwrites it.

    :param path: the file to write; its directory must exist
        (:class:`~crmphone.errors.ConfigError`, key ``audio_file_sink``, otherwise).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not Path(self.path).parent.is_dir():
            raise ConfigError(f"no directory to write {self.path!r} in", key="audio_file_sink")

    def __repr__(self) -> str:
        return f"AudioFileSink({self.path!r})"

    def _open_recorder(self) -> MediaRecorder:
        return MediaRecorder(self.path)


class AudioDeviceSink(_RecorderSink):
    """Plays received audio on a sound device (a speaker) through aiortc's MediaRecorder.

    ``device`` and ``format`` are FFmpeg's output device and its name, for example
    ``AudioDeviceSink("default", format="alsa")``; ``options`` are FFmpeg's device options. An
    unknown format raises :class:`~crmphone.errors.ConfigError` (key ``audio_device_sink.format``)
    here; a device that cannot be opened is logged when the track arrives, and its audio dropped.
    """

    def __init__(
        self, device: str, *, format: str, options: Mapping[str, str] | None = None
    ) -> None:
        _check_format(format, "audio_device_sink.format", output=True)
        self.device = device
        self.format = format
        self.options = dict(options or {})

    def __repr__(self) -> str:
        return f"AudioDeviceSink({self.device!r}, format={self.format!r})"

    def _open_recorder(self) -> MediaRecorder:
        return MediaRecorder(self.device, format=self.format, options=dict(self.options))
