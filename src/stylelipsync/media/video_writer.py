"""`VideoWriter`: H.264/AAC MP4 output written to a temporary file and moved into place only on success."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import av.container
import av.error
import numpy as np

from stylelipsync.errors import OutputError
from stylelipsync.formats import OUTPUT_CONTAINERS, SAMPLE_RATE
from stylelipsync.media.rate import to_rate
from stylelipsync.media.x264_cpu import encoder_asm
from stylelipsync.startup_trace import FIRST_FRAME, mark

AAC_FRAME_SIZE = 1024
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _as_output_error(path: Path, exc: BaseException) -> OutputError:
    """Translate an OSError/FFmpeg error while writing into an `OutputError` that says what to do."""
    code = getattr(exc, "errno", None)
    if code in _DISK_FULL:
        return OutputError(
            f"{path}: disk full (or file size limit reached). Free some space or write elsewhere."
        )
    if isinstance(exc, PermissionError) or code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"{path}: the output folder is not writable. Choose another --output location.")
    if isinstance(exc, NotADirectoryError) or code == errno.ENOTDIR:
        return OutputError(f"{path}: part of the output path is a file, not a folder. Fix the --output path.")
    return OutputError(f"{path}: cannot write the video ({exc}). Check the output path and free space.")


def _prepare_audio(audio: np.ndarray) -> np.ndarray:
    """(channels, samples) float32 in [-1, 1] from a 1-D mono or 2-D array (the short axis is channels)."""
    a = np.asarray(audio)
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    a = np.nan_to_num(a.astype(np.float32, copy=False))
    if a.ndim == 1:
        a = a[None, :]
    elif a.ndim == 2 and min(a.shape) <= 8:
        a = a if a.shape[0] <= a.shape[1] else a.T
    else:
        raise ValueError(f"audio must be 1-D (mono) or 2-D (samples × channels), got shape {a.shape}")
    if a.shape[0] not in (1, 2):
        a = a.mean(axis=0, keepdims=True)
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0))


class VideoWriter:
    """Write RGB frames (and optionally an audio track) to an H.264 yuv420p MP4.

    Usage: ``with VideoWriter(out, fps, w, h, audio=wave) as w: w.write(frame)``. Output goes to a hidden
    temporary file in the destination folder, renamed over `path` when the block ends normally; on an
    exception, `abort()`, or if no frame was written, the temporary file is deleted and nothing is left.

    yuv420p needs even sizes: an odd width or height is padded by repeating the last column/row, so the
    stored picture is one pixel larger (`encoded_width`/`encoded_height`). Audio (mono 1-D or
    (samples, channels), at `sample_rate`) is encoded as AAC interleaved with the video, starting at t = 0
    like frame 0; it is cut or padded with silence to exactly frames / fps seconds. `protect` lists input
    paths that must never be overwritten.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        width: int,
        height: int,
        audio: np.ndarray | None = None,
        sample_rate: int = SAMPLE_RATE,
        crf: int = 18,
        *,
        protect: Iterable[str | Path] = (),
        preset: str = "medium",
        audio_bitrate: int = 128_000,
    ) -> None:
        self.path = Path(path)
        self.rate = to_rate(fps)
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.encoded_width = self.width + self.width % 2
        self.encoded_height = self.height + self.height % 2
        self.sample_rate = int(sample_rate)
        self.frames_written = 0
        fmt = OUTPUT_CONTAINERS.get(self.path.suffix.lower())
        if fmt is None:
            raise OutputError(f"{self.path}: unsupported output type; use a .mp4 (or .mov/.mkv) file name.")
        self._check_protected(protect)
        self._audio = _prepare_audio(audio) if audio is not None else None
        self._audio_written = 0
        self._audio_offset = 0
        """Sample index of `_audio[:, 0]` (`append_audio` drops what is encoded)."""
        self._tmp = self._reserve_temp()
        self._container: av.container.OutputContainer | None = None
        try:
            self._open(fmt, crf, preset, audio_bitrate)
        except BaseException as exc:
            self.abort()
            if isinstance(exc, (OSError, av.error.FFmpegError)):
                raise _as_output_error(self.path, exc) from exc
            raise

    def _check_protected(self, protect: Iterable[str | Path]) -> None:
        target = self.path.resolve()
        for item in protect:
            source = Path(item)
            same = source.resolve() == target
            if not same and source.exists() and target.exists():
                same = os.path.samefile(source, target)
            if same:
                raise OutputError(
                    f"{self.path}: is an input file and would be overwritten. Choose another output path."
                )

    def _reserve_temp(self) -> Path:
        """Create an empty, uniquely named temporary file beside the output (same file system)."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            while True:
                tmp = folder / f".{self.path.stem}.{secrets.token_hex(4)}.part{self.path.suffix}"
                try:
                    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                    return tmp
                except FileExistsError:
                    continue
        except OSError as exc:
            raise _as_output_error(self.path, exc) from exc

    def _open(self, fmt: str, crf: int, preset: str, audio_bitrate: int) -> None:
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        container = av.open(str(self._tmp), mode="w", format=fmt, options=options)
        self._container = container
        x264 = {"crf": str(crf), "preset": preset}
        asm = encoder_asm()
        if asm is not None:
            # Same frames, same file: x264's AVX-512 MB-tree reads memory it never wrote (see `x264_cpu`).
            x264["x264-params"] = f"asm={asm}"
        video = container.add_stream("libx264", rate=self.rate, options=x264)
        video.width, video.height = self.encoded_width, self.encoded_height
        video.pix_fmt = "yuv420p"
        video.time_base = 1 / self.rate
        # BT.709, limited range, stated in the stream so players convert back to the same colours.
        cc = video.codec_context
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1
        self._video = video
        self._audio_stream = None
        if self._audio is not None:
            layout = "mono" if self._audio.shape[0] == 1 else "stereo"
            self._audio_stream = container.add_stream("aac", rate=self.sample_rate, layout=layout)
            # AAC carries at most 6144 bits per channel per 1024-sample frame (96 kb/s for 16 kHz mono).
            ceiling = 6 * self.sample_rate * self._audio.shape[0]
            self._audio_stream.bit_rate = min(audio_bitrate, ceiling)

    def write(self, image: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame (H, W as given to the constructor)."""
        if self._container is None:
            raise OutputError(f"{self.path}: the writer is already closed.")
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"frame must be uint8 {(self.height, self.width, 3)}, got {image.dtype} {image.shape}"
            )
        if (self.encoded_width, self.encoded_height) != (self.width, self.height):
            pad = ((0, self.encoded_height - self.height), (0, self.encoded_width - self.width), (0, 0))
            image = np.pad(image, pad, mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        frame.pts = self.frames_written
        frame.time_base = 1 / self.rate
        frame.duration = 1
        try:
            for packet in self._video.encode(frame):
                self._container.mux(packet)
            if self.frames_written == 0:
                mark(FIRST_FRAME)
            self.frames_written += 1
            self._write_audio(self._audio_target(), final=False)
        except (OSError, av.error.FFmpegError) as exc:
            self.abort()
            raise _as_output_error(self.path, exc) from exc

    def _audio_target(self) -> int:
        """Audio samples that belong to the frames written so far (exact: frames × rate / fps)."""
        return round(Fraction(self.frames_written * self.sample_rate) / self.rate)

    def _write_audio(self, target: int, final: bool) -> None:
        """Encode audio up to sample `target` in AAC-sized frames; the last, short frame only when final."""
        if self._audio_stream is None or self._audio is None or self._container is None:
            return
        while self._audio_written < target:
            size = min(AAC_FRAME_SIZE, target - self._audio_written)
            if size < AAC_FRAME_SIZE and not final:
                return
            start = self._audio_written
            chunk = self._audio[:, start - self._audio_offset : start - self._audio_offset + size]
            if chunk.shape[1] < size:
                chunk = np.pad(chunk, ((0, 0), (0, size - chunk.shape[1])))
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="fltp", layout=self._audio_stream.layout.name
            )
            frame.sample_rate = self.sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, self.sample_rate)
            for packet in self._audio_stream.encode(frame):
                self._container.mux(packet)
            self._audio_written += size

    def append_audio(self, audio: np.ndarray) -> None:
        """Extend the audio track, for audio that arrives with the frames (live dubbing); open the writer
        with `audio=np.zeros(0)` for that. Samples already encoded are dropped, so memory stays flat."""
        if self._audio is None:
            raise ValueError(f"{self.path}: the writer has no audio track; open it with audio=np.zeros(0)")
        add = _prepare_audio(audio)
        if add.shape[0] != self._audio.shape[0]:
            add = add.mean(axis=0, keepdims=True) if add.shape[0] > 1 else np.repeat(add, 2, axis=0)
        done = self._audio_written - self._audio_offset
        self._audio = np.concatenate([self._audio[:, done:], add], axis=1)
        self._audio_offset = self._audio_written

    @property
    def duration(self) -> float:
        """Seconds of video written so far (frames / fps)."""
        return float(self.frames_written / self.rate)

    def close(self) -> Path:
        """Finish the file and move it to `path`; raises `OutputError` (and leaves nothing) on failure."""
        if self._container is None:
            raise OutputError(f"{self.path}: the writer was aborted or already closed; nothing was written.")
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f"{self.path}: no frames were written, so no video was created.")
        try:
            for packet in self._video.encode(None):
                self._container.mux(packet)
            self._write_audio(self._audio_target(), final=True)
            if self._audio_stream is not None:
                for packet in self._audio_stream.encode(None):
                    self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except (OSError, av.error.FFmpegError) as exc:
            self.abort()
            raise _as_output_error(self.path, exc) from exc
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard everything: close the encoder and delete the temporary file. Safe to call twice."""
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(OSError, av.error.FFmpegError):
                container.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._container is not None:
            self.close()

    def __del__(self) -> None:
        if getattr(self, "_container", None) is not None:
            self.abort()
