"""What drives the mouth: per-frame mel windows (made chunk by chunk) and the silence gate.

The windows are cut from the log-mel spectrogram only for the frames of the current chunk: materialising all
of them would take five times the spectrogram's memory (20-row windows every 4 rows). They are identical to
`stylelipsync.audio.mel_windows` (tested).

Silence gate: the audio styles of frame t are blended towards the model's response to a silent window,
``g_t · a_t + (1 − g_t) · a_silence``, where g_t is voice activity (1 on speech, 0 on silence and after the
audio ends) smoothed with a (2·3 + 1)-frame box filter, so the mouth closes and opens over about 3 frames on
each side of a pause. With `keep_silence`, g is 1 wherever there is audio.

Models trained with ``mel_normalization="per_clip"`` (`StyleLipSyncConfig`) get every window standardised per
mel band with the mean and std of the whole driving audio (std floored at 1e-3), after zero padding, as the
training data loader does. For them the "silent" window is the **quietest 0.2 s of the driving audio** (lowest
mean log-mel), not digital silence: standardised with speech statistics, digital silence lies far outside
anything a small encoder saw in training (the shipped model's mouth *opens* on it), while a real pause is
exactly what it learned a closed mouth from. Models without normalisation keep digital silence.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stylelipsync.audio import log_mel_spectrogram, num_mel_frames
from stylelipsync.audio.mel import HOP_LENGTH, MEL_FRAMES_PER_SECOND, N_FFT
from stylelipsync.audio.normalization import mel_stats, normalize_mel
from stylelipsync.audio.vad import GATE_RAMP_FRAMES, speech_gate  # noqa: F401  (GATE_RAMP_FRAMES: re-exported)
from stylelipsync.audio.windows import OFFSET, WINDOW
from stylelipsync.formats import SAMPLE_RATE

SILENCE_LOG_MEL = -5.0
"""log10 of the mel floor (1e-5): what digital silence looks like to the audio encoder."""
MEL_BLOCK_ROWS = 3000
"""Mel rows (30 s) per STFT block: the float64 STFT of a whole hour of speech would take gigabytes."""


def window_starts_range(lo: int, hi: int, fps: float) -> torch.Tensor:
    """First mel row of the windows of frames lo..hi-1 (same arithmetic as `audio.window_starts`)."""
    t = torch.arange(lo, hi, dtype=torch.float64)
    return torch.floor(t * (MEL_FRAMES_PER_SECOND / fps) + 0.5).to(torch.long) - OFFSET


def blockwise_log_mel(wave: np.ndarray, block: int = MEL_BLOCK_ROWS) -> torch.Tensor:
    """`log_mel_spectrogram(wave)`, computed `block` rows at a time (same rows, bounded temporaries).

    Row f is centred on sample 160·f and sees ±256 samples; each block is cut with a margin of whole hops
    so its rows never touch the reflect padding, except at the true ends of the signal, as in one pass.
    """
    total = num_mel_frames(len(wave))
    if total <= block:
        return log_mel_spectrogram(wave, SAMPLE_RATE)
    margin = -(-N_FFT // 2 // HOP_LENGTH) + 1
    parts = []
    for f0 in range(0, total, block):
        f1 = min(total, f0 + block)
        s0 = max(0, f0 - margin) * HOP_LENGTH
        s1 = min(len(wave), (f1 + margin) * HOP_LENGTH)
        first = s0 // HOP_LENGTH
        parts.append(log_mel_spectrogram(wave[s0:s1], SAMPLE_RATE)[f0 - first : f1 - first])
    return torch.cat(parts)


class AudioDrive:
    """Mel windows and gate values for output frames 0..num_frames-1 at `fps`, served chunk by chunk."""

    def __init__(
        self,
        wave: np.ndarray,
        fps: float,
        num_frames: int,
        audio_frames: int,
        keep_silence: bool,
        normalization: str = "none",
    ) -> None:
        mel = blockwise_log_mel(wave)
        self._mean: torch.Tensor | None = None
        self._std = torch.ones(mel.shape[1])
        if normalization == "per_clip":
            mean, std = mel_stats(mel.numpy())
            self._mean, self._std = torch.from_numpy(mean), torch.from_numpy(std)
        elif normalization != "none":
            raise ValueError(f"unknown mel normalization {normalization!r}")
        last_start = int(window_starts_range(num_frames - 1, num_frames, fps)[0])
        right = max(0, last_start + WINDOW - mel.shape[0])
        self._quiet: torch.Tensor | None = None
        if self._mean is not None and mel.shape[0] >= WINDOW:
            loudness = F.avg_pool1d(mel.mean(dim=1)[None, None], WINDOW, stride=1)[0, 0]
            start = int(loudness.argmin())
            self._quiet = mel[start : start + WINDOW][None].clone()
        self._mel = F.pad(mel, (0, 0, OFFSET, right))
        self.fps = fps
        self.num_frames = num_frames
        gate = speech_gate(wave, num_frames, audio_frames, fps, keep_silence)
        self.gate = torch.as_tensor(gate, dtype=torch.float32)

    def windows(self, lo: int, hi: int) -> torch.Tensor:
        """(hi − lo, 20, 80) mel windows of frames lo..hi-1; rows outside the audio are zero (as trained)."""
        starts = window_starts_range(lo, hi, self.fps) + OFFSET
        rows = starts[:, None] + torch.arange(WINDOW)[None, :]
        return self._normalized(self._mel[rows])

    def silence_window(self) -> torch.Tensor:
        """(1, 20, 80) window the silence gate blends towards, normalised like the others: the quietest window
        of the audio for per-clip normalised models, digital silence otherwise (module docstring)."""
        if self._quiet is not None:
            return self._normalized(self._quiet)
        return self._normalized(torch.full((1, WINDOW, self._std.shape[0]), SILENCE_LOG_MEL))

    def _normalized(self, windows: torch.Tensor) -> torch.Tensor:
        if self._mean is None:
            return windows
        return normalize_mel(windows, self._mean, self._std)
