"""Pass 2 of `generate`: walk the output timeline in chunks and write the dubbed video.

Per chunk of `batch_size` output frames: source frame → 256² crop and pose-aware keep-mask → face encoder on
the masked crop, audio encoder on the mel windows (gated towards silence) → exact streaming MaLS, which
releases a frame once the 3 frames after it are known → decoder → composite in the crop (spec §2.8, §3.3) →
feathered paste-back → encode. Frames without a face are written unchanged.

Pipelined (the default): a producer thread decodes source frames and makes their crops and masks, a
consumer thread composites, pastes back, encodes and reports, and the calling thread runs the networks, so
that I/O and image work hide behind the network. The queues between them are bounded (one chunk each), so
at most about 4 × `batch_size` + 3 frames (and the encoder features of `batch_size` + 3) are held at any
time, whatever the video's length. The threads change where work runs, not what is computed: the output is
bit-identical to the sequential path (`pipelined=False`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from stylelipsync.face.crop import warp_landmarks, warp_to_crop
from stylelipsync.face.mask import keep_mask
from stylelipsync.face.paste import paste_back
from stylelipsync.media import VideoWriter
from stylelipsync.models import InferenceRunner
from stylelipsync.pipelines.audio_drive import AudioDrive
from stylelipsync.pipelines.options import FrameOutput
from stylelipsync.pipelines.plan import CROP_SIZE, Callback, Progress, RenderPlan, StageTimer, open_writers
from stylelipsync.pipelines.queues import POLL_SECONDS, put_unless_stopped
from stylelipsync.pipelines.sources import SourceFrames
from stylelipsync.pipelines.streaming import StreamingStyleMixer


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


@dataclass(slots=True)
class _Chunk:
    """Frames whose network work is done: decoder output x̂ and its 256² pixels (None without a face)."""

    items: list[_Item]
    generated: list[torch.Tensor | None]
    pixels: list[np.ndarray | None]


class _Failed:
    """Queue marker: the thread that put it failed (its exception is in the renderer's error list)."""


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


def reuse_distance(src_idx: np.ndarray) -> np.ndarray:
    """For each output frame, how many frames later its source frame is used again (a large value if never).

    Lets the renderer keep face-encoder features only for frames a still, hold or loop turn revisits soon.
    """
    later = np.full(len(src_idx), np.iinfo(np.int64).max, dtype=np.int64)
    seen: dict[int, int] = {}
    for t in range(len(src_idx) - 1, -1, -1):
        s = int(src_idx[t])
        if s in seen:
            later[t] = seen[s] - t
        seen[s] = t
    return later


class Renderer:
    """Runs pass 2 for one plan; `run()` returns the number of frames that had a face.

    `callback` (per written frame) runs on the writer thread when pipelined; `progress` always runs on the
    calling thread, after each chunk has gone through the networks.
    """

    def __init__(
        self,
        runner: InferenceRunner,
        device: torch.device,
        plan: RenderPlan,
        sources: SourceFrames,
        drive: AudioDrive,
        timer: StageTimer,
        callback: Callback | None = None,
        progress: Progress = False,
        pipelined: bool = True,
    ) -> None:
        self.runner, self.device, self.plan = runner, device, plan
        self.resolution = runner.model.config.resolution
        self.sources, self.drive, self.timer = sources, drive, timer
        self.callback, self.progress, self.pipelined = callback, progress, pipelined
        self._pending: deque[_Item] = deque()
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = max(8, 2 * plan.batch_size)
        self._features: OrderedDict[int, list[torch.Tensor]] = OrderedDict()
        self._reuse = reuse_distance(plan.src_idx)
        self._errors: list[BaseException] = []
        self._with_face = 0

    @torch.no_grad()
    def run(self) -> int:
        """Render every output frame into the output file(s)."""
        total = len(self.plan.src_idx)
        silence = self.runner.audio_styles(self.drive.silence_window().to(self.device))[0]
        mixer = self._mixer()
        bar = tqdm(total=total, desc="dubbing", unit="frame", disable=self.progress is not True)
        try:
            with ExitStack() as stack:
                writers = self._open_writers(stack)
                chunks = self._chunks(silence, mixer, bar)
                if self.pipelined:
                    self._run_threaded(chunks, writers)
                else:
                    frames = self._frames()
                    for chunk in chunks(lambda: next(frames)):
                        self._output(chunk, writers)
                with self.timer("encode"):
                    stack.close()
        finally:
            bar.close()
        return self._with_face

    # -- the three stages ------------------------------------------------------------------------------

    def _frames(self) -> Iterator[_Item]:
        """Producer work: every output frame in order, decoded, with its crop and keep-mask."""
        plan = self.plan
        for t in range(len(plan.src_idx)):
            s = int(plan.src_idx[t])
            with self.timer("decode"):
                item = _Item(t, s, self.sources[s])
            if plan.track.valid[s]:
                with self.timer("crop+mask"):
                    item.face = _Face(*self._crop_and_keep(s, item.frame))
            yield item

    def _chunks(
        self, silence: torch.Tensor, mixer: StreamingStyleMixer, bar: Any
    ) -> Callable[[Callable[[], _Item]], Iterator[_Chunk]]:
        """Network work, on the calling thread: pull a chunk of frames with `take`, yield finished frames."""

        def generate(take: Callable[[], _Item]) -> Iterator[_Chunk]:
            total, batch = len(self.plan.src_idx), self.plan.batch_size
            for lo in range(0, total, batch):
                hi = min(total, lo + batch)
                items = [take() for _ in range(hi - lo)]
                self._pending.extend(items)
                self._encode_faces(items)
                audio = self._audio_styles(lo, hi, silence)
                with self.timer("MaLS"):
                    styles = mixer.push(audio)
                chunk = self._generate(styles)
                if chunk is not None:
                    yield chunk
                bar.update(hi - lo)
                if callable(self.progress):
                    self.progress(hi, total)

        return generate

    def _output(self, chunk: _Chunk, writers: list[VideoWriter]) -> None:
        """Consumer work: composite, paste back, encode and report each frame of a chunk, in order."""
        for item, gen, pixels in zip(chunk.items, chunk.generated, chunk.pixels, strict=True):
            comp = None
            if pixels is not None and item.face is not None:
                with self.timer("composite"):
                    comp = composite(pixels, item.face.crop, item.face.keep)
            self._write(item, comp, writers)
            self._report(item, gen, comp)

    # -- threads ---------------------------------------------------------------------------------------

    def _run_threaded(
        self, chunks: Callable[[Callable[[], _Item]], Iterator[_Chunk]], writers: list[VideoWriter]
    ) -> None:
        """Producer and consumer threads around the network loop, joined before the writers close."""
        stop = threading.Event()
        frames: queue.Queue[_Item | _Failed] = queue.Queue(maxsize=self.plan.batch_size)
        done: queue.Queue[_Chunk | None] = queue.Queue(maxsize=1)
        threads = [
            threading.Thread(
                target=self._produce, args=(frames, stop), name="stylelipsync-decode", daemon=True
            ),
            threading.Thread(
                target=self._consume, args=(done, writers, stop), name="stylelipsync-encode", daemon=True
            ),
        ]
        for thread in threads:
            thread.start()
        try:
            for chunk in chunks(lambda: self._take(frames)):
                self._give(done, chunk, stop)
            self._give(done, None, stop)
            while threads[1].is_alive():
                threads[1].join(POLL_SECONDS)
            self._raise_failure()
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    def _produce(self, frames: queue.Queue[_Item | _Failed], stop: threading.Event) -> None:
        try:
            for item in self._frames():
                if not put_unless_stopped(frames, item, stop):
                    return
        except BaseException as exc:
            self._errors.append(exc)
            put_unless_stopped(frames, _Failed(), stop)

    def _consume(
        self, done: queue.Queue[_Chunk | None], writers: list[VideoWriter], stop: threading.Event
    ) -> None:
        try:
            while not stop.is_set():
                try:
                    chunk = done.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if chunk is None:
                    return
                self._output(chunk, writers)
        except BaseException as exc:
            self._errors.append(exc)

    def _take(self, frames: queue.Queue[_Item | _Failed]) -> _Item:
        """The next decoded frame; raises a worker thread's exception if one failed meanwhile."""
        start = time.perf_counter()
        try:
            while True:
                self._raise_failure()
                try:
                    item = frames.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if isinstance(item, _Failed):
                    self._raise_failure()
                    raise RuntimeError("internal error: the decoding thread stopped without an error")
                return item
        finally:
            self.timer.add("network waits for frames", time.perf_counter() - start)

    def _give(self, done: queue.Queue[_Chunk | None], chunk: _Chunk | None, stop: threading.Event) -> None:
        """Hand a chunk to the writer thread; raises a worker thread's exception if one failed meanwhile."""
        start = time.perf_counter()
        try:
            while True:
                self._raise_failure()
                try:
                    done.put(chunk, timeout=POLL_SECONDS)
                    return
                except queue.Full:
                    continue
        finally:
            self.timer.add("network waits for writer", time.perf_counter() - start)

    def _raise_failure(self) -> None:
        if self._errors:
            raise self._errors[0]

    # -- details ---------------------------------------------------------------------------------------

    def _mixer(self) -> StreamingStyleMixer:
        """Streaming MaLS with the identity of the reference frame."""
        plan = self.plan
        with self.timer("decode"):
            frame = self.sources[plan.reference]
        with self.timer("crop+mask"):
            crop = warp_to_crop(frame, plan.transforms[plan.reference], CROP_SIZE)
        ref = self.runner.reference_styles(to_model(crop[None], self.resolution, self.device))[0]
        return StreamingStyleMixer(lambda a: self.runner.model.mix_styles(a, ref), len(plan.src_idx))

    def _open_writers(self, stack: ExitStack) -> list[VideoWriter]:
        return open_writers(stack, self.plan, CROP_SIZE)

    def _encode_faces(self, items: list[_Item]) -> None:
        """Face-encoder features for the chunk's faces; a source frame used again soon is encoded once."""
        todo: dict[int, list[_Face]] = {}
        for item in items:
            face = item.face
            if face is None:
                continue
            hit = self._features.get(item.source)
            if hit is not None:
                self._features.move_to_end(item.source)
                face.features = hit
            else:
                todo.setdefault(item.source, []).append(face)
        if not todo:
            return
        with self.timer("face encoder"):
            masked = np.stack([faces[0].crop * faces[0].keep[..., None] for faces in todo.values()])
            features = self.runner.face_features(to_model(masked, self.resolution, self.device))
        reused = {item.source for item in items if self._reuse[item.index] <= 2 * self.plan.batch_size}
        for j, (source, faces) in enumerate(todo.items()):
            mine = [f[j : j + 1] for f in features]
            if source in reused:
                mine = [f.clone() for f in mine]  # a slice would keep the whole chunk's features alive
                self._features[source] = mine
                if len(self._features) > self.plan.batch_size:
                    self._features.popitem(last=False)
            for face in faces:
                face.features = mine

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
        with self.timer("audio features"):
            windows = self.drive.windows(lo, hi).to(self.device)
            g = self.drive.gate[lo:hi, None, None].to(self.device)
        with self.timer("audio encoder"):
            a = self.runner.audio_styles(windows)
            return g * a + (1 - g) * silence

    def _generate(self, styles: torch.Tensor) -> _Chunk | None:
        """Decode the oldest `len(styles)` pending frames (those with a face) into x̂ and 256² pixels."""
        if styles.shape[0] == 0:
            return None
        items = [self._pending.popleft() for _ in range(styles.shape[0])]
        rows = [j for j, it in enumerate(items) if it.face is not None]
        generated: list[torch.Tensor | None] = [None] * len(items)
        pixels: list[np.ndarray | None] = [None] * len(items)
        if rows:
            with self.timer("generator"):
                faces = [items[j].face for j in rows]
                levels = range(len(faces[0].features))  # type: ignore[union-attr]
                feats = [torch.cat([f.features[k] for f in faces]) for k in levels]  # type: ignore[union-attr]
                x_hat = self.runner.decode(styles[rows], feats).cpu()
                for item in items:
                    if item.face is not None:
                        item.face.features = []
                crops = from_model(x_hat)
            for r, j in enumerate(rows):
                generated[j], pixels[j] = x_hat[r], crops[r]
        return _Chunk(items, generated, pixels)

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
