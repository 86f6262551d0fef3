"""Pass 2 of the mouth-bank engine: for each output frame, put the chosen bank mouth into the frame.

Per frame: the chosen entry's stored box (the source frame's own pixels) is resampled once, bicubic, straight
into the region of the output frame around the mouth, by one sampling map (`warp.place` and
`warp.sampling_maps`: frame → engine crop, similarity on stable points, thin-plate fit of the cheeks, optional
reshaping of a mouth the bank lacks); the interior is painted where reshaping opened a closed mouth; the
mouth is blended in through the pose-aware mask intersected with the target's lower face (`warp.face_region`),
after a smooth colour-offset field (`face.paste.seam_color_offset`) matched along the inside of the seam. Only
the frame box where that blend weight is non-zero is resampled and blended. At a cut
between two bank segments the frame is the mean of the new entry and the continuation of the old one, both
moved to one place, and the mouth's place eases from the old segment's to the new one's over a few frames
(`BankSchedule.shift`), so the mouth never jumps.

A decoding thread feeds frames, two threads render them (OpenCV and numpy release the GIL) and a writing
thread encodes them, each through a queue of a few frames, so memory is flat in the video's length. The
output does not depend on the threads: each frame is computed alone, and written in order.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from stylelipsync.face.crop import to_region, warp_landmarks, warp_points, warp_to_crop
from stylelipsync.face.mask import PoseMasker, keep_mask
from stylelipsync.face.paste import blend_weight, region_box, seam_color_offset
from stylelipsync.media import VideoWriter
from stylelipsync.pipelines.engines.bank.bank import MouthBank
from stylelipsync.pipelines.engines.bank.warp import (
    Placement,
    TargetLandmarks,
    face_region,
    paint_interior,
    place,
    sampling_maps,
)
from stylelipsync.pipelines.options import FrameOutput
from stylelipsync.pipelines.plan import Callback, Progress, RenderPlan, StageTimer, open_writers
from stylelipsync.pipelines.sources import SourceFrames, prefetch

QUEUE_FRAMES = 6
RENDER_THREADS = 2


@dataclass
class BankSchedule:
    """What to show at every output frame: entry, reshaping (target pixels), interior amount, cut flag."""

    entry: NDArray[np.int64]
    open_px: NDArray[np.float64]
    interior: NDArray[np.float64]
    cut: NDArray[np.bool_]
    previous: NDArray[np.int64]
    """At a cut, the entry that continues the previous frame's (for the cross-fade); −1 elsewhere."""
    shift: NDArray[np.float64] | None = None
    """(T, 2) move of the mouth in target-crop pixels that eases its place across cuts (None = none)."""
    jump: NDArray[np.float64] | None = None
    """(T, 2) at a cut, where the continuation's mouth sits relative to the new entry's (target-crop pixels):
    the continuation is moved by shift − jump, so both cross-faded mouths sit in one place."""

    def shot(self, t: int) -> Shot:
        """What output frame t shows."""
        shift = (0.0, 0.0) if self.shift is None else (float(self.shift[t, 0]), float(self.shift[t, 1]))
        jump = (0.0, 0.0) if self.jump is None else (float(self.jump[t, 0]), float(self.jump[t, 1]))
        return Shot(
            int(self.entry[t]),
            float(self.open_px[t]),
            float(self.interior[t]),
            bool(self.cut[t]),
            int(self.previous[t]),
            shift,
            (shift[0] - jump[0], shift[1] - jump[1]),
        )


@dataclass(frozen=True)
class Shot:
    """One output frame's mouth: bank entry, reshaping (target pixels), interior amount and, at a cut, the
    entry continuing the previous frame's (cross-faded in; −1 for none)."""

    entry: int
    open_px: float = 0.0
    interior: float = 0.0
    cut: bool = False
    previous: int = -1
    shift: tuple[float, float] = (0.0, 0.0)
    """Move of the entry's mouth (target-crop pixels)."""
    previous_shift: tuple[float, float] = (0.0, 0.0)
    """Move of the continuation's mouth at a cut."""


class BankRenderer:
    """Writes every output frame of `plan` with the mouths `schedule` picks from `bank`."""

    def __init__(
        self,
        bank: MouthBank,
        schedule: BankSchedule,
        plan: RenderPlan,
        sources: SourceFrames,
        size: int,
        transforms: NDArray[np.float64],
        masker: PoseMasker,
        timer: StageTimer,
        callback: Callback | None = None,
        progress: Progress = False,
        pipelined: bool = True,
    ) -> None:
        self.bank, self.schedule, self.plan, self.sources = bank, schedule, plan, sources
        self.size, self.transforms = size, transforms
        self.timer = timer
        self.callback, self.progress, self.pipelined = callback, progress, pipelined
        self.painter = MouthPainter(bank, size, transforms, masker, TargetLandmarks(plan.track), timer)

    def run(self) -> int:
        """Render and encode every output frame; returns how many had a face."""
        plan = self.plan
        total = len(plan.src_idx)
        bar = tqdm(total=total, desc="dubbing", unit="frame", disable=self.progress is not True)
        with_face = 0
        frames = self._frames()
        stream = prefetch(frames, QUEUE_FRAMES) if self.pipelined else frames
        try:
            with ExitStack() as stack:
                writers = open_writers(stack, self.plan, self.size)
                encoder = _Encoder(writers, self.timer, self.pipelined)
                try:
                    for t, s, (out, comp, keep) in self._rendered(stream):
                        with_face += keep is not None
                        encoder.put(out, comp, self.size)
                        self._report(t, s, comp, keep)
                        bar.update(1)
                        if callable(self.progress):
                            self.progress(t + 1, total)
                finally:
                    encoder.close()
                with self.timer("encode"):
                    stack.close()
        finally:
            if hasattr(stream, "close"):
                stream.close()
            bar.close()
        return with_face

    def _rendered(
        self, stream: Iterator[tuple[int, int, NDArray[np.uint8]]]
    ) -> Iterator[
        tuple[int, int, tuple[NDArray[np.uint8], NDArray[np.uint8] | None, NDArray[np.float32] | None]]
    ]:
        """Rendered frames in order. Pipelined, `RENDER_THREADS` frames are rendered at once (OpenCV and numpy
        release the GIL), with at most `QUEUE_FRAMES` in flight."""
        if not self.pipelined:
            for t, s, frame in stream:
                yield t, s, self._render_or_pass(t, s, frame)
            return
        pending: deque[tuple[int, int, Future[Any]]] = deque()
        with ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="stylelipsync-bank-render") as pool:
            try:
                for t, s, frame in stream:
                    pending.append((t, s, pool.submit(self._render_or_pass, t, s, frame)))
                    if len(pending) >= QUEUE_FRAMES:
                        t0, s0, done = pending.popleft()
                        yield t0, s0, done.result()
                while pending:
                    t0, s0, done = pending.popleft()
                    yield t0, s0, done.result()
            finally:
                for _, _, future in pending:
                    future.cancel()

    def _render_or_pass(
        self, t: int, s: int, frame: NDArray[np.uint8]
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None, NDArray[np.float32] | None]:
        """The rendered frame, its crop-space composite (only when someone wants it) and the keep-mask; or
        the frame itself (no composite, no mask) where it has no face."""
        if not self.plan.track.valid[s]:
            return frame, None, None
        with self.timer("bank render"):
            out, keep = self.painter.paint(s, frame, self.schedule.shot(t))
        comp = None
        if self.callback is not None or self.plan.crop_path is not None:
            comp = warp_to_crop(out, self.transforms[s], self.size)
        return out, comp, keep

    def _frames(self) -> Iterator[tuple[int, int, NDArray[np.uint8]]]:
        for t, s in enumerate(self.plan.src_idx):
            with self.timer("decode"):
                frame = self.sources[int(s)]
            yield t, int(s), frame

    def _report(
        self, t: int, s: int, comp: NDArray[np.uint8] | None, keep: NDArray[np.float32] | None
    ) -> None:
        if self.callback is None:
            return
        self.callback(
            FrameOutput(
                index=t,
                source_index=s,
                has_face=keep is not None,
                composite=comp,
                transform=self.transforms[s].copy() if keep is not None else None,
                keep=keep,
            )
        )


class MouthPainter:
    """Puts a bank mouth into one frame (see the module docstring); thread-safe, used by `BankRenderer` and
    by live dubbing. `observed[s]`: source frame s's own detected landmarks (`FaceTrack.observed`, or the
    offline `warp.TargetLandmarks`)."""

    def __init__(
        self,
        bank: MouthBank,
        size: int,
        transforms: NDArray[np.float64],
        masker: PoseMasker,
        observed: NDArray[np.float32] | TargetLandmarks,
        timer: StageTimer,
    ) -> None:
        self.bank, self.size, self.transforms, self.masker, self.timer = bank, size, transforms, masker, timer
        self._keep: dict[int, tuple[NDArray[np.float32], NDArray[np.float32]]] = {}
        self._lock = threading.Lock()
        # The mouth is placed on each frame's own detection (offline `warp.TargetLandmarks`: its fitted
        # points barely smoothed), not the smoothed track: the eyes and nose in the frame move with the head's
        # small fast motion, and a mouth placed on a smoothed track would tremble against them (measured:
        # mouth jitter ×1.36 → ×1.19 of the input on three held-out pairs).
        self._observed = observed

    def paint(
        self, s: int, frame: NDArray[np.uint8], shot: Shot
    ) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
        """Source frame s (`frame`, which has a face) with `shot`'s mouth, and its keep-mask."""
        m = self.transforms[s]
        lm = warp_landmarks(self._observed[s], m)
        target_lm = np.asarray(lm[:, :2], dtype=np.float64)
        keep, alpha = self._masks(s, lm)
        out = np.array(frame, copy=True)
        placement = self._place(shot.entry, target_lm, shot.open_px, shot.shift)
        with self.timer("colour"):
            region = alpha * face_region(target_lm, placement.landmarks, self.size)
            # Only the frame box where the mouth is blended in is resampled and blended: the lower face within
            # the mask, about 20 % less than the mask's own box.
            box = region_box(region, m, frame.shape[1], frame.shape[0])
        if box is None:
            return out, keep
        x0, y0, x1, y1 = box
        roi = frame[y0:y1, x0:x1]
        mouth = self._resample(shot.entry, placement, m, box, shot.interior)
        if shot.cut and shot.previous >= 0:
            previous = self._place(shot.previous, target_lm, shot.open_px, shot.previous_shift)
            mouth = (mouth + self._resample(shot.previous, previous, m, box, shot.interior)) * 0.5
        with self.timer("colour"):
            a = np.asarray(
                cv2.warpAffine(region, to_region(m, x0, y0), (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR),
                dtype=np.float32,
            )
            mouth += seam_color_offset(mouth, roi, a)
        with self.timer("blend"):
            out[y0:y1, x0:x1] = _blend(roi, mouth, a)
        return out, keep

    def _place(
        self, j: int, target_lm: NDArray[np.float64], open_px: float, shift: tuple[float, float]
    ) -> Placement:
        """Where entry j lands in the target crop whose landmarks are `target_lm` (see `warp.place`)."""
        with self.timer("placement"):
            return place(self.bank.landmarks[j].astype(np.float64), target_lm, self.size, open_px, shift)

    def _resample(
        self,
        j: int,
        placement: Placement,
        m: NDArray[np.float64],
        box: tuple[int, int, int, int],
        interior: float,
    ) -> NDArray[np.float32]:
        """Entry j's mouth, placed by `placement`, resampled straight into the frame region `box` (float32,
        the region's size), its interior painted by `interior` where reshaping opened it."""
        with self.timer("placement"):
            map_x, map_y = sampling_maps(placement, m, box, self.size)
        with self.timer("remap"):
            # Bicubic, not Lanczos: on three held-out pairs it kept as much mouth sharpness (×0.82 vs ×0.80
            # of the input, Laplacian variance) at a third of the cost (1.3 vs 4.1 ms a frame).
            mouth = cv2.remap(
                self.bank.region(j),
                map_x,
                map_y,
                interpolation=cv2.INTER_CUBIC,
                borderMode=cv2.BORDER_REPLICATE,
            )
        if interior > 0:
            painted_lm = warp_points(placement.landmarks, to_region(m, box[0], box[1]))
            mouth = paint_interior(np.asarray(mouth, dtype=np.uint8), painted_lm, interior)
        return np.asarray(mouth, dtype=np.float32)

    def _masks(self, s: int, lm: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Keep-mask K and blend weight α of source frame s (cached: loops and stills revisit frames)."""
        with self._lock:
            hit = self._keep.get(s)
        if hit is None:
            with self.timer("mask"):
                keep = keep_mask(self.masker(lm))
                hit = (keep, blend_weight(keep))
            with self._lock:
                if len(self._keep) > 4 * QUEUE_FRAMES:
                    self._keep.pop(next(iter(self._keep)))
                self._keep[s] = hit
        return hit


def _blend(roi: NDArray[np.uint8], mouth: NDArray[np.float32], a: NDArray[np.float32]) -> NDArray[np.uint8]:
    """roi + a·(mouth − roi), rounded to uint8, in three passes over the region (OpenCV's blend and its
    rounding cast; the mouth is clipped to 0..255 first, so the result is too)."""
    np.clip(mouth, 0.0, 255.0, out=mouth)
    mixed = cv2.blendLinear(mouth, roi.astype(np.float32), a, 1.0 - a)
    return np.asarray(cv2.convertScaleAbs(mixed), dtype=np.uint8)


class _Encoder:
    """Encodes frames on its own thread (or inline when not pipelined), through a bounded queue."""

    def __init__(self, writers: list[VideoWriter], timer: StageTimer, threaded: bool) -> None:
        self.writers, self.timer = writers, timer
        self.errors: list[BaseException] = []
        self.queue: queue.Queue[tuple[NDArray[np.uint8], NDArray[np.uint8] | None, int] | None] = queue.Queue(
            maxsize=QUEUE_FRAMES
        )
        self.thread = threading.Thread(target=self._work, name="stylelipsync-bank-encode", daemon=True)
        self.threaded = threaded
        if threaded:
            self.thread.start()

    def put(self, frame: NDArray[np.uint8], comp: NDArray[np.uint8] | None, size: int) -> None:
        if self.errors:
            raise self.errors[0]
        if not self.threaded:
            self._write(frame, comp, size)
            return
        self.queue.put((frame, comp, size))

    def _write(self, frame: NDArray[np.uint8], comp: NDArray[np.uint8] | None, size: int) -> None:
        with self.timer("encode"):
            self.writers[0].write(frame)
            if len(self.writers) > 1:
                self.writers[1].write(comp if comp is not None else np.zeros((size, size, 3), np.uint8))

    def _work(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    return
                self._write(*item)
        except BaseException as exc:
            self.errors.append(exc)
            while self.queue.get() is not None:
                pass

    def close(self) -> None:
        """Wait for the queued frames; raise the writer thread's error, if any."""
        if self.threaded:
            self.queue.put(None)
            self.thread.join()
        if self.errors:
            raise self.errors[0]
