"""Entry points behind the CLI: config from preset + YAML + flags, training, checkpoint export."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stylelipsync.training.config import load_yaml, merge
from stylelipsync.training.trainer import Trainer, TrainingTask, latest_checkpoint, load_checkpoint_modules

TASKS = {
    "audio": ("stylelipsync.training.train_audio", "AudioTrainConfig", "AudioMouthTask"),
    "syncnet": ("stylelipsync.training.train_syncnet", "SyncNetTrainConfig", "SyncNetTask"),
    "stylegan": ("stylelipsync.training.train_stylegan", "StyleGANTrainConfig", "StyleGANTask"),
    "stylelipsync": (
        "stylelipsync.training.train_stylelipsync",
        "StyleLipSyncTrainConfig",
        "StyleLipSyncTask",
    ),
}


def task_classes(kind: str) -> tuple[Any, Callable[[Any], TrainingTask]]:
    """(config class, task class) of ``audio``, ``syncnet``, ``stylegan`` or ``stylelipsync``."""
    if kind not in TASKS:
        raise ValueError(f"unknown training task {kind!r}; choose one of {', '.join(TASKS)}")
    module_name, cfg_name, task_name = TASKS[kind]
    module = importlib.import_module(module_name)
    return getattr(module, cfg_name), getattr(module, task_name)


def build_config(
    kind: str,
    run_dir: Path,
    config_path: Path | None = None,
    preset: str | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """Preset (default ``small``) ← YAML ← flag overrides; on resume the run's saved config is the base."""
    cfg_cls, _ = task_classes(kind)
    saved = Path(run_dir) / "config.yaml"
    if resume and saved.is_file() and config_path is None and preset is None:
        cfg = load_yaml(cfg_cls, saved, base=cfg_cls.preset("small"))
    else:
        cfg = cfg_cls.preset(preset or "small")
        if config_path is not None:
            cfg = load_yaml(cfg_cls, config_path, base=cfg)
    return merge(cfg, overrides or {})


def run_training(
    kind: str,
    run_dir: Path,
    data: Path | None = None,
    config_path: Path | None = None,
    preset: str | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    cpu: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path | None:
    """Train a ``syncnet``, ``stylegan`` or ``stylelipsync`` model in ``run_dir``; returns the export dir."""
    overrides: dict[str, Any] = dict(extra or {})
    trainer_over: dict[str, Any] = {}
    if steps is not None:
        trainer_over["steps"] = steps
    if batch_size is not None:
        trainer_over["batch_size"] = batch_size
    if num_workers is not None:
        trainer_over["num_workers"] = num_workers
    if trainer_over:
        overrides["trainer"] = trainer_over
    if data is not None:
        overrides["data"] = {"dataset": str(data)}
    config = build_config(kind, Path(run_dir), config_path, preset, resume, overrides)
    if not config.data.dataset:
        raise ValueError("no dataset: give --data DATASET_DIR (or data.dataset in the YAML config)")
    _, task_cls = task_classes(kind)
    task = task_cls(config)
    trainer = Trainer(task, run_dir, resume=resume, stop_after=stop_after, cpu=cpu)
    if trainer.is_main:
        (Path(run_dir) / "task.json").write_text(json.dumps({"task": kind}) + "\n")
    return trainer.fit()


def export_checkpoint(run_dir: Path, out: Path, checkpoint: Path | None = None) -> Path:
    """Export the deliverable model of a checkpoint (default: the run's latest) to ``out``."""
    run_dir = Path(run_dir)
    ckpt = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint found under checkpoints/")
    kind = json.loads((run_dir / "task.json").read_text())["task"]
    cfg_cls, task_cls = task_classes(kind)
    config = load_yaml(cfg_cls, ckpt / "config.yaml", base=cfg_cls.preset("small"))
    task_cls.export_modules(config, load_checkpoint_modules(ckpt), Path(out))  # type: ignore[attr-defined]
    return Path(out)
