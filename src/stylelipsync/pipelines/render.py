"""Pass 2 of `generate`: walk the output timeline in chunks and write the dubbed video.

Per chunk of `batch_size` output frames: source frame → 256² crop and pose-aware keep-mask → face encoder on
the masked crop, audio encoder on the mel windows (gated towards silence) → exact streaming MaLS, which
releases a frame once the 3 frames after it are known → decoder → composite in the crop (spec §2.8, §3.3) →
feathered paste-back → encode. Frames without a face are written unchanged. At most `batch_size` + 3 frames
(and their encoder features) are held at any time, whatever the video's length.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from stylelipsync.face.crop import warp_landmarks, warp_to_crop
from stylelipsync.face.mask import PoseMasker, keep_mask
from stylelipsync.face.paste import paste_back
from stylelipsync.face.track import FaceTrack
from stylelipsync.media import VideoWriter
from stylelipsync.models import StyleLipSync
from stylelipsync.pipelines.audio_drive import AudioDrive
from stylelipsync.pipelines.options import FrameOutput
from stylelipsync.pipelines.sources import SourceFrames
from stylelipsync.pipelines.streaming import StreamingStyleMixer

CROP_SIZE = 256
"""Crops, masks and paste-back live at 256² (the spec's mask processing is defined there); the model may
run at a lower resolution, in which case its input is resized down and its output up."""

Callback = Callable[[FrameOutput], None]
Progress = bool | Callable[[int, int], None]


class StageTimer:
    """Wall-clock seconds per named stage, accumulated over a call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass
class RenderPlan:
    """Everything pass 2 needs, resolved by the pipeline from the inputs and pass 1."""

    video: Path
    protect: list[Path]
    output: Path
    crop_path: Path | None
    fps: float
    width: int
    height: int
    src_idx: np.ndarray
    track: FaceTrack
    transforms: np.ndarray
    masker: PoseMasker
    reference: int
    audio: np.ndarray
    audio_rate: int
    batch_size: int


@dataclass(slots=True)
class _Face:
    """The face of one frame: 256² crop, keep-mask K and face-encoder features."""

    crop: np.ndarray
    keep: np.ndarray
    features: list[torch.Tensor] = field(default_factory=list)


@dataclass(slots=True)
class _Item:
    """One output frame on its way through the chunk; `face` is None when the frame has none."""

    index: int
    source: int
    frame: np.ndarray
    face: _Face | None = None


def to_model(crops: np.ndarray, resolution: int, device: torch.device) -> torch.Tensor:
    """(N, 256, 256, 3) crops in 0..255 (uint8 or float) → (N, 3, R, R) in [-1, 1] on `device`."""
    x = torch.as_tensor(np.ascontiguousarray(crops), dtype=torch.float32, device=device).permute(0, 3, 1, 2)
    if resolution != x.shape[-1]:
        x = F.interpolate(x, size=(resolution, resolution), mode="area")
    return x / 127.5 - 1.0


def from_model(x_hat: torch.Tensor) -> np.ndarray:
    """(N, 3, R, R) in [-1, 1] → uint8 (N, 256, 256, 3), truncated like the official code."""
    x = ((x_hat.float() + 1) / 2).clamp(0, 1) * 255
    if x.shape[-1] != CROP_SIZE:
        x = F.interpolate(x, size=(CROP_SIZE, CROP_SIZE), mode="bicubic", align_corners=False).clamp(0, 255)
    return x.permute(0, 2, 3, 1).to(torch.uint8).cpu().numpy()


def composite(generated: np.ndarray, crop: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Spec §2.8 step 13: x̂·(1 − K) + Y·K at 256², truncated to uint8."""
    k = keep[..., None]
    return (generated.astype(np.float32) * (1 - k) + crop.astype(np.float32) * k).astype(np.uint8)


class Renderer:
    """Runs pass 2 for one plan; `run()` returns the number of frames that had a face."""

    def __init__(
        self,
        model: StyleLipSync,
        device: torch.device,
        plan: RenderPlan,
        sources: SourceFrames,
        drive: AudioDrive,
        timer: StageTimer,
        callback: Callback | None = None,
        progress: Progress = False,
    ) -> None:
        self.model, self.device, self.plan = model, device, plan
        self.sources, self.drive, self.timer = sources, drive, timer
        self.callback, self.progress = callback, progress
        self._pending: deque[_Item] = deque()
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = max(8, 2 * plan.batch_size)
        self._with_face = 0

    @torch.no_grad()
    def run(self) -> int:
        """Render every output frame into the output file(s)."""
        total = len(self.plan.src_idx)
        silence = self.model.audio_styles(self.drive.silence_window().to(self.device))[0]
        mixer = self._mixer()
        bar = tqdm(total=total, desc="dubbing", unit="frame", disable=self.progress is not True)
        try:
            with ExitStack() as stack:
                writers = self._open_writers(stack)
                for lo in range(0, total, self.plan.batch_size):
                    hi = min(total, lo + self.plan.batch_size)
                    self._pending.extend(self._prepare(lo, hi))
                    audio = self._audio_styles(lo, hi, silence)
                    with self.timer("MaLS"):
                        styles = mixer.push(audio)
                    self._flush(styles, writers)
                    bar.update(hi - lo)
                    if callable(self.progress):
                        self.progress(hi, total)
                with self.timer("encode"):
                    stack.close()
        finally:
            bar.close()
        return self._with_face

    def _mixer(self) -> StreamingStyleMixer:
        """Streaming MaLS with the identity of the reference frame."""
        plan = self.plan
        with self.timer("decode"):
            frame = self.sources[plan.reference]
        with self.timer("crop+mask"):
            crop = warp_to_crop(frame, plan.transforms[plan.reference], CROP_SIZE)
        ref = self.model.reference_styles(to_model(crop[None], self.model.config.resolution, self.device))[0]
        return StreamingStyleMixer(lambda a: self.model.mix_styles(a, ref), len(plan.src_idx))

    def _open_writers(self, stack: ExitStack) -> list[VideoWriter]:
        plan = self.plan
        sizes = [(plan.output, plan.width, plan.height)]
        if plan.crop_path is not None:
            sizes.append((plan.crop_path, CROP_SIZE, CROP_SIZE))
        return [
            stack.enter_context(
                VideoWriter(
                    path, plan.fps, w, h, audio=plan.audio, sample_rate=plan.audio_rate, protect=plan.protect
                )
            )
            for path, w, h in sizes
        ]

    def _prepare(self, lo: int, hi: int) -> list[_Item]:
        """Frames lo..hi-1 with their crops, keep-masks and face-encoder features."""
        plan = self.plan
        items = []
        for t in range(lo, hi):
            s = int(plan.src_idx[t])
            with self.timer("decode"):
                item = _Item(t, s, self.sources[s])
            if plan.track.valid[s]:
                with self.timer("crop+mask"):
                    item.face = _Face(*self._crop_and_keep(s, item.frame))
            items.append(item)
        faces = [it.face for it in items if it.face is not None]
        if faces:
            with self.timer("face encoder"):
                masked = np.stack([f.crop * f.keep[..., None] for f in faces])
                features = self.model.face_features(
                    to_model(masked, self.model.config.resolution, self.device)
                )
            for j, face in enumerate(faces):
                face.features = [f[j : j + 1] for f in features]
        return items

    def _crop_and_keep(self, s: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """256² crop and keep-mask of source frame s (cached: a still or a loop turn revisits frames)."""
        hit = self._cache.get(s)
        if hit is not None:
            self._cache.move_to_end(s)
            return hit
        m = self.plan.transforms[s]
        crop = warp_to_crop(frame, m, CROP_SIZE)
        keep = keep_mask(self.plan.masker(warp_landmarks(self.plan.track.landmarks[s], m)))
        self._cache[s] = (crop, keep)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return crop, keep

    def _audio_styles(self, lo: int, hi: int, silence: torch.Tensor) -> torch.Tensor:
        """Audio styles of frames lo..hi-1, blended towards silence by the gate."""
        with self.timer("audio encoder"):
            a = self.model.audio_styles(self.drive.windows(lo, hi).to(self.device))
            g = self.drive.gate[lo:hi, None, None].to(self.device)
            return g * a + (1 - g) * silence

    def _flush(self, styles: torch.Tensor, writers: list[VideoWriter]) -> None:
        """Decode, composite, paste back and write the oldest `len(styles)` pending frames."""
        if styles.shape[0] == 0:
            return
        items = [self._pending.popleft() for _ in range(styles.shape[0])]
        rows = [j for j, it in enumerate(items) if it.face is not None]
        faces = [it.face for it in items if it.face is not None]
        generated: list[torch.Tensor] = []
        pixels: list[np.ndarray] = []
        if faces:
            with self.timer("generator"):
                levels = range(len(faces[0].features))
                feats = [torch.cat([f.features[k] for f in faces]) for k in levels]
                x_hat = self.model.decode(styles[rows], feats).float().cpu()
            generated = list(x_hat)
            with self.timer("composite"):
                pixels = [composite(g, f.crop, f.keep) for g, f in zip(from_model(x_hat), faces, strict=True)]
        done = dict(zip(rows, zip(generated, pixels, strict=True), strict=True))
        for j, item in enumerate(items):
            gen, comp = done.get(j, (None, None))
            self._write(item, comp, writers)
            self._report(item, gen, comp)

    def _write(self, item: _Item, comp: np.ndarray | None, writers: list[VideoWriter]) -> None:
        """Paste back (or pass through) and encode one frame."""
        out = item.frame
        if comp is not None and item.face is not None:
            with self.timer("paste"):
                out = paste_back(item.frame, comp, self.plan.transforms[item.source], item.face.keep)
            self._with_face += 1
        with self.timer("encode"):
            writers[0].write(out)
            if len(writers) > 1:
                writers[1].write(comp if comp is not None else np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8))

    def _report(self, item: _Item, generated: torch.Tensor | None, comp: np.ndarray | None) -> None:
        """Hand the frame to the user's callback."""
        if self.callback is None:
            return
        face = item.face
        self.callback(
            FrameOutput(
                index=item.index,
                source_index=item.source,
                has_face=face is not None,
                generated=generated,
                composite=comp,
                transform=self.plan.transforms[item.source].copy() if face is not None else None,
                keep=face.keep if face is not None else None,
            )
        )
