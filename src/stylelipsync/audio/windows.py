"""Per-video-frame mel windows (spec §1.2 step 4, §2.1): 20 mel rows around each frame, zero-padded."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from stylelipsync.audio.mel import MEL_FRAMES_PER_SECOND

if TYPE_CHECKING:
    import torch

WINDOW = 20
OFFSET = 8


def num_video_frames(n_mel: int, fps: float = 25.0) -> int:
    """Video frames covered by `n_mel` mel frames: floor(n_mel · fps / 100) (= n_mel // 4 at 25 fps)."""
    return math.floor(n_mel * fps / MEL_FRAMES_PER_SECOND + 1e-9)


def window_starts(num_frames: int, fps: float = 25.0) -> torch.Tensor:
    """First mel row of each frame's window: round(t · 100 / fps) − 8, i.e. exactly 4t − 8 at 25 fps."""
    import torch

    t = torch.arange(num_frames, dtype=torch.float64)
    return torch.floor(t * (MEL_FRAMES_PER_SECOND / fps) + 0.5).to(torch.long) - OFFSET


def mel_windows(mel: torch.Tensor, num_frames: int, fps: float = 25.0) -> torch.Tensor:
    """(T, 20, 80) windows: frame t gets mel rows [s_t, s_t + 20), rows outside the spectrogram are zero.

    Zero rows (log10 power 1) rather than silence (≈ −5) are what the official checkpoint was trained with.
    Vectorised: one zero-padded copy of `mel`, `unfold` into all 20-row windows, then index the starts.
    """
    import torch

    if mel.ndim != 2:
        raise ValueError(f"mel must be (N_mel, n_mels), got shape {tuple(mel.shape)}")
    if num_frames <= 0:
        return mel.new_zeros((0, WINDOW, mel.shape[1]))
    starts = window_starts(num_frames, fps)
    left = max(0, -int(starts.min()))
    right = max(0, int(starts.max()) + WINDOW - mel.shape[0])
    padded = torch.nn.functional.pad(mel, (0, 0, left, right))
    windows = padded.unfold(0, WINDOW, 1)
    return windows[starts + left].transpose(1, 2).contiguous()
