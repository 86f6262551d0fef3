"""Fit the audio → mouth-opening ridge regression shipped as `assets/mouth_from_audio.safetensors`.

Data: the `talking_av` clips of the shared media (`MANIFEST.tsv`), each with its own audio (the companion
.wav for the clips without an audio stream). Persons in `HELD_OUT_PERSONS` are never used for fitting; the
ridge strength is chosen by leave-one-person-out cross-validation over the training persons, then the model
is fitted on all of them and validated on the held-out persons with their own and with other persons' speech.

    .venv/bin/python scripts/fit_mouth_from_audio.py --media ../shared/media --cache /work/runs/eval_cache

Face tracks are cached in --cache (outside the repository; the first run tracks every clip, ~10 min on
2 busy cores). The figures printed at the end are also stored in the model's metadata.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylelipsync.evaluation.audio_to_mouth import (
    ASSET_NAME,
    BAND_POOL,
    CONTEXT,
    HELD_OUT_PERSONS,
    AudioToMouth,
    audio_context_features,
    zscore,
)
from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.evaluation.offline_sync import PREDICTED_MAX_LAG, lagged_correlation
from stylelipsync.media import load_audio
from stylelipsync.training.preprocess import read_media_manifest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
ALPHAS = (10.0, 100.0, 1e3, 3e3, 1e4, 3e4, 1e5)
log = logging.getLogger("fit_mouth_from_audio")


@dataclass
class Clip:
    """One talking clip: measured mouth opening, its own audio and the features of that audio."""

    name: str
    person: str
    fps: float
    mouth: np.ndarray
    wave: np.ndarray
    features: np.ndarray


def load_clips(media: Path, cache: Path) -> list[Clip]:
    """Track (cached) and featurise every talking_av clip of the manifest."""
    clips = []
    for name, row in sorted(read_media_manifest(media / "MANIFEST.tsv").items()):
        video = media / name
        audio = media / row["audio"] if row["audio"] else video
        track = track_video(video, cache_dir=cache)
        mouth = mouth_opening(track.raw, track.detected)
        wave = load_audio(audio, SAMPLE_RATE)
        feats = audio_context_features(wave, SAMPLE_RATE, len(mouth), track.fps)
        log.info(
            "%s: %d frames at %.2f fps, %d with a face", name, len(mouth), track.fps, np.isfinite(mouth).sum()
        )
        clips.append(Clip(name, row["person"], track.fps, mouth, wave, feats))
    return clips


def statistics(clip: Clip) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    """Sufficient statistics of one clip for ridge: Σx, Σxxᵀ, Σxy, Σy, n (finite target frames only)."""
    y = zscore(clip.mouth)
    keep = np.isfinite(y)
    x = clip.features[keep].astype(np.float64)
    y = y[keep]
    return x.sum(axis=0), x.T @ x, x.T @ y, float(y.sum()), int(keep.sum())


def ridge_from_stats(
    stats: list[tuple[np.ndarray, np.ndarray, np.ndarray, float, int]], alpha: float
) -> AudioToMouth:
    """Ridge fit (unpenalised intercept) from summed per-clip statistics."""
    sx = sum(s[0] for s in stats)
    sxx = sum(s[1] for s in stats)
    sxy = sum(s[2] for s in stats)
    sy = sum(s[3] for s in stats)
    n = sum(s[4] for s in stats)
    mx, my = sx / n, sy / n
    cxx = sxx - n * np.outer(mx, mx)
    cxy = sxy - n * mx * my
    weight = np.linalg.solve(cxx + alpha * np.eye(len(mx)), cxy)
    return AudioToMouth(weight, float(my - mx @ weight))


def score(model: AudioToMouth, clip: Clip, wave: np.ndarray | None = None) -> float:
    """Offline sync (b) of a clip's measured mouth against the opening predicted from `wave` (own audio)."""
    wave = clip.wave if wave is None else wave
    frames = min(len(clip.mouth), int(len(wave) / SAMPLE_RATE * clip.fps))
    predicted = model.predict(wave, SAMPLE_RATE, frames, clip.fps)
    return lagged_correlation(clip.mouth[:frames], predicted, PREDICTED_MAX_LAG).correlation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--cache", type=Path, default=Path("/work/runs/eval_cache"))
    parser.add_argument("--out", type=Path, default=REPO / "src" / "stylelipsync" / "assets" / ASSET_NAME)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    clips = load_clips(args.media, args.cache)
    train = [c for c in clips if c.person not in HELD_OUT_PERSONS]
    held = [c for c in clips if c.person in HELD_OUT_PERSONS]
    stats = {c.name: statistics(c) for c in train}
    persons = sorted({c.person for c in train})

    cv: dict[float, float] = {}
    for alpha in ALPHAS:
        scores = []
        for person in persons:
            model = ridge_from_stats([stats[c.name] for c in train if c.person != person], alpha)
            scores += [score(model, c) for c in train if c.person == person]
        cv[alpha] = float(np.nanmean(scores))
        log.info("alpha %g: leave-one-person-out mean correlation %.3f", alpha, cv[alpha])
    alpha = max(cv, key=lambda a: cv[a])
    model = ridge_from_stats(list(stats.values()), alpha)

    matched = [score(model, c) for c in held]
    mismatched = [score(model, c, o.wave) for c in held for o in held if o.person != c.person]
    for c, m in zip(held, matched, strict=True):
        log.info("held out %-32s %-18s own audio %.3f", c.name, c.person, m)
    log.info(
        "held-out persons: own audio %.3f (n=%d), other persons' audio %.3f ± %.3f (n=%d)",
        np.nanmean(matched),
        len(matched),
        np.nanmean(mismatched),
        np.nanstd(mismatched),
        len(mismatched),
    )
    info = {
        "fitted": dt.date.today().isoformat(),
        "data": "shared/media talking_av clips (research/test material; not redistributed)",
        "train_persons": ",".join(persons),
        "held_out_persons": ",".join(HELD_OUT_PERSONS),
        "train_clips": str(len(train)),
        "train_frames": str(sum(s[4] for s in stats.values())),
        "alpha": f"{alpha:g}",
        "cv_corr": f"{cv[alpha]:.3f}",
        "held_out_matched_corr": f"{np.nanmean(matched):.3f}",
        "held_out_mismatched_corr": f"{np.nanmean(mismatched):.3f}",
        "features": f"log-mel 80 -> {80 // BAND_POOL} bands, +-{CONTEXT} mel frames, per-clip normalised",
    }
    final = AudioToMouth(model.weight, model.bias, CONTEXT, BAND_POOL, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    final.save(args.out)
    args.out.chmod(0o644)
    log.info("wrote %s (%d bytes)", args.out, args.out.stat().st_size)


if __name__ == "__main__":
    main()
