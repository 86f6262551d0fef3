"""Open media files with PyAV and pick their streams, turning PyAV failures into `MediaError`s."""

from __future__ import annotations

from pathlib import Path

import av
import av.container
import av.error
import av.stream

from stylelipsync.errors import MediaError

SUPPORTED_HINT = (
    "Use a video (mp4, mov, mkv, webm), an image (jpg, png, webp, bmp) or audio (wav, mp3, m4a, flac)"
)


def check_file(path: str | Path) -> Path:
    """Return `path` as a Path, or raise `MediaError` if it does not exist or is not a regular file."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: file not found. Check the path and the spelling.")
    if not p.is_file():
        raise MediaError(f"{p}: is a folder or special file, not a media file. Give the path of a file.")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: the file is empty (0 bytes). Copy or export it again.")
    return p


def open_input(path: str | Path) -> av.container.InputContainer:
    """Open `path` for demuxing; unreadable, unknown or damaged files raise `MediaError` naming the file."""
    p = check_file(path)
    try:
        container = av.open(str(p), mode="r", metadata_errors="replace")
    except av.error.InvalidDataError as exc:
        raise MediaError(
            f"{p}: not a readable media file (unknown format, or damaged/truncated). {SUPPORTED_HINT}."
        ) from exc
    except av.error.FFmpegError as exc:
        raise MediaError(
            f"{p}: cannot be opened ({exc}). Check that it is a complete, valid media file."
        ) from exc
    except PermissionError as exc:
        raise MediaError(f"{p}: permission denied. Make the file readable.") from exc
    try:
        check_complete(container, p)
    except MediaError:
        container.close()
        raise
    return container


def check_complete(container: av.container.InputContainer, path: Path) -> None:
    """Raise `MediaError` if the file's index points past its end (an mp4 cut short after its header).

    Such files open fine and then silently stop early, which would give a short or frozen result.
    """
    size = path.stat().st_size
    for stream in container.streams:
        entries = stream.index_entries
        if len(entries) and max(e.pos + e.size for e in entries) > size:
            raise MediaError(
                f"{path}: the file is truncated (its index refers to data past the end of the file). "
                "Re-export or re-download it."
            )


def truncation_error(path: Path, kind: str, expected: float, got: float) -> MediaError:
    """`MediaError` for a stream that ended well before the duration its header promises."""
    return MediaError(
        f"{path}: the {kind} stops at {got:.2f} s but the file says {expected:.2f} s; it is truncated or "
        "damaged. Re-export or re-download it."
    )


def ended_early(expected: float, got: float) -> bool:
    """True if decoding stopped clearly before the header's end (more than 0.25 s and 2% short)."""
    return expected - got > max(0.25, 0.02 * expected)


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """First real video stream, skipping cover art (attached pictures in mp3/m4a files)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def audio_stream(container: av.container.InputContainer) -> av.audio.stream.AudioStream | None:
    """First audio stream, or None."""
    return container.streams.audio[0] if container.streams.audio else None


def timeline_origin(container: av.container.InputContainer) -> float:
    """Time (s) that maps to t = 0 for every stream of the file: the container start time.

    Video frame times and audio sample positions are both measured from this origin, so a file whose audio
    starts a few ms after its video stays in sync after decoding.
    """
    start = container.start_time
    return float(start) / av.time_base if start is not None else 0.0
