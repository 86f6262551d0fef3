"""``AdaptationPipeline``: adapt a trained model to one person (spec §5); the engine of ``adapt``.

    pipe = AdaptationPipeline("models/base", syncnet="runs/syncnet/export", lpips_weights="vgg_lpips.pth")
    result = pipe("target.mp4", "models/alice", audio_pool="other_speakers/", validate_audio="speech.wav")
    print(result.summary())

One call runs the steps of the package (see ``stylelipsync.adaptation``) in order: prepare the target and the
audio pool (``data``), tune the decoder with the shared trainer (``task``), publish the person model
(``output``), then optionally score the held-out frames and write a preview (``validation``). Everything
happens in a work folder inside the output (``PERSON_DIR/.adapt_run``), so ``resume=True`` continues an
interrupted run from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from stylelipsync import __version__
from stylelipsync.adaptation.data import (
    POOL_HELP,
    TargetData,
    collect_pool_files,
    pool_from_dataset,
    prepare_audio_pool,
    prepare_target,
)
from stylelipsync.adaptation.output import (
    ADAPT_INFO_FILE,
    RUN_DIR_NAME,
    check_output,
    publish,
    write_json_atomic,
)
from stylelipsync.adaptation.task import AdaptationTask, save_preview
from stylelipsync.adaptation.validation import format_metrics, validate
from stylelipsync.errors import CheckpointError, MediaError, StyleLipSyncError
from stylelipsync.media.container import check_file
from stylelipsync.models import StyleLipSyncConfig
from stylelipsync.models.stylelipsync import CONFIG_FILE, WEIGHTS_FILE
from stylelipsync.pipelines import default_checkpoint, load_model
from stylelipsync.training.config import merge
from stylelipsync.training.dataset import ClipInfo
from stylelipsync.training.preprocess import FPS
from stylelipsync.training.train_stylelipsync import StyleLipSyncTrainConfig
from stylelipsync.training.trainer import Trainer

log = logging.getLogger("stylelipsync.adapt")

SYNCNET_HELP = (
    "adaptation needs the SyncNet expert for L_sync and R_sync: pass --syncnet DIR (a `stylelipsync "
    "train-syncnet` export, RUN/export, with config.json + model.safetensors), or reinstall the package to "
    "get the shipped expert back (stylelipsync/assets/syncnet). To tune on the perceptual loss alone (not "
    "recommended: the mouth overfits to the target clip), pass --lambda-sync 0 --lambda-reg 0."
)


def default_syncnet() -> Path:
    """Directory of the SyncNet expert shipped inside the package: the one the shipped demo model was trained
    with (`configs/demo_syncnet.yaml`, stage 3 of `scripts/train_demo_model.sh`)."""
    return Path(str(resources.files("stylelipsync").joinpath("assets", "syncnet")))


@dataclass
class AdaptOptions:
    """Adaptation settings (defaults: spec §5; Adam 1e-4, 3,000 steps of 8 clips, λ_sync = λ_reg = 0.1).

    ``holdout``: fraction of the target's frames, at its end, kept out of adaptation for validation.
    ``flip``: x-flip augmentation (off: a person's face is not symmetric). ``threads`` > 0 pins PyTorch's
    intra-op threads (1 on a shared CPU). ``preview_seconds`` caps the ``validate_audio`` preview.
    """

    steps: int = 3_000
    batch_size: int = 8
    lr: float = 1e-4
    lambda_lpips: float = 1.0
    lambda_sync: float = 0.1
    lambda_reg: float = 0.1
    holdout: float = 0.15
    max_frames: int | None = None
    flip: bool = False
    checkpoint_every: int = 250
    preview_every: int = 250
    log_every: int = 10
    keep_last: int = 2
    workers: int = 2
    threads: int = 0
    seed: int = 0
    mixed_precision: str = "no"
    cpu: bool = False
    preview_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if not 0.0 <= self.holdout <= 0.5:
            raise ValueError(f"holdout must be between 0 and 0.5, got {self.holdout}")
        if self.lr <= 0 or min(self.lambda_lpips, self.lambda_sync, self.lambda_reg) < 0:
            raise ValueError("lr must be > 0 and the loss weights >= 0")
        if self.checkpoint_every < 1 or self.preview_every < 0 or self.log_every < 1:
            raise ValueError("checkpoint_every and log_every must be >= 1, preview_every >= 0")


@dataclass
class AdaptResult:
    """What an adaptation call did. ``finished`` is False when it stopped early (signal or ``stop_after``)."""

    output: Path
    run_dir: Path
    finished: bool
    step: int
    start_step: int
    steps: int
    train_frames: int
    heldout_frames: int
    pool_clips: int
    perceptual: str
    seconds: float = 0.0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    preview: Path | None = None

    def summary(self) -> str:
        """Human-readable report for the CLI."""
        if not self.finished:
            return (
                f"stopped at step {self.step} of {self.steps}: checkpoint saved in {self.run_dir}; run the "
                "same command with --resume to continue"
            )
        resumed = f", resumed at step {self.start_step}" if self.start_step else ""
        perceptual = (
            "LPIPS-VGG16"
            if self.perceptual == "lpips"
            else "substitute 1 - MS-SSIM + mouth L1 (no LPIPS weights given)"
        )
        lines = [
            f"wrote {self.output} (config.json + model.safetensors): {self.step} steps{resumed}",
            f"adapted on {self.train_frames} frames ({self.train_frames / FPS:.1f} s); the last "
            f"{self.heldout_frames} frames ({self.heldout_frames / FPS:.1f} s) were held out",
            f"perceptual loss: {perceptual}; R_sync: "
            + (f"{self.pool_clips} clip(s) of other speakers' audio" if self.pool_clips else "off"),
        ]
        if self.metrics:
            lines += ["held-out reconstruction (own audio):", format_metrics(self.metrics)]
        if self.preview is not None:
            lines.append(f"preview: {self.preview}")
        lines.append(f"took {self.seconds:.0f} s")
        return "\n".join(lines)


class AdaptationPipeline:
    """Adapt a base model to one person. Create once, call with a target video and an output folder.

    ``base``: a model directory, an official ``.pth`` (with ``w_avg``) or None for the shipped model.
    ``syncnet``: the SyncNet expert directory; None = the one shipped with the demo model (`default_syncnet`).
    ``lpips_weights``: LPIPS-VGG16 state dict; without it a substitute perceptual loss is used (warned).
    """

    def __init__(
        self,
        base: str | Path | None = None,
        syncnet: str | Path | None = None,
        lpips_weights: str | Path | None = None,
        options: AdaptOptions | None = None,
        w_avg: str | Path | None = None,
    ) -> None:
        self.base = Path(base) if base is not None else default_checkpoint()
        self.w_avg = Path(w_avg) if w_avg is not None else None
        self.lpips_weights = Path(lpips_weights) if lpips_weights is not None else None
        self.options = options or AdaptOptions()
        opts = self.options
        self.syncnet = Path(syncnet) if syncnet is not None else None
        if self.syncnet is None and (opts.lambda_sync > 0 or opts.lambda_reg > 0):
            shipped = default_syncnet()
            self.syncnet = shipped if (shipped / CONFIG_FILE).is_file() else None
        if self.syncnet is None and (opts.lambda_sync > 0 or opts.lambda_reg > 0):
            raise CheckpointError(
                f"no SyncNet expert given and none shipped in this install ({default_syncnet()}): "
                f"{SYNCNET_HELP}"
            )
        if self.syncnet is not None and not (self.syncnet / "config.json").is_file():
            raise CheckpointError(
                f"{self.syncnet}: not a SyncNet expert directory (no config.json). {SYNCNET_HELP}"
            )
        if self.lpips_weights is not None and not self.lpips_weights.is_file():
            raise CheckpointError(
                f"{self.lpips_weights}: LPIPS weights not found; give a torch.save(state_dict) of "
                "lpips.LPIPS(net='vgg'), or leave --lpips-weights out to use the substitute loss"
            )
        if not self.base.exists():
            raise CheckpointError(
                f"{self.base}: base model not found; give a model directory or an official .pth"
            )

    def __call__(
        self,
        video: str | Path,
        output: str | Path,
        *,
        audio_pool: str | Path | Sequence[str | Path] | None = None,
        reg_data: str | Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
        validate_audio: str | Path | None = None,
        data_dir: str | Path | None = None,
        stop_after: int | None = None,
        progress: bool = True,
    ) -> AdaptResult:
        """Adapt to the person in ``video`` and write the model to ``output`` (see the package docstring).

        ``data_dir`` shares the preprocessed target between runs (default ``output/.adapt_run/data``);
        ``stop_after`` ends early at that step with a checkpoint, as an interruption would.
        """
        start_time = time.perf_counter()
        opts = self.options
        video, output = check_file(video), Path(output)
        if validate_audio is not None:
            check_file(validate_audio)
            if opts.holdout == 0:
                raise StyleLipSyncError("--validate scores the held-out frames: use a holdout fraction > 0")
        if opts.lambda_reg > 0:
            if audio_pool is None and reg_data is None:
                raise StyleLipSyncError(f"no audio pool. {POOL_HELP}")
            if isinstance(audio_pool, str | Path) and not Path(audio_pool).exists():
                raise MediaError(f"{audio_pool}: audio pool not found; give a folder of audio or video files")
            if reg_data is not None and not (Path(reg_data) / "manifest.json").is_file():
                raise MediaError(
                    f"{reg_data}: not a preprocessed dataset (no manifest.json); run `stylelipsync "
                    f"preprocess --output {reg_data}` first or pass --audio-pool DIR"
                )
        run_dir = output / RUN_DIR_NAME
        check_output(self.base, output, run_dir, resume, overwrite)
        if self.lpips_weights is None and opts.lambda_lpips > 0:
            log.warning(
                "no --lpips-weights: adapting with the substitute perceptual loss 1 - MS-SSIM + mouth L1 "
                "instead of LPIPS (softer lips); pass --lpips-weights PATH for the paper's objective"
            )
        data_root = Path(data_dir) if data_dir is not None else run_dir / "data"
        data = prepare_target(video, data_root, opts.holdout, opts.max_frames, progress)
        pool, pool_source = self._pool(audio_pool, reg_data, video, data_root)
        base_dir = self._base_dir(data_root)
        config = self.train_config(data, base_dir, pool_source)
        task = AdaptationTask(config, pool)
        trainer = Trainer(task, run_dir, resume=resume, stop_after=stop_after, cpu=opts.cpu)
        start_step = trainer.step
        if trainer.is_main:
            (run_dir / "task.json").write_text(json.dumps({"task": "stylelipsync"}) + "\n")
        export = trainer.fit()
        result = AdaptResult(
            output=output,
            run_dir=run_dir,
            finished=export is not None,
            step=trainer.step,
            start_step=start_step,
            steps=opts.steps,
            train_frames=data.cut,
            heldout_frames=data.heldout_frames,
            pool_clips=len(pool) if opts.lambda_reg > 0 else 0,
            perceptual=task.perceptual.kind,
        )
        if export is None:
            result.seconds = time.perf_counter() - start_time
            return result
        if opts.preview_every and trainer.step % opts.preview_every:
            save_preview(task, run_dir / "images", trainer.step)
        info = self._info(data, base_dir, pool_source, len(pool), result)
        publish(export, output, info)
        if validate_audio is not None:
            try:
                speech = Path(validate_audio)
                result.metrics, result.preview = validate(
                    data, base_dir, output, speech, trainer.device, progress, opts.preview_seconds
                )
            except StyleLipSyncError as exc:
                raise type(exc)(
                    f"the adapted model is written to {output}, but --validate failed: {exc}"
                ) from exc
            info["validation"] = {
                "audio": str(Path(validate_audio).resolve()),
                "heldout_reconstruction": result.metrics,
            }
            write_json_atomic(output / ADAPT_INFO_FILE, info)
        result.seconds = time.perf_counter() - start_time
        return result

    # -- steps --------------------------------------------------------------------------------------------
    def _pool(
        self,
        audio_pool: str | Path | Sequence[str | Path] | None,
        reg_data: str | Path | None,
        video: Path,
        data_root: Path,
    ) -> tuple[list[ClipInfo], str]:
        """(pool clips, description) for R_sync; empty when λ_reg is 0."""
        if self.options.lambda_reg == 0:
            return [], ""
        if audio_pool is not None:
            files = collect_pool_files(audio_pool)
            source = (
                str(Path(audio_pool).resolve())
                if isinstance(audio_pool, str | Path)
                else f"{len(files)} files"
            )
            return prepare_audio_pool(files, data_root / "pool", exclude=[video]), source
        if reg_data is not None:
            return pool_from_dataset(reg_data, exclude=[video]), str(Path(reg_data).resolve())
        raise StyleLipSyncError(f"no audio pool. {POOL_HELP}")

    def _base_dir(self, data_root: Path) -> Path:
        """The base as a model directory (an official ``.pth`` is converted once into the work folder)."""
        if self.base.is_dir():
            if not (self.base / CONFIG_FILE).is_file():
                raise CheckpointError(
                    f"{self.base}: no {CONFIG_FILE}; give a model directory or an official .pth"
                )
            return self.base
        converted = data_root / "base_model"
        if not (converted / WEIGHTS_FILE).is_file():
            load_model(self.base, self.w_avg).save_pretrained(converted)
        return converted

    def train_config(self, data: TargetData, base_dir: Path, pool_source: str) -> StyleLipSyncTrainConfig:
        """The trainer configuration: preset ``adapt`` with these options."""
        opts = self.options
        per_clip = StyleLipSyncConfig.from_json(base_dir / CONFIG_FILE).mel_normalization == "per_clip"
        overrides: dict[str, Any] = {
            "init": str(base_dir.resolve()),
            "adapt": True,
            "syncnet": str(self.syncnet.resolve()) if self.syncnet is not None else "",
            "lpips_weights": str(self.lpips_weights.resolve()) if self.lpips_weights is not None else "",
            "lr": opts.lr,
            "lambda_l2": 0.0,
            "lambda_lpips": opts.lambda_lpips,
            "lambda_sync": opts.lambda_sync,
            "lambda_mouth": 0.0,
            "lambda_reg_sync": opts.lambda_reg,
            "reg_data": pool_source,
            "data": {
                "dataset": str(data.train_dir),
                "mel_norm": "clip" if per_clip else "none",
                "n_val_persons": 0,
                "val_persons": [],
                "flip": opts.flip,
                "color_jitter": 0.0,
            },
            "trainer": {
                "steps": opts.steps,
                "batch_size": opts.batch_size,
                "seed": opts.seed,
                "num_workers": opts.workers,
                "mixed_precision": opts.mixed_precision,
                "log_every": opts.log_every,
                "image_every": opts.preview_every,
                "val_every": 0,
                "checkpoint_every": opts.checkpoint_every,
                "keep_last": opts.keep_last,
                "torch_threads": opts.threads,
            },
        }
        return merge(StyleLipSyncTrainConfig.preset("adapt"), overrides)

    def _info(
        self, data: TargetData, base_dir: Path, pool_source: str, pool_clips: int, result: AdaptResult
    ) -> dict[str, Any]:
        """Contents of ``adapt.json``: what was adapted from what, how, and on which frames."""
        opts = self.options
        return {
            "stylelipsync_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "base": str(self.base.resolve()),
            "base_dir": str(base_dir.resolve()),
            "video": str(data.video.resolve()),
            "fps": FPS,
            "train_frames": [0, data.cut],
            "heldout_frames": [data.cut, data.num_frames],
            "steps": result.step,
            "batch_size": opts.batch_size,
            "optimizer": {"name": "adam", "lr": opts.lr, "betas": [0.9, 0.99]},
            "loss": {
                "perceptual": result.perceptual,
                "lambda_lpips": opts.lambda_lpips,
                "lambda_sync": opts.lambda_sync,
                "lambda_reg_sync": opts.lambda_reg,
                "l2": 0.0,
                "identity": 0.0,
            },
            "trained": "synthesis (decoder) only; encoders, SaMF gates, MaLS frozen; BatchNorm in eval mode",
            "syncnet": str(self.syncnet.resolve()) if self.syncnet is not None else None,
            "lpips_weights": str(self.lpips_weights.resolve()) if self.lpips_weights is not None else None,
            "audio_pool": {"source": pool_source, "clips": pool_clips},
            "flip": opts.flip,
            "seed": opts.seed,
            "run_dir": str(result.run_dir.resolve()),
        }


__all__ = ["SYNCNET_HELP", "AdaptOptions", "AdaptResult", "AdaptationPipeline", "default_syncnet"]
