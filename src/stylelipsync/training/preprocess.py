"""`stylelipsync preprocess`: talking-face videos → a training dataset directory.

Per video: frames resampled to 25 fps, audio to 16 kHz mono (a companion audio file when the manifest or
file list names one, else the video's own audio, else a same-stem audio file beside the video), the face
tracked with MediaPipe, square crops aligned on eyes and nose, pose-aware masks, crop-space landmarks, the
spec §2.1 log-mel and per-clip metadata. Layout (other code relies on it)::

    DATASET/manifest.json   {"version": 1, "size": S, "fps": 25, "clips": [{"id", "source", "person",
                             "num_frames", "status": "ok"}], "failures": [{"source", "error"}], ...counts}
    DATASET/clips/<id>/frames.npy     uint8 (T, S, S, 3) RGB crops
    DATASET/clips/<id>/masks.npy      uint8 (T, S, S) pose-aware mask 0/255 (before the §3.3 processing)
    DATASET/clips/<id>/landmarks.npy  float32 (T, 478, 3) landmarks in crop pixels (NaN where invalid)
    DATASET/clips/<id>/valid.npy      bool (T,)
    DATASET/clips/<id>/audio.npy      float32 16 kHz mono, sample 0 = frame 0, T·640 samples
    DATASET/clips/<id>/mel.npy        float32 (N_mel, 80) log-mel (N_mel = 4T + 1)
    DATASET/clips/<id>/meta.json      {fps, num_frames, person, source, size, audio_source,
                                       num_valid, mel_mean[80], mel_std[80]}

Each clip is written into ``clips/.<id>.tmp`` and renamed when complete, so an interrupted run leaves no
half-written clip, and a rerun skips every clip whose ``meta.json`` exists. A video that fails (corrupt, no
face, no audio) is recorded in ``failures`` and the run goes on.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm.auto import tqdm

from stylelipsync.errors import MediaError
from stylelipsync.formats import AUDIO_SUFFIXES, SAMPLE_RATE, VIDEO_SUFFIXES

log = logging.getLogger("stylelipsync.training.preprocess")

FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
MIN_VALID_FRAMES = 5
_COMPANION = re.compile(
    r"matching audio is (\S+?\.(?:" + "|".join(suffix[1:] for suffix in AUDIO_SUFFIXES) + "))", re.IGNORECASE
)
_VOX_ID = re.compile(r"^id\d+$")


@dataclass(frozen=True)
class SourceItem:
    """One input video: where its audio comes from, whose face it is, and the clip id to write."""

    video: Path
    id: str
    person: str
    audio: Path | None = None


@dataclass
class PreprocessOptions:
    """Per-clip processing settings."""

    size: int = 256
    max_frames: int | None = None
    scene_cut: bool = False
    scene_threshold: float = 0.5
    min_segment_frames: int = 25
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- sources
def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "clip"


def read_media_manifest(path: Path) -> dict[str, dict[str, str]]:
    """``talking_av`` rows of a shared-media MANIFEST.tsv by file name: person and companion audio name."""
    rows: dict[str, dict[str, str]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row.get("kind") != "talking_av" or not row.get("file"):
                continue
            match = _COMPANION.search(row.get("notes") or "")
            rows[row["file"]] = {
                "person": row.get("person_tag") or "",
                "audio": match.group(1) if match else "",
            }
    return rows


def _person_from_layout(video: Path, root: Path | None) -> str:
    """VoxCeleb2 ``id/video/clip.mp4`` → ``id``; HDTF or a plain folder → the file stem."""
    if root is not None:
        try:
            parts = video.relative_to(root).parts
        except ValueError:
            parts = video.parts
    else:
        parts = video.parts
    if len(parts) >= 3 and _VOX_ID.match(parts[-3]):
        return parts[-3]
    return video.stem


def _clip_id(video: Path, root: Path | None) -> str:
    if root is not None:
        try:
            rel = video.relative_to(root)
        except ValueError:
            rel = Path(video.name)
        parts = rel.with_suffix("").parts
        if len(parts) >= 3 and _VOX_ID.match(parts[-3]):
            return _safe_id("__".join(parts[-3:]))
    return _safe_id(video.stem)


def _sidecar_audio(video: Path) -> Path | None:
    for ext in AUDIO_SUFFIXES:
        candidate = video.with_suffix(ext)
        if candidate.is_file():
            return candidate
    return None


def collect_sources(input_path: str | Path, manifest: str | Path | None = None) -> list[SourceItem]:
    """Videos to process from a directory (recursive), one video file or a file list, with persons and audio.

    A file list has one video per line, optionally followed by a tab and an audio file and another tab and a
    person id; relative paths are relative to the list. With a shared-media ``manifest`` TSV only its
    ``talking_av`` rows are used, with their ``person_tag`` and companion audio.
    """
    src = Path(input_path)
    table = read_media_manifest(Path(manifest)) if manifest else None
    entries: list[tuple[Path, Path | None, str | None]] = []
    root: Path | None = None
    if src.is_dir():
        root = src
        videos = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        entries = [(v, None, None) for v in videos]
    elif src.is_file() and src.suffix.lower() in VIDEO_SUFFIXES:
        entries = [(src, None, None)]
    elif src.is_file():
        for line in src.read_text().splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = [c.strip() for c in line.split("\t")]
            video = Path(cols[0]) if Path(cols[0]).is_absolute() else src.parent / cols[0]
            audio = None
            if len(cols) > 1 and cols[1]:
                audio = Path(cols[1]) if Path(cols[1]).is_absolute() else src.parent / cols[1]
            person = cols[2] if len(cols) > 2 and cols[2] else None
            entries.append((video, audio, person))
    else:
        raise MediaError(f"{src}: no such directory or file list")

    items: list[SourceItem] = []
    for video, audio, person in entries:
        if table is not None:
            row = table.get(video.name)
            if row is None:
                continue
            if audio is None and row["audio"]:
                audio = video.parent / row["audio"]
            person = person or row["person"] or None
        items.append(
            SourceItem(video, _clip_id(video, root), person or _person_from_layout(video, root), audio)
        )
    seen: dict[str, int] = {}
    for item in items:
        seen[item.id] = seen.get(item.id, 0) + 1
    unique: list[SourceItem] = []
    for item in items:
        if seen[item.id] > 1:
            rel = item.video.relative_to(root) if root is not None else item.video
            item = SourceItem(
                item.video, _safe_id("__".join(rel.with_suffix("").parts[-3:])), item.person, item.audio
            )
        unique.append(item)
    return unique


# ---------------------------------------------------------------------------------------------- one clip
def _histogram(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, hist).flatten()


class SceneCutDetector:
    """Cuts where the HSV histogram of consecutive frames changes abruptly (Bhattacharyya distance)."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.cuts: list[int] = []
        self._prev: np.ndarray | None = None
        self._t = 0

    def observe(self, image: np.ndarray) -> None:
        """Feed the next frame."""
        hist = _histogram(image)
        if self._prev is not None:
            dist = cv2.compareHist(self._prev, hist, cv2.HISTCMP_BHATTACHARYYA)
            if dist > self.threshold:
                self.cuts.append(self._t)
        self._prev = hist
        self._t += 1

    def segments(self, num_frames: int, min_frames: int) -> list[tuple[int, int]]:
        """[start, end) frame ranges between cuts, at least ``min_frames`` long."""
        bounds = [0, *self.cuts, num_frames]
        return [(a, b) for a, b in itertools.pairwise(bounds) if b - a >= min_frames]


def _frames(video: Path, max_frames: int | None) -> Iterator[np.ndarray]:
    from stylelipsync.media.video_reader import VideoReader

    with VideoReader(video, fps=FPS) as reader:
        for frame in itertools.islice(reader, max_frames):
            yield frame.image


def _load_clip_audio(item: SourceItem) -> tuple[np.ndarray, Path]:
    from stylelipsync.media.audio_reader import load_audio
    from stylelipsync.media.probe import probe

    if item.audio is not None:
        if not item.audio.is_file():
            raise MediaError(f"{item.audio}: companion audio not found")
        return load_audio(item.audio, SAMPLE_RATE), item.audio
    if probe(item.video).has_audio:
        return load_audio(item.video, SAMPLE_RATE), item.video
    sidecar = _sidecar_audio(item.video)
    if sidecar is None:
        raise MediaError(f"{item.video}: no audio stream and no same-stem audio file beside it")
    return load_audio(sidecar, SAMPLE_RATE), sidecar


_DETECTOR: Any = None


def _detector() -> Any:
    """One MediaPipe detector per process (created on first use)."""
    global _DETECTOR
    if _DETECTOR is None:
        from stylelipsync.face.detect import FaceDetector

        _DETECTOR = FaceDetector()
    return _DETECTOR


def _write_clip(
    out_root: Path,
    clip_id: str,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
) -> None:
    """Write one clip atomically: ``clips/.<id>.tmp`` → ``clips/<id>``."""
    tmp = out_root / "clips" / f".{clip_id}.tmp"
    final = out_root / "clips" / clip_id
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def process_source(item: SourceItem, out_root: Path, options: PreprocessOptions) -> list[dict[str, Any]]:
    """Process one video into one clip (or one per scene with ``scene_cut``); returns manifest entries."""
    from stylelipsync.audio.mel import log_mel_spectrogram
    from stylelipsync.face.crop import crop_transforms, warp_landmarks, warp_to_crop
    from stylelipsync.face.geometry import FaceModel
    from stylelipsync.face.mask import PoseMasker
    from stylelipsync.face.track import track_face

    size = options.size
    audio, audio_source = _load_clip_audio(item)
    cuts = SceneCutDetector(options.scene_threshold) if options.scene_cut else None

    def observed(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for image in frames:
            if cuts is not None:
                cuts.observe(image)
            yield image

    track = track_face(observed(_frames(item.video, options.max_frames)), fps=FPS, detector=_detector())
    t_len = len(track)
    if t_len == 0:
        raise MediaError(f"{item.video}: no frames could be decoded")
    valid = np.asarray(track.valid, dtype=bool).copy()
    if valid.sum() < MIN_VALID_FRAMES:
        raise MediaError(f"{item.video}: a face was found in only {int(valid.sum())} of {t_len} frames")
    matrices = crop_transforms(track, size)
    frames = np.zeros((t_len, size, size, 3), np.uint8)
    smoothed = np.full((t_len, track.landmarks.shape[1], 3), np.nan, np.float32)
    landmarks = np.full_like(smoothed, np.nan)
    for t, image in enumerate(_frames(item.video, t_len)):
        if t >= t_len or not valid[t]:
            continue
        frames[t] = warp_to_crop(image, matrices[t], size)
        smoothed[t] = warp_landmarks(track.landmarks[t], matrices[t])
        raw = track.raw[t] if track.detected[t] else track.landmarks[t]
        landmarks[t] = warp_landmarks(raw, matrices[t])
    masker = PoseMasker(FaceModel.from_landmarks(smoothed, valid), size=size)
    masks = np.zeros((t_len, size, size), np.uint8)
    for t in np.flatnonzero(valid):
        masks[t] = masker(smoothed[t])

    n_samples = t_len * SAMPLES_PER_FRAME
    if len(audio) < n_samples:
        audio = np.concatenate([audio, np.zeros(n_samples - len(audio), np.float32)])
    audio = np.ascontiguousarray(audio[:n_samples], dtype=np.float32)

    segments = cuts.segments(t_len, options.min_segment_frames) if cuts is not None else [(0, t_len)]
    if not segments:
        raise MediaError(f"{item.video}: no scene of at least {options.min_segment_frames} frames")
    entries: list[dict[str, Any]] = []
    for k, (a, b) in enumerate(segments):
        clip_id = item.id if cuts is None else f"{item.id}-s{k:02d}"
        seg_valid = valid[a:b]
        if seg_valid.sum() < MIN_VALID_FRAMES:
            continue
        seg_audio = audio[a * SAMPLES_PER_FRAME : b * SAMPLES_PER_FRAME]
        mel = log_mel_spectrogram(seg_audio).numpy().astype(np.float32)
        meta = {
            "fps": FPS,
            "num_frames": b - a,
            "person": item.person,
            "source": str(item.video),
            "size": size,
            "audio_source": str(audio_source),
            "first_frame": a,
            "num_valid": int(seg_valid.sum()),
            **_mel_meta(mel),
        }
        _write_clip(
            out_root,
            clip_id,
            {
                "frames": frames[a:b],
                "masks": masks[a:b],
                "landmarks": landmarks[a:b],
                "valid": seg_valid,
                "audio": seg_audio,
                "mel": mel,
            },
            meta,
        )
        entries.append(_entry(clip_id, meta))
    if cuts is not None:
        marker = out_root / "clips" / f".{item.id}.segments.json"
        marker.write_text(json.dumps([e["id"] for e in entries]) + "\n")
    return entries


def _entry(clip_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": clip_id,
        "source": meta["source"],
        "person": meta["person"],
        "num_frames": int(meta["num_frames"]),
        "status": "ok",
    }


def _mel_meta(mel: np.ndarray) -> dict[str, list[float]]:
    """Per-band mel statistics as stored in ``meta.json``."""
    mean = mel.mean(axis=0).astype(np.float64)
    std = np.maximum(mel.std(axis=0), 1e-3).astype(np.float64)
    return {"mel_mean": [round(float(v), 6) for v in mean], "mel_std": [round(float(v), 6) for v in std]}


def slice_clip(src: Path, out_root: Path, clip_id: str, start: int, end: int) -> dict[str, Any]:
    """Write frames [start, end) of the processed clip ``src`` as clip ``clip_id`` of ``out_root``.

    The log-mel and its statistics are recomputed from the slice's own audio, as for scene-cut segments, so
    nothing outside the range leaks into the new clip (adaptation holds out the end of the target video this
    way). Returns the clip's manifest entry; call ``write_manifest`` afterwards.
    """
    from stylelipsync.audio.mel import log_mel_spectrogram

    src = Path(src)
    meta = json.loads((src / "meta.json").read_text())
    total = int(meta["num_frames"])
    if not 0 <= start < end <= total:
        raise ValueError(f"{src}: frame range [{start}, {end}) is outside the clip's {total} frames")
    arrays = {
        name: np.asarray(np.load(src / f"{name}.npy", mmap_mode="r")[start:end])
        for name in ("frames", "masks", "landmarks", "valid")
    }
    audio = np.load(src / "audio.npy")[start * SAMPLES_PER_FRAME : end * SAMPLES_PER_FRAME]
    mel = log_mel_spectrogram(audio).numpy().astype(np.float32)
    new_meta = {
        **meta,
        "num_frames": end - start,
        "first_frame": int(meta.get("first_frame", 0)) + start,
        "num_valid": int(arrays["valid"].sum()),
        **_mel_meta(mel),
    }
    _write_clip(Path(out_root), clip_id, {**arrays, "audio": audio, "mel": mel}, new_meta)
    return _entry(clip_id, new_meta)


def write_audio_clip(
    out_root: Path, clip_id: str, audio: np.ndarray, person: str, source: str
) -> dict[str, Any]:
    """Write an audio-only clip (``audio.npy``, ``mel.npy``, ``meta.json``) for use as an audio pool.

    ``audio`` is 16 kHz mono; it is cut to whole 25 fps frames. Such clips have no frames: they can only
    drive the generator (adaptation's sync regulariser R_sync reads their mel windows). Returns the meta.
    """
    from stylelipsync.audio.mel import log_mel_spectrogram

    num_frames = len(audio) // SAMPLES_PER_FRAME
    audio = np.ascontiguousarray(audio[: num_frames * SAMPLES_PER_FRAME], dtype=np.float32)
    mel = log_mel_spectrogram(audio).numpy().astype(np.float32)
    meta: dict[str, Any] = {
        "fps": FPS,
        "num_frames": num_frames,
        "person": person,
        "source": source,
        "audio_source": source,
        "audio_only": True,
        **_mel_meta(mel),
    }
    _write_clip(Path(out_root), clip_id, {"audio": audio, "mel": mel}, meta)
    return meta


def is_done(item: SourceItem, out_root: Path, scene_cut: bool) -> bool:
    """True when the source's clip(s) are complete on disk (resume skips it)."""
    clips = out_root / "clips"
    if not scene_cut:
        return (clips / item.id / "meta.json").is_file()
    marker = clips / f".{item.id}.segments.json"
    if not marker.is_file():
        return False
    return all((clips / cid / "meta.json").is_file() for cid in json.loads(marker.read_text()))


def _work(
    args: tuple[SourceItem, Path, PreprocessOptions],
) -> tuple[str, list[dict[str, Any]] | None, str | None]:
    item, out_root, options = args
    try:
        return str(item.video), process_source(item, out_root, options), None
    except Exception as exc:
        shutil.rmtree(out_root / "clips" / f".{item.id}.tmp", ignore_errors=True)
        return str(item.video), None, f"{type(exc).__name__}: {exc}"


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cv2.setNumThreads(1)


def write_manifest(out_root: Path, size: int, failures: list[dict[str, str]]) -> dict[str, Any]:
    """Rebuild ``manifest.json`` from every finished clip on disk plus this run's failures."""
    clips = []
    for meta_path in sorted((out_root / "clips").glob("*/meta.json")):
        if meta_path.parent.name.startswith("."):
            continue
        clips.append(_entry(meta_path.parent.name, json.loads(meta_path.read_text())))
    manifest = {
        "version": 1,
        "size": size,
        "fps": FPS,
        "num_clips": len(clips),
        "num_frames": sum(c["num_frames"] for c in clips),
        "num_persons": len({c["person"] for c in clips}),
        "num_failures": len(failures),
        "clips": clips,
        "failures": failures,
    }
    tmp = out_root / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out_root / "manifest.json")
    return manifest


def preprocess(
    input_path: str | Path,
    output: str | Path,
    workers: int = 1,
    options: PreprocessOptions | None = None,
    manifest: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Process every source not yet done; returns the written manifest."""
    options = options or PreprocessOptions()
    out_root = Path(output)
    (out_root / "clips").mkdir(parents=True, exist_ok=True)
    meta_path = out_root / "manifest.json"
    if meta_path.is_file():
        previous = json.loads(meta_path.read_text())
        if int(previous.get("size", options.size)) != options.size:
            raise MediaError(
                f"{out_root} holds a dataset at size {previous['size']}, not {options.size}: "
                "use another --output"
            )
    items = collect_sources(input_path, manifest)
    todo = [it for it in items if not is_done(it, out_root, options.scene_cut)]
    if progress:
        log.info(
            "%d source(s), %d already done, %d to process", len(items), len(items) - len(todo), len(todo)
        )
    failures: list[dict[str, str]] = []
    bar = tqdm(total=len(todo), desc="preprocess", unit="clip", disable=not progress, dynamic_ncols=True)
    jobs = [(it, out_root, options) for it in todo]
    if workers <= 1:
        results: Iterable[tuple[str, list[dict[str, Any]] | None, str | None]] = (_work(j) for j in jobs)
        for source, _entries, error in results:
            if error is not None:
                failures.append({"source": source, "error": error})
            bar.update(1)
            bar.set_postfix(failed=len(failures))
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = [pool.submit(_work, j) for j in jobs]
            for fut in as_completed(futures):
                source, _entries, error = fut.result()
                if error is not None:
                    failures.append({"source": source, "error": error})
                bar.update(1)
                bar.set_postfix(failed=len(failures))
    bar.close()
    failures.sort(key=lambda f: f["source"])
    return write_manifest(out_root, options.size, failures)
