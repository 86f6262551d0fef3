"""Display rotation of video frames (display matrix / legacy `rotate` tag) and how to apply it."""

from __future__ import annotations

from collections.abc import Mapping

import av
import numpy as np


def normalise_degrees(degrees: float) -> int:
    """Round to the nearest quarter turn and map into {0, 90, 180, 270}."""
    return round(degrees / 90.0) % 4 * 90


def clockwise_rotation(frame: av.VideoFrame, metadata: Mapping[str, str] | None = None) -> int:
    """Clockwise rotation (0/90/180/270) a player applies to show `frame` upright.

    FFmpeg attaches the stream's display matrix (mp4 `tkhd`, or EXIF orientation for JPEG) to every decoded
    frame; PyAV reports it counter-clockwise, hence the sign flip. Files written by old muxers may carry a
    `rotate` tag (clockwise degrees; Matroska spells it ROTATE) instead. Mirroring in the matrix is ignored
    (practically never used in videos).
    """
    ccw = frame.rotation
    if ccw:
        return normalise_degrees(-ccw)
    tags = {key.lower(): value for key, value in (metadata or {}).items()}
    tag = tags.get("rotate")
    if tag:
        try:
            return normalise_degrees(float(tag))
        except ValueError:
            return 0
    return 0


def rotate_image(image: np.ndarray, clockwise: int) -> np.ndarray:
    """Rotate an HxWxC image clockwise by a multiple of 90° (returns a contiguous array)."""
    quarter_turns = normalise_degrees(clockwise) // 90
    if quarter_turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=-quarter_turns))


def rotated_size(width: int, height: int, clockwise: int) -> tuple[int, int]:
    """(width, height) after rotating by `clockwise` degrees."""
    return (height, width) if normalise_degrees(clockwise) in (90, 270) else (width, height)
