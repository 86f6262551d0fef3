"""`stylelipsync adapt` (issue #7) on a tiny random-weight model and 1.6 s of a real talking clip.

One CLI run (module fixture) is shared: it preprocesses the target, adapts for 4 steps and validates. The
other tests reuse its preprocessed data folder, so MediaPipe runs once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner, Result
from safetensors.torch import load_file
from torch.utils.data import default_collate

from stylelipsync.adaptation.data import prepare_target
from stylelipsync.adaptation.output import RUN_DIR_NAME
from stylelipsync.adaptation.pipeline import AdaptationPipeline, AdaptOptions, default_syncnet
from stylelipsync.adaptation.task import AdaptationTask
from stylelipsync.adaptation.validation import heldout_reconstruction
from stylelipsync.cli import cli
from stylelipsync.errors import CheckpointError, OutputError, StyleLipSyncError
from stylelipsync.media import VideoReader, load_audio, probe
from stylelipsync.models import StyleLipSync, StyleLipSyncConfig
from stylelipsync.models.syncnet import SyncNetConfig, SyncNetExpert
from stylelipsync.pipelines import LipSyncPipeline
from stylelipsync.training.trainer import Trainer, latest_checkpoint

TARGET = "deepavsr_00001.mp4"  # LRS2 160², 25 fps, own audio
MAX_FRAMES = 40  # 34 frames to adapt on, 6 held out
POOL_SPEECH = "sls_RoyBlunt_0_10s.wav"  # another speaker
VALIDATE_SPEECH = "sadtalker_answer.wav"
STEPS = 4
COMMON = ["--steps", str(STEPS), "--batch-size", "2", "--max-frames", str(MAX_FRAMES), "--workers", "0"]
COMMON += ["--threads", "1", "--checkpoint-every", "2", "--preview-every", "2"]


@dataclass
class Setup:
    root: Path
    video: Path
    base: Path
    syncnet: Path
    pool: Path
    speech: Path
    person: Path
    result: Result

    @property
    def data_dir(self) -> Path:
        return self.person / RUN_DIR_NAME / "data"

    def options(self, **kw: object) -> AdaptOptions:
        args: dict[str, object] = dict(
            steps=STEPS, batch_size=2, max_frames=MAX_FRAMES, workers=0, threads=1, checkpoint_every=2
        )
        args.update(kw)
        return AdaptOptions(preview_every=2, **args)  # type: ignore[arg-type]


def _wav(path: Path, source: Path, seconds: float) -> Path:
    sf.write(str(path), load_audio(source, 16000)[: int(seconds * 16000)], 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def setup(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("adapt")
    torch.manual_seed(0)
    StyleLipSync(StyleLipSyncConfig.tiny(resolution=32)).save_pretrained(root / "base")
    SyncNetExpert(SyncNetConfig.tiny()).save_pretrained(root / "syncnet")
    (root / "pool").mkdir()
    _wav(root / "pool" / "other.wav", media_dir / POOL_SPEECH, 2.0)
    speech = _wav(root / "speech.wav", media_dir / VALIDATE_SPEECH, 1.0)
    person = root / "person"
    args = ["adapt", "-v", str(media_dir / TARGET), "-c", str(root / "base"), "-o", str(person)]
    args += ["--syncnet", str(root / "syncnet"), "--audio-pool", str(root / "pool")]
    result = CliRunner().invoke(cli, [*args, "--validate", str(speech), *COMMON])
    video, syncnet, pool = media_dir / TARGET, root / "syncnet", root / "pool"
    return Setup(root, video, root / "base", syncnet, pool, speech, person, result)


def test_cli_writes_a_loadable_person_model_with_report(setup: Setup) -> None:
    assert setup.result.exit_code == 0, setup.result.output
    out = setup.result.output
    assert f"{STEPS} steps" in out and "the last 6 frames (0.2 s) were held out" in out
    assert "base" in out and "adapted" in out and "PSNR" in out
    for name in ("config.json", "model.safetensors", "training.json", "adapt.json", "preview.mp4"):
        assert (setup.person / name).is_file(), name
    assert not list(setup.person.glob(".*.tmp"))
    info = json.loads((setup.person / "adapt.json").read_text())
    assert info["steps"] == STEPS and info["train_frames"] == [0, 34] and info["heldout_frames"] == [34, 40]
    assert info["loss"]["l2"] == 0.0 and info["loss"]["perceptual"] == "msssim_mouth_l1"
    assert info["audio_pool"]["clips"] == 1
    metrics = info["validation"]["heldout_reconstruction"]
    assert set(metrics) == {"base", "adapted"} and metrics["adapted"]["frames"] == 6
    # "base" and "adapted" are the held-out scores of those two models (recomputed here), and differ.
    data = prepare_target(setup.video, setup.data_dir, 0.15, MAX_FRAMES, progress=False)
    for name, model_dir in (("base", setup.base), ("adapted", setup.person)):
        expected = heldout_reconstruction(StyleLipSync.from_pretrained(model_dir), data)
        assert metrics[name]["psnr"] == pytest.approx(expected["psnr"], abs=1e-3), name
        assert metrics[name]["ssim"] == pytest.approx(expected["ssim"], abs=1e-4), name
    assert abs(metrics["adapted"]["psnr"] - metrics["base"]["psnr"]) > 0.01, metrics
    preview = probe(setup.person / "preview.mp4")
    assert preview.has_video and preview.has_audio and abs(preview.duration - 1.0) < 0.1
    images = sorted((setup.person / RUN_DIR_NAME / "images").glob("preview_*.png"))
    assert [p.name[-12:-4] for p in images] == ["00000002", "00000004"]


def test_only_the_decoder_changes(setup: Setup) -> None:
    before = load_file(str(setup.base / "model.safetensors"))
    after = load_file(str(setup.person / "model.safetensors"))
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("synthesis.") for k in changed), sorted(changed)[:5]
    frozen = [k for k in before if not k.startswith("synthesis.")]
    assert any("running_mean" in k for k in frozen) and any("running_var" in k for k in frozen)
    assert "w_avg" in frozen and any(k.startswith("face_encoder.f_mix") for k in frozen)


def test_held_out_frames_are_never_used_for_adaptation(setup: Setup) -> None:
    data = prepare_target(setup.video, setup.data_dir, 0.15, MAX_FRAMES, progress=False)
    assert (data.cut, data.num_frames) == (34, 40)
    full = np.load(next((setup.data_dir / "target" / "clips").iterdir()) / "frames.npy")
    train = np.load(data.train_dir / "clips" / "target" / "frames.npy")
    held = np.load(data.heldout_dir / "clips" / "target" / "frames.npy")  # type: ignore[operator]
    assert np.array_equal(train, full[:34]) and np.array_equal(held, full[34:])
    assert len(np.load(data.train_dir / "clips" / "target" / "audio.npy")) == 34 * 640
    pipe = AdaptationPipeline(setup.base, setup.syncnet, options=setup.options())
    task = AdaptationTask(pipe.train_config(data, setup.base, "pool"), [])
    assert [c.path for c in task.split()[0]] == [data.train_dir / "clips" / "target"]
    assert task.split()[1] == []


def test_loss_decreases_on_a_fixed_batch(setup: Setup, tmp_path: Path) -> None:
    pipe = AdaptationPipeline(setup.base, setup.syncnet, options=setup.options(lr=2e-3))
    data = prepare_target(setup.video, setup.data_dir, 0.15, MAX_FRAMES, progress=False)
    pool = pipe._pool(setup.pool, None, setup.video, setup.data_dir)[0]
    task = AdaptationTask(pipe.train_config(data, setup.base, "pool"), pool)
    trainer = Trainer(task, tmp_path / "run")
    ds = task.train_dataset()
    batch = trainer.to_device(default_collate([ds[(i, i)] for i in (0, 10)]))
    assert "reg_mel" in batch
    losses = [task.train_step([batch], step)["loss"] for step in range(8)]
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    assert not task.model.training and not any(p.requires_grad for p in task.model.audio_encoder.parameters())


def test_resume_continues_from_the_checkpoint(
    setup: Setup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = AdaptationPipeline(setup.base, setup.syncnet, options=setup.options())
    person = tmp_path / "person"
    kw = dict(audio_pool=setup.pool, data_dir=setup.data_dir, progress=False)
    with caplog.at_level(logging.WARNING, logger="stylelipsync.adapt"):
        first = pipe(setup.video, person, stop_after=2, **kw)  # type: ignore[arg-type]
    assert "no --lpips-weights" in caplog.text
    assert not first.finished and first.step == 2 and "--resume" in first.summary()
    assert not (person / "model.safetensors").exists()
    with pytest.raises(OutputError, match="--resume"):
        pipe(setup.video, person, **kw)  # type: ignore[arg-type]
    second = pipe(setup.video, person, resume=True, **kw)  # type: ignore[arg-type]
    assert second.finished and (second.start_step, second.step) == (2, STEPS)
    ckpt = latest_checkpoint(person / RUN_DIR_NAME)
    assert ckpt is not None and ckpt.name == f"checkpoint-{STEPS:08d}"
    resumed = load_file(str(person / "model.safetensors"))
    straight = load_file(str(setup.person / "model.safetensors"))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight), "resume is not exact"


def test_person_model_loads_in_generate(setup: Setup, tmp_path: Path) -> None:
    pipe = LipSyncPipeline.from_pretrained(setup.person, device="cpu")
    out = pipe(setup.video, setup.speech, tmp_path / "dubbed.mp4", batch_size=8)
    frames = list(VideoReader(out.output_path))
    assert len(frames) == 25 and out.frames_with_face == 25


def test_clear_errors(setup: Setup) -> None:
    with pytest.raises(CheckpointError, match="--syncnet"):
        AdaptationPipeline(setup.base, setup.root / "no_such_expert")
    pipe = AdaptationPipeline(setup.base, setup.syncnet, options=setup.options())
    with pytest.raises(StyleLipSyncError, match="--audio-pool"):
        pipe(setup.video, setup.root / "no_pool", data_dir=setup.data_dir, progress=False)
    with pytest.raises(OutputError, match="base model"):
        pipe(setup.video, setup.base, audio_pool=setup.pool, data_dir=setup.data_dir, progress=False)
    finished = setup.root / "finished"
    finished.mkdir(exist_ok=True)
    (finished / "model.safetensors").write_bytes((setup.person / "model.safetensors").read_bytes())
    with pytest.raises(OutputError, match="--overwrite"):
        pipe(setup.video, finished, audio_pool=setup.pool, progress=False)
    args = ["adapt", "-v", str(setup.video), "-c", str(setup.base), "-o", "x"]
    result = CliRunner().invoke(cli, [*args, "--syncnet", str(setup.root / "no_such_expert")])
    assert result.exit_code == 4 and "--syncnet" in result.output
    result = CliRunner().invoke(cli, [*args, "--syncnet", str(setup.syncnet), "--lambda-reg", "0.1"])
    assert result.exit_code != 0 and "--audio-pool" in result.output


def test_out_of_the_box_with_the_shipped_model_and_expert(
    media_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`adapt --video V --output O` alone (the README's promise): the shipped demo model, the shipped SyncNet
    expert, R_sync off with a warning; `generate --checkpoint O` then loads and runs the result."""
    assert (default_syncnet() / "model.safetensors").is_file(), "the SyncNet expert is not shipped"
    person = tmp_path / "person"
    quick = ["--steps", "1", "--batch-size", "1", "--max-frames", "20", "--holdout", "0", "--workers", "0"]
    quick += ["--threads", "1", "--preview-every", "0"]
    video = str(media_dir / TARGET)
    result = CliRunner().invoke(cli, ["adapt", "--video", video, "--output", str(person), *quick])
    assert result.exit_code == 0, result.output
    assert "without R_sync" in result.output
    info = json.loads((person / "adapt.json").read_text())
    assert info["syncnet"] == str(default_syncnet().resolve())
    assert info["loss"]["lambda_sync"] > 0 and info["loss"]["lambda_reg_sync"] == 0.0
    speech = _wav(tmp_path / "speech.wav", media_dir / VALIDATE_SPEECH, 0.4)
    dubbed = tmp_path / "dubbed.mp4"
    args = ["generate", "-c", str(person), "-v", video, "-a", str(speech), "-o", str(dubbed)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "stylelipsync engine" in result.output and len(list(VideoReader(dubbed))) == 10
