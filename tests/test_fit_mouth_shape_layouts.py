"""The feature-layout choice of `scripts/fit_mouth_shape.py` made inside the training persons: on synthetic
clips whose mouth follows the audio 200 ms ahead, the layout that reads that far ahead must be chosen."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from stylelipsync.audio.mouth_features import MelFeatureSpec
from stylelipsync.audio.mouth_shape_model import NAMES

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fit_mouth_shape.py"
AHEAD = 20
"""Mel frames (10 ms) between a video frame's time and the audio its synthetic mouth follows."""
BLIND = MelFeatureSpec(past=0, future=0)
SEES = MelFeatureSpec(past=0, future=AHEAD)


@pytest.fixture(scope="module")
def fms() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fit_mouth_shape", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fit_mouth_shape"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def synthetic_clips(fms: ModuleType, persons: int = 10, frames: int = 150) -> list:
    """One clip per person: white-noise log-mel; every descriptor column = the first pooled band AHEAD mel
    frames after the video frame, plus noise, so only a layout reading that far ahead can predict it."""
    rng = np.random.default_rng(0)
    clips = []
    for p in range(persons):
        mel = rng.standard_normal((frames * 4 + 40, 80))
        ahead = mel[np.arange(frames) * 4 + AHEAD, :5].mean(axis=1)
        target = ahead[:, None] + 0.2 * rng.standard_normal((frames, len(NAMES)))
        clips.append(fms.Clip(f"c{p}", f"p{p:02d}", 25.0, fms.zscore_columns(target), mel, np.zeros(1)))
    return clips


@pytest.mark.parametrize("order", [(BLIND, SEES), (SEES, BLIND)])
def test_layout_that_reads_the_right_audio_is_chosen_in_every_fold(
    fms: ModuleType, order: tuple[MelFeatureSpec, MelFeatureSpec]
) -> None:
    clips = synthetic_clips(fms)
    prior = fms.mel_prior(clips)
    right = order.index(SEES)
    variant = fms.Variant("synthetic", order[0], candidates=order)
    result = fms.lopo(variant, clips, prior)
    assert result.layouts == [right] * len(clips)
    assert result.mean[0] > 0.7
    model = fms.final_model(variant, clips, prior, {})
    assert model.spec == SEES
    assert model.info["layout"] == f"candidate {right + 1} of 2: future={AHEAD}"


def test_spec_must_be_a_candidate(fms: ModuleType) -> None:
    with pytest.raises(ValueError, match="one of its candidates"):
        fms.Variant("bad", MelFeatureSpec(), candidates=(BLIND, SEES))
