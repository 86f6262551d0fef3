"""Speech embeddings (openwakeword's bundled speech_embedding) for the mouth-shape model: shapes, windows,
determinism on real speech, the feature layout, and the error when the packages are missing (they are
dependencies of the default model, so a missing one fails these tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from stylelipsync.audio import speech_embedding as se
from stylelipsync.audio.mouth_features import MelFeatureSpec
from stylelipsync.audio.mouth_shape_model import NAMES, MouthShapeModel
from stylelipsync.errors import StyleLipSyncError
from stylelipsync.media import load_audio

SR, FPS = 16000, 25.0
SPEECH = "echomimic_jane.wav"


@pytest.fixture(scope="module")
def speech(media_dir: Path) -> np.ndarray:
    """The first 4 s of a shared English speech file, 16 kHz."""
    return load_audio(media_dir / SPEECH, SR)[: 4 * SR]


def test_missing_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    se._sessions.cache_clear()
    monkeypatch.setitem(sys.modules, "openwakeword", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    try:
        with pytest.raises(StyleLipSyncError, match=r"openwakeword==0\.5\.1.*onnxruntime"):
            se.speech_embeddings(np.zeros(SR), SR, np.array([0.5]))
    finally:
        se._sessions.cache_clear()


def test_frame_embeddings_on_real_speech(speech: np.ndarray) -> None:
    frames = 100
    a = se.frame_embeddings(speech, SR, frames, FPS)
    assert a.shape == (frames, 1, se.EMBEDDING_SIZE) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, se.frame_embeddings(speech, SR, frames, FPS))
    # speech moves the embedding: consecutive windows differ, and frames far apart differ more
    steps = np.linalg.norm(np.diff(a[:, 0], axis=0), axis=1)
    assert steps.min() > 0 and np.linalg.norm(a[80, 0] - a[10, 0]) > 3 * np.median(steps)
    # context windows 40 ms apart at 25 fps are the neighbouring frames' own windows
    c = se.frame_embeddings(speech, SR, frames, FPS, context=2, step_s=0.04)
    assert c.shape == (frames, 5, se.EMBEDDING_SIZE)
    np.testing.assert_allclose(c[:, 2], a[:, 0], atol=1e-6)
    np.testing.assert_allclose(c[10:-10, 4], a[12:-8, 0], atol=1e-6)
    # an offset is a shift of the window: −80 ms at frame t is the centred window of frame t − 2
    early = se.frame_embeddings(speech, SR, frames, FPS, offset_s=-0.08)
    np.testing.assert_allclose(early[10:, 0], a[8:-2, 0], atol=1e-6)
    # other sample rates are resampled to 16 kHz first
    import scipy.signal

    x48 = scipy.signal.resample_poly(speech.astype(np.float64), 3, 1)
    b = se.frame_embeddings(x48, 48000, frames, FPS)
    assert np.corrcoef(a[20:80, 0].ravel(), b[20:80, 0].ravel())[0, 1] > 0.99


def test_same_numbers_as_openwakewords_own_pipeline(speech: np.ndarray) -> None:
    """openwakeword's AudioFeatures (int16 audio, its mel scaling, windows every 8 mel frames) gives the
    same embeddings as our windows centred on the same times."""
    from openwakeword.utils import AudioFeatures

    pcm = (np.clip(speech, -1.0, 1.0) * 32767).astype(np.int16)
    reference = AudioFeatures(inference_framework="onnx")._get_embeddings(pcm)
    starts = np.arange(len(reference)) * 8
    ours = se.speech_embeddings(pcm / 32767.0, SR, (starts * 160 + se.WINDOW_SAMPLES / 2) / SR)
    assert ours.shape == reference.shape == (len(starts), se.EMBEDDING_SIZE)
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_window_reads_only_its_own_audio(speech: np.ndarray) -> None:
    """Frame t's window reads at most REACH_S after t / fps: audio after that does not change it, audio
    50 ms before its end does."""
    frames, t = 100, 60
    end = int(np.ceil((t / FPS + se.REACH_S) * SR))
    noise = np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32) * 0.3
    after, inside = speech.copy(), speech.copy()
    after[end:] = noise[end:]
    inside[end - 800 :] = noise[end - 800 :]
    base = se.frame_embeddings(speech, SR, frames, FPS)
    np.testing.assert_allclose(se.frame_embeddings(after, SR, frames, FPS)[: t + 1], base[: t + 1], atol=1e-6)
    assert np.abs(se.frame_embeddings(inside, SR, frames, FPS)[t] - base[t]).max() > 0.1


def test_mel_in_pieces_equals_mel_at_once(speech: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = se.embedding_mel(speech)
    assert whole.shape == ((len(speech) - 512) // 160 + 1, 32)
    monkeypatch.setattr(se, "MEL_CHUNK_FRAMES", 70)
    np.testing.assert_allclose(se.embedding_mel(speech), whole, atol=1e-4)


def test_short_and_silent_audio_and_no_frames() -> None:
    for wave in (np.zeros(2 * SR), np.zeros(100)):
        e = se.frame_embeddings(wave, SR, 10, FPS)
        assert e.shape == (10, 1, se.EMBEDDING_SIZE) and np.isfinite(e).all()
    assert se.frame_embeddings(np.zeros(SR), SR, 0, FPS, context=1).shape == (0, 3, se.EMBEDDING_SIZE)


def test_embedding_model_features_and_round_trip(speech: np.ndarray, tmp_path: Path) -> None:
    spec = MelFeatureSpec(past=4, future=4, embedding=True, embedding_offset_ms=-240.0, embedding_context=1)
    assert spec.embedding_size == 3 * se.EMBEDDING_SIZE and spec.size == 9 * 16 + 3 * se.EMBEDDING_SIZE
    # the last window (offset + one 40 ms step) reads up to 392.5 − 240 + 40 = 192.5 ms after the frame
    assert spec.lookahead_seconds == pytest.approx(0.1925, abs=1e-9)
    later_mel = MelFeatureSpec(future=50, embedding=True, embedding_offset_ms=-240.0)
    assert later_mel.lookahead_seconds == pytest.approx(0.516, abs=1e-9)  # 500 ms of mel context + 16 ms
    alone = MelFeatureSpec(mel=False, embedding=True, embedding_offset_ms=-240.0)
    assert alone.lookahead_seconds == pytest.approx(0.1525, abs=1e-9)
    rng = np.random.default_rng(0)
    model = MouthShapeModel(
        spec, rng.standard_normal((spec.size, 6)), np.zeros(6), np.zeros(94), np.ones(94), names=NAMES
    )
    feats = model.features(speech, SR, 100, FPS)
    emb = feats[:, 9 * 16 :]
    assert feats.shape == (100, spec.size) and np.isfinite(feats).all()
    np.testing.assert_allclose(
        emb.reshape(-1, 3, se.EMBEDDING_SIZE).reshape(-1, se.EMBEDDING_SIZE).mean(0), 0, atol=1e-9
    )
    path = tmp_path / "m.safetensors"
    model.save(path)
    loaded = MouthShapeModel.load(path)
    assert loaded.spec == spec
    np.testing.assert_allclose(
        loaded.predict(speech, SR, 100, FPS), model.predict(speech, SR, 100, FPS), atol=1e-3
    )
    with pytest.raises(ValueError, match="per clip"):
        MelFeatureSpec(embedding=True, normalization="running")
    with pytest.raises(ValueError, match=r"expected \(frames, 3, 96\)"):
        se.clip_statistics(np.zeros((100, 1, se.EMBEDDING_SIZE)), spec.embedding_size)
