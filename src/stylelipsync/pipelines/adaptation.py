"""Few-shot adaptation of a trained model to one person (spec §5): the engine of ``stylelipsync adapt``.

    pipe = AdaptationPipeline("models/base", syncnet="runs/syncnet/export", lpips_weights="vgg_lpips.pth")
    result = pipe("target.mp4", "models/alice", audio_pool="other_speakers/", validate_audio="speech.wav")
    print(result.summary())

Everything happens in a work folder inside the output (``PERSON_DIR/.adapt_run``), so ``resume=True``
continues an interrupted run from its last checkpoint:

1. the target video is preprocessed exactly like training data (``training.preprocess``: 256² crops,
   pose-aware masks, 25 fps, 16 kHz) and split in time: the last ``holdout`` fraction of its frames goes into
   a separate held-out clip that adaptation never reads, neither as target nor as reference frame;
2. the audio pool (other speakers' audio or video files, or the clips of a training dataset) becomes
   audio-only clips in the training mel format;
3. the shared Accelerate trainer tunes only the decoder (``StyleLipSyncTask`` with ``adapt: true``; encoders,
   SaMF gates and MaLS frozen, the model in eval mode so BatchNorm statistics cannot drift) on
   LPIPS(x̂, y) + λ_sync·L_sync(x̂, a) + λ_reg·R_sync, R_sync being the sync loss of the target's masked
   frames driven by the pool's audio; no ℓ2 and no identity loss (they cause flicker, spec §5);
4. the model is written to ``PERSON_DIR`` (``config.json``, ``model.safetensors``, ``training.json``,
   ``adapt.json``), each file through a temporary name and a rename, so a failure never leaves a half model;
5. optionally, reconstruction PSNR/SSIM on the held-out frames (base vs adapted model) and a preview video of
   the held-out part driven by new speech.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import default_collate

from stylelipsync import __version__
from stylelipsync.audio.normalization import normalize_mel
from stylelipsync.errors import CheckpointError, FaceNotFoundError, MediaError, OutputError, StyleLipSyncError
from stylelipsync.evaluation.image_quality import psnr, ssim
from stylelipsync.face.mask import keep_mask
from stylelipsync.media import VideoReader, VideoWriter, load_audio, probe
from stylelipsync.media.container import check_file
from stylelipsync.models import StyleLipSync, StyleLipSyncConfig
from stylelipsync.models.stylelipsync import CONFIG_FILE, WEIGHTS_FILE
from stylelipsync.pipelines.lipsync import LipSyncPipeline, default_checkpoint, load_model
from stylelipsync.pipelines.plan import CROP_SIZE
from stylelipsync.training.config import merge
from stylelipsync.training.dataset import ClipArrays, ClipInfo, LipSyncWindowDataset, read_manifest
from stylelipsync.training.preprocess import (
    AUDIO_EXTENSIONS,
    FPS,
    SAMPLE_RATE,
    VIDEO_EXTENSIONS,
    PreprocessOptions,
    preprocess,
    slice_clip,
    write_audio_clip,
    write_manifest,
)
from stylelipsync.training.train_stylelipsync import (
    TRAINING_INFO_FILE,
    StyleLipSyncTask,
    StyleLipSyncTrainConfig,
)
from stylelipsync.training.trainer import Batch, Trainer, image_grid, latest_checkpoint

log = logging.getLogger("stylelipsync.adapt")

RUN_DIR_NAME = ".adapt_run"
ADAPT_INFO_FILE = "adapt.json"
PREVIEW_FILE = "preview.mp4"
TARGET_CLIP = "target"
MIN_TRAIN_FRAMES = 15
MIN_HELDOUT_FRAMES = 5
MIN_POOL_FRAMES = 10
SYNCNET_HELP = (
    "adaptation needs the SyncNet expert for L_sync and R_sync: pass --syncnet DIR (a `stylelipsync "
    "train-syncnet` export, RUN/export, with config.json + model.safetensors), or reinstall the package to "
    "get the shipped expert back (stylelipsync/assets/syncnet). To tune on the perceptual loss alone (not "
    "recommended: the mouth overfits to the target clip), pass --lambda-sync 0 --lambda-reg 0."
)
POOL_HELP = (
    "R_sync needs other speakers' audio: pass --audio-pool DIR (a folder of audio or video files of other "
    "people talking) or --reg-data DATASET (a `stylelipsync preprocess` dataset), or --lambda-reg 0 to adapt "
    "without the regulariser."
)


def default_syncnet() -> Path:
    """Directory of the SyncNet expert shipped inside the package: the one the shipped demo model was trained
    with (`configs/demo_syncnet.yaml`, stage 3 of `scripts/train_demo_model.sh`)."""
    return Path(__file__).resolve().parents[1] / "assets" / "syncnet"


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


@dataclass(frozen=True)
class TargetData:
    """The preprocessed target: the training part (``train_dir``) and the held-out end (``heldout_dir``)."""

    video: Path
    root: Path
    train_dir: Path
    heldout_dir: Path | None
    cut: int
    """First held-out frame (25 fps frame index of the video)."""
    num_frames: int

    @property
    def heldout_frames(self) -> int:
        """Frames at the end of the video that adaptation never sees."""
        return self.num_frames - self.cut


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


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """Aligned PSNR/SSIM lines, one per model."""
    rows = [f"  {'model':<8} {'PSNR (dB)':>9} {'SSIM':>6} {'frames':>6}"]
    for name, m in metrics.items():
        rows.append(f"  {name:<8} {m['psnr']:>9.2f} {m['ssim']:>6.3f} {int(m['frames']):>6}")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------ data
def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def prepare_target(
    video: str | Path,
    data_dir: str | Path,
    holdout: float = 0.15,
    max_frames: int | None = None,
    progress: bool = True,
) -> TargetData:
    """Preprocess ``video`` into ``data_dir`` (skipped when already done) and split off its held-out end.

    ``data_dir/target`` holds the whole clip, ``data_dir/train`` frames [0, cut) and ``data_dir/heldout``
    frames [cut, T), each with the mel of its own audio only. A folder prepared from another video or with
    other settings is refused rather than silently mixed.
    """
    video = check_file(video)
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    inputs = {"video": str(video.resolve()), "size": CROP_SIZE, "max_frames": max_frames, "holdout": holdout}
    stamp = root / "inputs.json"
    if stamp.is_file():
        previous = json.loads(stamp.read_text())
        if previous != inputs:
            raise OutputError(
                f"{root}: was prepared from {previous.get('video')} (max_frames "
                f"{previous.get('max_frames')}, holdout {previous.get('holdout')}), not from these inputs; "
                "delete that folder or write the person model to another output folder"
            )
    _write_json_atomic(stamp, inputs)
    full_dir = root / "target"
    manifest = preprocess(
        video, full_dir, 1, PreprocessOptions(size=CROP_SIZE, max_frames=max_frames), progress=progress
    )
    if not manifest["clips"]:
        error = manifest["failures"][0]["error"] if manifest["failures"] else "no clip was written"
        cls = FaceNotFoundError if "face" in error.lower() else MediaError
        raise cls(
            f"{video}: cannot be used for adaptation ({error}); give a video of the person talking, face "
            "visible, with its own speech track"
        )
    clip = read_manifest(full_dir)[0]
    total = clip.num_frames
    held = max(MIN_HELDOUT_FRAMES, round(holdout * total)) if holdout > 0 else 0
    cut = total - held
    if cut < MIN_TRAIN_FRAMES:
        raise MediaError(
            f"{video}: only {total} frames at {FPS} fps ({total / FPS:.1f} s); adaptation needs at least "
            f"{(MIN_TRAIN_FRAMES + held) / FPS:.1f} s (10-60 s recommended). Give a longer video"
        )
    train_dir = root / "train"
    heldout_dir = root / "heldout" if held else None
    _write_split(clip, train_dir, 0, cut)
    if heldout_dir is not None:
        _write_split(clip, heldout_dir, cut, total)
    return TargetData(video, root, train_dir, heldout_dir, cut, total)


def _write_split(clip: ClipInfo, out_dir: Path, start: int, end: int) -> None:
    """One clip of frames [start, end) in its own dataset folder (skipped when complete)."""
    if (out_dir / "manifest.json").is_file() and (out_dir / "clips" / TARGET_CLIP / "meta.json").is_file():
        return
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    slice_clip(clip.path, out_dir, TARGET_CLIP, start, end)
    write_manifest(out_dir, CROP_SIZE, [])


def collect_pool_files(pool: str | Path | Sequence[str | Path]) -> list[Path]:
    """Audio and video files of an audio pool: a folder (searched recursively) or a list of files."""
    items = [pool] if isinstance(pool, str | Path) else list(pool)
    suffixes = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        elif item.is_file():
            files.append(item)
        else:
            raise MediaError(f"{item}: audio pool not found; give a folder of audio or video files")
    return files


def prepare_audio_pool(
    files: Sequence[str | Path], out_dir: str | Path, exclude: Sequence[str | Path] = ()
) -> list[ClipInfo]:
    """Audio-only clips (training mel format) of ``files``, cached in ``out_dir``; ``exclude`` is skipped.

    Files without audio or shorter than ``MIN_POOL_FRAMES`` frames are skipped with a warning; raises
    ``MediaError`` when none is usable.
    """
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    skip = {Path(p).resolve() for p in exclude}
    clips: list[ClipInfo] = []
    for f in map(Path, files):
        path = f.resolve()
        if path in skip:
            log.warning("audio pool: %s is the target video itself; skipped", f)
            continue
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
        clip_id = f"{''.join(c if c.isalnum() else '_' for c in f.stem)[:40]}-{digest}"
        meta_path = out / "clips" / clip_id / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
        else:
            try:
                if not probe(f).has_audio:
                    log.warning("audio pool: %s has no audio stream; skipped", f)
                    continue
                wave = load_audio(f, SAMPLE_RATE)
            except StyleLipSyncError as exc:
                log.warning("audio pool: %s skipped (%s)", f, exc)
                continue
            if len(wave) < MIN_POOL_FRAMES * SAMPLE_RATE // FPS:
                log.warning("audio pool: %s is shorter than %d frames; skipped", f, MIN_POOL_FRAMES)
                continue
            meta = write_audio_clip(out, clip_id, wave, f"pool:{clip_id}", str(path))
        clips.append(
            ClipInfo(clip_id, meta["person"], int(meta["num_frames"]), out / "clips" / clip_id, str(f))
        )
    if not clips:
        raise MediaError(
            f"no usable audio (at least {MIN_POOL_FRAMES / FPS:.1f} s) in the audio pool. {POOL_HELP}"
        )
    write_manifest(out, 0, [])
    return clips


def pool_from_dataset(dataset: str | Path, exclude: Sequence[str | Path] = ()) -> list[ClipInfo]:
    """The clips of a preprocessed training dataset as an audio pool, minus clips made from ``exclude``."""
    skip = {str(Path(p).resolve()) for p in exclude}
    clips = [c for c in read_manifest(dataset) if not c.source or str(Path(c.source).resolve()) not in skip]
    if not clips:
        raise MediaError(f"{dataset}: the dataset has no clip of another video. {POOL_HELP}")
    return clips


# ------------------------------------------------------------------------------------------------ task
class AdaptationTask(StyleLipSyncTask):
    """``StyleLipSyncTask`` in adaptation mode, with an explicit audio pool and preview grids.

    The preview grid (``images/preview_masked_own_other_truth-<step>.png``) has one column per fixed training
    window (8, spread over the clip) and one row each for the masked input, the output with the target's own
    audio, the output with pool audio (what R_sync keeps in sync) and the ground truth. Held-out frames are
    never used, not even for previews.
    """

    name = "adapt"

    def __init__(
        self, config: StyleLipSyncTrainConfig, pool: list[ClipInfo], preview_windows: int = 8
    ) -> None:
        if not (config.adapt and config.init):
            raise ValueError("AdaptationTask needs a config with adapt: true and init: MODEL_DIR")
        super().__init__(config)
        self.pool = pool
        self.preview_windows = preview_windows
        self._preview: Batch | None = None

    def train_dataset(self) -> LipSyncWindowDataset:
        pool = self.pool if self.config.lambda_reg_sync > 0 and self.pool else None
        return LipSyncWindowDataset(
            self.split()[0],
            self._data_config(),
            augment=True,
            outputs={"frames", "masked", "mouth", "ref"},
            audio_pool=pool,
        )

    def _preview_batch(self) -> Batch:
        if self._preview is None:
            ds = LipSyncWindowDataset(
                self.split()[0],
                self._data_config(),
                augment=False,
                outputs={"frames", "masked", "ref"},
                audio_pool=self.pool or None,
            )
            idx = np.linspace(0, len(ds) - 1, self.preview_windows).round().astype(int)
            self._preview = default_collate([ds[(int(i), 7919 + int(i))] for i in idx])
        return self._preview

    @torch.no_grad()
    def images(self, step: int) -> dict[str, torch.Tensor]:
        b = self.trainer.to_device(self._preview_batch())
        self.model.eval()
        c = b["masked"].shape[1] // 2
        own = self.model(b["masked"], self._generator_mel(b), b["ref"], noise_mode="const")
        rows = [b["masked"][:, c], own[:, c]]
        if "reg_mel" in b:
            reg = {"mel": b["reg_mel"], "mel_mean": b["reg_mel_mean"], "mel_std": b["reg_mel_std"]}
            other = self.model(b["masked"], self._generator_mel(reg), b["ref"], noise_mode="const")
            rows.append(other[:, c])
        rows.append(b["frames"][:, c])
        self._train_mode()
        return {"preview_masked_own_other_truth": torch.cat(rows, dim=0)}


# ------------------------------------------------------------------------------------------------ validation
def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 127.5 - 1.0)


@torch.no_grad()
def heldout_reconstruction(
    model: StyleLipSync, data: TargetData, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """PSNR/SSIM of the model's output on the held-out frames, driven by their own audio.

    Each held-out frame is masked as in training and decoded with the held-out audio; the identity reference
    is the first frame of the training part with a face (``generate`` also takes the first one). Scores are
    on the whole output crop at the model's resolution against the true crop, frames with a face only.
    """
    if data.heldout_dir is None:
        raise StyleLipSyncError("no held-out frames to validate on (holdout 0); use a holdout fraction > 0")
    res = model.config.resolution
    held = ClipArrays(read_manifest(data.heldout_dir)[0])
    frames = np.asarray(held.array("frames"))
    valid = np.asarray(held.array("valid"), dtype=bool)
    masks = np.asarray(held.array("masks"))
    masked = torch.stack(
        [_to_tensor(_resize(f * keep_mask(m)[..., None], res)) for f, m in zip(frames, masks, strict=True)]
    )
    mel = torch.from_numpy(np.stack([held.mel_window(t) for t in range(len(frames))]))
    if model.config.mel_normalization == "per_clip":
        mean, std = held.stats()
        mel = normalize_mel(mel, torch.from_numpy(mean), torch.from_numpy(std))
    train = ClipArrays(read_manifest(data.train_dir)[0])
    first = int(np.flatnonzero(np.asarray(train.array("valid"), dtype=bool))[0])
    reference = _to_tensor(_resize(np.asarray(train.array("frames")[first]).astype(np.float32), res))
    model = model.to(device)
    x_hat = model.infer(masked, mel, reference).clamp(-1, 1)
    out = ((x_hat + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    idx = np.flatnonzero(valid)
    truth = [_resize(frames[t], res) for t in idx]
    return {
        "psnr": float(np.mean([psnr(out[t], y) for t, y in zip(idx, truth, strict=True)])),
        "ssim": float(np.mean([ssim(out[t], y) for t, y in zip(idx, truth, strict=True)])),
        "frames": float(len(idx)),
    }


def write_heldout_video(data: TargetData, out: str | Path) -> Path:
    """The held-out end of the target video (original resolution, 25 fps, no audio) as an MP4."""
    out = Path(out)
    if out.is_file():
        return out
    with VideoReader(data.video, fps=FPS) as reader:
        writer: VideoWriter | None = None
        try:
            for frame in reader:
                if frame.index >= data.num_frames:
                    break
                if frame.index < data.cut:
                    continue
                if writer is None:
                    h, w = frame.image.shape[:2]
                    writer = VideoWriter(out, FPS, w, h, preset="veryfast", protect=[data.video])
                writer.write(frame.image)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    if writer is None:
        raise MediaError(f"{data.video}: the held-out frames could not be decoded again")
    writer.close()
    return out


def trim_audio(src: str | Path, out: str | Path, seconds: float) -> Path:
    """The first ``seconds`` of ``src`` (any audio or video file) as a 16 kHz mono WAV."""
    import soundfile as sf

    wave = load_audio(check_file(src), SAMPLE_RATE)[: int(seconds * SAMPLE_RATE)]
    if len(wave) < SAMPLE_RATE // FPS:
        raise MediaError(f"{src}: holds less than one video frame of audio; give a file with speech")
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.{secrets.token_hex(4)}.tmp.wav")
    sf.write(str(tmp), wave, SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------------------------ pipeline
def _save_preview(task: AdaptationTask, folder: Path, step: int) -> None:
    """The preview grid of the final step as PNG (the trainer writes the periodic ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in task.images(step).items():
        grid = image_grid(batch)
        rgb = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        cv2.imwrite(str(folder / f"{name}-{step:08d}.png"), rgb[:, :, ::-1])


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


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
        """Adapt to the person in ``video`` and write the model to ``output`` (see the module docstring).

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
        self._check_output(output, run_dir, resume, overwrite)
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
            _save_preview(task, run_dir / "images", trainer.step)
        info = self._info(data, base_dir, pool_source, len(pool), result)
        self._publish(export, output, info)
        if validate_audio is not None:
            try:
                result.metrics, result.preview = self.validate(
                    data, base_dir, output, Path(validate_audio), trainer.device, progress
                )
            except StyleLipSyncError as exc:
                raise type(exc)(
                    f"the adapted model is written to {output}, but --validate failed: {exc}"
                ) from exc
            info["validation"] = {
                "audio": str(Path(validate_audio).resolve()),
                "heldout_reconstruction": result.metrics,
            }
            _write_json_atomic(output / ADAPT_INFO_FILE, info)
        result.seconds = time.perf_counter() - start_time
        return result

    # -- steps --------------------------------------------------------------------------------------------
    def _check_output(self, output: Path, run_dir: Path, resume: bool, overwrite: bool) -> None:
        """Refuse to write over the base model, a file, a finished model or an earlier run by accident."""
        if output.exists() and not output.is_dir():
            raise OutputError(f"{output}: is a file; --output names a folder for the person model")
        if self.base.is_dir() and output.resolve() == self.base.resolve():
            raise OutputError(
                f"{output}: is the base model's folder; write the person model to another folder"
            )
        ckpt = latest_checkpoint(run_dir)
        if ckpt is not None and not resume:
            raise OutputError(
                f"{run_dir}: holds checkpoints of an earlier adaptation ({ckpt.name}); pass --resume to "
                "continue it, or delete that folder to start over"
            )
        if (output / WEIGHTS_FILE).is_file() and not (resume or overwrite):
            raise OutputError(
                f"{output}: already holds a model; pass --overwrite to replace it or --resume to continue "
                "its adaptation"
            )
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{output}: cannot create the output folder ({exc.strerror})") from exc

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

    @staticmethod
    def _publish(export: Path, output: Path, info: dict[str, Any]) -> None:
        """Copy the export into ``output`` file by file through temporary names, ``adapt.json`` last."""
        for name in (WEIGHTS_FILE, CONFIG_FILE, TRAINING_INFO_FILE):
            _copy_atomic(export / name, output / name)
        _write_json_atomic(output / ADAPT_INFO_FILE, info)

    def validate(
        self,
        data: TargetData,
        base_dir: Path,
        output: Path,
        audio: Path,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> tuple[dict[str, dict[str, float]], Path]:
        """Held-out PSNR/SSIM of the base and adapted models; ``output/preview.mp4`` driven by ``audio``."""
        adapted = StyleLipSync.from_pretrained(output)
        metrics = {
            "base": heldout_reconstruction(StyleLipSync.from_pretrained(base_dir), data, device),
            "adapted": heldout_reconstruction(adapted, data, device),
        }
        run_dir = output / RUN_DIR_NAME
        clip = write_heldout_video(data, data.root / "heldout.mp4")
        speech = trim_audio(audio, run_dir / "validate_audio.wav", self.options.preview_seconds)
        preview = output / PREVIEW_FILE
        LipSyncPipeline(adapted, device=device)(clip, speech, preview, overwrite=True, progress=progress)
        return metrics, preview


__all__ = [
    "ADAPT_INFO_FILE",
    "RUN_DIR_NAME",
    "AdaptOptions",
    "AdaptResult",
    "AdaptationPipeline",
    "AdaptationTask",
    "TargetData",
    "collect_pool_files",
    "heldout_reconstruction",
    "pool_from_dataset",
    "prepare_audio_pool",
    "prepare_target",
    "trim_audio",
    "write_heldout_video",
]
