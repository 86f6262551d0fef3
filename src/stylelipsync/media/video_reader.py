"""`VideoReader`: stream RGB frames with exact timestamps, optionally resampled to a constant rate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import av.container
import av.error
import numpy as np

from stylelipsync.errors import MediaError
from stylelipsync.media.container import (
    ended_early,
    open_input,
    timeline_origin,
    truncation_error,
    video_stream,
)
from stylelipsync.media.image import read_image
from stylelipsync.media.orientation import clockwise_rotation, rotate_image
from stylelipsync.media.probe import MediaInfo, probe
from stylelipsync.media.rate import to_rate


@dataclass(frozen=True)
class Frame:
    """One output frame: its index in the output sequence, its time (s) and an HxWx3 uint8 RGB image."""

    index: int
    time: float
    image: np.ndarray


class VideoReader:
    """Iterate the frames of a video (or a still image) without holding more than one decoded frame.

    Without `fps`, a constant-rate video is returned frame by frame with times from pts × time_base,
    measured from the file's start (the same origin `load_audio` uses). With `fps`, or when the stream is
    variable-frame-rate (then at its nominal rate), frames are resampled to a constant rate: output frame k
    (time k / fps) is the latest decoded frame whose time is ≤ k / fps (frames are duplicated or dropped), and
    the output has round(duration × fps) frames, duration being where the video stream ends. Display
    rotation is applied. A still image yields a single frame.
    """

    def __init__(self, path: str | Path, fps: float | Fraction | None = None) -> None:
        self.path = Path(path)
        self.info: MediaInfo = probe(self.path)
        if not self.info.has_video:
            raise MediaError(
                f"{self.path}: has no video stream (audio only). Give a video or an image of the face to dub."
            )
        self._container: av.container.InputContainer | None = None
        self._tick = Fraction(1, 1000)
        if self.info.is_image:
            self.rate = to_rate(fps) if fps is not None else Fraction(25)
            self.resampling = False
            self.duration = 0.0
            self._num_frames = 1
            return
        if fps is not None:
            self.rate = to_rate(fps)
            self.resampling = True
        elif self.info.is_vfr:
            self.rate = to_rate(self.info.nominal_fps or self.info.fps)
            self.resampling = True
        else:
            self.rate = to_rate(self.info.fps or self.info.nominal_fps)
            self.resampling = False
        self.duration = self.info.video_duration
        if self.resampling:
            self._num_frames = max(1, round(self.duration * self.rate))
        else:
            self._num_frames = self.info.n_frames

    @property
    def fps(self) -> float:
        """Output frame rate (frames per second)."""
        return float(self.rate)

    @property
    def width(self) -> int:
        """Width of the yielded images (after rotation)."""
        return self.info.width

    @property
    def height(self) -> int:
        """Height of the yielded images (after rotation)."""
        return self.info.height

    @property
    def num_frames(self) -> int:
        """Number of frames the iteration yields (exact when resampling, else the header's frame count)."""
        return self._num_frames

    def __len__(self) -> int:
        return self._num_frames

    def __iter__(self) -> Iterator[Frame]:
        if self.info.is_image:
            yield Frame(0, 0.0, read_image(self.path))
            return
        if self.resampling:
            yield from self._resampled()
        else:
            yield from self._native()

    def _decoded(self) -> Iterator[tuple[Fraction | None, av.VideoFrame, int]]:
        """Decoded frames in presentation order with their time on the file timeline and display rotation."""
        container = open_input(self.path)
        self._container = container
        try:
            stream = video_stream(container)
            if stream is None:
                raise MediaError(f"{self.path}: has no video stream.")
            stream.thread_type = "AUTO"
            time_base = stream.time_base
            self._tick = Fraction(time_base) if time_base is not None else Fraction(1, 1000)
            origin = Fraction(timeline_origin(container)).limit_denominator(10**9)
            try:
                for frame in container.decode(stream):
                    when = None if frame.pts is None or time_base is None else frame.pts * time_base - origin
                    yield when, frame, clockwise_rotation(frame, stream.metadata)
            except av.error.FFmpegError as exc:
                raise MediaError(
                    f"{self.path}: decoding failed ({exc}); the file is damaged or truncated. "
                    "Re-export or re-download it."
                ) from exc
        finally:
            container.close()
            self._container = None

    def _check_complete(self, last_time: Fraction | float | None, last_frame: av.VideoFrame | None) -> None:
        """Raise if decoding stopped well before the end the header announces (truncated file).

        The last frame counts with its own duration, so a VFR clip whose last frame is held for a
        while is not mistaken for a truncated one.
        """
        if last_time is None or last_frame is None:
            return
        if last_frame.duration and last_frame.time_base is not None:
            shown = float(last_frame.duration * last_frame.time_base)
        else:
            shown = 1.0 / float(self.info.nominal_fps or self.rate)
        got = float(last_time) + shown
        if ended_early(self.duration, got):
            raise truncation_error(self.path, "video", self.duration, got)

    def _native(self) -> Iterator[Frame]:
        index = 0
        time = None
        last_frame = None
        for when, frame, rotation in self._decoded():
            last_frame = frame
            time = float(when) if when is not None else index / float(self.rate)
            yield Frame(index, time, rotate_image(frame.to_ndarray(format="rgb24"), rotation))
            index += 1
        self._check_complete(time, last_frame)
        if index == 0:
            raise MediaError(
                f"{self.path}: no video frame could be decoded; the file is damaged or truncated."
            )

    def _resampled(self) -> Iterator[Frame]:
        rate = self.rate
        total = self._num_frames
        quarter_frame = 1 / (4 * rate)
        held: tuple[av.VideoFrame, int] | None = None
        last_time: Fraction | None = None
        k = 0

        def emit() -> Frame:
            """Output frame k from the held decoded frame.

            Each output gets its own freshly converted array (a repeat is converted again), so a caller
            that draws on one frame never changes its duplicates, and dropped frames cost no conversion.
            """
            assert held is not None
            return Frame(k, float(k / rate), rotate_image(held[0].to_ndarray(format="rgb24"), held[1]))

        source_rate = to_rate(self.info.nominal_fps or self.info.fps or rate)
        for decoded_index, (when, frame, rotation) in enumerate(self._decoded()):
            time = when if when is not None else decoded_index / source_rate
            if last_time is not None and time <= last_time:
                continue
            last_time = time
            if held is not None:
                # Every output time before this frame belongs to the held frame. The first decoded frame
                # also covers times before it (a video stream may start a few ms after t = 0).
                # Timestamps are rounded to the time base: a frame one tick late (at most a quarter of an
                # output frame) still counts as "at or before t", so equal rates never duplicate or drop.
                tolerance = min(self._tick, quarter_frame)
                while k < total and k / rate + tolerance < time:
                    yield emit()
                    k += 1
                if k >= total:
                    return
            held = (frame, rotation)
        if held is None:
            raise MediaError(
                f"{self.path}: no video frame could be decoded; the file is damaged or truncated."
            )
        self._check_complete(last_time, held[0])
        while k < total:
            yield emit()
            k += 1

    def close(self) -> None:
        """Close the file if an iteration is in progress."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "resampled" if self.resampling else "native"
        size = f"{self.width}x{self.height}"
        return f"VideoReader({str(self.path)!r}, {size}, {self.fps:g} fps {mode}, {len(self)} frames)"
