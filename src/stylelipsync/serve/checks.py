"""Check an upload before it is queued: media readable, a face visible, audio with samples, not too long.

Runs in the checker process (a one-process pool started by the service), so neither the media stack nor
MediaPipe is loaded into the HTTP process, and a file that crashes a decoder takes down only the checker.
Messages name the upload by its field and client file name, never by its path on the server.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_detector: Any = None
FACE_SAMPLES = 8


class InputRejectedError(Exception):
    """An input the service will not queue: error code, form field, and a message a person can act on."""

    def __init__(self, code: str, field: str | None, message: str) -> None:
        super().__init__(code, field, message)
        self.code, self.field, self.message = code, field, message


@dataclass(frozen=True)
class CheckedInputs:
    """What the checks learned: the output's length in seconds and frame rate."""

    seconds: float
    fps: float


def init_checker() -> None:
    """Checker-process initializer: ignore Ctrl-C (the server stops the pool), end with the server, and load
    MediaPipe now rather than at the first upload. It never imports torch: options were already validated by
    the HTTP process (`app.parse_options`)."""
    from stylelipsync.serve.worker import watch_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent(os.getppid())
    face_detector()


def face_detector() -> Any:
    """The checker's BlazeFace detector, created once."""
    global _detector
    if _detector is None:
        from stylelipsync.face.detect import FaceDetector

        _detector = FaceDetector()
    return _detector


def warm_up() -> int:
    """A no-op task that makes the pool start its process (and run the initializer) ahead of time."""
    return os.getpid()


def _relabel(message: str, paths: dict[Path, str]) -> str:
    for path, label in paths.items():
        message = message.replace(str(path), label)
    return message


def sample_frames(path: Path, count: int) -> list[np.ndarray]:
    """Up to `count` upright RGB frames spread evenly over the video (seeking, so long videos are cheap)."""
    import av

    from stylelipsync.media.container import open_input, video_stream
    from stylelipsync.media.orientation import clockwise_rotation, rotate_image
    from stylelipsync.media.probe import probe

    info = probe(path)
    if info.is_image:
        from stylelipsync.media import read_image

        return [read_image(path)]
    frames: list[np.ndarray] = []
    with open_input(path) as container:
        stream = video_stream(container)
        if stream is None or stream.time_base is None:
            return frames
        stream.thread_type = "AUTO"
        start = stream.start_time or 0
        duration = info.video_duration or info.duration
        for k in range(count):
            target = duration * (k + 0.5) / count
            try:
                container.seek(start + int(target / stream.time_base), stream=stream, backward=True)
                for frame in container.decode(stream):
                    when = (frame.pts - start) * stream.time_base if frame.pts is not None else target
                    if when + 1e-3 >= target or frame.pts is None:
                        image = frame.to_ndarray(format="rgb24")
                        frames.append(rotate_image(image, clockwise_rotation(frame, stream.metadata)))
                        break
            except av.error.FFmpegError:
                continue
    return frames


def check_inputs(
    video: str, audio: str, labels: dict[str, str], options: dict[str, Any], max_seconds: float
) -> CheckedInputs:
    """Validate one upload (options already parsed by `app.parse_options`; their defaults are
    `GenerateOptions`'); `InputRejectedError` with a clear message if it cannot be dubbed."""
    from stylelipsync.errors import MediaError
    from stylelipsync.media import SAMPLE_RATE, load_audio, probe
    from stylelipsync.pipelines.options import GenerateOptions

    chosen = GenerateOptions().updated(**options)
    video_path, audio_path = Path(video), Path(audio)
    names = {video_path: f'video "{labels["video"]}"', audio_path: f'audio "{labels["audio"]}"'}
    try:
        info = probe(video_path)
    except MediaError as exc:
        raise InputRejectedError("bad_video", "video", _relabel(str(exc), names)) from exc
    if not info.has_video:
        raise InputRejectedError(
            "bad_video",
            "video",
            f"{names[video_path]}: has no picture (audio only). Put the video or photo of the face in the "
            "video field and the speech in the audio field.",
        )
    trim = chosen.trim
    try:
        header = probe(audio_path)
    except MediaError as exc:
        raise InputRejectedError("bad_audio", "audio", _relabel(str(exc), names)) from exc
    declared = header.audio_duration or header.duration
    if trim and declared > max_seconds + 1:  # refuse before decoding hours of audio into memory
        raise _too_long(declared, max_seconds, trim)
    try:
        wave = load_audio(audio_path, SAMPLE_RATE)
    except MediaError as exc:
        raise InputRejectedError("bad_audio", "audio", _relabel(str(exc), names)) from exc
    native = 25.0 if info.is_image else (info.nominal_fps if info.is_vfr else info.fps)
    fps = float(chosen.fps or native or 25.0)
    audio_seconds = len(wave) / SAMPLE_RATE
    if audio_seconds < 1 / fps:
        raise InputRejectedError(
            "bad_audio",
            "audio",
            f"{names[audio_path]}: lasts {audio_seconds * 1000:.0f} ms, under one video frame; give speech",
        )
    seconds = audio_seconds if trim else max(audio_seconds, info.video_duration)
    if seconds > max_seconds:
        raise _too_long(seconds, max_seconds, trim)
    if chosen.bbox is None:
        _check_face(video_path, names[video_path], info.is_image)
    return CheckedInputs(seconds=seconds, fps=fps)


def _too_long(seconds: float, max_seconds: float, trim: bool) -> InputRejectedError:
    return InputRejectedError(
        "too_long",
        "audio",
        f"the output would last {seconds:.1f} s, more than this server's limit of {max_seconds:g} s; "
        "cut the speech into shorter parts"
        + ("" if trim else " (or leave trim on so the output ends with the speech)"),
    )


def _check_face(path: Path, label: str, is_image: bool) -> None:
    """Reject a video (or photo) with no face in any of `FACE_SAMPLES` frames spread over it."""
    from stylelipsync.errors import MediaError

    try:
        frames = sample_frames(path, FACE_SAMPLES)
    except MediaError as exc:
        raise InputRejectedError("bad_video", "video", _relabel(str(exc), {path: label})) from exc
    detector = face_detector()
    if any(detector.detect_boxes(frame) for frame in frames):
        return
    where = "the photo" if is_image else f"any of {len(frames)} frames sampled across the video"
    raise InputRejectedError(
        "no_face",
        "video",
        f"{label}: no face found in {where}. Use a clip where the face is visible and roughly frontal; "
        "if the face is small or partly hidden, point at it with the bbox field (X0,Y0,X1,Y1 in pixels).",
    )
