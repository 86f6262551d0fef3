"""Evaluate generated videos (against references and driving audio): the engine of `stylelipsync evaluate`.

One `Job` = one generated video, optionally its reference (source) video or image, the driving audio (default:
the generated file's own audio track), a silence-driven version for the leak test and, when the driving audio
comes from a talking video, that video (the speaker's real mouth is then the reference for the mouth motion).
`Evaluator` loads each network once and computes the requested metric families per job; a family whose
weights were not given is reported as unavailable with the reason, never estimated some other way. Set-level
metrics (FID) gather features over all jobs and are computed once by `Evaluator.finish`.

Finding and pairing the input files is `evaluation.jobs`; the result types and the table, JSON and CSV are
`evaluation.report`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stylelipsync.audio import frame_energy
from stylelipsync.errors import StyleLipSyncError
from stylelipsync.evaluation import DEFAULT_METRICS, METRICS
from stylelipsync.evaluation.audio_to_mouth import AudioToMouth, zscore
from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.fid import FeatureStats, FewSamplesWarning, fid
from stylelipsync.evaluation.identity import ARCFACE_HELP, ArcFaceEmbedder, DlibEmbedder, cosine, load_arcface
from stylelipsync.evaluation.image_quality import LPIPS_HELP, LPIPSMetric, match_size, psnr, ssim
from stylelipsync.evaluation.inception import FEATURE_DIM, FID_HELP, FIDInceptionV3, load_fid_inception
from stylelipsync.evaluation.jitter import mouth_jitter
from stylelipsync.evaluation.jobs import Job
from stylelipsync.evaluation.lip_distance import lmd
from stylelipsync.evaluation.lse import lse_score
from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.evaluation.offline_sync import energy_sync, lagged_correlation, predicted_sync
from stylelipsync.evaluation.report import COLUMNS, SetResult, VideoResult
from stylelipsync.evaluation.sharpness import video_sharpness
from stylelipsync.evaluation.silence_leak import mouth_motion, silence_leak
from stylelipsync.evaluation.syncnet_v2 import WEIGHTS_HELP, load_syncnet_v2
from stylelipsync.face.crop import crop_transform, warp_to_crop
from stylelipsync.face.track import FaceTrack
from stylelipsync.formats import IMAGE_SUFFIXES, SAMPLE_RATE
from stylelipsync.media import VideoReader, load_audio, probe

FID_CROP_SIZE = 256  # the face crop of the generator (face.crop framing); Inception resizes it to 299²
FID_BATCH = 16
SPEAKER_MAX_LAG = 2
"""Lag search of ``sync_speaker`` in frames: both mouths follow the same audio, no audio delay to absorb."""


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
