"""Log-mel spectrogram exactly as the official StyleLipSync front-end computes it (spec §2.1).

`log_mel_spectrogram` (PyTorch) feeds the networks; `log_mel_spectrogram_numpy` computes the same rows in
NumPy (equal to float32 round-off) for the bank engine's audio → mouth-shape model, so that the default
engine imports neither PyTorch nor librosa's filter module (which pulls in numba): seconds of start-up on a
2-core machine. PyTorch and scipy.signal are imported by the functions that use them.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd
from typing import TYPE_CHECKING

import numpy as np

from stylelipsync.formats import SAMPLE_RATE

if TYPE_CHECKING:
    import torch

N_FFT = 512
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 80
F_MIN = 55.0
F_MAX = 7600.0
LOG_FLOOR = 1e-5
MEL_FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH
NUMPY_BLOCK_FRAMES = 512
"""Mel rows per FFT block of `log_mel_spectrogram_numpy`: bounds its float64 temporaries to a few MB
whatever the audio's length (4096 rows took 80 MB more peak memory for 60 s than for 10 s of speech)."""


def htk_mel_frequencies(n: int, fmin: float = F_MIN, fmax: float = F_MAX) -> np.ndarray:
    """`n` frequencies (Hz) evenly spaced on the HTK mel scale from `fmin` to `fmax`, float64: the same
    arithmetic as ``librosa.mel_frequencies(n, fmin=fmin, fmax=fmax, htk=True)``."""
    lo, hi = (2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0) for f in (fmin, fmax))
    mels = np.linspace(lo, hi, n)
    return np.asarray(700.0 * (10.0 ** (mels / 2595.0) - 1.0), dtype=np.float64)


@lru_cache(maxsize=1)
def mel_filterbank_numpy() -> np.ndarray:
    """(80, 257) float64 HTK-scale triangular filters without area normalisation (torchaudio 0.7 defaults):
    the arithmetic of ``librosa.filters.mel(htk=True, norm=None)``, equal to it bit for bit (tested)."""
    fft_hz = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    mel_hz = htk_mel_frequencies(N_MELS + 2)
    fdiff = np.diff(mel_hz)
    ramps = np.subtract.outer(mel_hz, fft_hz)
    lower = -ramps[:N_MELS] / fdiff[:N_MELS, None]
    upper = ramps[2:] / fdiff[1:, None]
    fb = np.maximum(0, np.minimum(lower, upper))
    fb.flags.writeable = False
    return fb


@lru_cache(maxsize=1)
def mel_filterbank() -> torch.Tensor:
    """`mel_filterbank_numpy` as a tensor."""
    import torch

    return torch.from_numpy(mel_filterbank_numpy().copy())


def num_mel_frames(num_samples: int) -> int:
    """Mel frames of a 16 kHz signal: 1 + samples // 160 (centred STFT)."""
    return 1 + num_samples // HOP_LENGTH


def mono(wave: np.ndarray) -> np.ndarray:
    """float64 mono of a (N,) wave or a (C, N) / (N, C) multichannel one (the short axis averaged)."""
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1)
    return x


def resample_16k(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """(N,) wave at `sample_rate` → 16 kHz by polyphase filtering (the float dtype is kept)."""
    import scipy.signal

    g = gcd(int(sample_rate), SAMPLE_RATE)
    return np.asarray(scipy.signal.resample_poly(x, SAMPLE_RATE // g, int(sample_rate) // g))


def _to_mono_16k(wave: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
    import torch

    x = wave.detach().cpu() if isinstance(wave, torch.Tensor) else torch.from_numpy(np.asarray(wave))
    x = x.to(torch.float32)
    if x.ndim == 2:
        # (channels, samples) or (samples, channels): average the short axis, as the official loader does.
        x = x.mean(dim=0 if x.shape[0] <= x.shape[1] else 1)
    if x.ndim != 1:
        raise ValueError(f"wave must be 1-D or 2-D (channels × samples), got shape {tuple(x.shape)}")
    if sample_rate != SAMPLE_RATE:
        resampled = resample_16k(x.numpy(), sample_rate)
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
    import torch

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


def stft_window() -> np.ndarray:
    """The STFT window of `log_mel_spectrogram`: a periodic Hann of 400 samples centred in 512 zeros."""
    window = np.zeros(N_FFT)
    left = (N_FFT - WIN_LENGTH) // 2
    window[left : left + WIN_LENGTH] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)
    return window


def log_mel_spectrogram_numpy(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`log_mel_spectrogram` in NumPy: the same (N_mel, 80) float32 rows, equal to float32 round-off, without
    importing PyTorch (the bank engine's audio → mouth-shape model uses it).

    Same steps: mono (the short axis averaged), polyphase resampling to 16 kHz, centred reflect-padded STFT
    (n_fft 512, periodic Hann 400, hop 160) in float64, power, HTK mel filters, log10 of max(mel, 1e-5).
    """
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"wave must be 1-D or 2-D (channels × samples), got shape {x.shape}")
    if sample_rate != SAMPLE_RATE:
        x = np.asarray(resample_16k(x, sample_rate), np.float32)
    n = x.shape[0]
    if n == 0:
        raise ValueError("wave has no samples")
    frames = num_mel_frames(n)
    if n <= N_FFT // 2:
        x = np.pad(x, (0, N_FFT // 2 + 1 - n))
    # Padded in float32 and widened block by block: the same float64 values without a float64 copy of the
    # whole wave (8 bytes a sample: 30 MB for 4 minutes).
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:frames]
    taper, fb = stft_window(), mel_filterbank_numpy()
    out = np.empty((frames, N_MELS), dtype=np.float32)
    for lo in range(0, frames, NUMPY_BLOCK_FRAMES):
        spec = np.fft.rfft(windows[lo : lo + NUMPY_BLOCK_FRAMES].astype(np.float64) * taper, axis=1)
        mel = (spec.real**2 + spec.imag**2) @ fb.T
        out[lo : lo + NUMPY_BLOCK_FRAMES] = np.log10(np.maximum(mel, LOG_FLOOR))
    return out
