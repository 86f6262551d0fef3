"""The audio → mouth-shape model the mouth-bank renderer consumes: shapes, determinism, files, look-ahead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from safetensors.numpy import save_file

from stylelipsync.audio import mouth_shape_model
from stylelipsync.audio.mouth_features import MelFeatureSpec, phone_onehots
from stylelipsync.audio.mouth_shape_model import NAMES, MouthShapeModel, smooth_frames
from stylelipsync.errors import CheckpointError

SR = 16000
FPS = 25.0


def speech_like(seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Noise bursts with a syllable-rate envelope and a few harmonics: enough spectral change to matter."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140.0, 280.0, 700.0, 1200.0), start=1))
    return (0.1 * envelope * (voiced + 0.3 * rng.standard_normal(len(t)))).astype(np.float32)


def random_model(spec: MelFeatureSpec, smooth: np.ndarray | None = None, centre: int = 0) -> MouthShapeModel:
    rng = np.random.default_rng(1)
    return MouthShapeModel(
        spec=spec,
        weight=rng.standard_normal((spec.size, len(NAMES))) * 0.01,
        bias=rng.standard_normal(len(NAMES)),
        prior_mean=np.full(94, -2.0),
        prior_std=np.full(94, 1.5),
        smooth=np.ones(1) if smooth is None else smooth,
        smooth_centre=centre,
        info={"test": "yes"},
    )


@pytest.mark.parametrize("causal", [False, True])
def test_shipped_models_predict_six_columns_deterministically(causal: bool) -> None:
    model = MouthShapeModel.default(causal=causal)
    wave = speech_like(3.0)
    a = model.predict(wave, SR, 75, FPS)
    b = model.predict(wave.copy(), SR, 75, FPS)
    assert a.shape == (75, 6) and a.dtype == np.float64
    assert np.isfinite(a).all() and a.std(axis=0).min() > 0
    np.testing.assert_array_equal(a, b)
    assert model.names == NAMES
    assert (model.lookahead(FPS) <= 0.1) == causal


@pytest.mark.parametrize("causal", [False, True])
def test_prediction_in_pieces_is_the_whole_clip_prediction(
    causal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # predict assembles feature rows a piece at a time (bounded memory on long audio); with pieces of 7
    # frames, and more frames than audio, it must equal the whole clip's rows times the weights.
    model = MouthShapeModel.default(causal=causal)
    wave = speech_like(3.0, seed=3)
    frames = 83
    rows = model.features(wave, SR, frames, FPS)
    whole = smooth_frames(rows @ model.weight + model.bias, model.smooth, model.smooth_centre)
    monkeypatch.setattr(mouth_shape_model, "PREDICT_CHUNK_FRAMES", 7)
    np.testing.assert_allclose(model.predict(wave, SR, frames, FPS), whole, rtol=0, atol=1e-12)


def test_other_sample_rates_and_frame_counts() -> None:
    model = MouthShapeModel.default()
    wave48 = speech_like(2.0, sr=48000)
    wave16 = scipy.signal.resample_poly(wave48, 1, 3).astype(np.float32)
    a, b = model.predict(wave16, SR, 50, FPS), model.predict(wave48, 48000, 50, FPS)
    assert np.corrcoef(a[:, 0], b[:, 0])[0, 1] > 0.95
    # More video frames than audio: the tail is predicted from silence-like (zero) context, not an error.
    assert model.predict(wave16, SR, 80, 30.0).shape == (80, 6)
    assert model.predict(wave16, SR, 0, FPS).shape == (0, 6)


def test_save_load_round_trip(tmp_path: Path) -> None:
    spec = MelFeatureSpec(
        past=10, future=5, stride=2, band_pool=8, normalization="running", deltas=True, spectral=True
    )
    model = random_model(spec, smooth=np.array([0.25, 0.5, 0.25]), centre=1)
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = MouthShapeModel.load(path)
    assert loaded.spec == spec and loaded.smooth_centre == 1 and loaded.info == {"test": "yes"}
    wave = speech_like(2.0)
    np.testing.assert_allclose(loaded.predict(wave, SR, 50, FPS), model.predict(wave, SR, 50, FPS), atol=1e-4)


def test_bad_or_missing_file_raises_checkpoint_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError, match=r"nope\.safetensors.*fit_mouth_shape\.py"):
        MouthShapeModel.load(missing)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        MouthShapeModel.load(junk)
    other = tmp_path / "other.safetensors"
    save_file({"weight": np.zeros((3, 6), dtype=np.float32)}, str(other))
    with pytest.raises(CheckpointError, match=r"other\.safetensors"):
        MouthShapeModel.load(other)


@pytest.mark.parametrize("model", ["shipped", "smoothed"])
def test_lookahead_variant_ignores_audio_beyond_its_lookahead(model: str) -> None:
    if model == "shipped":
        m = MouthShapeModel.default(causal=True)
    else:
        spec = MelFeatureSpec(past=20, future=3, normalization="running", spectral=True, spectral_bands=True)
        m = random_model(spec, smooth=np.array([0.2, 0.3, 0.3, 0.2]), centre=2)
    assert m.causal
    wave = speech_like(4.0)
    frames = 100
    t = 40
    # Replace everything later than the look-ahead after frame t (plus one sample of margin).
    cut = int(np.ceil((t / FPS + m.lookahead(FPS)) * SR)) + 1
    changed = wave.copy()
    changed[cut:] = speech_like(4.0, seed=7)[cut:] * 3.0
    a, b = m.predict(wave, SR, frames, FPS), m.predict(changed, SR, frames, FPS)
    np.testing.assert_allclose(a[: t + 1], b[: t + 1], atol=1e-9)
    assert np.abs(a[t + 5 :] - b[t + 5 :]).max() > 1e-3


def test_phone_model_is_optional_and_english_only() -> None:
    pytest.importorskip("pocketsphinx")
    model = MouthShapeModel.default(phones=True)
    assert model.spec.phones != "none"
    pred = model.predict(speech_like(2.0), SR, 50, FPS)
    assert pred.shape == (50, 6) and np.isfinite(pred).all()
    with pytest.raises(ValueError, match="streaming"):
        MouthShapeModel.default(causal=True, phones=True)


def test_full_context_model_does_use_the_future() -> None:
    m = MouthShapeModel.default()
    wave = speech_like(4.0)
    changed = wave.copy()
    changed[int(2.5 * SR) :] *= 0.1
    a, b = m.predict(wave, SR, 100, FPS), m.predict(changed, SR, 100, FPS)
    assert np.abs(a[:40] - b[:40]).max() > 1e-6  # whole-clip normalisation


def test_smoothing_and_phone_onehots() -> None:
    x = np.arange(10, dtype=np.float64)[:, None]
    y = smooth_frames(x, np.array([0.5, 0.5]), 1)  # causal two-tap mean
    np.testing.assert_allclose(y[1:, 0], x[1:, 0] - 0.5)
    assert y[0, 0] == 0.0
    onehot = phone_onehots([("SIL", 0, 2), ("M", 3, 5), ("AA", 6, 9), ("+NSN+", 10, 11)], 14, "visemes")
    assert onehot.shape == (14, 15) and (onehot.sum(axis=1) == 1).all()
    assert onehot[4, 1] == 1 and onehot[7, 12] == 1 and onehot[10, 0] == 1 and onehot[13, 0] == 1


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="band_pool"):
        MelFeatureSpec(band_pool=3)
    with pytest.raises(ValueError, match="stride"):
        MelFeatureSpec(past=20, future=20, stride=2)
    with pytest.raises(ValueError, match="weight"):
        random_model(MelFeatureSpec()).__class__(
            spec=MelFeatureSpec(),
            weight=np.zeros((3, 6)),
            bias=np.zeros(6),
            prior_mean=np.zeros(80),
            prior_std=np.ones(80),
        )
