"""What the project reads and writes, defined once: the audio sample rate and the file suffixes of each kind.

Inputs and outputs differ on purpose: any container FFmpeg demuxes well is accepted as an input video, but
outputs are limited to the containers ``VideoWriter`` muxes H.264 + AAC into (``OUTPUT_CONTAINERS``).
Suffixes are lower case with the dot; compare them with ``path.suffix.lower()``.

A top-level module with no imports, like ``errors``: ``media`` and ``audio`` both need the rate, and neither
should load the other (importing ``stylelipsync.media`` loads PyAV and OpenCV; from ``audio.mel`` that raised
the peak memory of a 60 s ``generate`` by 28 MiB, test_generate_memory).
"""

from __future__ import annotations

SAMPLE_RATE = 16000
"""Hz. Every audio track is decoded to mono at this rate: the mel front-end of the paper (spec §2.1), the
audio → mouth-shape model, SyncNet (LSE, as syncnet_python) and the audio written into outputs use it."""

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg")
"""Input videos, as picked from a folder (evaluation, training and adaptation data)."""

AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg")
"""Audio-only input files."""

SPEECH_SOURCE_SUFFIXES: tuple[str, ...] = (*AUDIO_SUFFIXES, *VIDEO_SUFFIXES)
"""Files speech can be taken from: audio files and the audio track of videos."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
"""Still images (a face photo instead of a video)."""

OUTPUT_CONTAINERS: dict[str, str] = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
"""Output suffix → the FFmpeg container ``VideoWriter`` writes for it."""

OUTPUT_SUFFIXES = frozenset(OUTPUT_CONTAINERS)
"""Videos we can write (generate, batch, the service, live recordings)."""
