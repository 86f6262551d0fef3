"""Live dubbing: audio chunks in, dubbed frames out, at the video's frame rate, with a fixed delay.

Per output frame t (time t / fps) the session
1. predicts the wanted mouth shape from the audio so far plus the streaming model's look-ahead
   (`audio.mouth_shape_stream`), and decides voice activity from the past (`StreamingVoiceActivity`);
2. maps it into this person's range of shapes as `generate` does (opening by quantile, but of a running
   Gaussian estimate of the prediction's spread instead of the whole clip's ranks), closed on silence;
3. commits a bank entry `lag` frames later by fixed-lag dynamic programming (`engines.bank.online`),
   with the same costs as the offline selection, so the idle face plays the bank's closed mouths;
4. paints that mouth into source frame s(t), the input video played forth and back (`MouthPainter`).

Steps 1–3 are cheap and run on the caller's thread (`push`); step 4 is `render`, thread-safe, so frames
can be painted in parallel. `frames()` does both with a feeding thread and a render pool, yielding frames
in order. The delay from a frame's audio to the frame is the model's look-ahead + `lag` frames + painting.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from stylelipsync.audio.mouth_shape_model import MouthShapeModel
from stylelipsync.audio.mouth_shape_stream import MouthShapeStream
from stylelipsync.audio.vad import StreamingVoiceActivity
from stylelipsync.formats import SAMPLE_RATE
from stylelipsync.live.face import LiveFace
from stylelipsync.pipelines.engines.bank import RESHAPE_TOLERANCE_CM
from stylelipsync.pipelines.engines.bank.online import OnlineSelector
from stylelipsync.pipelines.engines.bank.render import Shot
from stylelipsync.pipelines.engines.bank.select import SelectionCosts
from stylelipsync.pipelines.queues import put_unless_stopped

LAG_FRAMES = 2
"""Default selection look-ahead (frames): with 2, 98 % of frames choose what the whole-clip search would
(synthetic check in tests), for 80 ms at 25 fps."""
GATE_RAMP_FRAMES = 3
"""Frames over which the mouth settles to rest after speech stops (it opens at once when speech starts)."""
PRIOR_FRAMES = 50.0
"""Weight (frames) of the prior of the running mean and spread of the prediction."""
PRIOR_SPREAD = 0.35
"""Typical standard deviation of the streaming model's opening prediction on speech (z-units)."""
RESHAPE_FOLLOW = 0.5
"""Per-frame fraction by which the reshaping moves to its new value (a causal smoothing: it must not jump
with the chosen mouths at cuts)."""
RENDER_THREADS = 2
IN_FLIGHT = 4
"""Frames being painted or waiting to be taken: bounds memory when the consumer is slow."""


@dataclass(frozen=True)
class FramePlan:
    """Everything about output frame `index` except its pixels."""

    index: int
    source_index: int
    shot: Shot
    speech: float
    audio: NDArray[np.float32]
    """This frame's 16 kHz samples: [index, index + 1) / fps."""
    arrived: float
    """`time.perf_counter()` when the last of these samples arrived."""


@dataclass(frozen=True)
class LiveFrame:
    """One dubbed frame: RGB image (and its JPEG when asked), with its audio and timing."""

    index: int
    time: float
    image: NDArray[np.uint8]
    audio: NDArray[np.float32]
    speech: float
    entry: int
    source_index: int
    arrived: float
    rendered: float
    jpeg: bytes | None = None
    dropped: bool = False
    """Not painted (the stream was behind by more than `max_latency`): `image` repeats the previous frame
    and `jpeg` is None, so a player keeps the last picture while the audio plays on."""

    @classmethod
    def of(
        cls,
        plan: FramePlan,
        fps: float,
        image: NDArray[np.uint8],
        *,
        jpeg: bytes | None = None,
        dropped: bool = False,
    ) -> LiveFrame:
        """The frame `plan` describes, with its pixels, finished now."""
        return cls(
            index=plan.index,
            time=plan.index / fps,
            image=image,
            audio=plan.audio,
            speech=plan.speech,
            entry=plan.shot.entry,
            source_index=plan.source_index,
            arrived=plan.arrived,
            rendered=time.perf_counter(),
            jpeg=jpeg,
            dropped=dropped,
        )


@dataclass(frozen=True)
class AudioChunk:
    """Samples with the time they arrived (`time.perf_counter()`), for a source that knows it better than
    the moment the session reads them (a socket: the chunk may have waited in a queue)."""

    samples: NDArray[np.float32]
    arrived: float


class LiveSession:
    """One stream of speech dubbed onto a prepared face (see the module docstring); not thread-safe except
    `render`. Create several over one `LiveFace` for successive streams."""

    def __init__(
        self,
        face: LiveFace,
        shape_model: MouthShapeModel | None = None,
        *,
        lag: int = LAG_FRAMES,
        costs: SelectionCosts | None = None,
        keep_silence: bool = False,
    ) -> None:
        self.face, self.lag, self.keep_silence = face, int(lag), keep_silence
        model = shape_model or MouthShapeModel.default(causal=True)
        self.shapes = MouthShapeStream(model, face.fps)
        self.vad = StreamingVoiceActivity(face.fps, SAMPLE_RATE)
        bank = face.bank
        self.selector = OnlineSelector(bank.z, bank.pose, bank.follows, costs, lag=self.lag)
        self._dims = bank.z.shape[1]
        self._opening_ref = np.sort(bank.opening_reference())
        self._width_ref = None if bank.poor_coverage else np.sort(bank.z[:, 1])
        self._stats = np.array([PRIOR_FRAMES, 0.0, PRIOR_FRAMES * PRIOR_SPREAD**2])
        self._width_stats = np.array([PRIOR_FRAMES, 0.0, PRIOR_FRAMES * PRIOR_SPREAD**2])
        self._voiced: deque[bool] = deque()
        self._gate = 0.0
        self._frames_in = 0
        """Frames whose wanted shape went to the selector."""
        self._pending: deque[tuple[int, NDArray[np.float64], float]] = deque()
        """(frame, target, gate) pushed to the selector, not yet committed."""
        self._previous_entry = -1
        self._open_px = 0.0
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0
        self._received = 0
        self._arrivals: deque[tuple[int, float]] = deque()
        """(samples received after a push, its time), for the latency of each frame."""

    @property
    def fps(self) -> float:
        return self.face.fps

    @property
    def delay(self) -> float:
        """Seconds from a frame's time to when the audio it needs is in: look-ahead + selection lag."""
        return self.shapes.lookahead + self.lag / self.fps

    def push(self, chunk: NDArray[np.floating] | AudioChunk) -> list[FramePlan]:
        """Add 16 kHz mono samples (any length); plans of the frames they complete (render them in order)."""
        if isinstance(chunk, AudioChunk):
            now, chunk = chunk.arrived, chunk.samples
        else:
            now = time.perf_counter()
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._received += len(x)
        self._arrivals.append((self._received, now))
        self._audio = np.concatenate([self._audio, x])
        self._voiced.extend(self.vad.push(x).tolist())
        plans: list[FramePlan] = []
        for pred in self.shapes.push(x):
            plans += self._select(pred)
        return plans

    def finish(self) -> list[FramePlan]:
        """End of the stream: the remaining frames (missing future audio counts as silence)."""
        pad = np.zeros(int(SAMPLE_RATE * (self.delay + 2.0 / self.fps)), dtype=np.float32)
        self._voiced.extend(self.vad.push(pad).tolist())
        self._audio = np.concatenate([self._audio, pad])
        plans: list[FramePlan] = []
        for pred in self.shapes.finish():
            plans += self._select(pred)
        plans += [self._plan(j) for j in self.selector.flush()]
        return plans

    def _select(self, pred: NDArray[np.float64]) -> list[FramePlan]:
        t = self._frames_in
        self._frames_in += 1
        voiced = self._voiced.popleft() if self._voiced else False
        if self.keep_silence:
            voiced = True
        self._gate = 1.0 if voiced else max(0.0, self._gate - 1.0 / GATE_RAMP_FRAMES)
        target = self._target(pred, voiced)
        s = self.face.source_index(t)
        self._pending.append((t, target, self._gate))
        return [self._plan(j) for j in self.selector.push(target, self.face.pose[s], self._gate)]

    def _target(self, pred: NDArray[np.float64], voiced: bool) -> NDArray[np.float64]:
        """The wanted z-shape of one frame (see the module docstring, step 2)."""
        bank = self.face.bank
        p = pred[: self._dims].astype(np.float64).copy()
        p[0] = _quantile(p[0], self._stats, self._opening_ref, voiced)
        if self._dims > 1 and self._width_ref is not None:
            p[1] = _quantile(p[1], self._width_stats, self._width_ref, voiced)
        return np.asarray(bank.rest + self._gate * (p - bank.rest), dtype=np.float64)

    def _plan(self, entry: int) -> FramePlan:
        """The committed entry of the oldest pending frame → its shot, audio and timing."""
        t, target, gate = self._pending.popleft()
        bank, face = self.face.bank, self.face
        s = face.source_index(t)
        prev = self._previous_entry
        follows = bank.follows
        cut = prev >= 0 and not (
            entry == prev or (entry == prev + 1 and follows[entry]) or (entry == prev - 1 and follows[prev])
        )
        previous = -1
        if cut:
            previous = prev + 1 if prev + 1 < len(bank) and follows[prev + 1] else prev
        self._previous_entry = entry
        want_cm = float(bank.opening_cm(target[:1])[0])
        have_cm = float(bank.descriptor[entry, 0])
        missing = want_cm - have_cm
        reshape_cm = math.copysign(max(abs(missing) - RESHAPE_TOLERANCE_CM, 0.0), missing)
        keep_open = 0.0 if bank.poor_coverage else 0.5
        reshape_cm = max(reshape_cm, -(1.0 - keep_open) * max(have_cm - 0.02, 0.0))
        px = reshape_cm * float(face.px_per_cm[s])
        self._open_px += RESHAPE_FOLLOW * ((px if math.isfinite(px) else 0.0) - self._open_px)
        interior = min(max(reshape_cm / max(want_cm, 1e-3), 0.0), 1.0) if reshape_cm > 0 else 0.0
        shot = Shot(entry, self._open_px, interior, cut, previous)
        return FramePlan(t, s, shot, gate, self._frame_audio(t), self._arrival(t))

    def _frame_audio(self, t: int) -> NDArray[np.float32]:
        lo = round(t * SAMPLE_RATE / self.fps)
        hi = round((t + 1) * SAMPLE_RATE / self.fps)
        out = self._audio[lo - self._audio_start : hi - self._audio_start].copy()
        drop = lo - self._audio_start
        if drop > 0:
            self._audio = self._audio[drop:]
            self._audio_start = lo
        return np.pad(out, (0, hi - lo - len(out)))

    def _arrival(self, t: int) -> float:
        """When the last sample of frame t's audio arrived (the end of the stream: the last push)."""
        end = round((t + 1) * SAMPLE_RATE / self.fps)
        while len(self._arrivals) > 1 and self._arrivals[0][0] < end:
            self._arrivals.popleft()
        return self._arrivals[0][1] if self._arrivals else time.perf_counter()

    def render(self, plan: FramePlan, jpeg_quality: int | None = None) -> LiveFrame:
        """Paint one planned frame (thread-safe); with `jpeg_quality`, also its JPEG."""
        face = self.face
        frame = face.frame(plan.source_index)
        if face.track.valid[plan.source_index]:
            with threadpool_limits(limits=1, user_api="blas"):
                image, _ = face.painter.paint(plan.source_index, frame, plan.shot)
        else:
            image = np.array(frame, copy=True)
        data = None
        if jpeg_quality is not None:
            ok, buf = cv2.imencode(
                ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
            )
            data = buf.tobytes() if ok else None
        return LiveFrame.of(plan, self.fps, image, jpeg=data)

    def _dropped(self, plan: FramePlan, last: NDArray[np.uint8] | None) -> LiveFrame:
        """A frame left unpainted: the previous picture again (the source frame if there is none yet)."""
        image = last if last is not None else self.face.frame(plan.source_index)
        return LiveFrame.of(plan, self.fps, image, dropped=True)

    def frames(
        self,
        chunks: Iterable[NDArray[np.floating] | AudioChunk],
        *,
        jpeg_quality: int | None = None,
        threads: int = RENDER_THREADS,
        finish: bool = True,
        max_latency: float | None = None,
    ) -> Generator[LiveFrame, None, None]:
        """Dub a stream: `chunks` (16 kHz mono arrays; may block, e.g. a microphone) → frames, in order.

        A feeding thread reads `chunks` and plans frames, a pool paints them; at most `IN_FLIGHT` frames
        wait for the consumer (then the feeding thread, and so the chunk source, waits). With `finish`, the
        frames still in the look-ahead window are dubbed when `chunks` ends. With `max_latency` (seconds),
        a frame planned later than that after its audio arrived is not painted (`LiveFrame.dropped`), so a
        machine too slow for the stream catches up instead of falling further behind. Closing the
        generator stops the feeding thread at its next chunk.
        """
        out: queue.Queue[Future[LiveFrame] | FramePlan | BaseException | None] = queue.Queue(
            maxsize=IN_FLIGHT
        )
        stop = threading.Event()
        pool = ThreadPoolExecutor(threads, thread_name_prefix="stylelipsync-live-render")

        def offer(item: Future[LiveFrame] | FramePlan | BaseException | None) -> bool:
            return put_unless_stopped(out, item, stop)

        def job(plan: FramePlan) -> Future[LiveFrame] | FramePlan:
            late = max_latency is not None and time.perf_counter() - plan.arrived > max_latency
            return plan if late else pool.submit(self.render, plan, jpeg_quality)

        def feed() -> None:
            try:
                for chunk in chunks:
                    for plan in self.push(chunk):
                        if not offer(job(plan)):
                            return
                    if stop.is_set():
                        return
                if finish:
                    for plan in self.finish():
                        if not offer(job(plan)):
                            return
                offer(None)
            except BaseException as exc:
                offer(exc)

        feeder = threading.Thread(target=feed, name="stylelipsync-live-feed", daemon=True)
        feeder.start()
        last: NDArray[np.uint8] | None = None
        try:
            while True:
                item = out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                frame = self._dropped(item, last) if isinstance(item, FramePlan) else item.result()
                last = frame.image
                yield frame
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)


def _quantile(
    value: float, stats: NDArray[np.float64], reference: NDArray[np.float64], update: bool
) -> float:
    """`value` mapped onto sorted `reference` at its quantile under a running normal estimate (count, mean,
    second moment about zero in `stats`), updated with `value` when `update` (speech frames only)."""
    if update:
        stats += (1.0, value, value * value)
    count, total, second = stats
    mean = total / count
    spread = math.sqrt(max(second / count - mean * mean, 1e-6))
    q = 0.5 * (1.0 + math.erf((value - mean) / (spread * math.sqrt(2.0))))
    pos = q * (len(reference) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(reference) - 1)
    return float(reference[lo] + (pos - lo) * (reference[hi] - reference[lo]))


__all__ = ["LAG_FRAMES", "AudioChunk", "FramePlan", "LiveFrame", "LiveSession"]
