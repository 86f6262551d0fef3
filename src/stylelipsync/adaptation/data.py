"""The person's data for adaptation: the target video split in time, and the audio pool of other speakers.

``prepare_target`` preprocesses the target exactly like training data (``training.preprocess``: 256² crops,
pose-aware masks, 25 fps, 16 kHz) and splits it: the last ``holdout`` fraction of its frames goes into a
separate held-out clip that adaptation never reads, neither as target nor as reference frame.
``prepare_audio_pool`` / ``pool_from_dataset`` turn other speakers' audio or video files, or the clips of a
training dataset, into audio-only clips in the training mel format: the audio of the sync regulariser R_sync.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stylelipsync.adaptation.output import write_json_atomic
from stylelipsync.errors import FaceNotFoundError, MediaError, OutputError, StyleLipSyncError
from stylelipsync.formats import SAMPLE_RATE, SPEECH_SOURCE_SUFFIXES
from stylelipsync.media import load_audio, probe
from stylelipsync.media.container import check_file
from stylelipsync.pipelines.plan import CROP_SIZE
from stylelipsync.training.dataset import ClipInfo, read_manifest
from stylelipsync.training.preprocess import (
    FPS,
    PreprocessOptions,
    preprocess,
    slice_clip,
    write_audio_clip,
    write_manifest,
)

log = logging.getLogger("stylelipsync.adapt")

TARGET_CLIP = "target"
MIN_TRAIN_FRAMES = 15
MIN_HELDOUT_FRAMES = 5
MIN_POOL_FRAMES = 10
POOL_HELP = (
    "R_sync needs other speakers' audio: pass --audio-pool DIR (a folder of audio or video files of other "
    "people talking) or --reg-data DATASET (a `stylelipsync preprocess` dataset), or --lambda-reg 0 to adapt "
    "without the regulariser."
)


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
    write_json_atomic(stamp, inputs)
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
    suffixes = SPEECH_SOURCE_SUFFIXES
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


__all__ = [
    "POOL_HELP",
    "TargetData",
    "collect_pool_files",
    "pool_from_dataset",
    "prepare_audio_pool",
    "prepare_target",
]
