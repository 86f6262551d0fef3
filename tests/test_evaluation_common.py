"""Helpers for the evaluation tests: face tracks of shared clips, computed once per test session."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from stylelipsync.evaluation.face_tracks import track_video
from stylelipsync.evaluation.mouth_opening import mouth_opening
from stylelipsync.face.track import FaceTrack
from stylelipsync.media import load_audio

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
_CACHE = Path(tempfile.mkdtemp(prefix="stylelipsync-eval-tests-"))
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@cache
def tracked(name: str) -> FaceTrack:
    """Face track of a shared clip at its native rate (once per session)."""
    return track_video(MEDIA / name, cache_dir=_CACHE)


def mouth(name: str) -> np.ndarray:
    """Mouth opening (raw landmarks) of a shared clip."""
    track = tracked(name)
    return mouth_opening(track.raw, track.detected)


@cache
def audio(name: str) -> np.ndarray:
    """16 kHz mono audio of a shared file."""
    return load_audio(MEDIA / name, 16000)
