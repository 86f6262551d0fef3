"""The mouth-bank engine: real mouths of the person, chosen and placed by the speech (Video Rewrite style).

No network renders pixels. Pass 1 keeps a lower-face crop of every tracked source frame (`collect`); the
bank (`bank`) describes each by its pose-normalised mouth shape and head pose; the audio → mouth-shape model
predicts the wanted shape of every output frame, closed on silence; dynamic programming (`select`) picks
one entry per frame, preferring to play the bank forward; `render` warps each chosen mouth into the target
frame (`warp`) and pastes it back. A photo, or a bank whose mouths barely move, is reshaped instead: the
lips and jaw of the nearest entry are moved to the wanted opening and the mouth's interior is painted.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from stylelipsync.audio.mouth_shape_model import MouthShapeModel
from stylelipsync.audio.vad import speech_gate
from stylelipsync.errors import FaceNotFoundError, MediaError
from stylelipsync.face.crop import crop_transforms, warp_landmarks
from stylelipsync.face.geometry import BIOCULAR_WIDTH_CM, FaceModel
from stylelipsync.face.landmarks import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from stylelipsync.face.mask import PoseMasker
from stylelipsync.face.mouth_shape import mouth_shapes
from stylelipsync.face.track import FaceTrack, track_face
from stylelipsync.formats import SAMPLE_RATE
from stylelipsync.media import VideoReader, probe, read_image
from stylelipsync.pipelines.engines.bank.bank import BankVideo, MouthBank
from stylelipsync.pipelines.engines.bank.collect import CropCollector
from stylelipsync.pipelines.engines.bank.render import BankRenderer, BankSchedule
from stylelipsync.pipelines.engines.bank.select import SelectionCosts, cuts, select
from stylelipsync.pipelines.engines.bank.warp import TargetLandmarks, place
from stylelipsync.pipelines.engines.base import Engine, EngineInputs, EngineReport, FrameCollector

if TYPE_CHECKING:
    from stylelipsync.pipelines.plan import Callback, Progress, RenderPlan, StageTimer
    from stylelipsync.pipelines.sources import SourceFrames

RESHAPE_TOLERANCE_CM = 0.05
"""Openings the chosen mouth misses by more than this are reshaped to the wanted one (the rest is left to
selection, which shows only real mouths)."""
RESHAPE_SMOOTH_FRAMES = 1.5
"""σ (frames) of the smoothing of the reshaping over time: the chosen mouths change at cuts, the reshaping
that completes them must not jump with them."""
CUT_EASE_FRAMES = 3
"""Frames on each side of a cut over which the mouth's place eases from the old segment's to the new one's
(raised cosine): a jump of d pixels becomes steps of at most 0.26 d, second differences of at most 0.12 d."""
PAUSE_SECONDS = 1.0
"""Shortest pause inside the speech on which the silence gate closes the mouth (the silence before and after
the speech is always closed). Shorter pauses are left to the audio model: in the shared talking clips the
real mouth is, on average, as open in pauses of 0.6-1 s as during speech (it breathes, smiles, prepares the
next word), and closing it there lowered the dubbed mouth's agreement with the real speaker's on both sets
of held-out pairs (benchmarks/RESULTS.md)."""
TARGET_SMOOTH_FRAMES = 0.5
"""σ (frames) of the Gaussian smoothing of the wanted mouth shape: removes frame-to-frame prediction noise
without delaying it (zero phase)."""


class MouthBankEngine(Engine):
    """See the module docstring. `shape_model` None = the shipped audio → mouth-shape model."""

    name = "bank"

    def __init__(
        self, shape_model: MouthShapeModel | None = None, costs: SelectionCosts | None = None
    ) -> None:
        self.shape_model = shape_model or MouthShapeModel.default()
        self.costs = costs or SelectionCosts()

    def collector(self, inputs: EngineInputs) -> FrameCollector:
        """The bank's crop collector; the speech's mouth shapes are predicted meanwhile, on another thread
        (they need only the audio), so that work hides behind tracking."""
        collector = CropCollector(inputs.num_source)
        frames = min(inputs.audio_frames, inputs.num_frames)
        if frames > 0:
            pool = ThreadPoolExecutor(1, thread_name_prefix="stylelipsync-mouth-shapes")
            collector.prediction = pool.submit(
                self.shape_model.predict, inputs.wave, SAMPLE_RATE, frames, inputs.fps
            )
            pool.shutdown(wait=False)
        return collector

    def render(
        self,
        inputs: EngineInputs,
        plan: RenderPlan,
        sources: SourceFrames,
        collected: FrameCollector | None,
        timer: StageTimer,
        callback: Callback | None,
        progress: Progress,
        pipelined: bool,
    ) -> EngineReport:
        if not isinstance(collected, CropCollector) or collected.size is None:
            raise FaceNotFoundError(f"{plan.video}: no face crop was collected for the mouth bank")
        size = int(collected.size)
        # The engine's linear algebra is many tiny solves: one BLAS thread each is 8× faster than two threads
        # spinning against the decoder, renderer and encoder threads (thin-plate fits 13 → 1.6 ms a frame).
        # Likewise OpenCV's own thread pool: the renderer already runs frames on two threads.
        with threadpool_limits(limits=1, user_api="blas"), opencv_threads(1), ExitStack() as extra_videos:
            videos = [BankVideo(collected, plan.track)]
            with timer("bank videos"):
                for path in inputs.options.bank_video:
                    videos.append(bank_video(Path(path), progress))
                    extra_videos.callback(videos[-1].collector.close)
            with timer("bank"):
                bank = MouthBank(videos)
            model = bank.models[0]
            if model is None:
                raise FaceNotFoundError(f"{plan.video}: no face frame to build the mouth bank from")
            transforms = crop_transforms(plan.track, size=size)
            with timer("selection"):
                predicted = collected.prediction.result() if collected.prediction is not None else None
                schedule, details = self.schedule(bank, model, inputs, plan, transforms, predicted, size)
            report = EngineReport(frames_with_face=0, details=details)
            if bank.poor_coverage:
                msg = (
                    f"the mouth bank has poor coverage: its mouths open {bank.coverage:.0%} as much as a "
                    "person talking; mouths are reshaped and their interior painted. For real mouths, give a "
                    "video of the person talking (--bank-video)."
                )
                report.warnings.append(msg)
                warnings.warn(msg, stacklevel=2)
            renderer = BankRenderer(
                bank,
                schedule,
                plan,
                sources,
                size,
                transforms,
                PoseMasker(model, size=size),
                timer,
                callback,
                progress,
                pipelined,
            )
            report.frames_with_face = renderer.run()
            return report

    def schedule(
        self,
        bank: MouthBank,
        model: FaceModel,
        inputs: EngineInputs,
        plan: RenderPlan,
        transforms: NDArray[np.float64],
        predicted: NDArray[np.float64] | None = None,
        size: int = 256,
    ) -> tuple[BankSchedule, dict[str, float]]:
        """The entry, reshaping, cross-fades and cut easing of every output frame (`model`: the input video's
        face; `size`: the engine crop's side, that of `transforms`)."""
        track, src = plan.track, plan.src_idx
        t_len = len(src)
        target, speech = self.wanted_shapes(bank, inputs, t_len, predicted)
        used = np.unique(src)
        pose = np.full((len(track), 3), np.nan)
        pose[used] = mouth_shapes(track.landmarks[used], model, track.valid[used]).pose
        chosen = select(target, pose[src], bank.z, bank.pose, bank.follows, self.costs, speech)
        cut = cuts(chosen, bank.follows)
        previous = np.full(t_len, -1, dtype=np.int64)
        for t in np.flatnonzero(cut):
            p = int(chosen[t - 1])
            previous[t] = p + 1 if p + 1 < len(bank) and bank.follows[p + 1] else p
        want_cm = bank.opening_cm(target[:, 0])
        have_cm = bank.descriptor[chosen, 0]
        missing = want_cm - have_cm
        reshape_cm = np.sign(missing) * np.maximum(np.abs(missing) - RESHAPE_TOLERANCE_CM, 0.0)
        # Closing squeezes lips and teeth together: at most half of the mouth's own opening, unless the bank
        # has nothing closer (a photo with an open mouth must still close on silence).
        keep_open = 0.0 if bank.poor_coverage else 0.5
        reshape_cm = np.maximum(reshape_cm, -(1.0 - keep_open) * np.maximum(have_cm - 0.02, 0.0))
        open_px = np.nan_to_num(reshape_cm * px_per_cm(track, transforms)[src])
        if t_len > 1:
            open_px = gaussian_filter1d(open_px, RESHAPE_SMOOTH_FRAMES, mode="nearest")
        interior = np.where(reshape_cm > 0, np.clip(reshape_cm / np.maximum(want_cm, 1e-3), 0.0, 1.0), 0.0)
        details = {
            "bank_entries": float(len(bank)),
            "bank_coverage": float(bank.coverage),
            "cuts_per_second": float(cut.sum() / max(t_len, 1) * inputs.fps),
            "reshaped_fraction": float((np.abs(open_px) > 0.25).mean()) if t_len else 0.0,
        }
        shift, jump = cut_shifts(bank, plan, transforms, chosen, previous, open_px, size, CUT_EASE_FRAMES)
        return BankSchedule(chosen, open_px, interior, cut, previous, shift, jump), details

    def wanted_shapes(
        self,
        bank: MouthBank,
        inputs: EngineInputs,
        t_len: int,
        predicted: NDArray[np.float64] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(T, D) wanted mouth shape in the bank's z-units (the speech's prediction, closed on silence) and
        the (T,) speech gate (1 speech, 0 silence).

        Opening and width are mapped by quantiles: the k-th most open frame of the speech gets the k-th most
        open mouth of the bank, so the output spans exactly this person's range of openings (neither the
        regression's shrunken range nor openings the bank cannot show). The lip-shape coefficients keep the
        prediction's own z-units.
        """
        dims = bank.z.shape[1]
        frames = min(inputs.audio_frames, t_len)
        pred = np.tile(bank.rest, (t_len, 1))
        if frames > 0:
            if predicted is None:
                predicted = self.shape_model.predict(inputs.wave, SAMPLE_RATE, frames, inputs.fps)
            p = predicted[:frames, :dims]
            pred[:frames] = p - p.mean(axis=0)
            pred[:frames, 0] = quantile_map(p[:, 0], bank.opening_reference())
            if dims > 1 and not bank.poor_coverage:
                pred[:frames, 1] = quantile_map(p[:, 1], bank.z[:, 1])
        gate = speech_gate(
            inputs.wave,
            t_len,
            inputs.audio_frames,
            inputs.fps,
            inputs.options.keep_silence,
            min_silence=PAUSE_SECONDS,
        )
        target = bank.rest[None, :] + gate[:, None] * (pred - bank.rest[None, :])
        if t_len > 1:
            target = gaussian_filter1d(target, TARGET_SMOOTH_FRAMES, axis=0, mode="nearest")
        return target, gate


def cut_shifts(
    bank: MouthBank,
    plan: RenderPlan,
    transforms: NDArray[np.float64],
    chosen: NDArray[np.int64],
    previous: NDArray[np.int64],
    open_px: NDArray[np.float64],
    size: int,
    ease: int,
) -> tuple[NDArray[np.float64] | None, NDArray[np.float64] | None]:
    """(T, 2) mouth shifts easing each cut's jump over `ease` frames on each side (`ease_jumps`), and (T, 2)
    the jumps: where the continuation's mouth centre sits relative to the new entry's in the target crop."""
    if ease <= 0:
        return None, None
    t_len = len(chosen)
    jump = np.zeros((t_len, 2))
    observed = TargetLandmarks(plan.track)
    for t in np.flatnonzero(previous >= 0):
        s = int(plan.src_idx[t])
        if not plan.track.valid[s]:
            continue
        lm = np.asarray(warp_landmarks(observed[s], transforms[s])[:, :2], dtype=np.float64)
        a = place(bank.landmarks[previous[t]].astype(np.float64), lm, size, open_px[t]).centre
        b = place(bank.landmarks[chosen[t]].astype(np.float64), lm, size, open_px[t]).centre
        jump[t] = a - b
    return ease_jumps(jump, ease), jump


def ease_jumps(jump: NDArray[np.float64], ease: int) -> NDArray[np.float64]:
    """(T, 2) shifts that turn the jumps of a mouth's place into eased moves.

    `jump[t]` (T, 2): the place shown up to frame t−1 minus the place the new segment starts at frame t
    (zero where there is no cut). The old segment moves towards the new one over the `ease` frames before
    the cut, the new one starts where the old one was heading and settles over the `ease` frames after, along
    a raised cosine; overlapping cuts add up, and outside the windows nothing moves.
    """
    t_len = len(jump)
    shift = np.zeros((t_len, 2))
    for t in np.flatnonzero(np.abs(jump).sum(axis=1) > 0):
        u = np.arange(max(t - ease, 0), min(t + ease, t_len))
        step = 0.5 - 0.5 * np.cos(np.pi * (u - (t - ease - 0.5)) / (2 * ease))
        shift[u] += jump[t][None, :] * ((u >= t).astype(np.float64) - step)[:, None]
    return shift


def quantile_map(values: NDArray[np.floating], reference: NDArray[np.floating]) -> NDArray[np.float64]:
    """`values` replaced by the quantiles of `reference` at their ranks (ties keep their order)."""
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    q = (ranks + 0.5) / max(len(values), 1)
    return np.asarray(np.quantile(np.asarray(reference, dtype=np.float64), q), dtype=np.float64)


def px_per_cm(track: FaceTrack, transforms: NDArray[np.float64]) -> NDArray[np.float64]:
    """(T,) engine-crop pixels per model-space centimetre of every source frame (NaN without a face): the
    3-D outer eye-corner distance is `BIOCULAR_WIDTH_CM` in model space."""
    lm = track.landmarks
    eyes = np.linalg.norm(lm[:, RIGHT_EYE_OUTER] - lm[:, LEFT_EYE_OUTER], axis=1).astype(np.float64)
    scale = np.sqrt(np.abs(np.linalg.det(transforms[:, :, :2])))
    return np.asarray(eyes * scale / BIOCULAR_WIDTH_CM, dtype=np.float64)


def bank_video(path: Path, progress: Progress = False) -> BankVideo:
    """Track another video (or photo) of the person and collect its bank crops."""
    if not path.is_file():
        raise MediaError(f"{path}: --bank-video file not found")
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{path}: --bank-video has no video stream; give a video of the person talking")
    if info.is_image:
        frames: list[NDArray[np.uint8]] = [read_image(path)]
        fps, count = 25.0, 1
    else:
        reader = VideoReader(path)
        fps, count = reader.fps, len(reader)
        frames = (f.image for f in reader)  # type: ignore[assignment]
    collector = CropCollector(count)
    bar = tqdm(total=count, desc=f"bank {path.name}", unit="frame", disable=progress is not True, leave=False)
    try:
        track: FaceTrack = track_face(
            frames, fps=fps, on_frame=collector, progress=lambda n: bar.update(n - bar.n)
        )
    except BaseException:
        collector.close()
        raise
    finally:
        bar.close()
        if not info.is_image:
            reader.close()
    if not track.valid.any() or collector.size is None:
        collector.close()
        raise FaceNotFoundError(f"{path}: no face found in the --bank-video")
    return BankVideo(collector, track)


@contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's worker threads limited to `count` inside the block (process-wide; restored after)."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


__all__ = ["MouthBankEngine", "bank_video"]
