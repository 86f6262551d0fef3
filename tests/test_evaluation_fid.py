"""FID: Fréchet distance against closed forms, the FID Inception-v3 loader, and `evaluate --metrics fid`."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from stylelipsync.cli import cli
from stylelipsync.errors import CheckpointError
from stylelipsync.evaluation.fid import FeatureStats, FewSamplesWarning, fid, frechet_distance
from stylelipsync.evaluation.inception import FEATURE_DIM, FIDInceptionV3, load_fid_inception
from stylelipsync.evaluation.runner import EvalConfig, Evaluator
from stylelipsync.media import VideoReader, VideoWriter

CLIP = "deepavsr_00006.mp4"  # 21 frames, 160², one face

# 94 conv+BN units: stem 5 (1a, 2a, 2b, 3b, 4a) + Mixed_5b-5d 3 × 7 + Mixed_6a 4 + Mixed_6b-6e 4 × 10
# + Mixed_7a 6 + Mixed_7b-7c 2 × 9. Each has conv.weight and bn.{weight, bias, running_mean, running_var}
# (plus the bn.num_batches_tracked counter), and fc has weight and bias.
CONV_UNITS = 5 + 3 * 7 + 4 + 4 * 10 + 6 + 2 * 9
# torchvision's ImageNet Inception-v3 has 27,161,264 parameters with its auxiliary classifier (3,326,696:
# 768→128 1×1 conv + BN, 128→768 5×5 conv + BN, 768→1000 linear) and 1000 classes; the FID graph has no
# auxiliary classifier and 1008 classes (8 × 2048 weights + 8 biases more).
FID_PARAMETERS = 27_161_264 - 3_326_696 + 8 * 2048 + 8


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Our key names with random values: He-normal convolutions (so the signal survives 94 layers) and
    random BatchNorm statistics (so BN is not the identity)."""
    torch.manual_seed(seed)
    state = FIDInceptionV3().state_dict()
    for key, value in state.items():
        if key.endswith("conv.weight"):
            state[key] = torch.nn.init.kaiming_normal_(torch.empty_like(value), nonlinearity="relu")
        elif key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn_like(value) * 0.01
    return state


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return _random_state()


@pytest.fixture(scope="module")
def weights(state: dict[str, torch.Tensor], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fid") / "pt_inception-random.pth"
    torch.save(state, path)
    return path


# ------------------------------------------------------------------------------------------------ distance
def _exact_trace_sqrt(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr((Σ1 Σ2)^½) = Σ √λ(Σ1^½ Σ2 Σ1^½), for PSD Σ1, Σ2 (singular or not)."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)).sum())


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(2.0**2 + (2.0 - 1.0) ** 2)


def test_frechet_distance_of_full_covariances_matches_the_symmetric_form() -> None:
    """Tr((Σ1 Σ2)^½) = Σ √λ(Σ1^½ Σ2 Σ1^½): the same trace from symmetric eigenvalues only."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * _exact_trace_sqrt(s1, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_small_sets_use_the_exact_trace_and_agree_with_sqrtm() -> None:
    rng = np.random.default_rng(6)
    few, many = rng.normal(size=(12, 16)), rng.normal(0.5, 2.0, size=(400, 16)) @ rng.normal(size=(16, 16))
    gen, ref = FeatureStats.of(few), FeatureStats.of(many)
    assert gen.samples is not None and ref.samples is None  # kept only while n <= dim
    s1, s2 = np.cov(few, rowvar=False), np.cov(many, rowvar=False)
    diff = few.mean(0) - many.mean(0)
    exact = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * _exact_trace_sqrt(s1, s2)
    with pytest.warns(FewSamplesWarning):
        value = fid(gen, ref)
    assert value == pytest.approx(exact, rel=1e-9)
    assert frechet_distance(few.mean(0), s1, many.mean(0), s2) == pytest.approx(value, rel=1e-4)


def test_identical_sets_give_zero_also_when_rank_deficient() -> None:
    rng = np.random.default_rng(2)
    full = rng.normal(size=(300, 16))
    assert fid(FeatureStats.of(full), FeatureStats.of(full)) == pytest.approx(0.0, abs=1e-8)
    few = rng.normal(size=(10, 64))  # 10 samples for 64 dims: singular covariances
    with pytest.warns(FewSamplesWarning, match="10 generated and 10 reference samples.*rank-deficient"):
        value = fid(FeatureStats.of(few), FeatureStats.of(few))
    assert value == pytest.approx(0.0, abs=1e-6)
    s = np.cov(few, rowvar=False)  # the sqrtm route, singular: exact up to the 1e-6 diagonal offset
    assert frechet_distance(few.mean(0), s, few.mean(0), s) == pytest.approx(0.0, abs=1e-2)


def test_shift_invariance_and_streaming_statistics() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 12)), rng.normal(0.3, 1.5, size=(150, 12))
    shift = rng.normal(size=12) * 5
    stats = FeatureStats(12)
    for part in np.array_split(x + shift, 7):
        stats.add(part)
    assert stats.n == 200
    np.testing.assert_allclose(stats.mean, x.mean(axis=0) + shift, atol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(x, rowvar=False), atol=1e-12)
    base = fid(FeatureStats.of(x), FeatureStats.of(y))
    assert base > 0
    assert fid(FeatureStats.of(x + shift), FeatureStats.of(y + shift)) == pytest.approx(base, rel=1e-9)
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    assert frechet_distance(mu1 + shift, s1, mu2 + shift, s2) == pytest.approx(base, rel=1e-9)
    # Shifting one set only adds the squared shift.
    assert fid(FeatureStats.of(x + shift), FeatureStats.of(y)) == pytest.approx(
        frechet_distance(mu1 + shift, s1, mu2, s2), rel=1e-9
    )


def test_fid_input_checks() -> None:
    one = FeatureStats.of(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="at least 2 generated"):
        fid(one, FeatureStats.of(np.eye(4)))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="feature sizes differ"):
        fid(FeatureStats.of(np.eye(4)), FeatureStats.of(np.eye(3)))
    rng = np.random.default_rng(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 5 samples in 4 dims: full rank, no FewSamplesWarning
        fid(FeatureStats.of(rng.normal(size=(6, 4))), FeatureStats.of(rng.normal(size=(5, 4))))
    with pytest.warns(FewSamplesWarning, match="only 4 reference"):
        fid(FeatureStats.of(rng.normal(size=(6, 4))), FeatureStats.of(rng.normal(size=(4, 4))))


# ------------------------------------------------------------------------------------------------ network
def test_state_dict_has_the_pytorch_fid_layout() -> None:
    model = FIDInceptionV3()
    state = model.state_dict()
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    assert len(counters) == CONV_UNITS == 94
    assert len(state) - len(counters) == 5 * CONV_UNITS + 2 == 472
    assert sum(p.numel() for p in model.parameters()) == FID_PARAMETERS == 23_850_960
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert state["Mixed_6e.branch7x7dbl_2.conv.weight"].shape == (192, 192, 7, 1)
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert state["fc.weight"].shape == (1008, 2048) and "Mixed_5b.branch1x1.bn.running_mean" in state
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_weights_load_strictly_and_give_2048_features(
    state: dict[str, torch.Tensor], weights: Path, tmp_path: Path
) -> None:
    model = load_fid_inception(weights)
    assert not model.training
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    images = np.random.default_rng(5).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    features = model.features(images)
    assert features.shape == (2, FEATURE_DIM) and features.dtype == np.float64
    assert np.isfinite(features).all() and not np.allclose(features[0], features[1])
    # Files without the BatchNorm counters (never used) and .safetensors files load too.
    save_file({k: v for k, v in state.items() if "num_batches" not in k}, tmp_path / "inception.safetensors")
    again = load_fid_inception(tmp_path / "inception.safetensors")
    assert all(torch.equal(value, state[key]) for key, value in again.state_dict().items())


def test_wrong_weights_raise_checkpoint_errors_naming_the_file(
    state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    # Keys are checked before shapes, so tiny tensors under the right names stand in for the 91 MB file.
    tiny = {key: torch.zeros(1) for key in state}
    tiny["Mixed_7c.branch_pool.conv.weights"] = tiny.pop("Mixed_7c.branch_pool.conv.weight")
    torch.save(tiny, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match=r"renamed\.pth.*1 missing.*1 unexpected.*--fid-weights"):
        load_fid_inception(tmp_path / "renamed.pth")
    torch.save({key: torch.zeros(1) for key in state}, tmp_path / "wrong_shapes.pth")
    with pytest.raises(CheckpointError, match=r"wrong_shapes\.pth.*shapes"):
        load_fid_inception(tmp_path / "wrong_shapes.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth.*cannot be read"):
        load_fid_inception(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match=r"absent\.pth.*pt_inception-2015-12-05"):
        load_fid_inception(tmp_path / "absent.pth")


# ------------------------------------------------------------------------------------------------ evaluate
def _blurred_copy(source: Path, target: Path) -> None:
    reader = VideoReader(source)
    with VideoWriter(target, reader.fps, reader.width, reader.height) as writer:
        for frame in reader:
            writer.write(cv2.GaussianBlur(frame.image, (0, 0), 2.0))


def test_evaluate_fid_end_to_end(media_dir: Path, weights: Path, tmp_path: Path) -> None:
    generated = tmp_path / "gen" / CLIP
    _blurred_copy(media_dir / CLIP, generated)
    out = tmp_path / "res" / "results.json"
    args = [
        "evaluate", "-g", str(generated), "-r", str(media_dir / CLIP), "-m", "fid,psnr", "--frame-step", "3",
        "--fid-weights", str(weights), "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert "fid" not in doc["unavailable"] and doc["columns"] == ["psnr", "fid"]
    values = doc["set"]["values"]
    assert values["fid_generated_frames"] == values["fid_reference_frames"] == 7  # frames 0, 3, …, 18
    assert np.isfinite(values["fid"]) and values["fid"] > 0
    assert "fid" not in doc["videos"][0]["values"] and "fid" not in doc["summary"]
    assert any("rank-deficient" in note for note in doc["set"]["notes"])
    assert "rank-deficient" in result.stderr and "all videos" in result.stdout
    rows = list(csv.reader(out.with_suffix(".csv").open()))
    assert rows[-1][0] == "all videos" and float(rows[-1][-1]) == pytest.approx(values["fid"])


def test_fid_is_skipped_with_a_note_without_reference_or_enough_crops(weights: Path) -> None:
    evaluator = Evaluator(EvalConfig(metrics=("fid",), fid_weights=weights))
    result = evaluator.finish()
    assert result.values["fid"] is None and result.notes == ["FID: no reference given (--reference): skipped"]
    evaluator._fid_references.add(Path("reference.mp4"))
    evaluator.fid_generated.add(np.random.default_rng(7).normal(size=(3, FEATURE_DIM)))
    evaluator.fid_reference.add(np.zeros((1, FEATURE_DIM)))
    result = evaluator.finish()
    assert result.values == {"fid": None, "fid_generated_frames": 3, "fid_reference_frames": 1}
    assert "at least 2 face crops" in result.notes[0]


def test_evaluate_fid_without_weights_is_unavailable(media_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["evaluate", "-g", str(media_dir / CLIP), "-r", str(media_dir / CLIP), "-m", "fid", "-o", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "fid: unavailable" in result.stderr and "--fid-weights" in result.stderr
    doc = json.loads(out.read_text())
    assert "pt_inception-2015-12-05-6726825d.pth" in doc["unavailable"]["fid"]
    assert doc["set"] == {"values": {}, "notes": []}
