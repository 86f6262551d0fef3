"""`load_audio`: any file's audio track as float32 mono at a chosen rate, aligned to the file's timeline."""

from __future__ import annotations

from pathlib import Path

import av
import av.container
import av.error
import numpy as np

from stylelipsync.errors import MediaError
from stylelipsync.formats import SAMPLE_RATE
from stylelipsync.media.container import (
    audio_stream,
    ended_early,
    open_input,
    timeline_origin,
    truncation_error,
)

# Demuxers whose stream duration is exact (mp4/m4a track duration, flac sample count, wav data size):
# decoded codec padding past it is cut, and a stream that stops well before it is reported as truncated.
_EXACT_DURATION_FORMATS = ("mov", "mp4", "m4a", "wav", "flac")


def _decode_mono(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, sample_rate: int
) -> tuple[list[np.ndarray], float | None]:
    """Decode, resample and average channels chunk by chunk (never holds the multichannel signal).

    Returns the mono chunks and the time of the first decoded frame. A new resampler is started (after
    flushing the old one) if the layout or rate changes mid-stream, as happens in broadcast recordings.
    """
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    resampler: av.AudioResampler | None = None
    setup: tuple[str, str, int] | None = None
    for frame in container.decode(stream):
        if first_time is None and frame.pts is not None and frame.time_base is not None:
            first_time = float(frame.pts * frame.time_base)
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if resampler is None or key != setup:
            if resampler is not None:
                chunks.extend(_channel_mean(out) for out in resampler.resample(None))
            resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)
            setup = key
        chunks.extend(_channel_mean(out) for out in resampler.resample(frame))
    if resampler is not None:
        chunks.extend(_channel_mean(out) for out in resampler.resample(None))
    return chunks, first_time


def _channel_mean(frame: av.AudioFrame) -> np.ndarray:
    """Mean over the channels of a planar float frame, float32."""
    return frame.to_ndarray().mean(axis=0, dtype=np.float32)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of `path` (wav, mp3, m4a/aac, flac, ogg or a video) to float32 mono.

    Resampling uses PyAV's `AudioResampler` and keeps the channel layout; channels are then averaged (the
    mean the model was trained with; FFmpeg's own stereo-to-mono downmix is 0.707·(L+R), 3 dB louder). The
    resampler is flushed so the tail is complete: the result has round(duration × sample_rate) samples.
    Sample 0 is the file's start time, the origin `VideoReader` uses, so audio starting late is padded.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    p = Path(path)
    with open_input(p) as container:
        stream = audio_stream(container)
        if stream is None:
            raise MediaError(
                f"{p}: has no audio stream. Give a separate audio file (wav, mp3, m4a) with the speech."
            )
        origin = timeline_origin(container)
        try:
            chunks, first_time = _decode_mono(container, stream, sample_rate)
        except av.error.FFmpegError as exc:
            raise MediaError(
                f"{p}: the audio cannot be decoded ({exc}); the file is damaged or truncated. "
                "Re-export or re-download it."
            ) from exc
        fmt = container.format.name.split(",")
        end: float | None = None
        if (
            stream.duration is not None
            and stream.time_base is not None
            and set(fmt) & set(_EXACT_DURATION_FORMATS)
        ):
            end = float(((stream.start_time or 0) + stream.duration) * stream.time_base) - origin
    if sum(len(c) for c in chunks) == 0:
        raise MediaError(f"{p}: the audio stream contains no samples. Use a file with audible speech.")
    mono = np.concatenate(chunks)
    lead = round(((first_time if first_time is not None else origin) - origin) * sample_rate)
    if lead > 0:
        mono = np.concatenate([np.zeros(lead, dtype=np.float32), mono])
    elif lead < 0:
        mono = mono[-lead:]
    if end is not None:
        if ended_early(end, len(mono) / sample_rate):
            raise truncation_error(p, "audio", end, len(mono) / sample_rate)
        mono = mono[: max(1, round(end * sample_rate))]
    return np.ascontiguousarray(mono)
