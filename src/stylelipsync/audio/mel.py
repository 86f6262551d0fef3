"""Log-mel spectrogram exactly as the official StyleLipSync front-end computes it (spec §2.1)."""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import librosa
import numpy as np
import scipy.signal
import torch

SAMPLE_RATE = 16000
N_FFT = 512
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 80
F_MIN = 55.0
F_MAX = 7600.0
LOG_FLOOR = 1e-5
MEL_FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH


@lru_cache(maxsize=1)
def mel_filterbank() -> torch.Tensor:
    """(80, 257) float64 HTK-scale triangular filters without area normalisation (torchaudio 0.7 defaults)."""
    fb = librosa.filters.mel(
        sr=SAMPLE_RATE,
        n_fft=N_FFT,
        n_mels=N_MELS,
        fmin=F_MIN,
        fmax=F_MAX,
        htk=True,
        norm=None,
        dtype=np.float64,
    )
    return torch.from_numpy(fb)


def num_mel_frames(num_samples: int) -> int:
    """Mel frames of a 16 kHz signal: 1 + samples // 160 (centred STFT)."""
    return 1 + num_samples // HOP_LENGTH


def _to_mono_16k(wave: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
    x = wave.detach().cpu() if isinstance(wave, torch.Tensor) else torch.from_numpy(np.asarray(wave))
    x = x.to(torch.float32)
    if x.ndim == 2:
        # (channels, samples) or (samples, channels): average the short axis, as the official loader does.
        x = x.mean(dim=0 if x.shape[0] <= x.shape[1] else 1)
    if x.ndim != 1:
        raise ValueError(f"wave must be 1-D or 2-D (channels × samples), got shape {tuple(x.shape)}")
    if sample_rate != SAMPLE_RATE:
        g = gcd(int(sample_rate), SAMPLE_RATE)
        resampled = scipy.signal.resample_poly(x.numpy(), SAMPLE_RATE // g, int(sample_rate) // g)
        x = torch.from_numpy(np.ascontiguousarray(resampled, dtype=np.float32))
    return x


def log_mel_spectrogram(wave: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(N_mel, 80) float32 log10 mel power spectrogram, N_mel = 1 + len(wave) // 160 at 16 kHz.

    STFT: n_fft 512, periodic Hann window of 400 zero-padded to 512 (centred), hop 160, centred with
    reflect padding; power 2; librosa HTK mel filters 55–7600 Hz without normalisation; log10 of
    max(mel, 1e-5). Stereo is averaged. Computed in float64 (returned as float32) so values near the
    1e-5 floor do not depend on float32 FFT rounding. Other rates are resampled (polyphase) first, but
    decoding with `load_audio(path, 16000)` is the reference path.
    """
    x = _to_mono_16k(wave, sample_rate)
    n = x.shape[0]
    if n == 0:
        raise ValueError("wave has no samples")
    frames = num_mel_frames(n)
    if n <= N_FFT // 2:
        # Reflect padding needs more than n_fft/2 samples; such a clip is shorter than 16 ms.
        x = torch.nn.functional.pad(x, (0, N_FFT // 2 + 1 - n))
    spec = torch.stft(
        x.to(torch.float64),
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=WIN_LENGTH,
        window=torch.hann_window(WIN_LENGTH, dtype=torch.float64),
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    power = spec.abs().pow(2.0)[:, :frames]
    mel = mel_filterbank() @ power
    return torch.clamp(mel, min=LOG_FLOOR).log10().T.to(torch.float32).contiguous()
