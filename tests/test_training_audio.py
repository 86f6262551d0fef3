"""Audio-encoder pre-training on mouth opening (train-audio) and its frozen use in `train`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from stylelipsync.models import StyleLipSync
from stylelipsync.models.config import StyleLipSyncConfig
from stylelipsync.training.config import merge
from stylelipsync.training.runs import run_training, task_classes
from stylelipsync.training.synthetic import write_synthetic_dataset
from stylelipsync.training.train_audio import (
    INFO_FILE,
    WEIGHTS_FILE,
    AudioMouthTask,
    AudioTrainConfig,
    load_audio_encoder_weights,
)
from stylelipsync.training.trainer import Trainer


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset(root, num_persons=3, num_frames=48, size=64)
    return root


def _data(dataset: Path) -> dict[str, object]:
    return {"data": {"dataset": str(dataset), "n_val_persons": 1}}


def test_overfits_a_fixed_batch_and_reports_held_out_correlation(dataset: Path, tmp_path: Path) -> None:
    cfg = merge(AudioTrainConfig.preset("tiny"), {**_data(dataset), "dropout": 0.0})
    cfg.data.mel_noise = 0.0
    task = AudioMouthTask(cfg)
    trainer = Trainer(task, tmp_path / "run")
    ds = task.train_dataset()
    item = ds[(0, 0)]
    assert set(item) >= {"mel", "opening"} and "frames" not in item
    batch = trainer.to_device(default_collate([ds[(i, i)] for i in range(16)]))
    losses = [task.train_step([batch], step)["loss"] for step in range(30)]
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses
    metrics = task.evaluate()
    clips = [k for k in metrics if k.startswith("corr/")]
    # One correlation per held-out clip (none of a training person's), each the Pearson r of the net's
    # prediction with the landmark opening of that clip, and their mean.
    train, held_out = task.split()
    assert {k.removeprefix("corr/") for k in clips} == {c.id for c in held_out}
    assert not {c.id for c in held_out} & {c.id for c in train}
    task.net.eval()
    with torch.no_grad():
        for clip_id, mel, opening in task._val_clips():
            pred = task.head(task.encoder(mel)).numpy().ravel()
            r = np.corrcoef(pred, opening.numpy())[0, 1]
            assert metrics[f"corr/{clip_id}"] == pytest.approx(r, abs=1e-5), clip_id
    assert metrics["corr_mean"] == pytest.approx(np.mean([metrics[k] for k in clips]))
    # The synthetic mouth opens with the loudness, so even 30 steps on one batch generalise (measured 0.91).
    assert metrics["corr_mean"] > 0.5


def test_export_initialises_a_frozen_audio_encoder(dataset: Path, tmp_path: Path) -> None:
    export = run_training("audio", tmp_path / "audio", preset="tiny", steps=3, extra=_data(dataset))
    assert export is not None and (export / WEIGHTS_FILE).is_file() and (export / INFO_FILE).is_file()

    model = StyleLipSync(AudioTrainConfig.preset("tiny").model)
    load_audio_encoder_weights(model, export)
    pretrained = {k: v.clone() for k, v in model.audio_encoder.state_dict().items()}
    fresh = StyleLipSync(model.config).audio_encoder.state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in pretrained.items())

    cfg_cls, task_cls = task_classes("stylelipsync")
    extra = {**_data(dataset), "audio_init": str(export), "freeze_audio": True, "lr": 1e-3}
    task = task_cls(merge(cfg_cls.preset("tiny"), extra))
    trainer = Trainer(task, tmp_path / "sls")
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    ds = task.train_dataset()
    batch = trainer.to_device(default_collate([ds[(i, i)] for i in range(2)]))
    for step in range(3):
        task.train_step([batch], step)
    after = task.model.state_dict()
    for key, value in pretrained.items():
        assert torch.equal(after[f"audio_encoder.{key}"], value), f"audio_encoder.{key} changed"
    changed = [k for k in after if k.startswith("synthesis.") and not torch.equal(after[k], before[k])]
    assert changed, "the rest of the model must still train"


def test_mismatched_audio_weights_name_the_file(dataset: Path, tmp_path: Path) -> None:
    export = run_training("audio", tmp_path / "audio", preset="tiny", steps=1, extra=_data(dataset))
    assert export is not None
    other = StyleLipSync(dataclasses.replace(StyleLipSyncConfig.tiny(resolution=32), style_dim=48))
    with pytest.raises(ValueError, match=WEIGHTS_FILE):
        load_audio_encoder_weights(other, export)
    with pytest.raises(FileNotFoundError, match="train-audio"):
        load_audio_encoder_weights(other, tmp_path / "nowhere")
