"""Synthetic media made with PyAV for the media/audio tests, plus checks that the synthesis itself is sound.

Frames carry their index as a row of black/white blocks (8 bits, large enough to survive H.264) over a
moving gradient, so a test can tell which source frame a decoded image came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

BITS = 8
BLOCK = 16


def frame_image(k: int, width: int = 160, height: int = 96) -> np.ndarray:
    """HxWx3 uint8 RGB: a smooth pattern moving with k, and k in binary as blocks along the top rows."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack(
        [
            128 + 90 * np.sin(2 * np.pi * (xx + 4 * k) / width),
            128 + 90 * np.cos(2 * np.pi * (yy + 3 * k) / height),
            np.full_like(xx, 96),
        ],
        axis=-1,
    ).astype(np.uint8)
    for bit in range(BITS):
        value = 255 if (k >> bit) & 1 else 0
        image[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = value
    return image


def read_index(image: np.ndarray) -> int:
    """Inverse of the block code in `frame_image` (tolerant to compression noise)."""
    k = 0
    for bit in range(BITS):
        block = image[2 : BLOCK - 2, bit * BLOCK + 2 : (bit + 1) * BLOCK - 2]
        if block.mean() > 127:
            k |= 1 << bit
    return k


def tone(seconds: float, sample_rate: int, freq: float = 440.0, channels: int = 2) -> np.ndarray:
    """(channels, n) float32: a sine in the first channel, the other channels silent."""
    n = round(seconds * sample_rate)
    wave = np.zeros((channels, n), dtype=np.float32)
    wave[0] = 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / sample_rate)
    return wave


def noise_bursts(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """(n,) float32 broadband noise in bursts: a signal with a sharp cross-correlation peak."""
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    gate = (np.arange(n) // (sample_rate // 10)) % 3 != 2
    return (0.3 * rng.standard_normal(n) * gate).astype(np.float32)


def _encode_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    wave: np.ndarray,
    sample_rate: int,
) -> None:
    layout = "mono" if wave.shape[0] == 1 else "stereo"
    size = stream.codec_context.frame_size or 1024
    for start in range(0, wave.shape[1], size):
        chunk = np.ascontiguousarray(wave[:, start : start + size], dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_audio(path: Path, wave: np.ndarray, sample_rate: int, codec: str, fmt: str | None = None) -> Path:
    """Encode (channels, n) float audio to `path` with `codec` (pcm_s16le, libmp3lame, aac, flac, libopus)."""
    layout = "mono" if wave.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        _encode_audio(container, stream, wave, sample_rate)
    return path


def write_video(
    path: Path,
    n_frames: int,
    fps: Fraction | int = 25,
    size: tuple[int, int] = (160, 96),
    *,
    pts: Sequence[int] | None = None,
    rotation: int | None = None,
    metadata: dict[str, str] | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = 44100,
    fmt: str | None = None,
    first: int = 0,
) -> Path:
    """H.264 video of `frame_image(first + i)`; `pts` (in 1/fps units) makes it variable-frame-rate.

    `rotation` sets the display matrix (counter-clockwise degrees, as FFmpeg reports it); `audio`
    (channels, n) is muxed as AAC from t = 0.
    """
    width, height = size
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "12", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        time_base = Fraction(1) / Fraction(fps)
        stream.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if metadata:
            stream.metadata.update(metadata)
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=sample_rate, layout="stereo")
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(first + i, width, height), format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = time_base  # the muxer may change stream.time_base after the first packet
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio_stream is not None and audio is not None:
            _encode_audio(container, audio_stream, audio, sample_rate)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("k", [0, 1, 37, 128, 255])
def test_frame_code_round_trips_through_h264(tmp_path: Path, k: int) -> None:
    path = write_video(tmp_path / "one.mp4", 1, first=k)
    with av.open(str(path)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert read_index(image) == k
    assert psnr(image, frame_image(k)) > 35


def test_noise_bursts_have_a_single_sharp_autocorrelation_peak() -> None:
    x = noise_bursts(1.0, 16000)
    corr = np.correlate(x[:4000], x[:4000], "full")
    assert int(np.argmax(corr)) == 3999
    assert np.sort(corr)[-2] < 0.5 * corr.max()
