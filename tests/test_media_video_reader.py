"""`VideoReader`: frame identity, timestamps, constant-rate resampling, VFR, rotation, real clips."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from stylelipsync.errors import MediaError
from stylelipsync.media import VideoReader, probe
from test_media_synth import frame_image, psnr, read_index, write_video


@pytest.mark.parametrize("fps", [25, 30, Fraction(30000, 1001)])
def test_native_frames_in_order_with_exact_times(tmp_path: Path, fps: Fraction | int) -> None:
    path = write_video(tmp_path / "v.mp4", 40, fps)
    reader = VideoReader(path)
    assert not reader.resampling
    assert reader.fps == pytest.approx(float(fps))
    frames = list(reader)
    assert len(frames) == len(reader) == 40
    for k, frame in enumerate(frames):
        assert frame.index == k
        assert frame.time == pytest.approx(float(k / Fraction(fps)), abs=1e-6)
        assert frame.image.shape == (96, 160, 3) and frame.image.dtype == np.uint8
        assert read_index(frame.image) == k
    assert psnr(frames[7].image, frame_image(7)) > 35


@pytest.mark.parametrize(("source", "target"), [(30, 25), (25, 30), (Fraction(30000, 1001), 25), (25, 25)])
def test_resampling_picks_latest_frame_at_or_before_each_output_time(
    tmp_path: Path, source: Fraction | int, target: int
) -> None:
    n = 45
    path = write_video(tmp_path / "v.mp4", n, source)
    reader = VideoReader(path, fps=target)
    frames = list(reader)
    duration = n / Fraction(source)
    assert len(frames) == len(reader) == round(duration * target)
    for k, frame in enumerate(frames):
        assert frame.index == k
        assert frame.time == pytest.approx(k / target)
        expected = math.floor(Fraction(k, target) * Fraction(source))
        assert read_index(frame.image) == expected, k


def test_duplicated_frames_are_independent_arrays(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 5, 10)
    frames = []
    for frame in VideoReader(path, fps=30):
        frames.append(frame)
        frame.image[-8:] = 7  # a caller drawing on a frame as soon as it gets it
    assert read_index(frames[0].image) == read_index(frames[1].image) == 0
    frames[0].image[:] = 0
    assert read_index(frames[1].image) == 0 and frames[1].image.any()
    assert not np.shares_memory(frames[1].image, frames[2].image)
    assert np.all(frames[2].image[:-8] == frames[1].image[:-8])


def test_variable_frame_rate_is_resampled_to_nominal_rate(tmp_path: Path) -> None:
    pts = [i + i // 2 for i in range(20)]  # every third 1/30 s slot is missing
    path = write_video(tmp_path / "vfr.mp4", 20, 30, pts=pts)
    reader = VideoReader(path)
    assert reader.resampling and reader.fps == pytest.approx(30.0)
    frames = list(reader)
    assert len(frames) == pts[-1] + 1
    for k, frame in enumerate(frames):
        expected = max(i for i, p in enumerate(pts) if p <= k)
        assert read_index(frame.image) == expected
    at_25 = list(VideoReader(path, fps=25))
    assert len(at_25) == round((pts[-1] + 1) / 30 * 25)
    for k, frame in enumerate(at_25):
        expected = max(i for i, p in enumerate(pts) if Fraction(p, 30) <= Fraction(k, 25))
        assert read_index(frame.image) == expected


def test_long_held_last_frame_is_not_mistaken_for_truncation(tmp_path: Path) -> None:
    pts = [*range(10), 60]  # frame 9 stays on screen for 2 s, then one last frame
    path = write_video(tmp_path / "hold.mp4", 11, 25, pts=pts)
    frames = list(VideoReader(path))
    assert len(frames) == 61
    assert [read_index(f.image) for f in frames[8:12]] == [8, 9, 9, 9]
    assert read_index(frames[59].image) == 9 and read_index(frames[60].image) == 10


def test_rotation_from_display_matrix(tmp_path: Path) -> None:
    image = frame_image(0)
    for ccw, turns in ((90, 1), (-90, -1), (180, 2)):
        path = write_video(tmp_path / f"rot{ccw}.mp4", 3, 25, rotation=ccw)
        reader = VideoReader(path)
        first = next(iter(reader)).image
        expected = np.rot90(image, k=turns)
        assert first.shape == expected.shape
        assert (reader.width, reader.height) == (first.shape[1], first.shape[0])
        assert psnr(first, expected) > 30, ccw
        resampled = next(iter(VideoReader(path, fps=50))).image
        assert resampled.shape == expected.shape


def test_rotation_from_legacy_rotate_tag(tmp_path: Path) -> None:
    path = write_video(tmp_path / "tagged.mkv", 2, 25, fmt="matroska", metadata={"rotate": "90"})
    assert probe(path).rotation == 90
    first = next(iter(VideoReader(path))).image
    assert first.shape == (160, 96, 3)
    assert psnr(first, np.rot90(frame_image(0), k=-1)) > 30


def test_stopping_early_closes_the_file(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", 30, 25)
    with VideoReader(path) as reader:
        frames = iter(reader)
        assert next(frames).index == 0
        assert reader._container is not None
    assert reader._container is None  # leaving the with-block closed the open iteration
    reader = VideoReader(path)
    for frame in reader:
        if frame.index == 3:
            break
    assert reader._container is None  # the abandoned iterator closed its file at once
    assert [f.index for f in reader][-1] == 29  # and the reader can be iterated again


def test_truncated_stream_raises_instead_of_freezing(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mkv", 50, 25, fmt="matroska")
    cut = tmp_path / "cut.mkv"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    for fps in (None, 25):
        with pytest.raises(MediaError, match=r"cut.mkv.*truncated"):
            list(VideoReader(cut, fps=fps))


def test_real_vfr_clip_resampled_to_25_fps(media_dir: Path) -> None:
    path = media_dir / "vrt_face_1.mp4"
    manifest_duration = 6.131
    reader = VideoReader(path, fps=25)
    count = 0
    previous = None
    for frame in reader:
        assert frame.index == count and frame.time == pytest.approx(count / 25)
        assert frame.image.shape == (700, 700, 3)
        if previous is not None and count < 20:
            assert frame.time > previous
        previous = frame.time
        count += 1
    assert count == len(reader) == round(manifest_duration * 25)
    native = VideoReader(path)
    assert native.resampling and native.fps == pytest.approx(30.0)
    assert len(list(native)) == round(native.duration * 30)


def test_real_30fps_clip_native_and_at_25(media_dir: Path) -> None:
    path = media_dir / "styletalk_feifeili_clip3.mp4"
    native = VideoReader(path)
    times = [f.time for f in native]
    assert len(times) == 212
    assert np.allclose(times, np.arange(212) / 30, atol=1e-4)
    assert len(list(VideoReader(path, fps=25))) == round(7.067 * 25)


def test_real_62_5fps_clip_at_25(media_dir: Path) -> None:
    reader = VideoReader(media_dir / "makeittalk_M6_04_16k_av.mp4", fps=25)
    assert len(list(reader)) == len(reader) == round(reader.duration * 25)
