"""Log-mel front-end (spec §2.1): frame count, bands, and equality with an independent librosa computation."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from stylelipsync.audio import log_mel_spectrogram, mel_filterbank, num_mel_frames, num_video_frames
from stylelipsync.audio.mel import log_mel_spectrogram_numpy, mel_filterbank_numpy
from stylelipsync.media import load_audio


def _reference(wave: np.ndarray) -> np.ndarray:
    """Spec §2.1 written with librosa/numpy in float64: the definition the implementation must match."""
    spec = librosa.stft(
        wave.astype(np.float64),
        n_fft=512,
        hop_length=160,
        win_length=400,
        window="hann",
        center=True,
        pad_mode="reflect",
    )
    fb = librosa.filters.mel(sr=16000, n_fft=512, n_mels=80, fmin=55, fmax=7600, htk=True, norm=None)
    return np.log10(np.maximum(fb.astype(np.float64) @ (np.abs(spec) ** 2), 1e-5)).T


@pytest.fixture(scope="module")
def roy_blunt(media_dir: Path) -> np.ndarray:
    return load_audio(media_dir / "sls_RoyBlunt_0_10s.wav")


def test_spec_worked_example(roy_blunt: np.ndarray) -> None:
    assert len(roy_blunt) == 160_768
    mel = log_mel_spectrogram(roy_blunt)
    assert mel.shape == (1005, 80) and mel.dtype == torch.float32
    assert num_video_frames(mel.shape[0]) == 251


def test_matches_librosa_definition_on_speech(roy_blunt: np.ndarray) -> None:
    mel = log_mel_spectrogram(roy_blunt).numpy()
    assert np.abs(mel - _reference(roy_blunt)).max() < 1e-4
    assert mel.min() >= -5.0 and mel.max() > 0.0


def test_matches_librosa_definition_on_noise_and_accepts_tensors() -> None:
    rng = np.random.default_rng(7)
    wave = (0.1 * rng.standard_normal(12_345)).astype(np.float32)
    reference = _reference(wave)
    assert np.abs(log_mel_spectrogram(wave).numpy() - reference).max() < 1e-4
    assert np.abs(log_mel_spectrogram(torch.from_numpy(wave)).numpy() - reference).max() < 1e-4


@pytest.mark.parametrize("n", [1, 100, 159, 160, 256, 257, 1000, 16_000, 160_768])
def test_frame_count(n: int) -> None:
    wave = np.full(n, 0.01, dtype=np.float32)
    assert log_mel_spectrogram(wave).shape == (1 + n // 160, 80)
    assert num_mel_frames(n) == 1 + n // 160


def test_stereo_is_the_channel_mean() -> None:
    rng = np.random.default_rng(1)
    stereo = (0.1 * rng.standard_normal((2, 8000))).astype(np.float32)
    expected = log_mel_spectrogram(stereo.mean(axis=0))
    assert torch.allclose(log_mel_spectrogram(stereo), expected)
    assert torch.allclose(log_mel_spectrogram(stereo.T.copy()), expected)


@pytest.mark.parametrize("freq", [150.0, 440.0, 1000.0, 3000.0, 6000.0])
def test_pure_tone_lands_in_its_mel_band(freq: float) -> None:
    t = np.arange(16000) / 16000
    mel = log_mel_spectrogram((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    centres = librosa.mel_frequencies(82, fmin=55, fmax=7600, htk=True)[1:-1]
    band = int(mel[10:-10].mean(dim=0).argmax())
    assert abs(band - int(np.argmin(np.abs(centres - freq)))) <= 1


def test_silence_is_the_log_floor() -> None:
    mel = log_mel_spectrogram(np.zeros(3200, np.float32))
    assert torch.all(mel == -5.0)


def test_filterbank_is_htk_without_normalisation() -> None:
    fb = mel_filterbank().numpy()
    assert fb.shape == (80, 257)
    htk = librosa.filters.mel(sr=16000, n_fft=512, n_mels=80, fmin=55, fmax=7600, htk=True, norm=None)
    slaney = librosa.filters.mel(sr=16000, n_fft=512, n_mels=80, fmin=55, fmax=7600)
    assert np.allclose(fb, htk, atol=1e-7)
    assert not np.allclose(fb, slaney)
    assert fb.max() == pytest.approx(1.0, abs=0.05)  # un-normalised triangles peak near 1


def test_other_sample_rates_are_resampled() -> None:
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    mel48 = log_mel_spectrogram(tone, sample_rate=48000)
    mel16 = log_mel_spectrogram(tone[::3].copy())
    assert mel48.shape == mel16.shape == (101, 80)
    assert torch.allclose(mel48[5:-5], mel16[5:-5], atol=0.05)


def test_rejects_empty_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="no samples"):
        log_mel_spectrogram(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        log_mel_spectrogram(np.zeros((2, 2, 100), np.float32))


@pytest.mark.parametrize("n", [100, 257, 16_000])
def test_numpy_front_end_equals_the_torch_one(roy_blunt: np.ndarray, n: int) -> None:
    """The bank engine's PyTorch-free log-mel gives the networks' rows (here bit for bit), also for stereo,
    other rates and clips shorter than one FFT."""
    wave = roy_blunt[:n]
    np.testing.assert_allclose(log_mel_spectrogram_numpy(wave), log_mel_spectrogram(wave).numpy(), atol=1e-6)
    stereo = np.stack([wave, 0.5 * wave[::-1]])
    np.testing.assert_allclose(
        log_mel_spectrogram_numpy(stereo, 22050), log_mel_spectrogram(stereo, 22050).numpy(), atol=1e-6
    )
    with pytest.raises(ValueError, match="no samples"):
        log_mel_spectrogram_numpy(np.zeros(0, np.float32))


def test_numpy_filterbank_is_librosas_bit_for_bit() -> None:
    fb = librosa.filters.mel(
        sr=16000, n_fft=512, n_mels=80, fmin=55.0, fmax=7600.0, htk=True, norm=None, dtype=np.float64
    )
    assert np.array_equal(mel_filterbank_numpy(), fb)
    assert np.array_equal(mel_filterbank().numpy(), mel_filterbank_numpy())
