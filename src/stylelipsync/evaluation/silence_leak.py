"""Silence-leak test (LipLeak-style): does the mouth still move when the driving audio is digital silence?

Dub the same video twice, once with speech and once with digital silence of the same length
(`write_silence`), then compare how much the mouth opening varies over time. A generator that closes the
mouth on silence gives a ratio near 0; one that leaks the original video's speech, or moves the mouth
regardless of the audio, gives a ratio near 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.face.track import FaceTrack
from stylelipsync.formats import SAMPLE_RATE


@dataclass(frozen=True)
class SilenceLeak:
    """Std of the mouth opening over time driven by silence, by speech (if given) and their ratio."""

    silent_std: float
    speech_std: float | None
    ratio: float | None


def mouth_motion(track: FaceTrack) -> float:
    """Std over time of the mouth opening (raw landmarks, frames without a face ignored)."""
    opening = mouth_opening(track.raw, track.detected)
    return float(np.nanstd(opening)) if np.isfinite(opening).sum() > 1 else float("nan")


def silence_leak(silent: FaceTrack, speech: FaceTrack | None = None) -> SilenceLeak:
    """Leak figures from face tracks of the silence-driven and (optionally) speech-driven outputs."""
    silent_std = mouth_motion(silent)
    if speech is None:
        return SilenceLeak(silent_std, None, None)
    speech_std = mouth_motion(speech)
    ratio = silent_std / speech_std if speech_std > 0 else float("nan")
    return SilenceLeak(silent_std, speech_std, ratio)


def silence_leak_videos(
    silent_video: str | Path, speech_video: str | Path | None = None, cache_dir: str | Path | None = None
) -> SilenceLeak:
    """`silence_leak` of two video files (tracks cached in `cache_dir` if given)."""
    silent = track_video(silent_video, cache_dir=cache_dir)
    speech = None if speech_video is None else track_video(speech_video, cache_dir=cache_dir)
    return silence_leak(silent, speech)


def write_silence(path: str | Path, seconds: float, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write `seconds` of digital silence as a 16-bit mono WAV (the driving audio of the leak test)."""
    import wave

    p = Path(path)
    with wave.open(str(p), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(sample_rate)
        fh.writeframes(b"\0\0" * round(seconds * sample_rate))
    return p
