"""Map output frames (driven by the audio) to source frames of the video.

The audio decides the output length. When the audio is longer than the video the source frames are looped;
ping-pong (forward then backward) is the default because it never jumps at the seam, unlike a forward loop.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class LoopMode(StrEnum):
    """How to extend a video that is shorter than the audio."""

    PINGPONG = "pingpong"
    FORWARD = "forward"
    HOLD = "hold"


def source_indices(num_output: int, num_source: int, loop: LoopMode | str = LoopMode.PINGPONG) -> np.ndarray:
    """Source frame index for each of `num_output` output frames, given a video of `num_source` frames.

    Output frames within the video map one to one; past its end the video is extended by `loop`:
    ping-pong walks back and forth without repeating the turning frame (0,1,2,1,0,1,...), forward restarts at
    frame 0, hold repeats the last frame.
    """
    if num_output < 0:
        raise ValueError(f"num_output must be >= 0, got {num_output}")
    if num_source < 1:
        raise ValueError(f"num_source must be >= 1, got {num_source}")
    loop = LoopMode(loop)
    t = np.arange(num_output, dtype=np.int64)
    if num_source == 1:
        return np.zeros(num_output, dtype=np.int64)
    if loop is LoopMode.FORWARD:
        return t % num_source
    if loop is LoopMode.HOLD:
        return np.minimum(t, num_source - 1)
    period = 2 * (num_source - 1)
    phase = t % period
    return np.where(phase < num_source, phase, period - phase)


def needs_random_access(indices: np.ndarray) -> bool:
    """True when source frames are revisited out of order, so one streaming decode pass is not enough."""
    return bool(indices.size > 1 and np.any(np.diff(indices) < 0))
