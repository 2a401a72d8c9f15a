"""crmphone.audio: generated tracks, the idle track, capture analysis, files, devices, and a real
aiortc pair on 127.0.0.1 whose one transceiver carries call after call without renegotiation."""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import functools
import itertools
import math
import random
import time
import wave
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from crmphone import audio
from crmphone._webrtc import (
    LOOPBACK_ICE,
    create_peer_connection,
    first_rtp_at,
    set_local_description,
)
from crmphone.audio import (
    AudioCapture,
    AudioDevice,
    AudioDeviceSink,
    AudioFile,
    AudioFileSink,
    AudioSink,
    Discard,
    Silence,
    Tone,
    _idle_track,
    _normalised_track,
    _switch_track,
)
from crmphone.errors import ConfigError

RATE = 48_000
FRAME = 960

# ---------------------------------------------------------------------------------------------
# helpers


class FrameList(MediaStreamTrack):
    """A finite track: hands out the given frames as fast as they are read, then ends."""

    kind = "audio"

    def __init__(self, frames: list[av.AudioFrame]) -> None:
        super().__init__()
        self._frames = list(frames)

    async def recv(self) -> av.AudioFrame:
        if not self._frames:
            self.stop()
            raise MediaStreamError
        return self._frames.pop(0)


class Tap(MediaStreamTrack):
    """Passes a track through, recording ``(time.monotonic(), pts)`` of every frame."""

    kind = "audio"

    def __init__(self, inner: MediaStreamTrack) -> None:
        super().__init__()
        self._inner = inner
        self.arrivals: list[tuple[float, int]] = []

    async def recv(self) -> av.AudioFrame:
        frame = await self._inner.recv()
        assert isinstance(frame, av.AudioFrame)
        assert frame.pts is not None
        self.arrivals.append((time.monotonic(), frame.pts))
        return frame


def pcm_frames(
    samples: Callable[[int], float],
    seconds: float,
    *,
    rate: int = RATE,
    layout: str = "stereo",
    fmt: str = "s16",
) -> list[av.AudioFrame]:
    """20 ms frames of ``samples(n)`` (full scale = 1.0) in the given layout and format."""
    channels = 2 if layout == "stereo" else 1
    per_frame = rate // 50
    frames = []
    for k in range(round(seconds * 50)):
        values = [samples(k * per_frame + i) for i in range(per_frame)]
        if fmt == "s16":
            data = array.array("h", (round(v * 32767) for v in values for _ in range(channels)))
        else:  # packed 32-bit float
            data = array.array("f", (v for v in values for _ in range(channels)))
        frame = av.AudioFrame(format=fmt, layout=layout, samples=per_frame)
        frame.planes[0].update(data.tobytes())
        frame.sample_rate = rate
        frame.pts = k * per_frame
        frame.time_base = fractions.Fraction(1, rate)
        frames.append(frame)
    return frames


def sine(frequency: float, *, amplitude: float = 0.25, rate: int = RATE) -> Callable[[int], float]:
    return lambda n: amplitude * math.sin(2 * math.pi * frequency * n / rate)


async def captured(frames: list[av.AudioFrame], *, keep_seconds: float = 2.0) -> AudioCapture:
    capture = AudioCapture(keep_seconds=keep_seconds)
    await capture._consume(FrameList(frames))
    return capture


def write_wav(path: Path, frequency: float, seconds: float, *, rate: int = 16_000) -> None:
    """A mono 16-bit WAV of a tone (not 48 kHz, so playback must resample)."""
    tone = sine(frequency, rate=rate)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = array.array("h", (round(tone(n) * 32767) for n in range(round(seconds * rate))))
        out.writeframes(samples.tobytes())


def decoded(path: Path) -> list[av.AudioFrame]:
    with av.open(str(path)) as container:
        return [f for f in container.decode(audio=0) if isinstance(f, av.AudioFrame)]


async def eventually(condition: Callable[[], bool], *, within: float) -> bool:
    """Poll ``condition`` every 10 ms until it holds (True) or ``within`` seconds pass (False)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def assert_stream_format(frame: av.AudioFrame) -> None:
    assert frame.format.name == "s16"
    assert frame.layout.name == "stereo"
    assert frame.sample_rate == RATE
    assert frame.samples == FRAME
    assert frame.time_base == fractions.Fraction(1, RATE)
    assert frame.pts is not None
    assert frame.pts % FRAME == 0


def pts_of(frames: list[av.AudioFrame]) -> list[int]:
    values = [f.pts for f in frames]
    assert all(v is not None for v in values)
    return [v for v in values if v is not None]


def strictly_increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


# ---------------------------------------------------------------------------------------------
# generated tracks


async def test_tone_frames_are_48k_stereo_20ms_paced_and_the_first_is_immediate() -> None:
    """A tone track returns its first frame at once, then one 20 ms frame per 20 ms."""
    track = Tone(440)._open_track()
    asked = time.monotonic()
    first = await track.recv()
    first_at = time.monotonic()
    assert first_at - asked < 0.01
    frames = [first] + [await track.recv() for _ in range(10)]
    elapsed = time.monotonic() - first_at
    track.stop()

    for frame in frames:
        assert isinstance(frame, av.AudioFrame)
        assert_stream_format(frame)
    pts = pts_of(frames)
    assert [b - a for a, b in itertools.pairwise(pts)] == [FRAME] * 10
    # The first frame is stamped with the next slot, so ten more take 200-220 ms.
    assert 0.18 <= elapsed <= 0.3, elapsed
    capture = await captured(frames)
    assert capture.has_tone(440, tolerance=0.02)


async def test_pts_keep_increasing_across_tracks_as_a_sender_switches_them() -> None:
    """Tone A, the idle track, tone B and silence, read in turn, carry strictly increasing pts."""
    seen: list[av.AudioFrame] = []
    tone_a = Tone(440)._open_track()
    seen += [await tone_a.recv() for _ in range(3)]
    tone_a.stop()

    idle = _idle_track()
    waiting = asyncio.ensure_future(idle.recv())
    await asyncio.sleep(0.05)  # the pause between two calls
    tone_b = Tone(1000)._open_track()
    idle.stop()  # as after replaceTrack(tone_b): the pending read gets one frame of silence
    seen.append(await waiting)
    seen += [await tone_b.recv() for _ in range(3)]
    tone_b.stop()

    silence = Silence()._open_track()  # directly after another generated track
    seen += [await silence.recv() for _ in range(2)]
    silence.stop()

    for frame in seen:
        assert isinstance(frame, av.AudioFrame)
        assert_stream_format(frame)
    pts = pts_of(seen)
    assert strictly_increasing(pts), pts
    # The idle pause shows as a gap in the time stamps (48 kHz clock = wall clock).
    assert pts[3] - pts[2] >= 0.04 * RATE
    assert bytes(seen[3].planes[0]) == bytes(FRAME * 4)
    assert bytes(seen[-1].planes[0]) == bytes(FRAME * 4)


async def test_an_idle_track_stopped_right_after_a_first_frame_still_sorts_after_it() -> None:
    """Even a switch within one 20 ms slot keeps the order: the release frame waits its turn."""
    tone_a = Tone(300)._open_track()
    first = await tone_a.recv()  # a first frame is stamped one slot ahead
    tone_a.stop()
    idle = _idle_track()
    waiting = asyncio.ensure_future(idle.recv())
    await asyncio.sleep(0)
    idle.stop()
    released = await waiting
    tone_b = Tone(600)._open_track()
    next_first = await tone_b.recv()
    tone_b.stop()
    assert strictly_increasing(pts_of([first, released, next_first]))


class SenderStub:
    """What _switch_track needs of an RTCRtpSender: its track, and replaceTrack."""

    def __init__(self) -> None:
        self.track: MediaStreamTrack | None = None

    def replaceTrack(self, track: MediaStreamTrack | None) -> None:  # noqa: N802 - aiortc's name
        self.track = track


async def test_a_call_right_after_the_last_one_starts_without_waiting_for_a_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tracks switched by _switch_track know what they follow: release and first frame at once.

    The case of back-to-back calls: the idle track was read for a moment only, so the safe floor
    (two slots after its read began) would hold the next call's first packet up to 40 ms.
    """
    sender = SenderStub()
    switch = functools.partial(audio._switch_track, sender)
    switch(Tone(440)._open_track())
    assert sender.track is not None
    seen = [await sender.track.recv() for _ in range(3)]
    switch(_idle_track())
    idle = sender.track
    waiting = asyncio.ensure_future(idle.recv())
    await asyncio.sleep(0)

    slept: list[int] = []

    async def no_sleep(slot: int) -> None:
        slept.append(slot)

    monkeypatch.setattr(audio, "_sleep_until_due", no_sleep)
    switch(Tone(880)._open_track())  # the next call, within the same 20 ms slot
    seen.append(await waiting)
    seen.append(await sender.track.recv())
    assert slept == []
    assert strictly_increasing(pts_of(seen)), pts_of(seen)
    assert bytes(seen[3].planes[0]) == bytes(FRAME * 4)


async def test_switched_tracks_never_share_a_slot_even_when_switched_before_being_read() -> None:
    """A track replaced before the sender read it still passes on what it followed."""
    sender = SenderStub()
    switch = functools.partial(audio._switch_track, sender)
    switch(_idle_track())
    assert sender.track is not None
    first_idle = sender.track
    waiting = asyncio.ensure_future(first_idle.recv())
    await asyncio.sleep(0)
    switch(Tone(500)._open_track())
    seen = [await waiting]
    tone = sender.track
    seen.append(await tone.recv())  # one frame of a short call: stamped one slot ahead
    switch(_idle_track())  # hung up at once ...
    switch(Tone(700)._open_track())  # ... and the next call before the sender read the idle track
    seen += [await sender.track.recv() for _ in range(2)]
    assert strictly_increasing(pts_of(seen)), pts_of(seen)


async def test_a_tone_stopped_while_a_read_is_pending_answers_it_then_ends() -> None:
    """The pending read (the sender's) gets its frame; only a later read raises."""
    track = Tone(500)._open_track()
    await track.recv()
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    frame = await asyncio.wait_for(pending, 0.1)
    assert isinstance(frame, av.AudioFrame)
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_the_idle_track_waits_without_waking_until_it_is_stopped() -> None:
    """20 idle tracks being read cost no CPU; a stop releases each read with one silent frame."""
    tracks = [_idle_track() for _ in range(20)]
    reads = [asyncio.ensure_future(track.recv()) for track in tracks]
    cpu_before = time.process_time()
    done, _ = await asyncio.wait(reads, timeout=0.3)
    cpu_used = time.process_time() - cpu_before
    assert not done
    assert cpu_used < 0.03, cpu_used

    stopped_at = time.monotonic()
    for track in tracks:
        track.stop()
    frames = await asyncio.wait_for(asyncio.gather(*reads), 0.1)
    assert time.monotonic() - stopped_at < 0.05
    for frame in frames:
        assert isinstance(frame, av.AudioFrame)
        assert_stream_format(frame)
        assert bytes(frame.planes[0]) == bytes(FRAME * 4)
    with pytest.raises(MediaStreamError):
        await tracks[0].recv()


async def test_any_aiortc_track_can_be_normalised_onto_the_grid() -> None:
    """aiortc's own 8 kHz mono track comes out as 48 kHz stereo 20 ms frames with grid pts."""
    track = _normalised_track(AudioStreamTrack())
    frames = [await track.recv() for _ in range(4)]
    track.stop()
    for frame in frames:
        assert isinstance(frame, av.AudioFrame)
        assert_stream_format(frame)
    assert strictly_increasing(pts_of(frames))


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: Tone(0), "tone.frequency"),
        (lambda: Tone(30_000), "tone.frequency"),
        (lambda: Tone(440, amplitude=1.5), "tone.amplitude"),
        (lambda: Tone(440, amplitude=0), "tone.amplitude"),
        (lambda: AudioCapture(keep_seconds=0), "audio_capture.keep_seconds"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(
    make: Callable[[], object], key: str
) -> None:
    """Out-of-range settings fail when the object is made, naming the setting."""
    with pytest.raises(ConfigError) as caught:
        make()
    assert caught.value.key == key


# ---------------------------------------------------------------------------------------------
# AudioCapture analysis


@pytest.mark.parametrize("frequency", [300.0, 440.0, 1000.0, 2500.0, 3400.0])
async def test_capture_finds_a_tone_within_two_percent(frequency: float) -> None:
    """The dominant frequency of a kept tone is within 2 % of the tone."""
    capture = await captured(pcm_frames(sine(frequency), 1.0))
    found = capture.dominant_frequency()
    assert found is not None
    assert abs(found - frequency) <= 0.02 * frequency
    assert capture.has_tone(frequency, tolerance=0.02)
    assert not capture.has_tone(frequency * 1.1)
    level = capture.level_dbfs()
    assert level is not None
    assert level == pytest.approx(20 * math.log10(0.25 / math.sqrt(2)), abs=0.2)


async def test_capture_analyses_a_second_of_audio_in_a_few_milliseconds() -> None:
    """Analysis is lazy and cheap: a second of audio takes well under 20 ms."""
    capture = await captured(pcm_frames(sine(1000), 1.0))
    started = time.perf_counter()
    capture.dominant_frequency()
    capture.level_dbfs()
    assert time.perf_counter() - started < 0.02


async def test_capture_reports_none_for_silence_noise_and_too_little_audio() -> None:
    """Silence, noise or 20 ms of audio have no dominant frequency."""
    silent = await captured(pcm_frames(lambda n: 0.0, 0.5))
    assert silent.dominant_frequency() is None
    assert silent.level_dbfs() == -120.0
    quiet = await captured(pcm_frames(sine(1000, amplitude=0.0005), 0.5))  # about -69 dBFS
    assert quiet.dominant_frequency() is None
    noise_source = random.Random(7)
    noisy = await captured(pcm_frames(lambda n: noise_source.uniform(-0.3, 0.3), 0.5))
    assert noisy.dominant_frequency() is None
    short = await captured(pcm_frames(sine(1000), 0.02))
    assert short.dominant_frequency() is None
    empty = AudioCapture()
    assert empty.dominant_frequency() is None
    assert empty.level_dbfs() is None
    assert empty.first_frame_at is None


async def test_capture_ignores_a_short_stale_tone_before_the_one_that_fills_it() -> None:
    """80 ms of a previous call's tone (a jitter buffer's leftovers) does not hide the new one."""
    frames = pcm_frames(sine(500), 0.08) + pcm_frames(sine(1200), 0.6)
    capture = await captured(frames)
    assert capture.has_tone(1200, tolerance=0.02)


async def test_capture_reset_forgets_audio_and_first_frame_time() -> None:
    """reset() starts a new call: nothing kept, no first frame, the frame count goes on."""
    capture = AudioCapture()
    before = time.monotonic()
    await capture._consume(FrameList(pcm_frames(sine(440), 0.4)))
    assert capture.first_frame_at is not None
    assert capture.first_frame_at >= before
    assert capture.frames_received == 20
    capture.reset()
    assert capture.first_frame_at is None
    assert capture.level_dbfs() is None
    assert capture.dominant_frequency() is None
    assert capture.frames_received == 20
    await capture._consume(FrameList(pcm_frames(sine(880), 0.4)))
    assert capture.has_tone(880)
    assert capture.frames_received == 40


async def test_capture_ring_is_bounded_to_keep_seconds() -> None:
    """Only the last keep_seconds are kept: older audio drops out exactly."""
    capture = await captured(
        pcm_frames(sine(500), 2.0) + pcm_frames(sine(1500), 0.75), keep_seconds=0.5
    )
    assert len(capture._samples()) == RATE // 2
    assert capture.has_tone(1500, tolerance=0.02)


async def test_capture_accepts_mono_float_and_other_rates() -> None:
    """Mono, float and 8 kHz frames are analysed at their own rate."""
    mono = await captured(pcm_frames(sine(700), 0.5, layout="mono"))
    assert mono.has_tone(700, tolerance=0.02)
    floats = await captured(pcm_frames(sine(900), 0.5, fmt="flt"))
    assert floats.has_tone(900, tolerance=0.02)
    narrow = await captured(pcm_frames(sine(1000, rate=8000), 0.5, rate=8000, layout="mono"))
    assert narrow.has_tone(1000, tolerance=0.02)
    assert len(narrow._samples()) == 4000


# ---------------------------------------------------------------------------------------------
# files and devices without a network


async def test_audio_file_that_is_missing_or_not_media_is_a_config_error(tmp_path: Path) -> None:
    """A bad file fails when the source is made, not mid-call."""
    with pytest.raises(ConfigError, match="no such file") as caught:
        AudioFile(tmp_path / "missing.wav")
    assert caught.value.key == "audio_file"
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio")
    with pytest.raises(ConfigError) as caught:
        AudioFile(junk)
    assert caught.value.key == "audio_file"


async def test_audio_file_without_loop_falls_silent_instead_of_ending(tmp_path: Path) -> None:
    """At the end of the file the track waits (a sender on it would otherwise stop for good)."""
    path = tmp_path / "short.wav"
    write_wav(path, 600, 0.2)
    track = AudioFile(path, loop=False)._open_track()
    frames: list[av.AudioFrame] = []
    while True:  # read until a read stays pending
        pending = asyncio.ensure_future(track.recv())
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        if not done:
            break
        frames.append(pending.result())
        assert len(frames) <= 10
    assert len(frames) >= 9  # 200 ms of audio, bar a partial frame the resampler keeps
    assert track.source_ended.is_set()
    for frame in frames:
        assert isinstance(frame, av.AudioFrame)
        assert_stream_format(frame)
    assert strictly_increasing(pts_of(frames))
    track.stop()
    released = await asyncio.wait_for(pending, 0.1)
    assert isinstance(released, av.AudioFrame)
    assert bytes(released.planes[0]) == bytes(FRAME * 4)
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_audio_device_reads_an_ffmpeg_input_device() -> None:
    """lavfi's sine generator stands in for a microphone: normalised frames carrying its tone."""
    source = AudioDevice("sine=frequency=900:sample_rate=44100", format="lavfi")
    track = source._open_track()
    frames = [await asyncio.wait_for(track.recv(), 1.0) for _ in range(20)]
    track.stop()
    for frame in frames:
        assert isinstance(frame, av.AudioFrame)
        assert_stream_format(frame)
    assert strictly_increasing(pts_of(frames))
    capture = await captured(frames)
    assert capture.has_tone(900, tolerance=0.02)


async def test_audio_device_errors_are_config_errors() -> None:
    """An unknown format fails at once; a device that cannot open fails when the call starts."""
    with pytest.raises(ConfigError) as caught:
        AudioDevice("default", format="no-such-format")
    assert caught.value.key == "audio_device.format"
    with pytest.raises(ConfigError) as caught:
        AudioDeviceSink("default", format="lavfi")  # lavfi can only be read
    assert caught.value.key == "audio_device_sink.format"
    broken = AudioDevice("no_such_filter=1", format="lavfi")
    with pytest.raises(ConfigError) as caught:
        broken._open_track()
    assert caught.value.key == "audio_device"


async def test_file_and_device_sinks_write_what_they_consume(tmp_path: Path) -> None:
    """Both MediaRecorder sinks write a WAV holding the consumed tone, closed when the track ends."""
    file_path = tmp_path / "file.wav"
    await AudioFileSink(file_path)._consume(FrameList(pcm_frames(sine(750), 0.5)))
    device_path = tmp_path / "device.wav"
    sink = AudioDeviceSink(str(device_path), format="wav")
    await sink._consume(FrameList(pcm_frames(sine(1250), 0.5)))

    assert (await captured(decoded(file_path))).has_tone(750, tolerance=0.02)
    assert (await captured(decoded(device_path))).has_tone(1250, tolerance=0.02)
    assert sum(f.samples for f in decoded(file_path)) == RATE // 2


async def test_file_sink_records_across_an_rtp_timestamp_wrap(tmp_path: Path) -> None:
    """Received pts are 32-bit RTP time stamps that wrap; the recording goes on regardless."""
    frames = pcm_frames(sine(650), 0.4)
    for index, frame in enumerate(frames):
        frame.pts = (2**32 - 5 * FRAME + index * FRAME) % 2**32
    path = tmp_path / "wrapped.wav"
    await AudioFileSink(path)._consume(FrameList(frames))
    written = decoded(path)
    assert sum(f.samples for f in written) == 20 * FRAME
    assert (await captured(written)).has_tone(650, tolerance=0.02)


async def test_file_sink_needs_an_existing_directory(tmp_path: Path) -> None:
    """A sink whose directory is missing fails when it is made."""
    with pytest.raises(ConfigError) as caught:
        AudioFileSink(tmp_path / "nowhere" / "call.wav")
    assert caught.value.key == "audio_file_sink"


async def test_a_sink_that_cannot_record_still_drains_its_track(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """If the recorder cannot open, the failure is logged and the track is still read to the end."""
    target = tmp_path / "gone"
    target.mkdir()
    sink = AudioFileSink(target / "call.unknown-extension")
    track = FrameList(pcm_frames(sine(440), 0.1))
    await asyncio.wait_for(sink._consume(track), 1.0)
    assert track.readyState == "ended"
    assert "cannot record" in caplog.text


# ---------------------------------------------------------------------------------------------
# a real aiortc pair on 127.0.0.1


class Pair:
    """Offerer sends on one fixed transceiver; the answerer's sink consumes what arrives."""

    def __init__(self, offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
        self.offerer = offerer
        self.answerer = answerer
        self.transceiver: RTCRtpTransceiver = offerer.addTransceiver("audio", direction="sendrecv")
        self.tap: Tap | None = None
        self.tasks: list[asyncio.Future[None]] = []

    @property
    def receiver_transceiver(self) -> RTCRtpTransceiver:
        (transceiver,) = self.answerer.getTransceivers()
        return transceiver


@contextlib.asynccontextmanager
async def loopback_pair(sink: AudioSink) -> AsyncIterator[Pair]:
    """Two connected peer connections on 127.0.0.1, every remote track consumed, both idle."""
    pair = Pair(create_peer_connection(LOOPBACK_ICE), create_peer_connection(LOOPBACK_ICE))
    pair.transceiver.sender.replaceTrack(_idle_track())

    def on_answerer_track(track: MediaStreamTrack) -> None:
        pair.tap = Tap(track)
        pair.tasks.append(asyncio.ensure_future(sink._consume(pair.tap)))

    def on_offerer_track(track: MediaStreamTrack) -> None:
        pair.tasks.append(asyncio.ensure_future(Discard()._consume(track)))

    pair.answerer.on("track", on_answerer_track)
    pair.offerer.on("track", on_offerer_track)
    try:
        await set_local_description(pair.offerer, await pair.offerer.createOffer(), LOOPBACK_ICE)
        await pair.answerer.setRemoteDescription(pair.offerer.localDescription)
        pair.receiver_transceiver.direction = "sendrecv"
        pair.receiver_transceiver.sender.replaceTrack(_idle_track())
        await set_local_description(pair.answerer, await pair.answerer.createAnswer(), LOOPBACK_ICE)
        await pair.offerer.setRemoteDescription(pair.answerer.localDescription)
        connected = await eventually(
            lambda: pair.offerer.connectionState == pair.answerer.connectionState == "connected",
            within=5.0,
        )
        assert connected
        yield pair
    finally:
        for pc in (pair.offerer, pair.answerer):
            for transceiver in pc.getTransceivers():
                if transceiver.sender.track is not None:
                    transceiver.sender.track.stop()
        await pair.offerer.close()
        await pair.answerer.close()
        await asyncio.wait_for(asyncio.gather(*pair.tasks), 2.0)


def unwrapped(pts: list[int]) -> list[int]:
    """RTP time stamps (32-bit, random origin) as steps from the first: positive = forward."""
    steps = [(b - a) % 2**32 for a, b in itertools.pairwise(pts)]
    return [s if s < 2**31 else s - 2**32 for s in steps]


@pytest.mark.slow
async def test_one_transceiver_carries_successive_calls_without_renegotiation() -> None:
    """Tone 500 Hz, then nothing, then 1200 Hz on one sender: detected, silent, detected.

    RTP time stamps (the received frames' pts) keep increasing across the switches, and the idle
    pause shows as a forward jump of its wall-clock length.
    """
    capture = AudioCapture(keep_seconds=0.5)
    async with loopback_pair(capture) as pair:
        sender = pair.transceiver.sender
        receiver = pair.receiver_transceiver.receiver

        # Call 1.
        mark = datetime.now(UTC)
        switched = time.monotonic()
        _switch_track(sender, Tone(500)._open_track())
        assert await first_rtp_at(receiver, after=mark, within=1.0) is not None
        assert await eventually(lambda: capture.first_frame_at is not None, within=1.0)
        assert await eventually(lambda: capture.has_tone(500, tolerance=0.02), within=2.0)
        assert capture.first_frame_at is not None
        assert capture.first_frame_at - switched < 0.5

        # Between calls: no frames at all.
        _switch_track(sender, _idle_track())
        idle_since = time.monotonic()
        await asyncio.sleep(0.1)  # frames already in flight drain
        frames_before = capture.frames_received
        await asyncio.sleep(0.3)
        assert capture.frames_received == frames_before
        assert pair.tap is not None
        before_call_2 = len(pair.tap.arrivals)

        # Call 2, same transceiver, no new offer/answer.
        capture.reset()
        mark = datetime.now(UTC)
        switched = time.monotonic()
        idle_for = switched - idle_since
        _switch_track(sender, Tone(1200)._open_track())
        first_rtp = await first_rtp_at(receiver, after=mark, within=1.0)
        assert first_rtp is not None
        assert await eventually(lambda: capture.has_tone(1200, tolerance=0.02), within=2.0)
        assert capture.first_frame_at is not None
        assert capture.first_frame_at - switched < 0.5

        steps = unwrapped([pts for _, pts in pair.tap.arrivals])
        assert all(step > 0 for step in steps), steps
        jump = max(steps[before_call_2 - 10 :])
        assert jump == pytest.approx(idle_for * RATE, abs=0.1 * RATE)
        assert len(pair.offerer.getTransceivers()) == 1


@pytest.mark.slow
async def test_audio_file_plays_over_the_pair(tmp_path: Path) -> None:
    """A 16 kHz mono WAV played (looping) arrives as its tone at the far end."""
    path = tmp_path / "caller.wav"
    write_wav(path, 700, 0.3)
    capture = AudioCapture(keep_seconds=0.5)
    async with loopback_pair(capture) as pair:
        _switch_track(pair.transceiver.sender, AudioFile(path)._open_track())
        assert await eventually(lambda: capture.has_tone(700, tolerance=0.02), within=3.0)


@pytest.mark.slow
async def test_file_sink_records_the_far_end_until_the_connection_closes(tmp_path: Path) -> None:
    """The receiving side's AudioFileSink writes a WAV that holds the sent tone."""
    path = tmp_path / "received.wav"
    async with loopback_pair(AudioFileSink(path)) as pair:
        _switch_track(pair.transceiver.sender, Tone(800)._open_track())
        assert await eventually(
            lambda: pair.tap is not None and len(pair.tap.arrivals) >= 30, within=3.0
        )
    frames = decoded(path)
    assert sum(f.samples for f in frames) >= 30 * FRAME
    assert (await captured(frames)).has_tone(800, tolerance=0.02)
