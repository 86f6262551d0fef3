"""Per-frame mel windows: spec indices 4t−8..4t+12 at 25 fps, zero rows outside, centring at other rates."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from stylelipsync.audio import mel_windows, num_video_frames, window_starts


def _numbered_mel(n: int) -> torch.Tensor:
    """(n, 80) mel whose row r holds r + 1 everywhere, so a 0 can only come from padding."""
    return (torch.arange(n, dtype=torch.float32) + 1)[:, None].repeat(1, 80)


def test_num_video_frames() -> None:
    assert num_video_frames(1005) == 251
    assert num_video_frames(1005, 25.0) == 1005 // 4
    assert num_video_frames(1000, 30.0) == 300
    assert num_video_frames(1005, 30.0) == 301
    assert num_video_frames(1001, 30000 / 1001) == 300
    assert num_video_frames(3, 25.0) == 0


def test_starts_are_4t_minus_8_at_25_fps() -> None:
    starts = window_starts(1000, 25.0)
    assert starts.tolist() == [4 * t - 8 for t in range(1000)]


def test_windows_match_spec_indices_with_zero_padding_at_both_ends() -> None:
    n_mel = 1005
    mel = _numbered_mel(n_mel)
    frames = num_video_frames(n_mel)
    windows = mel_windows(mel, frames, 25.0)
    assert windows.shape == (251, 20, 80) and windows.dtype == mel.dtype
    for t in range(frames):
        for i in range(20):
            row = 4 * t - 8 + i
            expected = row + 1 if 0 <= row < n_mel else 0
            assert windows[t, i, 0].item() == expected, (t, i)
    assert torch.all(windows[0, :8] == 0) and torch.all(windows[1, :4] == 0)
    assert torch.all(windows[0, 8:] > 0)
    assert torch.all(windows[-1, :13] > 0) and torch.all(windows[-1, 13:] == 0)  # rows 1000..1004 exist


def test_padding_is_zero_not_silence() -> None:
    mel = torch.full((40, 80), -5.0)
    windows = mel_windows(mel, 10)
    assert torch.all(windows[0, :8] == 0.0) and torch.all(windows[0, 8:] == -5.0)


@pytest.mark.parametrize("fps", [30.0, 30000 / 1001, 50.0, 62.5, 24.0])
def test_other_rates_centre_the_window_on_the_frame_time(fps: float) -> None:
    n_mel = 1000
    mel = _numbered_mel(n_mel)
    frames = num_video_frames(n_mel, fps)
    windows = mel_windows(mel, frames, fps)
    assert windows.shape == (frames, 20, 80)
    for t in range(frames):
        # round half up, so that 25 fps gives exactly 4t − 8
        start = int(np.floor(t * 100 / fps + 0.5)) - 8
        rows = np.arange(start, start + 20)
        expected = np.where((rows >= 0) & (rows < n_mel), rows + 1, 0)
        assert np.array_equal(windows[t, :, 0].numpy(), expected), t
        # Same centring as the spec: the frame time (in mel rows) sits 8 rows into the 20-row window.
        assert abs(start + 8 - t * 100 / fps) <= 0.5


def test_more_frames_than_audio_gives_zero_windows() -> None:
    windows = mel_windows(_numbered_mel(12), 10)
    assert windows.shape == (10, 20, 80)
    assert torch.all(windows[6:] == 0)
    assert mel_windows(_numbered_mel(12), 0).shape == (0, 20, 80)


def test_vectorised_speed() -> None:
    mel = torch.randn(60_000, 80)  # ten minutes of audio
    start = time.perf_counter()
    windows = mel_windows(mel, num_video_frames(60_000))
    assert windows.shape == (15_000, 20, 80)
    assert time.perf_counter() - start < 2.0
    assert torch.equal(windows[1234], mel[4 * 1234 - 8 : 4 * 1234 + 12])


def test_rejects_bad_mel_shape() -> None:
    with pytest.raises(ValueError, match="N_mel"):
        mel_windows(torch.zeros(2, 3, 4), 5)
    assert np.array_equal(window_starts(3, 25.0).numpy(), [-8, -4, 0])
