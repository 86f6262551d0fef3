"""What live dubbing prepares once per person: the looped input frames, the face track and the mouth bank.

`LiveFace.prepare` decodes the video (at most `max_seconds` of it), tracks the face while the bank's crops
are collected (the same pass 1 as `generate`), and builds the bank and the per-frame placement a live
session needs. The decoded frames go to an on-disk frame store, so a long input costs disk, not memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from stylelipsync.errors import FaceNotFoundError, MediaError
from stylelipsync.face.crop import crop_transforms
from stylelipsync.face.mask import PoseMasker
from stylelipsync.face.mouth_shape import mouth_shapes
from stylelipsync.face.track import FaceTrack, track_face
from stylelipsync.media import VideoReader, probe, read_image
from stylelipsync.media.frame_store import FrameStore
from stylelipsync.pipelines.engines.bank import bank_video, px_per_cm
from stylelipsync.pipelines.engines.bank.bank import BankVideo, MouthBank
from stylelipsync.pipelines.engines.bank.collect import CropCollector
from stylelipsync.pipelines.engines.bank.render import MouthPainter
from stylelipsync.pipelines.plan import StageTimer
from stylelipsync.pipelines.sources import open_store
from stylelipsync.pipelines.timeline import source_indices

MAX_SECONDS = 60.0
"""Default cap on the input video used (the face loops it; a minute holds plenty of mouths)."""


@dataclass
class LiveFace:
    """A prepared person (see the module docstring). Close it to delete the frame store and bank crops."""

    video: Path
    fps: float
    width: int
    height: int
    track: FaceTrack
    bank: MouthBank
    painter: MouthPainter
    pose: NDArray[np.float64]
    """(S, 3) head pose of every source frame (NaN without a face)."""
    px_per_cm: NDArray[np.float64]
    """(S,) engine-crop pixels per model centimetre of every source frame (for reshaping)."""
    frames: FrameStore | NDArray[np.uint8]
    """The source frames: a store, or the photo itself."""
    prepare_seconds: float = 0.0

    @property
    def num_source(self) -> int:
        return len(self.track)

    def source_index(self, t: int) -> int:
        """The source frame behind output frame t: the video played forth and back (no seam jump)."""
        n = self.num_source
        if n == 1:
            return 0
        return int(source_indices(t % (2 * (n - 1)) + 1, n)[-1])

    def frame(self, s: int) -> NDArray[np.uint8]:
        """Source frame s (RGB)."""
        return self.frames[s] if isinstance(self.frames, FrameStore) else self.frames

    @classmethod
    def prepare(
        cls,
        video: str | Path,
        *,
        bank_videos: Sequence[str | Path] = (),
        fps: float | None = None,
        max_seconds: float = MAX_SECONDS,
        face_index: int | None = None,
        bbox: tuple[int, int, int, int] | None = None,
        progress: bool | Callable[[int, int], None] = False,
    ) -> LiveFace:
        """Decode, track and build the bank of `video` (a video or a photo of one face)."""
        start = time.perf_counter()
        path = Path(video)
        if not path.is_file():
            raise MediaError(f"{path}: file not found; give a video or photo of the face with --video")
        info = probe(path)
        if not info.has_video:
            raise MediaError(f"{path}: has no video stream; give a video or photo of the face")
        rate = float(fps or (25.0 if info.is_image else info.fps))
        count = 1 if info.is_image else max(1, min(int(info.n_frames or 10**9), int(max_seconds * rate)))
        store: FrameStore | None = None if info.is_image else open_store(info.height, info.width)
        still = read_image(path) if info.is_image else None
        collector = CropCollector(count)
        bar = tqdm(total=count, desc="preparing", unit="frame", disable=progress is not True, leave=False)

        def frames() -> Iterator[NDArray[np.uint8]]:
            if still is not None:
                yield still
                return
            assert store is not None
            with VideoReader(path, fps=rate) as reader:
                for frame in islice(reader, count):
                    store.append(frame.image)
                    yield frame.image

        def tick(n: int) -> None:
            bar.update(n - bar.n)
            if callable(progress):
                progress(n, count)

        try:
            track = track_face(
                frames(), face_index=face_index, bbox=bbox, fps=rate, on_frame=collector, progress=tick
            )
            if not track.valid.any() or collector.size is None:
                raise FaceNotFoundError(
                    f"{path}: no face found; give a video or photo where the face is visible "
                    "(or point at it with --bbox X0,Y0,X1,Y1)"
                )
            videos = [BankVideo(collector, track)]
            videos += [bank_video(Path(p), progress is True) for p in bank_videos]
            bank = MouthBank(videos)
        except BaseException:
            collector.close()
            if store is not None:
                store.close()
            raise
        finally:
            bar.close()
        model = bank.models[0]
        assert model is not None
        size = int(collector.size)
        transforms = crop_transforms(track, size=size)
        masker = PoseMasker(model, size=size)
        painter = MouthPainter(bank, size, transforms, masker, track.observed(), StageTimer())
        pose = mouth_shapes(track.landmarks, model, track.valid).pose
        frames_src = store if store is not None else still
        assert frames_src is not None
        return cls(
            video=path,
            fps=rate,
            width=info.width,
            height=info.height,
            track=track,
            bank=bank,
            painter=painter,
            pose=pose,
            px_per_cm=px_per_cm(track, transforms),
            frames=frames_src,
            prepare_seconds=time.perf_counter() - start,
        )

    def close(self) -> None:
        """Delete the frame store and the bank's crops."""
        if isinstance(self.frames, FrameStore):
            self.frames.close()
        self.bank.close()


__all__ = ["MAX_SECONDS", "LiveFace"]
