"""Cut the start of a talking clip, picture and its own speech, into a new H.264/AAC file."""

from __future__ import annotations

from pathlib import Path

from stylelipsync.formats import SAMPLE_RATE
from stylelipsync.media.audio_reader import load_audio
from stylelipsync.media.video_reader import VideoReader
from stylelipsync.media.video_writer import VideoWriter


def cut_clip(source: str | Path, target: str | Path, seconds: float) -> Path:
    """Write the first `seconds` of `source` (frames and 16 kHz mono audio) to `target`; returns `target`.

    Short jobs for tests and benchmarks are made this way from the shared clips, which are never copied.
    """
    target = Path(target)
    wave = load_audio(source, SAMPLE_RATE)[: round(seconds * SAMPLE_RATE)]
    reader = VideoReader(source)
    try:
        frames = round(seconds * reader.fps)
        with VideoWriter(
            target, reader.fps, reader.width, reader.height, audio=wave, sample_rate=SAMPLE_RATE
        ) as out:
            for frame in reader:
                if frame.index >= frames:
                    break
                out.write(frame.image)
    finally:
        reader.close()
    return target
