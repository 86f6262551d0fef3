"""Energy envelope and voice activity per video frame."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from stylelipsync.audio import frame_energy, voice_activity
from stylelipsync.audio.vad import speech_gate
from stylelipsync.media import load_audio

SR = 16000
FPS = 25.0


@pytest.fixture(scope="module")
def speech(media_dir: Path) -> np.ndarray:
    return load_audio(media_dir / "sls_RoyBlunt_0_10s.wav")


def _with_gap(speech: np.ndarray, at: float, gap: np.ndarray) -> np.ndarray:
    cut = round(at * SR)
    return np.concatenate([speech[:cut], gap, speech[cut:]]).astype(np.float32)


@pytest.mark.parametrize("gap_level_db", [None, -70.0])
def test_inserted_second_of_silence_is_silent_and_speech_is_voiced(
    speech: np.ndarray, gap_level_db: float | None
) -> None:
    rng = np.random.default_rng(0)
    gap = np.zeros(SR, np.float32)
    if gap_level_db is not None:
        gap = (10 ** (gap_level_db / 20) * rng.standard_normal(SR)).astype(np.float32)
    wave = _with_gap(speech, 4.0, gap)
    frames = int(len(wave) / SR * FPS)
    voiced = voice_activity(wave, SR, frames, FPS)
    assert voiced.shape == (frames,) and voiced.dtype == bool
    # Frames 100..124 lie in the gap; allow one frame at each edge for the window overlap.
    assert not voiced[101:124].any()
    # The speaker talks almost continuously in this clip: nearly all other frames are voiced.
    around = np.r_[10:95, 130 : frames - 10]
    assert voiced[around].mean() > 0.85
    assert voiced[90:100].all() or voiced[125:135].all()


def test_energy_follows_the_signal(speech: np.ndarray) -> None:
    wave = _with_gap(speech, 4.0, np.zeros(SR, np.float32))
    frames = int(len(wave) / SR * FPS)
    energy = frame_energy(wave, SR, frames, FPS)
    assert energy.shape == (frames,) and energy.dtype == np.float32
    assert np.all(energy[101:124] == -100.0)
    assert np.median(energy[:95]) > -40.0


def test_sine_level_in_dbfs() -> None:
    t = np.arange(SR * 2) / SR
    wave = 0.5 * np.sin(2 * np.pi * 500 * t)
    energy = frame_energy(wave, SR, 50, FPS)
    assert np.allclose(energy[1:-1], 20 * np.log10(0.5 / np.sqrt(2)), atol=0.1)
    beyond = frame_energy(wave[: SR // 2], SR, 50, FPS)
    assert np.all(beyond[14:] == -100.0)


@pytest.mark.parametrize("amplitude", [0.0, 1e-5, 3e-4])
def test_silence_and_very_quiet_input_are_all_false_without_warnings(amplitude: float) -> None:
    rng = np.random.default_rng(1)
    wave = (amplitude * rng.standard_normal(SR * 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        voiced = voice_activity(wave, SR, 75, FPS)
        energy = frame_energy(wave, SR, 75, FPS)
    assert not voiced.any()
    assert np.isfinite(energy).all()


def test_short_pauses_are_bridged_long_pauses_are_not() -> None:
    t = np.arange(SR * 4) / SR
    wave = 0.3 * np.sin(2 * np.pi * 300 * t)
    wave[int(1.0 * SR) : int(1.1 * SR)] = 0.0  # 0.1 s pause between words
    wave[int(2.5 * SR) : int(3.0 * SR)] = 0.0  # 0.5 s pause
    voiced = voice_activity(wave, SR, 100, FPS)
    assert voiced[5:60].all()
    assert not voiced[64:74].any()
    assert voiced[77:98].all()


def test_isolated_click_is_not_speech() -> None:
    wave = np.zeros(SR * 3, np.float32)
    wave[:SR] = 0.3 * np.sin(2 * np.pi * 300 * np.arange(SR) / SR)
    wave[2 * SR : 2 * SR + 80] = 0.8  # 5 ms click
    voiced = voice_activity(wave, SR, 75, FPS)
    assert voiced[2:23].all()
    assert not voiced[40:].any()


def test_other_frame_rates_and_empty() -> None:
    t = np.arange(SR * 2) / SR
    wave = 0.3 * np.sin(2 * np.pi * 300 * t)
    assert voice_activity(wave, SR, 60, 30.0)[1:].all()  # frame 0 is half outside the clip
    assert voice_activity(wave, SR, 0, 30.0).shape == (0,)
    assert frame_energy(np.stack([wave, wave]), SR, 60, 30.0).shape == (60,)


def test_speech_gate_closes_only_on_pauses_as_long_as_asked(speech: np.ndarray) -> None:
    """A gate asking for pauses of ≥ 0.6 s: a 0.4 s gap between words stays open (left to the audio
    model), a 1 s pause closes, and the default gate (0.2 s) closes both."""
    pause = _with_gap(speech, 6.0, np.zeros(SR, np.float32))
    wave = _with_gap(pause, 3.0, np.zeros(int(0.4 * SR), np.float32))
    frames = int(len(wave) / SR * FPS)
    short = slice(78, 82)  # inside the 0.4 s gap at 3.0 s (frames 75..85; the VAD ramps in and out)
    long = slice(171, 182)  # inside the 1 s pause at 6.4 s of the new wave (frames 160..185)
    wide = speech_gate(wave, frames, frames, FPS, keep_silence=False, min_silence=0.6)
    default = speech_gate(wave, frames, frames, FPS, keep_silence=False)
    assert wide[short].min() > 0.99 and wide[long].max() < 0.01
    assert default[short].max() < 0.5 and default[long].max() < 0.01
    kept = speech_gate(wave, frames, frames, FPS, keep_silence=True, min_silence=0.6)
    assert np.allclose(kept, 1.0)


def test_background_sound_at_the_pause_level_ends_speech(media_dir: Path) -> None:
    """`sadtalker_chinese_news.wav` holds only background sound, as loud as its leading pause (−28.7 dBFS),
    from about 6.2 to 7.2 s; the speech switch-off level used to sit 2 dB under it, so speech never ended."""
    wave = load_audio(media_dir / "sadtalker_chinese_news.wav")
    frames = int(len(wave) / SR * FPS)
    voiced = voice_activity(wave, SR, frames, FPS)
    assert not voiced[156:178].any()
    assert not voiced[:14].any()
    assert voiced[16:64].mean() > 0.95 and voiced[180:].mean() > 0.9
