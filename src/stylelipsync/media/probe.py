"""`probe`: what a media file holds (streams, size after rotation, rate, duration) without reading it all."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.error

from stylelipsync.errors import MediaError
from stylelipsync.media.container import audio_stream, open_input, timeline_origin, video_stream
from stylelipsync.media.image import is_image_path, read_image
from stylelipsync.media.orientation import clockwise_rotation, rotated_size

# Relative gap between the average and the nominal frame rate above which a stream counts as VFR.
VFR_TOLERANCE = 0.005


@dataclass(frozen=True)
class MediaInfo:
    """Summary of one media file. Times are seconds; sizes are the displayed (rotated) frame size.

    `rotation` is the clockwise turn (0/90/180/270) a player applies; readers apply it for you. `fps` is the
    average rate (frames / duration); `nominal_fps` the stream's base rate; `is_vfr` flags a mismatch between
    the two (frames dropped or irregular). A still image reports has_video=True, is_image=True, one frame.
    """

    path: Path
    format_name: str
    is_image: bool
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    nominal_fps: float = 0.0
    is_vfr: bool = False
    duration: float = 0.0
    video_duration: float = 0.0
    n_frames: int = 0
    rotation: int = 0
    video_codec: str | None = None
    audio_codec: str | None = None
    sample_rate: int = 0
    channels: int = 0
    audio_duration: float = 0.0


def _stream_end(stream: av.stream.Stream, origin: float) -> float | None:
    """End time of a stream on the file's timeline, from its header (None if the header lacks it)."""
    if stream.duration is None or stream.time_base is None:
        return None
    start = stream.start_time or 0
    return float((start + stream.duration) * stream.time_base) - origin


def _first_rotation(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path
) -> int:
    """Decode the first frame to read its display rotation (and prove the stream is decodable)."""
    try:
        for frame in container.decode(stream):
            return clockwise_rotation(frame, stream.metadata)
    except av.error.FFmpegError as exc:
        raise MediaError(
            f"{path}: the video stream cannot be decoded ({exc}); the file is damaged or truncated."
        ) from exc
    raise MediaError(f"{path}: the video stream has no decodable frame; the file is damaged or truncated.")


def _probe_image(path: Path) -> MediaInfo:
    image = read_image(path)
    return MediaInfo(
        path=path,
        format_name="image",
        is_image=True,
        has_video=True,
        has_audio=False,
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        n_frames=1,
    )


def probe(path: str | Path) -> MediaInfo:
    """Describe `path`; `MediaError` if it is missing, not a media file, or its video cannot be decoded."""
    p = Path(path)
    if is_image_path(p):
        return _probe_image(p)
    with open_input(p) as container:
        if container.format.name.endswith("_pipe") or container.format.name == "image2":
            return _probe_image(p)
        origin = timeline_origin(container)
        duration = float(container.duration) / av.time_base if container.duration else 0.0
        info = MediaInfo(
            path=p,
            format_name=container.format.name,
            is_image=False,
            has_video=False,
            has_audio=False,
            duration=duration,
        )
        vs = video_stream(container)
        if vs is not None:
            average = vs.average_rate or vs.guessed_rate or vs.base_rate or Fraction(0)
            nominal = vs.base_rate or vs.guessed_rate or average
            v_end = _stream_end(vs, origin) or duration
            rotation = _first_rotation(container, vs, p)
            width, height = rotated_size(vs.codec_context.width, vs.codec_context.height, rotation)
            info = replace(
                info,
                has_video=True,
                width=width,
                height=height,
                fps=float(average),
                nominal_fps=float(nominal),
                is_vfr=bool(nominal and abs(float(average) / float(nominal) - 1.0) > VFR_TOLERANCE),
                video_duration=v_end,
                n_frames=int(vs.frames or round(v_end * float(average))),
                rotation=rotation,
                video_codec=vs.codec_context.name,
            )
        aus = audio_stream(container)
        if aus is not None:
            info = replace(
                info,
                has_audio=True,
                audio_codec=aus.codec_context.name,
                sample_rate=int(aus.codec_context.sample_rate or 0),
                channels=int(aus.codec_context.channels or 0),
                audio_duration=_stream_end(aus, origin) or duration,
            )
        return info
