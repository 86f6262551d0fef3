"""Evaluate generated videos (against references and driving audio): the engine of `stylelipsync evaluate`.

One `Job` = one generated video, optionally its reference (source) video or image, the driving audio (default:
the generated file's own audio track), a silence-driven version for the leak test and, when the driving audio
comes from a talking video, that video (the speaker's real mouth is then the reference for the mouth motion).
`Evaluator` loads each network once and computes the requested metric families per job; a family whose
weights were not given is reported as unavailable with the reason, never estimated some other way. Set-level
metrics (FID) gather features over all jobs and are computed once by `Evaluator.finish`.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylelipsync.audio import frame_energy
from stylelipsync.errors import MediaError, StyleLipSyncError
from stylelipsync.evaluation import DEFAULT_METRICS, METRICS
from stylelipsync.evaluation.audio_to_mouth import AudioToMouth, zscore
from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.fid import FeatureStats, FewSamplesWarning, fid
from stylelipsync.evaluation.identity import ARCFACE_HELP, ArcFaceEmbedder, DlibEmbedder, cosine, load_arcface
from stylelipsync.evaluation.image_quality import LPIPS_HELP, LPIPSMetric, match_size, psnr, ssim
from stylelipsync.evaluation.inception import FEATURE_DIM, FID_HELP, FIDInceptionV3, load_fid_inception
from stylelipsync.evaluation.jitter import mouth_jitter
from stylelipsync.evaluation.lip_distance import lmd
from stylelipsync.evaluation.lse import lse_score
from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.evaluation.offline_sync import energy_sync, lagged_correlation, predicted_sync
from stylelipsync.evaluation.sharpness import video_sharpness
from stylelipsync.evaluation.silence_leak import mouth_motion, silence_leak
from stylelipsync.evaluation.syncnet_v2 import WEIGHTS_HELP, load_syncnet_v2
from stylelipsync.face.crop import crop_transform, warp_to_crop
from stylelipsync.face.track import FaceTrack
from stylelipsync.media import VideoReader, load_audio, probe
from stylelipsync.media.formats import IMAGE_SUFFIXES, SAMPLE_RATE, SPEECH_SOURCE_SUFFIXES, VIDEO_SUFFIXES

FID_CROP_SIZE = 256  # the face crop of the generator (face.crop framing); Inception resizes it to 299²
FID_BATCH = 16
# Columns of each family, in table order.
COLUMNS = {
    "lse": ("lse_d", "lse_c", "av_offset"),
    "sync": ("sync_energy", "sync_energy_lag", "sync_pred", "sync_pred_lag", "mouth_std"),
    "csim": ("csim_dlib", "csim_arcface"),
    "psnr": ("psnr",),
    "ssim": ("ssim",),
    "lpips": ("lpips",),
    "lmd": ("lmd",),
    "sharpness": ("mouth_sharpness",),
    "jitter": ("mouth_jitter", "mouth_motion"),
    "fid": ("fid",),
    "leak": ("leak_std_silent", "leak_std_speech", "leak_ratio"),
    "speaker": ("sync_speaker", "sync_speaker_lag"),
}
INTEGER_COLUMNS = {"av_offset", "sync_energy_lag", "sync_pred_lag", "sync_speaker_lag"}
SPEAKER_MAX_LAG = 2
"""Lag search of ``sync_speaker`` in frames: both mouths follow the same audio, no audio delay to absorb."""
SET_ROW = "all videos"


@dataclass
class EvalConfig:
    """What to compute and with which weights.

    `max_id_frames` caps the frames used for CSIM and LPIPS; `frame_step` thins PSNR/SSIM, mouth sharpness and
    FID.
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    syncnet_weights: Path | None = None
    lse_mode: str = "wild"
    lse_resize: bool = True
    arcface_weights: Path | None = None
    arcface_arch: str = "r100"
    lpips_weights: Path | None = None
    fid_weights: Path | None = None
    cache_dir: Path | None = None
    max_id_frames: int = 50
    frame_step: int = 1
    device: str = "cpu"


@dataclass
class Job:
    """One generated video and what it is compared with."""

    name: str
    generated: Path
    reference: Path | None = None
    audio: Path | None = None
    silent: Path | None = None
    speaker: Path | None = None
    """A video of the person speaking the driving audio, in sync with it (adds ``sync_speaker``)."""


@dataclass
class VideoResult:
    """Metric values of one job (None = not computed), notes, and per-frame curves for plotting."""

    name: str
    generated: str
    reference: str | None
    audio: str | None
    values: dict[str, float | int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict without the per-frame curves (NaN → null)."""
        out = asdict(self)
        out.pop("curves")
        out["values"] = {k: _finite(v) for k, v in self.values.items()}
        return out


@dataclass
class SetResult:
    """Metrics computed once over all videos (FID), with notes on how they were obtained or why not."""

    values: dict[str, float | int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (NaN → null)."""
        return {"values": {k: _finite(v) for k, v in self.values.items()}, "notes": list(self.notes)}


def _finite(value: float | int | None) -> float | int | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


# ------------------------------------------------------------------------------------------------ inputs
def collect_files(items: Sequence[str | Path], suffixes: Sequence[str]) -> list[Path]:
    """Files named directly, plus the files with one of `suffixes` inside named directories (sorted)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
        elif p.is_file():
            out.append(p)
        else:
            raise MediaError(f"{p}: no such file or directory")
    return out


def _match(generated: list[Path], others: list[Path], what: str) -> list[Path | None]:
    """Pair each generated file with one of `others`: none, the single one, same stem, or same position."""
    if not others:
        return [None] * len(generated)
    if len(others) == 1:
        return [others[0]] * len(generated)
    by_stem = {p.stem: p for p in others}
    if all(g.stem in by_stem for g in generated):
        return [by_stem[g.stem] for g in generated]
    if len(others) == len(generated):
        return list(others)
    raise MediaError(
        f"cannot pair {len(generated)} generated videos with {len(others)} {what} files: give one {what}, "
        "as many as generated videos (same order), or files with the same names"
    )


def make_jobs(
    generated: Sequence[str | Path],
    reference: Sequence[str | Path] = (),
    audio: Sequence[str | Path] = (),
    silent: Sequence[str | Path] = (),
    speaker: Sequence[str | Path] = (),
) -> list[Job]:
    """Jobs from CLI-style lists of files or directories."""
    gens = collect_files(generated, VIDEO_SUFFIXES)
    if not gens:
        raise MediaError("no generated video found (looked for " + ", ".join(VIDEO_SUFFIXES) + ")")
    refs = _match(gens, collect_files(reference, (*VIDEO_SUFFIXES, *IMAGE_SUFFIXES)), "reference")
    auds = _match(gens, collect_files(audio, SPEECH_SOURCE_SUFFIXES), "audio")
    sils = _match(gens, collect_files(silent, VIDEO_SUFFIXES), "silence-driven")
    spks = _match(gens, collect_files(speaker, VIDEO_SUFFIXES), "speaker video")
    names = [g.stem for g in gens]
    if len(set(names)) < len(names):
        names = [str(g) for g in gens]
    rows = zip(names, gens, refs, auds, sils, spks, strict=True)
    return [Job(n, g, r, a, s, k) for n, g, r, a, s, k in rows]


# ------------------------------------------------------------------------------------------------ engine
class Evaluator:
    """Loads the networks the requested metrics need once; `evaluate(job)` scores one video."""

    def __init__(self, config: EvalConfig) -> None:
        unknown = set(config.metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")
        self.config = config
        self.unavailable: dict[str, str] = {}
        metrics = set(config.metrics)
        self.syncnet = None
        if "lse" in metrics:
            if config.syncnet_weights is None:
                self.unavailable["lse"] = "no --syncnet-weights given. " + WEIGHTS_HELP
            else:
                self.syncnet = load_syncnet_v2(config.syncnet_weights, config.device)
        self.embedders: list[Any] = []
        if "csim" in metrics:
            self.embedders.append(DlibEmbedder())
            if config.arcface_weights is not None:
                arch = config.arcface_arch if config.arcface_arch in ("r50", "r100") else "r100"
                self.embedders.append(ArcFaceEmbedder(load_arcface(config.arcface_weights, arch)))  # type: ignore[arg-type]
            else:
                self.unavailable["csim_arcface"] = (
                    "no --arcface-weights given (csim_dlib reported). " + ARCFACE_HELP
                )
        self.lpips: LPIPSMetric | None = None
        if "lpips" in metrics:
            if config.lpips_weights is None:
                self.unavailable["lpips"] = "no --lpips-weights given. " + LPIPS_HELP
            else:
                self.lpips = LPIPSMetric(config.lpips_weights)
        self.inception: FIDInceptionV3 | None = None
        self.fid_generated = FeatureStats(FEATURE_DIM)
        self.fid_reference = FeatureStats(FEATURE_DIM)
        self._fid_references: set[Path] = set()
        if "fid" in metrics:
            if config.fid_weights is None:
                self.unavailable["fid"] = "no --fid-weights given. " + FID_HELP
            else:
                self.inception = load_fid_inception(config.fid_weights, config.device)
        self._job_tracks: dict[Path, FaceTrack] = {}
        self._speaker_mouths: dict[tuple[Path, float], np.ndarray] = {}
        self.mouth_model = AudioToMouth.default() if "sync" in metrics else None

    def columns(self, results: Sequence[VideoResult] = ()) -> list[str]:
        """Value columns in table order: requested families, plus the leak columns if any job had them."""
        families = [m for m in METRICS if m in self.config.metrics]
        if any("leak_ratio" in r.values or "leak_std_silent" in r.values for r in results):
            families.append("leak")
        if any("sync_speaker" in r.values for r in results):
            families.append("speaker")
        cols = [c for fam in families for c in COLUMNS[fam]]
        if "csim_arcface" in self.unavailable:
            cols.remove("csim_arcface")
        return cols

    def _track(self, path: Path) -> FaceTrack:
        """Face track of `path`, computed once per job (several metric families share it)."""
        if path not in self._job_tracks:
            self._job_tracks[path] = track_video(path, cache_dir=self.config.cache_dir)
        return self._job_tracks[path]

    def evaluate(self, job: Job) -> VideoResult:
        """All requested metrics of one job; a failing family is recorded as a note, not raised."""
        result = VideoResult(job.name, str(job.generated), _str(job.reference), _str(job.audio))
        self._job_tracks = {}
        metrics = set(self.config.metrics)
        audio_src = job.audio if job.audio is not None else job.generated
        has_audio = job.audio is not None or probe(job.generated).has_audio
        if not has_audio and metrics & {"lse", "sync"}:
            result.notes.append(
                "no audio (generated file has no audio track and no --audio): sync/LSE skipped"
            )
        track: FaceTrack | None = None
        if (
            metrics & {"sync", "lmd", "csim", "sharpness", "jitter"}
            or job.speaker is not None
            or self.inception is not None
            or (self.syncnet is not None and self.config.lse_mode == "wild")
        ):
            track = self._track(job.generated)
        if "sync" in metrics and has_audio and track is not None:
            self._sync(result, track, audio_src)
        if self.syncnet is not None and has_audio:
            self._lse(result, job.generated, audio_src, track)
        if job.speaker is not None and track is not None:
            self._speaker_sync(result, track, job.speaker)
        reference_metrics = metrics & {"csim", "psnr", "ssim", "lpips", "lmd"}
        if reference_metrics and job.reference is None:
            result.notes.append("no reference: " + ", ".join(sorted(reference_metrics)) + " skipped")
        elif reference_metrics and job.reference is not None:
            self._reference(result, job, track)
        if job.silent is not None:
            leak = silence_leak(
                self._track(job.silent), track if track is not None else self._track(job.generated)
            )
            result.values.update(
                leak_std_silent=leak.silent_std, leak_std_speech=leak.speech_std, leak_ratio=leak.ratio
            )
        if "sharpness" in metrics and track is not None:
            self._sharpness(result, job.generated, track)
        if "jitter" in metrics and track is not None:
            self._jitter(result, track)
        if self.inception is not None and track is not None:
            self._fid_features(result, job, track)
        return result

    def _sharpness(self, result: VideoResult, path: Path, track: FaceTrack) -> None:
        """Median mouth sharpness of the generated video over every `frame_step`-th frame with a face."""
        valid = track.valid & track.detected  # raw landmarks exist only where FaceMesh found the face
        with VideoReader(path) as reader:
            frames = ((frame.index, frame.image) for frame in reader)
            sharp = video_sharpness(frames, track.raw, valid, self.config.frame_step)
        result.values["mouth_sharpness"] = sharp.value if sharp.used else None
        if not sharp.used:
            result.notes.append("mouth sharpness: no frame with a face")
        elif sharp.used < sharp.considered:
            missing = sharp.considered - sharp.used
            result.notes.append(
                f"mouth sharpness: {missing} of {sharp.considered} frames without a face left out"
            )

    def _jitter(self, result: VideoResult, track: FaceTrack) -> None:
        """Median frame-to-frame mouth jitter and std of the mouth opening, from the raw landmarks."""
        jitter = mouth_jitter(track.raw, track.detected)
        motion = mouth_motion(track)
        result.values.update(
            mouth_jitter=jitter if math.isfinite(jitter) else None,
            mouth_motion=motion if math.isfinite(motion) else None,
        )
        if not math.isfinite(jitter):
            result.notes.append("mouth jitter: fewer than 3 consecutive frames with a face")

    def _fid_features(self, result: VideoResult, job: Job, track: FaceTrack) -> None:
        """Add the job's face-crop features to the generated set, and to the reference set once per file."""
        used, total = self._add_crops(job.generated, track, self.fid_generated)
        if used < total:
            result.notes.append(f"FID: {total - used} of {total} generated frames without a face left out")
        if job.reference is None:
            return
        key = job.reference.resolve()
        if key in self._fid_references:
            return
        self._fid_references.add(key)
        used, total = self._add_crops(job.reference, self._track(job.reference), self.fid_reference)
        if used < total:
            result.notes.append(f"FID: {total - used} of {total} reference frames without a face left out")

    def _add_crops(self, path: Path, track: FaceTrack, stats: FeatureStats) -> tuple[int, int]:
        """Features of the face crops of every `frame_step`-th frame into `stats`: (used, considered)."""
        assert self.inception is not None
        batch: list[np.ndarray] = []
        used = total = 0
        for frame in VideoReader(path):
            t = frame.index
            if t % self.config.frame_step:
                continue
            total += 1
            if t >= len(track) or not track.valid[t]:
                continue
            matrix = crop_transform(track.landmarks[t], FID_CROP_SIZE)
            batch.append(warp_to_crop(frame.image, matrix, FID_CROP_SIZE))
            used += 1
            if len(batch) == FID_BATCH:
                stats.add(self.inception.features(batch))
                batch = []
        if batch:
            stats.add(self.inception.features(batch))
        return used, total

    def finish(self) -> SetResult:
        """Set-level metrics of the jobs evaluated so far: FID, all generated vs all reference face crops."""
        out = SetResult()
        if self.inception is None:
            return out
        gen, ref = self.fid_generated, self.fid_reference
        out.values.update(fid=None, fid_generated_frames=gen.n, fid_reference_frames=ref.n)
        if not self._fid_references:
            out.notes.append("FID: no reference given (--reference): skipped")
            return out
        if gen.n < 2 or ref.n < 2:
            out.notes.append(
                f"FID: needs at least 2 face crops in each set, got {gen.n} generated and {ref.n} reference: "
                "skipped"
            )
            return out
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FewSamplesWarning)
            try:
                out.values["fid"] = fid(gen, ref)
            except ValueError as exc:
                out.notes.append(f"FID failed: {exc}")
        for w in caught:
            if issubclass(w.category, FewSamplesWarning):
                out.notes.append(f"FID: {w.message}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return out

    def _sync(self, result: VideoResult, track: FaceTrack, audio: Path) -> None:
        mouth = mouth_opening(track.raw, track.detected)
        wave = load_audio(audio, SAMPLE_RATE)
        a = energy_sync(mouth, wave, SAMPLE_RATE, track.fps)
        b = predicted_sync(mouth, wave, SAMPLE_RATE, track.fps, self.mouth_model)
        result.values.update(
            sync_energy=a.correlation,
            sync_energy_lag=a.lag,
            sync_pred=b.correlation,
            sync_pred_lag=b.lag,
            mouth_std=float(np.nanstd(mouth)),
        )
        assert self.mouth_model is not None
        result.curves.update(
            mouth=zscore(mouth),
            energy=zscore(frame_energy(wave, SAMPLE_RATE, len(mouth), track.fps)),
            predicted=zscore(self.mouth_model.predict(wave, SAMPLE_RATE, len(mouth), track.fps)),
            fps=np.asarray([track.fps]),
        )

    def _speaker_sync(self, result: VideoResult, track: FaceTrack, speaker: Path) -> None:
        """Mouth opening vs the real mouth opening of the person speaking the driving audio.

        No audio model is involved, so a generator cannot score by rendering what such a model predicts
        (the circularity of ``sync_pred`` when the generator's audio encoder was fitted to the same target).
        The speaker video is tracked at the generated video's frame rate so that frames line up, once per
        run and rate: one speaker video commonly drives every generated video.
        """
        key = (speaker, track.fps)
        if key not in self._speaker_mouths:
            speaker_track = track_video(speaker, fps=track.fps, cache_dir=self.config.cache_dir)
            self._speaker_mouths[key] = mouth_opening(speaker_track.raw, speaker_track.detected)
        best = lagged_correlation(
            mouth_opening(track.raw, track.detected), self._speaker_mouths[key], max_lag=SPEAKER_MAX_LAG
        )
        result.values.update(sync_speaker=best.correlation, sync_speaker_lag=best.lag)

    def _lse(self, result: VideoResult, video: Path, audio: Path, track: FaceTrack | None) -> None:
        assert self.syncnet is not None
        info = probe(video)
        native25 = track is not None and abs(info.fps - 25.0) < 0.01 and not info.is_vfr
        try:
            score = lse_score(
                self.syncnet,
                video,
                audio,
                mode=self.config.lse_mode,  # type: ignore[arg-type]
                resize=self.config.lse_resize,
                track=track if native25 else None,
                cache_dir=self.config.cache_dir,
            )
        except StyleLipSyncError as exc:
            result.notes.append(f"LSE failed: {exc}")
            return
        result.values.update(lse_d=score.lse_d, lse_c=score.lse_c, av_offset=score.av_offset)
        result.notes += [f"LSE: {n}" for n in score.notes]
        result.curves["lse_conf"] = score.frame_conf

    def _reference(self, result: VideoResult, job: Job, track: FaceTrack | None) -> None:
        assert job.reference is not None
        metrics = set(self.config.metrics)
        ref_is_image = job.reference.suffix.lower() in IMAGE_SUFFIXES
        ref_track = self._track(job.reference) if metrics & {"csim", "lmd"} else None
        if ref_is_image and metrics & {"psnr", "ssim", "lpips", "lmd"}:
            result.notes.append("reference is an image: only CSIM is computed against it")
        if "lmd" in metrics and not ref_is_image and track is not None and ref_track is not None:
            if abs(track.fps - ref_track.fps) > 0.01:
                result.notes.append(
                    f"LMD: frame rates differ ({track.fps:g} vs {ref_track.fps:g}); frames paired by index"
                )
            result.values["lmd"] = lmd(track.raw, ref_track.raw)
        pixel: list[str] = [] if ref_is_image else [m for m in ("psnr", "ssim") if m in metrics]
        if not (pixel or self.embedders or (self.lpips is not None and not ref_is_image)):
            return
        self._frame_pass(result, job, track, ref_track, pixel, ref_is_image)

    def _frame_pass(
        self,
        result: VideoResult,
        job: Job,
        track: FaceTrack | None,
        ref_track: FaceTrack | None,
        pixel: list[str],
        ref_is_image: bool,
    ) -> None:
        """One decode of both videos for PSNR/SSIM (every `frame_step`-th frame) and CSIM/LPIPS (sampled)."""
        assert job.reference is not None
        gen_reader = VideoReader(job.generated)
        ref_reader = VideoReader(job.reference)
        n = len(gen_reader) if ref_is_image else min(len(gen_reader), len(ref_reader))
        if not ref_is_image and len(gen_reader) != len(ref_reader):
            result.notes.append(
                f"frame counts differ ({len(gen_reader)} vs {len(ref_reader)}): first {n} compared"
            )
        sampled = set(
            np.unique(np.linspace(0, n - 1, min(n, self.config.max_id_frames)).round().astype(int)).tolist()
        )
        sums: dict[str, list[float]] = {m: [] for m in (*pixel, "lpips", *(e.name for e in self.embedders))}
        ref_frames = iter(ref_reader)
        ref_image = next(ref_frames).image if ref_is_image else None
        resized = False
        for gen in gen_reader:
            t = gen.index
            if t >= n:
                break
            ref = ref_image if ref_image is not None else next(ref_frames).image
            if ref_is_image or t % self.config.frame_step == 0 or t in sampled:
                image = match_size(gen.image, ref) if not ref_is_image else gen.image
                resized |= image is not gen.image
                if t % self.config.frame_step == 0:
                    for m in pixel:
                        sums[m].append(psnr(image, ref) if m == "psnr" else ssim(image, ref))
                if t in sampled:
                    if self.lpips is not None and not ref_is_image:
                        sums["lpips"].append(self.lpips.distance(image, ref))
                    self._identity(sums, gen.image, ref, t, track, ref_track, ref_is_image)
        if resized:
            result.notes.append("generated frames resized to the reference size for PSNR/SSIM/LPIPS")
        for key, values in sums.items():
            if values:
                result.values[key] = float(np.mean(values))
            elif key.startswith("csim"):
                result.values[key] = None
                result.notes.append(f"{key}: no frame with a face in both videos")

    def _identity(
        self,
        sums: dict[str, list[float]],
        gen: np.ndarray,
        ref: np.ndarray,
        t: int,
        track: FaceTrack | None,
        ref_track: FaceTrack | None,
        ref_is_image: bool,
    ) -> None:
        if not self.embedders or track is None or ref_track is None:
            return
        rt = 0 if ref_is_image else t
        if t >= len(track) or rt >= len(ref_track) or not (track.valid[t] and ref_track.valid[rt]):
            return
        for embedder in self.embedders:
            a = embedder.embed(gen, track.landmarks[t])
            b = embedder.embed(ref, ref_track.landmarks[rt])
            sums[embedder.name].append(cosine(a, b))


def _str(p: Path | None) -> str | None:
    return None if p is None else str(p)


# ------------------------------------------------------------------------------------------------ report
def summarise(results: Sequence[VideoResult], columns: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Mean, std (population) and count over videos of every column with at least one finite value."""
    out: dict[str, dict[str, float | int]] = {}
    for col in columns:
        vals = [float(v) for r in results if (v := r.values.get(col)) is not None and math.isfinite(float(v))]
        if vals:
            out[col] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "n": len(vals)}
    return out


def _fmt(col: str, value: float | int | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if col in INTEGER_COLUMNS:
        return f"{int(value):d}"
    if col == "mouth_jitter":
        return f"{value:.4f}"
    return f"{value:.2f}" if col in ("psnr", "lse_d", "lse_c", "fid", "mouth_sharpness") else f"{value:.3f}"


def _set_cells(columns: Sequence[str], set_result: SetResult | None) -> list[float | int | None] | None:
    """The set-level value of each column, or None if there is none at all (no set row then)."""
    if set_result is None:
        return None
    cells = [_finite(set_result.values.get(c)) for c in columns]
    return cells if any(v is not None for v in cells) else None


def format_table(
    results: Sequence[VideoResult],
    columns: Sequence[str],
    markdown: bool = False,
    set_result: SetResult | None = None,
) -> str:
    """Per-video rows, mean ± std, then the set-level metrics (FID); aligned text, or a Markdown table."""
    summary = summarise(results, columns)
    rows = [[r.name, *(_fmt(c, r.values.get(c)) for c in columns)] for r in results]
    mean_row = ["mean ± std"]
    for c in columns:
        s = summary.get(c)
        mean_row.append("–" if s is None else f"{s['mean']:.3f} ± {s['std']:.3f}")
    set_cells = _set_cells(columns, set_result)
    tail = [mean_row]
    if set_cells is not None:
        tail.append([SET_ROW, *(_fmt(c, v) for c, v in zip(columns, set_cells, strict=True))])
    header = ["video", *columns]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in [*rows, *tail]]
        return "\n".join(lines)
    table = [header, *rows, *tail]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - len(tail), "-" * len(lines[0]))
    return "\n".join(lines)


def write_json(
    path: Path,
    results: Sequence[VideoResult],
    columns: Sequence[str],
    config: EvalConfig,
    unavailable: dict[str, str],
    set_result: SetResult | None = None,
) -> None:
    """Per-video values and notes, summary, set-level metrics, unavailable metrics (why) and the config."""
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    doc = {
        "config": cfg,
        "unavailable": unavailable,
        "columns": list(columns),
        "videos": [r.to_json() for r in results],
        "summary": summarise(results, columns),
        "set": (set_result or SetResult()).to_json(),
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_csv(
    path: Path, results: Sequence[VideoResult], columns: Sequence[str], set_result: SetResult | None = None
) -> None:
    """One row per video (empty cell = not computed), `mean` and `std` rows, then the set-level row (FID)."""
    summary = summarise(results, columns)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "generated", "reference", "audio", *columns])
        for r in results:
            cells = [_finite(r.values.get(c)) for c in columns]
            writer.writerow(
                [
                    r.name,
                    r.generated,
                    r.reference or "",
                    r.audio or "",
                    *("" if v is None else v for v in cells),
                ]
            )
        for stat in ("mean", "std"):
            writer.writerow([stat, "", "", "", *(summary[c][stat] if c in summary else "" for c in columns)])
        set_cells = _set_cells(columns, set_result)
        if set_cells is not None:
            writer.writerow([SET_ROW, "", "", "", *("" if v is None else v for v in set_cells)])
