"""The lagged correlation finds a known shift and the mouth-opening measure is scale-free."""

from __future__ import annotations

import numpy as np

from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.evaluation.offline_sync import lagged_correlation


def test_finds_known_shift_and_sign() -> None:
    rng = np.random.default_rng(0)
    audio = np.convolve(rng.normal(size=300), np.ones(3) / 3, mode="same")
    mouth = np.roll(audio, 2) + 0.3 * rng.normal(size=300)  # mouth moves 2 frames after the sound
    res = lagged_correlation(mouth, audio, max_lag=6)
    assert res.lag == 2
    assert res.correlation > 0.8
    assert res.curve[0] < res.correlation
    anti = lagged_correlation(-mouth, audio, max_lag=6)
    assert anti.correlation < 0.2


def test_nan_frames_are_skipped() -> None:
    x = np.sin(np.linspace(0, 20, 200))
    y = x.copy()
    y[50:60] = np.nan
    res = lagged_correlation(y, x, max_lag=2)
    assert res.lag == 0 and res.correlation > 0.999


def test_mouth_opening_scale_free() -> None:
    lm = np.zeros((2, 478, 3))
    lm[:, 33, 0], lm[:, 263, 0] = 0.0, 10.0
    lm[:, 13, 1], lm[:, 14, 1] = 0.0, 2.0
    lm[1] *= 3.0
    out = mouth_opening(lm, valid=np.array([True, True]))
    np.testing.assert_allclose(out, [0.2, 0.2])
    assert np.isnan(mouth_opening(lm, valid=np.array([True, False]))[1])
