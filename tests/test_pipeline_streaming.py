"""Streaming MaLS gives exactly the whole-sequence result, and the timeline loops without seam jumps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylelipsync.pipelines.streaming import StreamingStyleMixer
from stylelipsync.pipelines.timeline import LoopMode, needs_random_access, source_indices


def _reach3_mix(u: torch.Tensor) -> torch.Tensor:
    """Stand-in with MaLS's receptive field and end effects: three replicate-padded 0.25/0.5/0.25 averages
    followed by a nonlinearity, so any window error shows up."""
    x = u.permute(1, 2, 0).reshape(-1, 1, u.shape[0])
    k = torch.tensor([[[0.25, 0.5, 0.25]]], dtype=u.dtype)
    for _ in range(3):
        x = torch.tanh(F.conv1d(F.pad(x, (1, 1), mode="replicate"), k) * 1.3)
    return x.reshape(u.shape[1], u.shape[2], u.shape[0]).permute(2, 0, 1)


@pytest.mark.parametrize("total,chunk", [(1, 1), (2, 1), (7, 3), (23, 8), (23, 1), (40, 16), (5, 5)])
def test_streamed_styles_equal_whole_sequence(total: int, chunk: int) -> None:
    g = torch.Generator().manual_seed(total * 100 + chunk)
    audio = torch.randn(total, 4, 6, generator=g)
    whole = _reach3_mix(audio if total > 1 else audio.expand(2, 4, 6))[:total]
    mixer = StreamingStyleMixer(_reach3_mix, total)
    parts = [mixer.push(audio[s : s + chunk]) for s in range(0, total, chunk)]
    streamed = torch.cat(parts)
    assert streamed.shape == whole.shape
    assert torch.equal(streamed, whole)


def test_mixer_buffer_stays_bounded() -> None:
    total, chunk = 500, 8
    mixer = StreamingStyleMixer(_reach3_mix, total)
    for s in range(0, total, chunk):
        mixer.push(torch.zeros(min(chunk, total - s), 2, 2))
        assert len(mixer._buffer) <= chunk + 2 * mixer.reach


def test_mixer_rejects_too_many_frames() -> None:
    mixer = StreamingStyleMixer(_reach3_mix, 3)
    with pytest.raises(ValueError, match="sequence of 3"):
        mixer.push(torch.zeros(4, 1, 1))


def test_pingpong_never_jumps() -> None:
    idx = source_indices(50, 7, LoopMode.PINGPONG)
    assert idx[:7].tolist() == list(range(7))
    assert idx[7:13].tolist() == [5, 4, 3, 2, 1, 0]
    assert np.abs(np.diff(idx)).max() == 1
    assert needs_random_access(idx)


def test_forward_and_hold_loops() -> None:
    assert source_indices(9, 4, "forward").tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    hold = source_indices(9, 4, "hold")
    assert hold.tolist() == [0, 1, 2, 3, 3, 3, 3, 3, 3]
    assert not needs_random_access(hold)
    assert source_indices(3, 10).tolist() == [0, 1, 2]
    assert source_indices(4, 1).tolist() == [0, 0, 0, 0]
