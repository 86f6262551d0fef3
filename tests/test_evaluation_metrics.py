"""Reference-based metrics: PSNR/SSIM, LPIPS from a weights file, LMD, CSIM (dlib, ArcFace), silence leak."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import test_evaluation_common as common
from stylelipsync.errors import CheckpointError
from stylelipsync.evaluation.identity import (
    ArcFaceEmbedder,
    DlibEmbedder,
    IResNet,
    arcface_crop,
    cosine,
    load_arcface,
)
from stylelipsync.evaluation.image_quality import PSNR_IDENTICAL, LPIPSMetric, psnr, ssim
from stylelipsync.evaluation.lip_distance import LIP_POINTS, lmd, lmd_per_frame
from stylelipsync.evaluation.silence_leak import silence_leak, write_silence
from stylelipsync.face.track import FaceTrack
from stylelipsync.losses.perceptual import LPIPS
from stylelipsync.media import VideoReader, load_audio


def _image(seed: int = 0, size: tuple[int, int] = (64, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(*size, 3)
    return np.clip(base + rng.normal(scale=20, size=base.shape), 0, 255).astype(np.uint8)


def test_psnr_and_ssim() -> None:
    img = _image()
    assert psnr(img, img) == PSNR_IDENTICAL and ssim(img, img) == pytest.approx(1.0)
    off = np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = np.mean((off.astype(float) - img) ** 2)
    assert psnr(off, img) == pytest.approx(10 * np.log10(255**2 / mse))
    noisy = np.clip(img + np.random.default_rng(1).normal(scale=30, size=img.shape), 0, 255).astype(np.uint8)
    assert psnr(noisy, img) < psnr(off, img)
    assert ssim(noisy, img) < ssim(off, img) < 1.0


def test_lpips_from_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = LPIPS().state_dict()
    for key in state:
        if key.startswith("lin"):
            state[key] = state[key].abs()  # LPIPS heads are non-negative
    torch.save(state, tmp_path / "lpips_vgg.pth")
    metric = LPIPSMetric(tmp_path / "lpips_vgg.pth")
    img = _image(size=(64, 64))
    assert metric.distance(img, img) == pytest.approx(0.0, abs=1e-6)
    assert metric.distance(_image(5, (64, 64)), img) > 0
    with pytest.raises(CheckpointError, match="lpips"):
        LPIPSMetric(tmp_path / "absent.pth")


def _lips_track(t: int = 5) -> np.ndarray:
    rng = np.random.default_rng(2)
    lm = rng.uniform(0, 100, size=(t, 478, 3))
    lm[:, 33, :2], lm[:, 263, :2] = (30.0, 40.0), (70.0, 40.0)
    return lm


def test_lmd_invariant_to_face_position_and_scale() -> None:
    ref = _lips_track()
    moved = ref.copy()
    moved[..., :2] = ref[..., :2] * 2.5 + 17.0  # same face, bigger and elsewhere in the frame
    assert lmd(moved, ref) == pytest.approx(0.0, abs=1e-9)
    opened = ref.copy()
    opened[:, list(LIP_POINTS), 1] += 4.0  # lips 4 px lower with an eye distance of 40 px
    assert lmd(opened, ref) == pytest.approx(0.1)
    gap = opened.copy()
    gap[2] = np.nan
    per_frame = lmd_per_frame(gap, ref)
    assert np.isnan(per_frame[2]) and lmd(gap, ref) == pytest.approx(0.1)


def _track(opening: np.ndarray) -> FaceTrack:
    t = len(opening)
    lm = np.zeros((t, 478, 3), dtype=np.float32)
    lm[:, 33, 0], lm[:, 263, 0] = 0.0, 10.0
    lm[:, 14, 1] = opening * 10.0
    return FaceTrack(lm, lm, np.ones(t, bool), np.ones(t, bool), 25.0, (100, 100))


def test_silence_leak_ratio(tmp_path: Path) -> None:
    speech = _track(0.3 + 0.2 * np.sin(np.arange(100) / 3))
    leaky = _track(0.3 + 0.05 * np.sin(np.arange(100) / 3))
    closed = _track(np.full(100, 0.02))
    res = silence_leak(leaky, speech)
    assert res.ratio == pytest.approx(0.25, rel=0.02)
    assert silence_leak(closed, speech).ratio == pytest.approx(0.0)
    assert silence_leak(closed).ratio is None
    wav = write_silence(tmp_path / "silence.wav", 1.5)
    audio = load_audio(wav, 16000)
    assert len(audio) == 24000 and not audio.any()


def _frame(name: str, index: int) -> np.ndarray:
    for frame in VideoReader(common.MEDIA / name):
        if frame.index == index:
            return frame.image
    raise AssertionError(index)


def test_csim_dlib_same_person_above_other_person(media_dir: Path) -> None:
    embedder = DlibEmbedder()
    a, b, other = "pcavs_Audio_Source_00104.mp4", "pcavs_Pose_Source_741400163.mp4", "vrt_face_2.mp4"
    ea = embedder.embed(_frame(a, 0), common.tracked(a).landmarks[0])
    eb = embedder.embed(_frame(b, 100), common.tracked(b).landmarks[100])  # same man, other video
    eo = embedder.embed(_frame(other, 10), common.tracked(other).landmarks[10])
    assert ea.shape == (128,)
    assert cosine(ea, eb) > 0.9
    assert cosine(ea, eb) > cosine(ea, eo) + 0.05


def test_arcface_iresnet_layout_loads_strictly_and_aligns(tmp_path: Path, media_dir: Path) -> None:
    model = IResNet((3, 4, 14, 3))
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(43.6e6, rel=0.01)  # insightface r50
    for key in ("conv1.weight", "prelu.weight", "layer1.0.bn1.weight", "layer1.0.prelu.weight",
                "layer1.0.downsample.0.weight", "layer3.13.conv2.weight", "bn2.running_var",
                "fc.weight", "features.running_mean"):  # fmt: skip
        assert key in state, key
    assert state["fc.weight"].shape == (512, 512 * 7 * 7)
    torch.save({f"module.{k}": v for k, v in state.items() if "num_batches" not in k}, tmp_path / "r50.pth")
    loaded = load_arcface(tmp_path / "r50.pth", "r50")
    with pytest.raises(CheckpointError, match="IResNet-100"):
        load_arcface(tmp_path / "r50.pth", "r100")
    name = "sadtalker_WDA_KatieHill_000.mp4"
    image, landmarks = _frame(name, 0), common.tracked(name).landmarks[0]
    crop = arcface_crop(image, landmarks)
    assert crop.shape == (112, 112, 3) and crop.mean() > 20
    emb = ArcFaceEmbedder(loaded).embed(image, landmarks)
    assert emb.shape == (512,) and np.linalg.norm(emb) == pytest.approx(1.0)
