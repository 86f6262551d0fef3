"""Shared helpers for the face tests: decode shared clips with PyAV and cache tracks per process.

No tests live here; the other `test_face_*.py` files import it so that each clip is decoded and tracked once.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from stylelipsync.face.crop import crop_transforms
from stylelipsync.face.geometry import FaceModel
from stylelipsync.face.track import FaceTrack, track_face

# (file, frames used): HDTF 512², portrait 1080×1920 with a small face, 224² VoxCeleb with a turned head,
# 160² LRS2, 844² studio, 256² with the stillest head of the talking clips.
TALKING = {
    "sadtalker_WDA_KatieHill_000.mp4": 50,
    "latentsync_demo1_video.mp4": 50,
    "pcavs_Pose_Source_517600055.mp4": 50,
    "deepavsr_00001.mp4": 50,
    "vrt_face_2.mp4": 50,
    "styletalk_KristiNoem.mp4": 75,
}
SMALL_FACE_CLIP = "latentsync_demo1_video.mp4"
STILL_CLIP = "styletalk_KristiNoem.mp4"
MULTI_FACE_CLIP = "vrt_Ablation.mp4"  # 1920×1080 grid: 3 copies of one face side by side from ~20 s
FACELESS_CLIP = "makeittalk_M6_04_16k_av.mp4"  # drawn landmark lines on black, no real face


def clip_fps(media: Path, name: str) -> float:
    """Average frame rate of a shared clip."""
    with av.open(str(media / name)) as container:
        return float(container.streams.video[0].average_rate)


@lru_cache(maxsize=8)
def read_frames(media: Path, name: str, count: int, start: int = 0) -> tuple[np.ndarray, ...]:
    """`count` RGB uint8 frames of a shared clip from frame `start` (decoded once per process)."""
    with av.open(str(media / name)) as container:
        stream = container.streams.video[0]
        skip = start
        if start > 0:
            # Seek to the keyframe before `start`; count frames from the first decoded frame's timestamp.
            t_start = start / float(stream.average_rate)
            container.seek(int(t_start / stream.time_base), stream=stream, backward=True)
            first = next(container.decode(stream))
            skip = start - round(float(first.pts * stream.time_base) * float(stream.average_rate)) - 1
            if skip < -1:
                raise RuntimeError(f"seek in {name} overshot frame {start}")
            if skip == -1:
                return (first.to_ndarray(format="rgb24"), *_decode(container, stream, 0, count - 1))
        return _decode(container, stream, skip, count)


def _decode(container: av.container.InputContainer, stream: av.VideoStream, skip: int, count: int) -> tuple:
    frames = container.decode(stream)
    return tuple(f.to_ndarray(format="rgb24") for f in itertools.islice(frames, skip, skip + count))


@lru_cache(maxsize=8)
def tracked(media: Path, name: str, count: int) -> FaceTrack:
    """Track of the largest face over the first `count` frames of a shared clip (cached)."""
    return track_face(iter(read_frames(media, name, count)), fps=clip_fps(media, name))


@lru_cache(maxsize=8)
def model_and_crops(media: Path, name: str, count: int) -> tuple[FaceModel, np.ndarray]:
    """The clip's face shape and its (T, 2, 3) crop matrices (cached)."""
    track = tracked(media, name, count)
    return FaceModel.from_landmarks(track.landmarks, track.valid), crop_transforms(track)
