"""Praat formant tracks for the mouth-shape model: values on synthetic vowels, defined flags, features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from stylelipsync.audio.formants import FORMANT_COLUMNS, N_FORMANT, formant_tracks
from stylelipsync.audio.mouth_features import FORMANT_INTERACTIONS, MelFeatureSpec
from stylelipsync.audio.mouth_shape_model import NAMES, MouthShapeModel

pytest.importorskip("parselmouth")

SR = 16000
COL = {name: k for k, name in enumerate(FORMANT_COLUMNS)}


def vowel(f1: float, f2: float, seconds: float = 0.6, f0: float = 120.0) -> np.ndarray:
    """A glottal pulse train through three formant resonators (F3 at 2.6 kHz): a steady synthetic vowel."""
    n = int(seconds * SR)
    x = np.zeros(n)
    x[:: int(SR / f0)] = 1.0
    for freq, bandwidth in ((f1, 80.0), (f2, 100.0), (2600.0, 150.0)):
        r = np.exp(-np.pi * bandwidth / SR)
        x = scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * freq / SR), r * r], x)
    return 0.3 * x / np.abs(x).max()


def silence_vowel_silence(f1: float, f2: float) -> np.ndarray:
    gap = np.zeros(int(0.4 * SR))
    return np.concatenate([gap, vowel(f1, f2), gap])


@pytest.mark.parametrize(
    ("f1", "f2", "f1_khz", "f2_khz"),
    [(750.0, 1200.0, (0.65, 0.85), (1.05, 1.35)), (300.0, 2200.0, (0.25, 0.45), (1.85, 2.4))],
)
def test_synthetic_vowel_gives_its_formants_and_silence_is_undefined(
    f1: float, f2: float, f1_khz: tuple[float, float], f2_khz: tuple[float, float]
) -> None:
    """An open /a/-like and a close /i/-like vowel: F1, F2 land in their vowel's range (Burg reads a low F1
    between pulse-train harmonics a little high, hence ranges, not the exact resonator frequencies)."""
    wave = silence_vowel_silence(f1, f2)
    tracks = formant_tracks(wave, len(wave) // 160 + 1, SR)
    assert tracks.shape == (len(wave) // 160 + 1, N_FORMANT) and np.isfinite(tracks).all()
    middle = tracks[55:90]  # 0.55–0.9 s: inside the vowel (0.4–1.0 s)
    assert np.all(middle[:, COL["formant_defined"]] == 1) and np.all(middle[:, COL["voiced"]] == 1)
    assert f1_khz[0] < np.median(middle[:, COL["f1_khz"]]) < f1_khz[1]
    assert f2_khz[0] < np.median(middle[:, COL["f2_khz"]]) < f2_khz[1]
    assert np.median(middle[:, COL["log_f0"]]) == pytest.approx(np.log10(120.0), abs=0.02)
    silent = np.r_[5:30, 110:135]
    assert np.all(tracks[silent, COL["formant_defined"]] == 0) and np.all(tracks[silent, COL["voiced"]] == 0)
    assert np.all(middle[:, COL["intensity_db"]] > tracks[silent, COL["intensity_db"]].max() + 30)
    # undefined frames hold the clip's mean of the defined ones, so they read as average after normalisation
    assert tracks[10, COL["f1_voiced_khz"]] == pytest.approx(middle[:, COL["f1_khz"]].mean(), rel=0.05)


def test_open_vowel_has_higher_f1_than_close_vowel() -> None:
    frames = 160
    open_ = formant_tracks(silence_vowel_silence(750.0, 1200.0), frames, SR)
    close = formant_tracks(silence_vowel_silence(300.0, 2200.0), frames, SR)
    assert open_[55:90, COL["f1_khz"]].mean() > close[55:90, COL["f1_khz"]].mean() + 0.3


def test_silent_and_too_short_signals_are_all_undefined() -> None:
    for wave in (np.zeros(SR), np.zeros(100)):
        tracks = formant_tracks(wave, 50, SR)
        assert tracks.shape == (50, N_FORMANT) and np.isfinite(tracks).all()
        assert not tracks[:, COL["formant_defined"]].any() and not tracks[:, COL["voiced"]].any()


def test_formant_model_features_and_round_trip(tmp_path: Path) -> None:
    spec = MelFeatureSpec(past=4, future=4, mel=False, formants=True, formant_ceiling_hz=5000.0)
    assert spec.size == 9 * N_FORMANT
    rng = np.random.default_rng(0)
    model = MouthShapeModel(
        spec, rng.standard_normal((spec.size, 6)), np.zeros(6), np.zeros(94), np.ones(94), names=NAMES
    )
    wave = silence_vowel_silence(750.0, 1200.0)
    feats = model.features(wave, SR, 35, 25.0)
    assert feats.shape == (35, spec.size) and np.isfinite(feats).all()
    model.save(tmp_path / "m.safetensors")
    again = MouthShapeModel.load(tmp_path / "m.safetensors")
    assert again.spec == spec
    np.testing.assert_allclose(
        again.predict(wave, SR, 35, 25.0), model.predict(wave, SR, 35, 25.0), atol=1e-4
    )
    # the vowel and the silence get different features: the tracks reach the model
    assert np.abs(feats[10] - feats[0]).max() > 1.0


def test_formant_products_add_their_columns() -> None:
    plain = MelFeatureSpec(past=2, future=2, mel=False, formants=True)
    spec = MelFeatureSpec(past=2, future=2, mel=False, formants=True, formant_interactions=True)
    assert spec.size == plain.size + 5 * len(FORMANT_INTERACTIONS)
    wave = silence_vowel_silence(750.0, 1200.0)
    tracks = formant_tracks(wave, len(wave) // 160 + 1, SR)
    rng = np.random.default_rng(0)
    model = MouthShapeModel(
        spec, rng.standard_normal((spec.size, 6)), np.zeros(6), np.zeros(94), np.ones(94), names=NAMES
    )
    feats = model.features(wave, SR, 35, 25.0)
    # the centre step's product columns are the normalised products of the normalised tracks
    col = {name: k for k, name in enumerate(FORMANT_COLUMNS)}
    z = (tracks - tracks.mean(axis=0)) / np.where(tracks.std(axis=0) > 1e-9, tracks.std(axis=0), 1.0)
    a, b = FORMANT_INTERACTIONS[0]
    product = z[:, col[a]] * z[:, col[b]]
    product = (product - product.mean()) / product.std()
    centre = 2 * (N_FORMANT + len(FORMANT_INTERACTIONS)) + N_FORMANT  # step 2 of 5, first product column
    frames = np.rint(np.arange(35) * 100 / 25.0).astype(int)
    np.testing.assert_allclose(feats[:, centre], product[frames], atol=1e-9)


def test_formants_need_clip_normalisation() -> None:
    with pytest.raises(ValueError, match="normalised per clip"):
        MelFeatureSpec(formants=True, normalization="running")
    with pytest.raises(ValueError, match="need the mel"):
        MelFeatureSpec(mel=False, spectral=True)
    with pytest.raises(ValueError, match="needs formants"):
        MelFeatureSpec(formant_interactions=True)


def test_long_audio_is_analysed_in_pieces_that_join_seamlessly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of 0.3 s (instead of 10 s) over a vowel: the same tracks as one piece, up to Praat's frame grid
    (each piece centres its 10 ms frames on itself, so values move by at most half a frame)."""
    import stylelipsync.audio.formants as formants

    wave = silence_vowel_silence(750.0, 1200.0)
    frames = len(wave) // 160 + 1
    whole = formant_tracks(wave, frames, SR)
    monkeypatch.setattr(formants, "CHUNK_S", 0.3)
    pieces = formant_tracks(wave, frames, SR)
    assert pieces.shape == whole.shape and np.isfinite(pieces).all()
    np.testing.assert_array_equal(pieces[:, COL["formant_defined"]], whole[:, COL["formant_defined"]])
    inside = slice(45, 95)  # the vowel, across pieces starting at 0.6 and 0.9 s
    assert np.abs(pieces[inside, COL["f1_khz"]] - whole[inside, COL["f1_khz"]]).max() < 0.02
    assert np.abs(pieces[inside, COL["f2_khz"]] - whole[inside, COL["f2_khz"]]).max() < 0.02
