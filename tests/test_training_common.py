"""Shared training infrastructure: configs, sampler, person split, dataset samples, checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from stylelipsync.training.config import TrainerConfig, load_yaml, merge, save_yaml
from stylelipsync.training.dataset import (
    ClipInfo,
    DataConfig,
    FrameDataset,
    LipSyncWindowDataset,
    read_manifest,
    split_by_person,
)
from stylelipsync.training.sampler import ShardedInfiniteSampler
from stylelipsync.training.synthetic import write_synthetic_dataset
from stylelipsync.training.train_syncnet import SyncNetTrainConfig


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, num_persons=3, clips_per_person=2, num_frames=60, size=64)
    return root


def _take(it: object, n: int) -> list[tuple[int, int]]:
    out = []
    for key in it:  # type: ignore[attr-defined]
        out.append(key)
        if len(out) == n:
            break
    return out


def test_sampler_resumes_exactly_and_shards_disjointly() -> None:
    full = _take(iter(ShardedInfiniteSampler(10, seed=3)), 25)
    resumed = _take(iter(ShardedInfiniteSampler(10, seed=3, start=13)), 12)
    assert resumed == full[13:]
    assert sorted(k for k, _ in full[:10]) == list(range(10))
    ranks = [_take(iter(ShardedInfiniteSampler(10, rank=r, world_size=2, seed=3)), 5) for r in range(2)]
    assert sorted(k for keys in ranks for k, _ in keys) == list(range(10))
    assert len({s for keys in ranks for _, s in keys}) == 10


def test_config_yaml_roundtrip_and_unknown_keys(tmp_path: Path) -> None:
    cfg = SyncNetTrainConfig.preset("tiny")
    cfg = merge(cfg, {"trainer": {"steps": 7}, "model": {"embed_dim": 16}, "data": {"val_persons": ["a"]}})
    save_yaml(cfg, tmp_path / "c.yaml")
    again = load_yaml(SyncNetTrainConfig, tmp_path / "c.yaml")
    assert again == cfg and again.model.embed_dim == 16 and again.data.val_persons == ("a",)
    (tmp_path / "bad.yaml").write_text("trainer:\n  stepz: 3\n")
    with pytest.raises(ValueError, match="stepz"):
        load_yaml(SyncNetTrainConfig, tmp_path / "bad.yaml")
    with pytest.raises(ValueError):
        TrainerConfig(mixed_precision="fp16")


@dataclass
class _Nested:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    values: tuple[float, float] = (0.0, 1.0)


def test_merge_coerces_types() -> None:
    cfg = merge(_Nested(), {"values": [1, 2], "trainer": {"grad_clip": 1}})
    assert cfg.values == (1.0, 2.0) and isinstance(cfg.trainer.grad_clip, float)


def test_split_by_person_never_splits_a_person() -> None:
    clips = [ClipInfo(f"c{i}", f"p{i % 4}", 10, Path(".")) for i in range(12)]
    train, val = split_by_person(clips, n_val=2, seed=1)
    assert {c.person for c in train}.isdisjoint({c.person for c in val})
    assert len({c.person for c in val}) == 2 and len(train) + len(val) == 12
    assert split_by_person(clips, n_val=2, seed=1) == (train, val)
    train, val = split_by_person(clips, val_persons=["p3"])
    assert {c.person for c in val} == {"p3"}
    with pytest.raises(ValueError):
        split_by_person(clips, val_persons=["nobody"])


def test_window_samples(synthetic: Path) -> None:
    clips = read_manifest(synthetic)
    cfg = DataConfig(resolution=32, min_ref_distance=25, color_jitter=0.0, flip=False)
    ds = LipSyncWindowDataset(clips, cfg, augment=False)
    a, b = ds[(5, 42)], ds[(5, 42)]
    assert all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))
    assert a["frames"].shape == (5, 3, 32, 32) and a["mel"].shape == (5, 20, 80)
    assert a["ref"].shape == (1, 3, 32, 32) and a["sync_mel"].shape == (20, 80)
    assert a["frames"].min() >= -1 and a["frames"].max() <= 1
    expected = (a["frames"] + 1) * a["keep"] - 1
    assert torch.allclose(a["masked"], expected, atol=0.06)
    labels = [float(ds[(i, i)]["sync_label"]) for i in range(40)]
    assert 0 < sum(labels) < 40
    for seed in range(20):
        r = ds._reference(ds.arrays[0], 0, 20, np.random.default_rng(seed))
        assert abs(r - 22) >= 25


def test_frame_dataset(synthetic: Path) -> None:
    ds = FrameDataset(read_manifest(synthetic), DataConfig(resolution=16))
    assert len(ds) == 6 * 60
    assert ds[(0, 1)]["image"].shape == (3, 16, 16)
