"""The three trainers on tiny configs: overfitting a fixed batch, exact resume, and a 2-process gloo run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import default_collate

from stylelipsync.models import StyleLipSync
from stylelipsync.models.syncnet import SyncNetExpert
from stylelipsync.training.config import merge
from stylelipsync.training.runs import build_config, run_training, task_classes
from stylelipsync.training.synthetic import write_synthetic_dataset
from stylelipsync.training.train_stylegan import load_decoder
from stylelipsync.training.trainer import Trainer, latest_checkpoint, load_checkpoint_modules

KINDS = ["syncnet", "stylegan", "stylelipsync"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset(root, num_persons=3, num_frames=48, size=64)
    return root


@pytest.fixture(scope="module")
def experts(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny SyncNet export and a tiny decoder export for the StyleLipSync trainer."""
    root = tmp_path_factory.mktemp("experts")
    out = {}
    for kind in ("syncnet", "stylegan"):
        path = run_training(kind, root / kind, data=dataset, preset="tiny", steps=2, extra=_common(dataset))
        assert path is not None
        out[kind] = path
    return out


def _common(dataset: Path) -> dict[str, Any]:
    return {"data": {"dataset": str(dataset), "n_val_persons": 1}}


def _extra(kind: str, dataset: Path, experts: dict[str, Path] | None, **trainer: Any) -> dict[str, Any]:
    extra = _common(dataset)
    if trainer:
        extra["trainer"] = trainer
    if kind == "stylelipsync" and experts is not None:
        extra["syncnet"] = str(experts["syncnet"])
    return extra


@pytest.mark.parametrize("kind", KINDS)
def test_overfits_a_fixed_batch(kind: str, dataset: Path, experts: dict[str, Path], tmp_path: Path) -> None:
    cfg_cls, task_cls = task_classes(kind)
    overrides = _extra(kind, dataset, experts)
    if kind == "syncnet":
        overrides["model"] = {"dropout": 0.0}
    if kind == "stylelipsync":
        overrides["lr"] = 1e-3
    cfg = merge(cfg_cls.preset("tiny"), overrides)
    task = task_cls(cfg)
    trainer = Trainer(task, tmp_path / "run")
    ds = task.train_dataset()
    batch = trainer.to_device(default_collate([ds[(i, i)] for i in range(cfg.trainer.batch_size)]))
    key = {"syncnet": "loss", "stylegan": "loss_D", "stylelipsync": "loss"}[kind]
    losses = [task.train_step([batch], step)[key] for step in range(25)]
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, losses


def _final_state(run_dir: Path) -> dict[str, Any]:
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None
    return load_checkpoint_modules(ckpt)


def _assert_identical(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), f"{name}.{k} differs after resume"


@pytest.mark.parametrize("kind", KINDS)
def test_resume_is_bit_identical(kind: str, dataset: Path, experts: dict[str, Path], tmp_path: Path) -> None:
    extra = _extra(kind, dataset, experts, val_every=3, image_every=3, checkpoint_every=4, keep_last=2)
    if kind == "syncnet":
        extra["trainer"].update({"grad_accum": 2, "mixed_precision": "bf16"})
    if kind == "stylelipsync":
        extra["decoder"] = str(experts["stylegan"])
        extra["train_decoder"] = False
    if kind == "stylegan":
        extra.update({"r1_interval": 2, "pl_weight": 1.0, "pl_interval": 3, "style_mixing": 0.5})
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_training(kind, straight, preset="tiny", steps=7, extra=extra)
    assert run_training(kind, split, preset="tiny", steps=7, stop_after=5, extra=extra) is None
    assert not (split / "export").exists()
    run_training(kind, split, resume=True)
    _assert_identical(_final_state(straight), _final_state(split))
    ckpts = sorted(p.name for p in (split / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-00000005", "checkpoint-00000007"]
    assert (split / "export").is_dir() and (split / "tb").is_dir()


def test_exports_load(dataset: Path, experts: dict[str, Path], tmp_path: Path) -> None:
    net = SyncNetExpert.from_pretrained(experts["syncnet"])
    p = net(torch.rand(2, 5, 3, 40, 40) * 2 - 1, torch.randn(2, 20, 80))
    assert p.shape == (2,) and bool(((p > 0) & (p < 1)).all())
    cfg = build_config("stylelipsync", tmp_path, preset="tiny")
    model = StyleLipSync(cfg.model)
    load_decoder(model, experts["stylegan"])
    assert float(model.w_avg.abs().sum()) > 0
    run = run_training(
        "stylelipsync",
        tmp_path / "sls",
        preset="tiny",
        steps=2,
        extra=_extra("stylelipsync", dataset, experts),
    )
    assert run is not None
    loaded = StyleLipSync.from_pretrained(run)
    assert json.loads((run / "training.json").read_text())["mel_norm"] == "none"
    assert loaded.config == cfg.model


def test_two_process_gloo_run(dataset: Path, experts: dict[str, Path], tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(
        textwrap.dedent(f"""
        from pathlib import Path
        from stylelipsync.training.runs import run_training
        common = {{"data": {{"dataset": {str(dataset)!r}, "n_val_persons": 1}},
                  "trainer": {{"val_every": 2}}}}
        for kind in ("syncnet", "stylegan", "stylelipsync"):
            extra = dict(common)
            if kind == "stylelipsync":
                extra["syncnet"] = {str(experts["syncnet"])!r}
            run_training(kind, Path({str(tmp_path)!r}) / kind, preset="tiny", steps=3, extra=extra)
    """)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), str(script)]
    # The timeout only guards against a hung rendezvous: it is no speed check, so it leaves room for a machine
    # whose cores are shared with other jobs (two processes × three trainings take ~1 min on 2 quiet cores).
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    for kind in KINDS:
        ckpt = latest_checkpoint(tmp_path / kind)
        assert ckpt is not None and (ckpt / "rng-rank1.pt").is_file()
        assert json.loads((ckpt / "trainer_state.json").read_text())["world_size"] == 2
        assert (tmp_path / kind / "export").is_dir()


def test_adaptation_tunes_only_the_decoder(dataset: Path, experts: dict[str, Path], tmp_path: Path) -> None:
    base = run_training(
        "stylelipsync",
        tmp_path / "base",
        preset="tiny",
        steps=1,
        extra=_extra("stylelipsync", dataset, experts),
    )
    assert base is not None
    extra = _extra("stylelipsync", dataset, experts)
    extra.update({"init": str(base), "adapt": True, "lambda_l2": 0.0, "lambda_reg_sync": 0.1})
    extra["data"]["n_val_persons"] = 0
    adapted = run_training("stylelipsync", tmp_path / "adapt", preset="tiny", steps=3, extra=extra)
    assert adapted is not None
    before = StyleLipSync.from_pretrained(base).state_dict()
    after = StyleLipSync.from_pretrained(adapted).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("synthesis.") for k in changed), sorted(changed)[:5]
    info = json.loads((adapted / "training.json").read_text())
    assert info["adapt"] is True and info["init"] == str(base)


def test_decoder_learning_rate_group(dataset: Path, experts: dict[str, Path], tmp_path: Path) -> None:
    """`lr_decoder` gives the synthesis network its own Adam rate; everything else keeps `lr`."""
    cfg_cls, task_cls = task_classes("stylelipsync")
    extra = {**_extra("stylelipsync", dataset, None), "train_decoder": True, "lr": 1e-4, "lr_decoder": 2e-3}
    task = task_cls(merge(cfg_cls.preset("tiny"), extra))
    Trainer(task, tmp_path / "run")
    groups = task.opt.param_groups
    decoder = {id(p) for p in task.model.synthesis.parameters()}
    assert [g["lr"] for g in groups] == [1e-4, 2e-3]
    assert {id(p) for p in groups[1]["params"]} == decoder
    assert not decoder & {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(task.model.parameters()))


def test_opening_loss_needs_the_expert_and_drives_the_generator(
    dataset: Path, experts: dict[str, Path], tmp_path: Path
) -> None:
    """`lambda_opening`: the expert's opening head on x̂ vs on the truth; gradients reach the decoder."""
    cfg_cls, task_cls = task_classes("stylelipsync")
    base = {**_extra("stylelipsync", dataset, None), "train_decoder": True, "lambda_opening": 1.0}
    with pytest.raises(ValueError, match="lambda_opening"):
        Trainer(task_cls(merge(cfg_cls.preset("tiny"), base)), tmp_path / "no_expert")
    task = task_cls(merge(cfg_cls.preset("tiny"), {**base, "syncnet": str(experts["syncnet"])}))
    trainer = Trainer(task, tmp_path / "run")
    ds = task.train_dataset()
    batch = trainer.to_device(default_collate([ds[(i, i)] for i in range(2)]))
    total, parts = task.losses(batch)
    assert float(parts["opening"]) > 0
    truth = task._opening_loss(batch["frames"], batch["frames"])
    assert float(truth) == pytest.approx(0.0, abs=1e-10)
    noise = torch.randn_like(batch["frames"])
    kept = task._opening_loss(noise, batch["frames"], torch.ones_like(batch["keep"]))
    assert float(kept) == pytest.approx(0.0, abs=1e-10), "only the regenerated region may be judged"
    total.backward()
    grads = [p.grad for p in task.model.synthesis.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert all(p.grad is None for p in task.syncnet.parameters())


def test_composite_losses_ignore_the_kept_region(dataset: Path, tmp_path: Path) -> None:
    """`loss_region: composite`: pixel losses see x̂ only where it is pasted back (1 − K)."""
    cfg_cls, task_cls = task_classes("stylelipsync")
    extra = {**_extra("stylelipsync", dataset, None), "train_decoder": True, "loss_region": "composite"}
    task = task_cls(merge(cfg_cls.preset("tiny"), extra))
    trainer = Trainer(task, tmp_path / "run")
    batch = trainer.to_device(default_collate([task.train_dataset()[(i, i)] for i in range(2)]))
    task.model.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        _, parts = task.losses(batch)
        torch.manual_seed(0)
        x_hat = task.model(batch["masked"], task._generator_mel(batch), batch["ref"], noise_mode="random")
    keep = batch["keep"].flatten(0, 1)
    y = batch["frames"].flatten(0, 1)
    composite = x_hat.flatten(0, 1) * (1 - keep) + y * keep
    assert 0 < float(parts["l2"]) < float(torch.nn.functional.mse_loss(x_hat.flatten(0, 1), y))
    assert float(parts["l2"]) == pytest.approx(float(torch.nn.functional.mse_loss(composite, y)), rel=1e-5)
    with pytest.raises(ValueError, match="loss_region"):
        Trainer(task_cls(merge(cfg_cls.preset("tiny"), {**extra, "loss_region": "face"})), tmp_path / "bad")


def test_patch_adversarial_loss_trains_both_and_resumes(dataset: Path, tmp_path: Path) -> None:
    """`lambda_adv`: the decoder gets the adversarial gradient, the discriminator learns, both are
    checkpointed and a resumed run is bit-identical."""
    cfg_cls, task_cls = task_classes("stylelipsync")
    extra = {
        **_extra("stylelipsync", dataset, None, checkpoint_every=2, keep_last=2),
        "train_decoder": True,
        "loss_region": "composite",
        "lambda_adv": 0.5,
        "lr_disc": 1e-3,
        "disc_channels": [8, 16],
    }
    task = task_cls(merge(cfg_cls.preset("tiny"), extra))
    trainer = Trainer(task, tmp_path / "probe")
    assert set(task.modules()) == {"model", "disc"} and set(task.optimizers()) == {"model", "disc"}
    batch = trainer.to_device(default_collate([task.train_dataset()[(i, i)] for i in range(2)]))
    before = {k: v.clone() for k, v in task.disc.state_dict().items()}
    logs = task.train_step([batch], 0)
    assert {"adv", "disc", "disc_real", "disc_fake"} <= logs.keys()
    assert any(not torch.equal(before[k], v) for k, v in task.disc.state_dict().items())
    region = task.disc.region_weights(torch.ones(1, 1, 32, 32))
    assert region.shape == task.disc(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 8, 8)

    straight, split = tmp_path / "straight", tmp_path / "split"
    run_training("stylelipsync", straight, preset="tiny", steps=4, extra=extra)
    assert run_training("stylelipsync", split, preset="tiny", steps=4, stop_after=2, extra=extra) is None
    run_training("stylelipsync", split, resume=True)
    final = _final_state(split)
    assert "disc" in final
    _assert_identical(_final_state(straight), final)
