"""Face tracks of whole video files for the metrics, optionally cached on disk.

Every landmark-based metric (mouth opening, LMD, the in-the-wild LSE crop, CSIM alignment) needs one pass
of `track_face` over a video; that pass dominates evaluation time on CPU, so it is cached per file in a
directory the caller names (never inside the repository). The cache key covers the file's resolved path,
size and modification time and the frame rate the frames were read at, so an edited file is tracked again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from stylelipsync.face.track import FaceTrack, track_face
from stylelipsync.media import VideoReader


def _cache_file(video: Path, fps: float | None, cache_dir: Path) -> Path:
    stat = video.stat()
    stamp = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{fps}"
    digest = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    rate = "native" if fps is None else f"{fps:g}fps"
    return cache_dir / f"{video.stem}-{rate}-{digest}.npz"


def track_video(
    video: str | Path,
    *,
    fps: float | None = None,
    cache_dir: str | Path | None = None,
    face_index: int | None = None,
) -> FaceTrack:
    """Track the main face (largest, or `face_index`) of `video` read at `fps` (None = native rate).

    With `cache_dir`, a track saved by an earlier call for the same file and rate is reused, and a new one
    is saved there (written to a temporary name first, so an interrupted run leaves no broken file).
    """
    path = Path(video)
    target: Path | None = None
    if cache_dir is not None and face_index is None:
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        target = _cache_file(path, fps, folder)
        if target.is_file():
            return FaceTrack.load(target)
    reader = VideoReader(path, fps=fps)
    track = track_face((frame.image for frame in reader), face_index=face_index, fps=reader.fps)
    if target is not None:
        partial = target.with_name(f"{target.stem}.{os.getpid()}.partial.npz")
        track.save(partial)
        os.replace(partial, target)
    return track
